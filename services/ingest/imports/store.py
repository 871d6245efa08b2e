"""The SQL of CSV imports: the ``imports`` row (progress and checkpoints), its rejected rows, the
staging table of a sales import (its accepted rows, published from there in date order), and
who is running it (a session advisory lock held by the connection that runs the import).

And the ``customers`` table, the tenant's customer master data (code, name, kana, company,
address, phone, e-mail, mail consent) that ``kizuna import customers`` writes, keyed by (tenant,
customer code); a customer's figures and segment live elsewhere (``customer_states``,
``report_customers``).

Tables: shared/migrations/006_imports.sql and 008_import_staging.sql. The orchestration is in
runner.py.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from .reader import Rejection

# Two-key advisory locks (class, import id): a live runner holds its import's lock on the
# connection it works with, so a crashed runner (process or connection gone) frees it at once.
IMPORT_LOCK_CLASS = 0x4B5A494D  # "KZIM"
RESUMABLE = ("running", "failed", "interrupted")
STALE_STAGING_DAYS = 7  # an unfinished import's staged rows are dropped after a week untouched

_RUNNING = (
    "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    f" AND l.classid = {IMPORT_LOCK_CLASS} AND l.objid = (i.id % 2147483647) AND l.objsubid = 2)"
)
COLUMNS = (
    "i.id, i.tenant_id, i.kind, i.file_name, i.file_sha256, i.size_bytes, i.options, i.status,"
    " i.encoding, i.delimiter, i.mapping, i.notes, i.rows, i.accepted, i.rejected, i.bytes_read,"
    " i.last_line, i.runs, i.resumed_from_line, i.rows_per_second, i.eta_seconds, i.started_at,"
    " i.run_started_at, i.updated_at, i.finished_at, i.error, i.phase, i.published,"
    " i.publish_after_at, i.publish_after_line, i.resumed_from_published, " + _RUNNING + " AS live"
)


class ImportConflict(Exception):
    """The import asked for cannot be run (unknown id, another file, already finished)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Claim:
    """An import this connection now runs (``busy`` False), or one that another runner holds
    (``busy`` True: follow its progress instead of running it twice)."""

    row: dict[str, Any]
    resumed: bool
    busy: bool = False

    @property
    def id(self) -> int:
        return self.row["id"]


@dataclass(frozen=True)
class Checkpoint:
    """Progress after a batch: of the file read so far (``rows`` … ``last_line``), and in the
    publish phase of a sales import, the events acknowledged (``published``). The rate and
    ETA are the current phase's (rows read, or events published, per second)."""

    rows: int
    accepted: int
    rejected: int
    bytes_read: int
    last_line: int
    rows_per_second: float | None
    eta_seconds: float | None
    phase: str = "read"
    published: int = 0


