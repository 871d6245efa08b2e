"""Helpers for every test: paths, a free port, a scratch database, waiting for a condition,
a consumed record, running a consumer in-process."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from shared.access import store as access_store
from shared.consumer import PgOffsetConsumer
from shared.db import _with_database, database_name, migrate

ROOT = Path(__file__).resolve().parent.parent
TMP = ROOT / ".kizuna" / "test"  # logs and data of what the tests start
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # sample CSV files


def free_port() -> int:
    """A TCP port nobody listens on now (for a broker, a service or a test server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def consumed(topic: str, value: bytes, offset: int = 0, key: bytes = b"k") -> ConsumerRecord:
    """A record of partition 0 as the consumer hands it to a service's handler."""
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, 0, 0, [])


async def wait_for(predicate, timeout: float = 30, interval: float = 0.1, what: str = "condition"):
    """Wait until ``await predicate()`` is truthy; no fixed sleeps in tests."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@asynccontextmanager
async def scratch_database(
    server_url: str, label: str, before: str | None = None
) -> AsyncIterator[str]:
    """A database of its own on the test server, dropped afterwards: migrated fully, or only up
    to the migration file ``before`` (a database as an older release left it)."""
    url = _with_database(server_url, f"kizuna_{label}_{uuid.uuid4().hex[:8]}")
    await migrate(url, before=before)
    try:
        yield url
    finally:
        admin = await asyncpg.connect(_with_database(server_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def _connection(db) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, str):
        conn = await asyncpg.connect(db)
        try:
            yield conn
        finally:
            await conn.close()
    else:
        async with db.acquire() as conn:
            yield conn


async def api_key(
    db,
    tenant: str,
    role: str = "admin",
    branches: tuple[str, ...] = (),
    name: str | None = None,
) -> dict[str, str]:
    """Headers with a new API key of ``tenant`` (created when new): what a system sends.
    ``db``: a database URL or a pool."""
    async with _connection(db) as conn:
        new = await access_store.create_key(conn, tenant, role, branches, name)
    return {"Authorization": f"Bearer {new.key}"}


async def person(
    db,
    tenant: str,
    role: str = "owner",
    branches: tuple[str, ...] = (),
) -> tuple[str, str]:
    """A new person of ``tenant`` who can log in: their (e-mail, password)."""
    email, password = f"{role}-{uuid.uuid4().hex[:10]}@{tenant}.example", uuid.uuid4().hex
    async with _connection(db) as conn:
        await access_store.create_person(conn, tenant, email, role, password, branches)
    return email, password


async def login(
    client,
    db,
    tenant: str,
    role: str = "owner",
    branches: tuple[str, ...] = (),
) -> dict[str, str]:
    """Log a new person in through ``client`` (an httpx client of reports, which keeps the
    session cookie): returns the headers a change needs (``X-CSRF-Token``)."""
    email, password = await person(db, tenant, role, branches)
    r = await client.post("/v1/session", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf_token"]}


def unavailable(reason: str):
    """Skip where a tool cannot be had; under CI (root, registries reachable) that is a failure:
    `make test` installs it (deploy/install-test-tools.sh)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must have it)")
    pytest.skip(reason)


class RunningConsumer:
    """A service's consumer run as its lifespan runs it (``start``, then ``run`` until stopped),
    for tests that consume in-process and stop or restart it."""

    def __init__(self, build: Callable[[], PgOffsetConsumer]):
        self.build = build
        self.consumer: PgOffsetConsumer | None = None
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.stop_event = asyncio.Event()
        self.consumer = self.build()
        await self.consumer.start()
        self.task = asyncio.create_task(self.consumer.run(self.stop_event), name="consume")

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            await self.task
            self.task = None
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None

    @property
    def healthy(self) -> bool:
        return bool(self.consumer and self.consumer.healthy and self.task and not self.task.done())
