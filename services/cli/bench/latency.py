"""`kizuna bench latency`: a steady feed through ingest; latency from the HTTP accept to the
change being visible in reports."""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import suppress
from datetime import date, timedelta

import asyncpg
import httpx
import orjson

from shared.db import resolve_database_url
from shared.settings import Settings

from .common import (
    ROOT,
    Env,
    append_report,
    bench_key,
    free_port,
    percentile,
)


class KeepAliveGet:
    """GETs over one keep-alive HTTP/1.1 connection, reading only the status: the latency
    pollers' client, one per tracked customer. With httpx the bench process took 40-56% of a core
    at 2,000 ev/s once samples queued up (py-spy: two thirds of it in httpx's connection-pool
    bookkeeping), on the same two cores as the stack it measures; with this, 5% at 1,000 ev/s
    (13-16% before). Reconnects when the server has closed the connection."""

    def __init__(self, host: str, port: int, headers: dict[str, str]):
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host, **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def status(self, path: str) -> int:
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                self.writer.write(f"GET {path} HTTP/1.1\r\n{self.head}\r\n".encode())
                head = await self.reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await self.reader.readexactly(length)
                return int(head.split(b" ", 2)[1])
            except (asyncio.IncompleteReadError, ConnectionError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with suppress(OSError):
                await self.writer.wait_closed()
            self.reader = self.writer = None


LATENCY_CUSTOMERS = 50_000  # the chain's customers the latency feed draws from


async def scenario_latency(rate: int, seconds: int, partitions: int, cold: bool = False) -> str:
    """A steady feed through ingest HTTP; latency from the HTTP accept (202) to the change
    being visible in GET /v1/customers/{id} on reports.

    Unless ``cold``, the chain is live before the clock starts, as a chain's portfolio is: each
    of its customers has bought once, a month earlier, through the same ingest API, and the
    stack has caught up; then ``ANALYZE``. That last step is what autovacuum does on any live
    database; this machine's PostgreSQL runs with autovacuum off (its CI configuration), and
    without statistics the planner's choices for the growing tables are a lottery (BENCHMARKS:
    latency). ``cold`` measures from an empty database, without it."""
    from services.cli.stack import Stack

    settings = Settings()
    server_url, embedded = await resolve_database_url(settings)
    env = Env(None, server_url)  # type: ignore[arg-type]
    url = await env.fresh_database("latency")
    ports = {
        f"{name}_port": free_port()
        for name in ("ingest", "classifier", "reports", "notifier", "stack")
    }
    stack_settings = Settings(
        database_url=url,
        embedded_kafka_port=free_port(),
        topic_partitions=partitions,
        data_dir=ROOT / ".kizuna" / "bench",
        **ports,
    )
    stack = Stack(stack_settings)
    latencies: list[float] = []
    polls = 0
    sent = 0
    backlog: dict[str, int] = {}
    warm_seconds = 0.0
    try:
        await stack.start()
        ingest = stack.url("ingest")
        rnd = random.Random(5)
        today = date.today()
        tenant = await bench_key(stack.database_url)
        headers = {**tenant, "Content-Type": "application/json"}
        ticks_per_second = 10
        per_tick = rate // ticks_per_second
        pollers = []
        # The request bodies are built before the clock starts: the load generator shares the two
        # cores with what it measures, so it does as little as it can while the feed runs.
        bodies = [
            orjson.dumps(
                {
                    "events": [
                        {
                            "event_id": f"lat-{tick}-{i}",
                            "branch_id": f"br{i % 5}",
                            "customer_id": f"L{tick:06d}"
                            if i == 0
                            else f"C{rnd.randrange(LATENCY_CUSTOMERS):07d}",
                            "occurred_at": f"{today}T12:00:00",
                            "amount": str(rnd.randrange(500, 30000)),
                        }
                        for i in range(per_tick)
                    ]
                }
            )
            for tick in range(seconds * ticks_per_second)
        ]

        async def watch(customer, accepted_at):
            nonlocal polls
            getter = KeepAliveGet(stack_settings.host, stack_settings.reports_port, tenant)
            try:
                while True:
                    polls += 1
                    status = await getter.status(f"/v1/customers/{customer}?scope=all")
                    waited = time.perf_counter() - accepted_at
                    if status == 200:
                        latencies.append(waited * 1000)
                        return
                    # 25 ms resolution for the first second (the target is 500 ms), 100 ms after:
                    # every poll is a request the measured reports service serves, and a stack
                    # that has fallen behind would otherwise be loaded further by its measurement.
                    await asyncio.sleep(0.025 if waited < 1 else 0.1)
            finally:
                await getter.close()

        async with httpx.AsyncClient(timeout=60, headers=headers) as client:
            if not cold:
                print(f"warming up: {LATENCY_CUSTOMERS:,} customers buy once …", flush=True)
                began = time.perf_counter()
                month_ago = today - timedelta(days=30)
                for first in range(0, LATENCY_CUSTOMERS, 2000):
                    events = [
                        {
                            "event_id": f"warm-{c}",
                            "branch_id": f"br{c % 5}",
                            "customer_id": f"C{c:07d}",
                            "occurred_at": f"{month_ago}T12:00:00",
                            "amount": str(rnd.randrange(500, 30000)),
                        }
                        for c in range(first, min(first + 2000, LATENCY_CUSTOMERS))
                    ]
                    r = await client.post(
                        f"{ingest}/v1/purchases", content=orjson.dumps({"events": events})
                    )
                    assert r.status_code == 202, r.text
                conn = await asyncpg.connect(url)
                try:
                    # Every customer in reports, in the chain and at their branch: the stack's
                    # own idle check (consumer lag from the broker's high-water marks) once said
                    # idle with 80,000 states still unread.
                    deadline = time.monotonic() + 600
                    while (
                        await conn.fetchval("SELECT count(*) FROM report_customers")
                        < 2 * LATENCY_CUSTOMERS
                        or not await stack.idle()
                    ):
                        if time.monotonic() > deadline:
                            raise RuntimeError("the warm-up was not processed within 10 minutes")
                        await asyncio.sleep(0.5)
                    await conn.execute("ANALYZE")
                finally:
                    await conn.close()
                warm_seconds = time.perf_counter() - began
            print(f"feeding {rate:,} events/s for {seconds}s …", flush=True)
            start = time.perf_counter()
            for tick, body in enumerate(bodies):
                tracked = f"L{tick:06d}"
                r = await client.post(f"{ingest}/v1/purchases", content=body)
                accepted_at = time.perf_counter()
                assert r.status_code == 202, r.text
                sent += per_tick
                pollers.append(asyncio.create_task(watch(tracked, accepted_at)))
                behind = start + (tick + 1) / ticks_per_second - time.perf_counter()
                if behind > 0:
                    await asyncio.sleep(behind)
            achieved = sent / (time.perf_counter() - start)
            backlog = {
                name: await stack.lag(name) for name in ("classifier", "reports", "notifier")
            }
            _, pending = await asyncio.wait(pollers, timeout=120)
            for task in pending:  # still not visible two minutes after the feed ended
                task.cancel()
    finally:
        await stack.stop(drain_timeout=30)
        await env.drop()
        del embedded
    missing = len(pollers) - len(latencies)
    spread = (
        f"p50 {percentile(latencies, 0.5):.0f} ms, p95 {percentile(latencies, 0.95):.0f} ms, "
        f"p99 {percentile(latencies, 0.99):.0f} ms"
        if latencies
        else "none visible"
    )
    rows = [
        (
            "before the clock",
            "empty database (--cold)"
            if cold
            else f"{LATENCY_CUSTOMERS:,} customers bought once a month earlier, through ingest; "
            f"processed and ANALYZEd in {warm_seconds:.0f} s",
        ),
        (
            "feed",
            f"{sent:,} events in {seconds}s ({achieved:,.0f}/s achieved, batches of {per_tick} every 100 ms)",
        ),
        (
            "samples (one tracked new customer per batch)",
            f"{len(pollers):,} ({polls:,} GETs: every 25 ms for a second, then every 100 ms)",
        ),
        (
            "records not yet processed when the feed ended",
            ", ".join(f"{k} {v:,}" for k, v in backlog.items()),
        ),
        (
            "accept → visible in GET /v1/customers/{id}",
            spread + (f"; {missing:,} not visible 120 s after the feed ended" if missing else ""),
        ),
    ]
    notes = [
        "Whole stack on this machine: embedded broker, PostgreSQL, the four services, the load "
        "generator and the pollers. Target (issue 4): p99 < 500 ms."
    ]
    return append_report("latency", rows, notes)