def _row(record: asyncpg.Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    row = dict(record)
    for key in ("options", "mapping", "notes"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    for key in ("rows_per_second", "eta_seconds"):
        if row.get(key) is not None:
            row[key] = float(row[key])
    # a 'running' import nobody holds was interrupted (its process or connection died)
    if row["status"] == "running" and not row.pop("live"):
        row["status"] = "interrupted"
    row.pop("live", None)
    return row


async def _try_lock(conn: asyncpg.Connection, import_id: int) -> bool:
    return await conn.fetchval(
        "SELECT pg_try_advisory_lock($1, ($2 % 2147483647)::int)", IMPORT_LOCK_CLASS, import_id
    )


async def release(conn: asyncpg.Connection, import_id: int) -> None:
    await conn.execute(
        "SELECT pg_advisory_unlock($1, ($2 % 2147483647)::int)", IMPORT_LOCK_CLASS, import_id
    )


async def claim(
    conn: asyncpg.Connection,
    *,
    tenant_id: str,
    kind: str,
    file_name: str | None,
    sha256: str,
    size: int | None,
    options: dict[str, Any],
    resume_id: int | None = None,
) -> Claim:
    """Open the import of a file on this connection: resume ``resume_id``, or else the newest
    unfinished import of the same file (tenant, kind, sha256) with the same options, or else
    start a new one. The caller then holds the import's lock on ``conn`` until
    :func:`release` (or until the connection closes)."""
    async with conn.transaction():
        # one claimer per file at a time, so two uploads of one file cannot both start it
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, $2))",
            f"{tenant_id}\x1f{kind}\x1f{sha256}",
            IMPORT_LOCK_CLASS,
        )
        if resume_id is not None:
            row = _row(
                await conn.fetchrow(
                    f"SELECT {COLUMNS} FROM imports i WHERE i.id = $1 AND i.tenant_id = $2",
                    resume_id,
                    tenant_id,
                )
            )
            if row is None:
                raise ImportConflict(404, "not_found", f"no import {resume_id} for this tenant")
            if (row["kind"], row["file_sha256"]) != (kind, sha256):
                raise ImportConflict(
                    409,
                    "different_file",
                    f"import {resume_id} was of another file ({row['kind']}, "
                    f"{row['file_name']}, sha256 {row['file_sha256'][:12]}…): resume it with "
                    "the same file",
                )
            if row["status"] == "done":
                raise ImportConflict(
                    409,
                    "already_done",
                    f"import {resume_id} is finished; import the file again without --resume",
                )
            if options != row["options"]:
                raise ImportConflict(
                    409,
                    "different_options",
                    f"import {resume_id} ran with {row['options'] or 'no options'}, not "
                    f"{options or 'none'}: the event ids depend on them; resume with the same",
                )
        else:
            row = _row(
                await conn.fetchrow(
                    f"SELECT {COLUMNS} FROM imports i"
                    " WHERE i.tenant_id = $1 AND i.kind = $2 AND i.file_sha256 = $3"
                    " AND i.status <> 'done' AND i.options = $4::jsonb"
                    " ORDER BY i.id DESC LIMIT 1",
                    tenant_id,
                    kind,
                    sha256,
                    json.dumps(options, sort_keys=True),
                )
            )
        if row is not None:
            if row["status"] == "running":  # someone holds it right now
                return Claim(row, resumed=False, busy=True)
            if not await _try_lock(conn, row["id"]):
                return Claim(row, resumed=False, busy=True)
            resumed = _row(
                await conn.fetchrow(
                    "UPDATE imports i SET status = 'running', runs = runs + 1,"
                    " resumed_from_line = last_line, resumed_from_published = published,"
                    " run_started_at = now(), updated_at = now(),"
                    " finished_at = NULL, error = NULL, eta_seconds = NULL,"
                    " file_name = coalesce($2, file_name)"
                    f" WHERE i.id = $1 RETURNING {COLUMNS}",
                    row["id"],
                    file_name,
                )
            )
            return Claim(resumed, resumed=True)
        new_id = await conn.fetchval(
            "INSERT INTO imports (tenant_id, kind, file_name, file_sha256, size_bytes, options)"
            " VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING id",
            tenant_id,
            kind,
            file_name,
            sha256,
            size,
            json.dumps(options, sort_keys=True),
        )
        await _try_lock(conn, new_id)  # nobody else can know the id yet
        row = _row(await conn.fetchrow(f"SELECT {COLUMNS} FROM imports i WHERE i.id = $1", new_id))
        return Claim(row, resumed=False)


async def describe_file(
    conn: asyncpg.Connection,
    import_id: int,
    *,
    encoding: str,
    delimiter: str,
    mapping: list[dict[str, Any]],
    notes: list[str],
) -> None:
    await conn.execute(
        "UPDATE imports SET encoding = $2, delimiter = $3, mapping = $4::jsonb,"
        " notes = $5::jsonb, updated_at = now() WHERE id = $1",
        import_id,
        encoding,
        delimiter,
        json.dumps(mapping, ensure_ascii=False),
        json.dumps(notes, ensure_ascii=False),
    )


