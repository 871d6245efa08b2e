"""Helpers for every test: paths, a free port, a scratch database, waiting for a condition,
the kizuna command run as an operator runs it, a purchase as POST /v1/purchases takes it, a
consumed record, publishing and waiting until a consumer group is past what was published, a
topic read from its start, running a consumer in-process, an HTTP client of an app in-process."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from pydantic import BaseModel

from shared.access import store as access_store
from shared.consumer import PgOffsetConsumer
from shared.db import _with_database, database_name, migrate
from shared.events import message_key
from shared.kafka import high_watermarks

ROOT = Path(__file__).resolve().parent.parent
TMP = ROOT / ".kizuna" / "test"  # logs and data of what the tests start
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # sample CSV files


def free_port() -> int:
    """A TCP port nobody listens on now (for a broker, a service or a test server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def asgi_client(app, base_url: str, **options) -> httpx.AsyncClient:
    """An HTTP client of ``app`` in-process (ASGI, no server); ``options`` as httpx takes them
    (``headers``)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url, **options)


async def kizuna(*argv: str, stdin: bool = False) -> asyncio.subprocess.Process:
    """The ``kizuna`` command started as an operator runs it (``python -m services.cli``, from
    the repository root), logging warnings only; stdout and stderr piped, and stdin if asked."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *argv,
        cwd=ROOT,
        env={**os.environ, "KIZUNA_LOG_LEVEL": "WARNING"},
        stdin=asyncio.subprocess.PIPE if stdin else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_kizuna(*argv: str, stdin: str | None = None, timeout: float | None = None) -> str:
    """Run the ``kizuna`` command to its end (``stdin`` its input; none, an empty one): its
    output. It must succeed."""
    proc = await kizuna(*argv, stdin=True)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), timeout)
    assert proc.returncode == 0, (argv, out.decode(), err.decode())
    return out.decode()


def sale(tenant, eid, customer, when, amount, branch="shibuya") -> dict:
    """A sale as ``POST /v1/purchases`` takes it (its order id its event id)."""
    return {
        "event_id": eid,
        "tenant_id": tenant,
        "branch_id": branch,
        "customer_id": customer,
        "occurred_at": when,
        "amount": amount,
        "order_id": eid,
    }


def consumed(topic: str, value: bytes, offset: int = 0, key: bytes = b"k") -> ConsumerRecord:
    """A record of partition 0 as the consumer hands it to a service's handler."""
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, 0, 0, [])


def keyed(item: BaseModel | tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """An event as the services publish it: keyed ``tenant:customer``, JSON; a raw ``(key,
    value)`` pair (a test's poison) as it is."""
    if isinstance(item, BaseModel):
        return message_key(item.tenant_id, item.customer_id), item.model_dump_json().encode()
    return item


async def committed_past(
    pool, group: str, topic: str, sent, *, timeout: float = 30, what: str = "the consumer"
) -> None:
    """Wait until ``group``'s offsets stored in PostgreSQL are past every record of ``sent``
    (the broker's metadata of what was published): a test asserts on finished work."""
    need: dict[int, int] = {}
    for md in sent:
        need[md.partition] = max(need.get(md.partition, -1), md.offset)

    async def done() -> bool:
        rows = await pool.fetch(
            "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2",
            group,
            topic,
        )
        stored = {r["partition"]: r["next_offset"] for r in rows}
        return all(stored.get(p, 0) > offset for p, offset in need.items())

    await wait_for(done, timeout=timeout, what=what)


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning up to its high-water marks now, partition by
    partition, without a consumer group."""
    marks = await high_watermarks(bootstrap, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out = []
    try:
        consumer.assign(list(marks))
        for tp in marks:
            consumer.seek(tp, 0)
        remaining = {tp for tp, hw in marks.items() if hw > 0}
        while remaining:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out += records
                if records and records[-1].offset + 1 >= marks[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


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


@asynccontextmanager
async def consuming(
    pool,
    bootstrap: str,
    topic: str,
    handle,
    *,
    service: str,
    group: str,
    session_timeout_ms: int = 2000,
) -> AsyncIterator[RunningConsumer]:
    """``handle`` consuming ``topic`` as ``service`` in ``group`` until the block ends; a short
    session by default (a joining member waits about half of it)."""
    running = RunningConsumer(
        lambda: PgOffsetConsumer(
            service=service,
            bootstrap=bootstrap,
            group_id=group,
            topics=[topic],
            pool=pool,
            handle=handle,
            session_timeout_ms=session_timeout_ms,
        )
    )
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
