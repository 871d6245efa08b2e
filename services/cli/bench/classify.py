"""`kizuna bench classify`: purchase events preloaded on the broker, classified by our
classifier, beside two baselines (raw transport; the obvious per-message handler)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from datetime import datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer

from shared.cpm import DEFAULT_RULES, Purchase, classify, compute_figures
from shared.events import PURCHASES, PurchaseEvent
from shared.kafka import FASTSTREAM_LOG, high_watermarks, new_producer

from .common import (
    BENCH_END,
    Env,
    ServiceRun,
    append_report,
    bench_env,
)
from .profile import CpuMeter, Profiler


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


async def run_classifier(
    env: Env,
    label: str,
    n_unique_offsets: int,
    instances: int = 1,
    batch: int = 5000,
    profile: bool = False,
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
        meter = CpuMeter()
        meter.watch("classifier", [r.process.pid for r in runs])
        if env.broker.process is not None:
            meter.watch("broker (Tansu)", [env.broker.process.pid])
        meter.start()
        profiler = Profiler(runs[0].process.pid) if profile else None
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
            # Done: every event in durable state, every lapse due by the bench's "now" made
            # (the sweep runs once the backlog is small), every change published.
            if (
                done >= n_unique_offsets
                and not await pool.fetchval(
                    "SELECT count(*) FROM customer_states WHERE lapse_due_on <= $1", BENCH_END
                )
                and not await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_to IS NULL")
            ):
                break
            await asyncio.sleep(0.2)
        ended = time.perf_counter()
        meter.stop()
        per_instance = [await r.events_in() for r in runs]
        checksum = await pool.fetchval(
            "SELECT md5(string_agg(concat_ws('|', scope, customer_id, segment, purchase_count, total_amount,"
            " first_purchase_on, last_purchase_on), ',' ORDER BY scope, customer_id)) FROM customer_states"
        )
        states = await pool.fetchval("SELECT count(*) FROM customer_states")
        t0, d0 = first
        sustained = (n_unique_offsets - d0) / max(1e-9, ended - t0)
        profile_rows = []
        if profiler:
            for r in runs:
                r.stop()  # py-spy writes its samples when the process exits
            profiler.finish()
            profile_rows = profiler.summary()
        return {
            "cpu_rows": meter.rows(ended - started, n_unique_offsets),
            "profile_rows": profile_rows,
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
    # Its per-message "Received"/"Processed" lines at debug, as the services log faststream:
    # at faststream's default (info) they were thousands of lines between the bench's results.
    broker = KafkaBroker(
        env.broker.bootstrap,
        enable_idempotence=False,
        logger=FASTSTREAM_LOG,
        log_level=logging.DEBUG,
    )
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


async def scenario_classify(
    events: int,
    customers: int,
    branches: int,
    instances: int,
    naive_seconds: float,
    partitions: int,
    profile: bool = False,
) -> str:
    async with bench_env(partitions) as env:
        print(f"preloading {events:,} events over {customers:,} customers …", flush=True)
        n, secs = await preload(env.broker.bootstrap, synthetic_events(events, customers, branches))
        print(f"  produced {n:,} in {secs:.1f}s ({n / secs:,.0f}/s)", flush=True)
        print("baseline (a): raw aiokafka read + pydantic decode …", flush=True)
        raw = await raw_transport(env.broker.bootstrap, n)
        print(f"  {raw:,.0f} events/s", flush=True)
        print("ours: the classifier (batches, one transaction each, outbox, relay) …", flush=True)
        ours = await run_classifier(env, "ours", n, profile=profile)
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
    rows += [(f"ours, {k}", v) for k, v in ours["cpu_rows"]]
    rows += ours["profile_rows"]
    notes = [
        "Targets (issue 4): ≥ 25,000 events/s, ≥ 10× (b), ≥ 20% of (a), RSS < 300 MB.",
        "CPU rows: seconds each component used during our single-process run (PostgreSQL: every"
        " server process on the machine, a lower bound).",
    ]
    if ours["profile_rows"]:
        notes.append(
            "Profile: py-spy sampling the classifier process (50 Hz, on-CPU samples only);"
            " own time = in that function itself, incl. callees = with what it calls."
        )
    return append_report("classify", rows, notes)