async def checkpoint(
    conn: asyncpg.Connection,
    import_id: int,
    progress: Checkpoint,
    rejections: Sequence[Rejection],
    also: Callable[[asyncpg.Connection], Awaitable[Any]] | None = None,
) -> None:
    """One transaction: ``also`` (the customers' upsert), the batch's rejected rows, and the
    new checkpoint. Called only after the batch's events were acknowledged."""
    async with conn.transaction():
        if also is not None:
            await also(conn)
        if rejections:
            await conn.copy_records_to_table(
                "import_rejections",
                records=[
                    (
                        import_id,
                        r.line,
                        r.column,
                        r.value,
                        r.reason,
                        json.dumps(
                            [list(p) for p in r.problems] or [[r.column, r.value, r.reason]],
                            ensure_ascii=False,
                        ),
                    )
                    for r in rejections
                ],
                columns=["import_id", "line", "column_name", "value", "reason", "problems"],
            )
        await conn.execute(
            "UPDATE imports SET rows = $2, accepted = $3, rejected = $4, bytes_read = $5,"
            " last_line = $6, rows_per_second = $7, eta_seconds = $8, updated_at = now()"
            " WHERE id = $1",
            import_id,
            progress.rows,
            progress.accepted,
            progress.rejected,
            progress.bytes_read,
            progress.last_line,
            progress.rows_per_second,
            progress.eta_seconds,
        )


# --------------------------------------------------------------------------------------------
# Staging (sales): the accepted rows of one import, published from here in date order


STAGED_COLUMNS = ("occurred_at", "line", "customer_id", "event")


def staging_table(import_id: int) -> str:
    return f"import_staged_{int(import_id)}"


async def staged_count(conn: asyncpg.Connection, import_id: int) -> int | None:
    """Rows in the import's staging table; ``None`` when it has none."""
    table = staging_table(import_id)
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return None
    return await conn.fetchval(f"SELECT count(*) FROM {table}")


async def restart(conn: asyncpg.Connection, import_id: int) -> dict[str, Any]:
    """Back to the start of the file: an empty staging table, no counts, no rejected rows. For
    a resumed import whose staged rows are not all there (the database crashed: the staging
    table is unlogged; or it was dropped as stale). Returns the updated row."""
    table = staging_table(import_id)
    async with conn.transaction():
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await create_staging(conn, import_id)
        await conn.execute("DELETE FROM import_rejections WHERE import_id = $1", import_id)
        row = await conn.fetchrow(
            "UPDATE imports i SET phase = 'read', rows = 0, accepted = 0, rejected = 0,"
            " bytes_read = 0, last_line = 0, published = 0, publish_after_at = NULL,"
            " publish_after_line = NULL, resumed_from_line = 0, resumed_from_published = 0,"
            " rows_per_second = NULL, eta_seconds = NULL, updated_at = now()"
            f" WHERE i.id = $1 RETURNING {COLUMNS}",
            import_id,
        )
    return _row(row)


async def create_staging(conn: asyncpg.Connection, import_id: int) -> None:
    # Unlogged: no WAL for rows the file can give again (see 008_import_staging.sql). No
    # autovacuum: the table is only appended to, read once in order, then dropped.
    await conn.execute(
        f"CREATE UNLOGGED TABLE IF NOT EXISTS {staging_table(import_id)} ("
        " occurred_at timestamptz NOT NULL, line bigint NOT NULL, customer_id text NOT NULL,"
        " event bytea NOT NULL) WITH (autovacuum_enabled = false)"
    )


def stager(import_id: int, rows: bytes) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
    """What :func:`checkpoint` runs in its transaction to stage a batch's accepted rows:
    ``rows`` in binary COPY format (services.importer.staged_rows), made by the reading
    thread, so the event loop only streams bytes to the server."""

    async def source():
        yield rows

    async def stage(conn: asyncpg.Connection) -> None:
        await conn.copy_to_table(
            staging_table(import_id), source=source(), columns=STAGED_COLUMNS, format="binary"
        )

    return stage


async def start_publishing(conn: asyncpg.Connection, import_id: int) -> None:
    """Every row is staged: index the staging table in publishing order and switch phases (one
    transaction, so a crash leaves the import in one phase or the other)."""
    table = staging_table(import_id)
    async with conn.transaction():
        await conn.execute(
            f"CREATE INDEX IF NOT EXISTS {table}_order ON {table} (occurred_at, line)"
        )
        await conn.execute(f"ANALYZE {table}")
        await conn.execute(
            "UPDATE imports SET phase = 'publish', rows_per_second = NULL, eta_seconds = NULL,"
            " updated_at = now() WHERE id = $1",
            import_id,
        )


async def staged_page(
    conn: asyncpg.Connection, import_id: int, after: tuple[datetime, int] | None, limit: int
) -> list[asyncpg.Record]:
    """The next ``limit`` staged rows in publishing order (occurred_at, then the file's line)
    after the sort key ``after``."""
    table = staging_table(import_id)
    columns = ", ".join(STAGED_COLUMNS)
    if after is None:
        return await conn.fetch(
            f"SELECT {columns} FROM {table} ORDER BY occurred_at, line LIMIT $1", limit
        )
    return await conn.fetch(
        f"SELECT {columns} FROM {table} WHERE (occurred_at, line) > ($1, $2)"
        " ORDER BY occurred_at, line LIMIT $3",
        after[0],
        after[1],
        limit,
    )


async def published(
    conn: asyncpg.Connection,
    import_id: int,
    count: int,
    after: tuple[datetime, int],
    rows_per_second: float | None,
    eta_seconds: float | None,
) -> None:
    """The publish checkpoint: ``count`` events acknowledged, the last with sort key ``after``."""
    await conn.execute(
        "UPDATE imports SET published = $2, publish_after_at = $3, publish_after_line = $4,"
        " rows_per_second = $5, eta_seconds = $6, updated_at = now() WHERE id = $1",
        import_id,
        count,
        after[0],
        after[1],
        rows_per_second,
        eta_seconds,
    )


async def drop_staging(conn: asyncpg.Connection, import_id: int) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {staging_table(import_id)}")


async def drop_stale_staging(conn: asyncpg.Connection) -> list[int]:
    """Drop the staging tables nobody will read: of finished or deleted imports, and of
    unfinished ones untouched for ``STALE_STAGING_DAYS`` that nobody runs (resuming one of
    those reads the file again from the start). Returns the import ids."""
    ids = await conn.fetch(
        "SELECT substring(c.relname FROM '^import_staged_([0-9]+)$')::bigint AS id"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname = current_schema()"
        " AND c.relname ~ '^import_staged_[0-9]+$'"
    )
    if not ids:
        return []
    stale = await conn.fetch(
        "SELECT s.id FROM unnest($1::bigint[]) AS s(id) LEFT JOIN imports i ON i.id = s.id"
        " WHERE i.id IS NULL OR i.status = 'done' OR (i.updated_at < now() - make_interval("
        f"days => $2) AND NOT {_RUNNING})",
        [r["id"] for r in ids],
        STALE_STAGING_DAYS,
    )
    for r in stale:
        await drop_staging(conn, r["id"])
    return [r["id"] for r in stale]


async def finish(
    conn: asyncpg.Connection,
    import_id: int,
    status: str,
    *,
    error: str | None = None,
    notes: list[str] | None = None,
    rows_per_second: float | None = None,
) -> None:
    await conn.execute(
        "UPDATE imports SET status = $2, error = $3, notes = coalesce($4::jsonb, notes),"
        " rows_per_second = coalesce($5, rows_per_second),"
        " eta_seconds = CASE WHEN $2 = 'done' THEN 0 ELSE NULL END,"
        " finished_at = CASE WHEN $2 = 'done' THEN now() END, updated_at = now()"
        " WHERE id = $1",
        import_id,
        status,
        error,
        json.dumps(notes, ensure_ascii=False) if notes is not None else None,
        rows_per_second,
    )


async def get_import(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, import_id: int
) -> dict[str, Any] | None:
    return _row(
        await conn.fetchrow(
            f"SELECT {COLUMNS} FROM imports i WHERE i.id = $1 AND i.tenant_id = $2",
            import_id,
            tenant_id,
        )
    )


async def list_imports(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, limit: int = 50
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM imports i WHERE i.tenant_id = $1 ORDER BY i.id DESC LIMIT $2",
        tenant_id,
        limit,
    )
    return [_row(r) for r in rows]


async def rejections(
    conn: asyncpg.Connection | asyncpg.Pool, import_id: int, *, after_line: int = 0, limit: int
) -> list[dict[str, Any]]:
    """Rejected rows in line order, a page at a time (keyset on the line)."""
    rows = await conn.fetch(
        "SELECT line, column_name, value, reason, problems FROM import_rejections"
        " WHERE import_id = $1 AND line > $2 ORDER BY line LIMIT $3",
        import_id,
        after_line,
        limit,
    )
    return [
        {
            "line": r["line"],
            "column": r["column_name"],
            "value": r["value"],
            "reason": r["reason"],
            "problems": [
                {"column": c, "value": v, "reason": why} for c, v, why in json.loads(r["problems"])
            ],
        }
        for r in rows
    ]


# The master-data columns, in the order exports show them; mail_consent is the only non-text one.
DETAIL_COLUMNS = (
    "name",
    "kana",
    "company",
    "postal_code",
    "address1",
    "address2",
    "phone",
    "fax",
    "email",
    "mail_consent",
    "branch_id",
)
_TYPES = {"mail_consent": "boolean"}


async def customer_details(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, customer_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Name and contact details of the given customers: ``{customer_id: {"name", "kana",
    "company", "postal_code", "address1", "address2", "phone", "fax", "email",
    "mail_consent", "branch_id"}}``. Customers without master data are absent from the result
    (a sale can arrive before the customer file); values the file left empty are ``None``.
    One indexed query, whatever the number of ids (a page of a segment list, an export)."""
    ids = list(dict.fromkeys(customer_ids))
    if not ids:
        return {}
    rows = await conn.fetch(
        f"SELECT customer_id, {', '.join(DETAIL_COLUMNS)} FROM customers"
        " WHERE tenant_id = $1 AND customer_id = ANY($2::text[])",
        tenant_id,
        ids,
    )
    return {r["customer_id"]: {c: r[c] for c in DETAIL_COLUMNS} for r in rows}


async def upsert_customers(
    conn: asyncpg.Connection,
    tenant_id: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    import_id: int | None = None,
) -> int:
    """Insert or update customers by code; only ``columns`` (those the file has) are written,
    the others keep their values. Within ``rows`` a later row for the same code wins, as if
    they were applied one by one. An update that changes nothing does not touch the row (nor
    its ``updated_at``). Returns the number of rows inserted or changed."""
    unknown = set(columns) - set(DETAIL_COLUMNS)
    if unknown:
        raise ValueError(f"not a customer column: {sorted(unknown)}")
    latest: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        latest.pop(row["customer_id"], None)  # keep file order for the survivors
        latest[row["customer_id"]] = row
    if not latest:
        return 0
    cols = [c for c in DETAIL_COLUMNS if c in columns]
    arrays = [list(latest)] + [[r.get(c) for r in latest.values()] for c in cols]
    params = ", ".join(
        f"${i + 2}::{_TYPES.get(c, 'text')}[]" for i, c in enumerate(["customer_id", *cols])
    )
    names = ", ".join(["customer_id", *cols])
    import_param = f"${len(cols) + 3}"
    if cols:
        changed = " OR ".join(f"c.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in cols)
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols)
        conflict = (
            f"DO UPDATE SET {sets}, import_id = EXCLUDED.import_id, updated_at = now()"
            f" WHERE {changed}"
        )
    else:
        conflict = "DO NOTHING"
    status = await conn.execute(
        f"INSERT INTO customers AS c (tenant_id, {names}, import_id)"
        f" SELECT $1, u.*, {import_param}::bigint FROM unnest({params}) AS u({names})"
        f" ON CONFLICT (tenant_id, customer_id) {conflict}",
        tenant_id,
        *arrays,
        import_id,
    )
    return int(status.rsplit(" ", 1)[-1])
