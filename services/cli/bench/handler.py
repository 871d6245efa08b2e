"""The classifier's batch handler alone, fast path on and off, paired batch by batch:
``python -m services.cli.bench.handler EVENTS CUSTOMERS BATCH``.

One fresh PostgreSQL database, no broker: two tenants fed the same synthetic events (the feed
of ``kizuna bench classify``), in batches, one with ``classifier_fast_path`` on and one with it
off, a batch of each in turn. Prints the CPU of the handler's process and of its PostgreSQL
backend (``/proc``) per event, for each — CPU rather than wall time, so a busy machine distorts
it less — and whether both ended in the same states."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import asyncpg
from aiokafka import ConsumerRecord

from services.classifier.consumer import Classifier
from shared.db import resolve_database_url
from shared.events import PURCHASES
from shared.settings import Settings

from .classify import synthetic_events
from .common import BENCH_END, Env

TICK = os.sysconf("SC_CLK_TCK")
STATES = "SELECT customer_id, scope, seq, segment, purchase_count, total_amount"


def backend_cpu(pid: int) -> float:
    """CPU seconds a PostgreSQL backend has used (it runs on this machine)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def run(events: int, customers: int, batch: int) -> str:
    server, embedded = await resolve_database_url(Settings())
    env = Env(None, server)  # type: ignore[arg-type]  # (no broker: the handler alone)
    url = await env.fresh_database("handler")
    feed = list(synthetic_events(events, customers, 5))
    now = f"{BENCH_END}T23:00:00+09:00"
    modes = {
        "fast": Classifier(Settings(classifier_fast_path=True, now=now)),
        "slow": Classifier(Settings(classifier_fast_path=False, now=now)),
    }
    conns = {m: await asyncpg.connect(url) for m in modes}
    cpu = {m: [0.0, 0.0] for m in modes}
    try:
        pids = {m: await c.fetchval("SELECT pg_backend_pid()") for m, c in conns.items()}
        for start in range(0, events, batch):
            for mode, classifier in modes.items():
                records = [
                    ConsumerRecord(
                        PURCHASES,
                        0,
                        start + i,
                        0,
                        0,
                        f"{mode}:{e['customer_id']}".encode(),
                        json.dumps({**e, "tenant_id": mode}).encode(),
                        None,
                        0,
                        0,
                        [],
                    )
                    for i, e in enumerate(feed[start : start + batch])
                ]
                conn = conns[mode]
                own, server_cpu = time.process_time(), backend_cpu(pids[mode])
                async with conn.transaction():
                    await classifier.handle(conn, records)
                cpu[mode][0] += time.process_time() - own
                cpu[mode][1] += backend_cpu(pids[mode]) - server_cpu
            if start // batch in (2, 10, 40):  # statistics, as the service keeps them
                await conns["fast"].execute("ANALYZE purchases; ANALYZE customer_states")
        lines = [f"{events:,} events, {customers:,} customers, batches of {batch:,}"]
        for mode in modes:
            py, pg = cpu[mode]
            lines.append(
                f"fast path {'on ' if mode == 'fast' else 'off'}: classifier {py / events * 1e6:.0f}"
                f" + PostgreSQL {pg / events * 1e6:.0f} = {(py + pg) / events * 1e6:.0f} µs of"
                f" CPU per event; customers on the fast path {modes[mode].fast_path_customers:,}"
            )
        states = [
            [
                tuple(r)
                for r in await conns["fast"].fetch(
                    f"{STATES} FROM customer_states WHERE tenant_id = $1 ORDER BY 1, 2", mode
                )
            ]
            for mode in modes
        ]
        lines.append(f"same states: {states[0] == states[1]} ({len(states[0]):,})")
        return "\n".join(lines)
    finally:
        for c in conns.values():
            await c.close()
        await env.drop()
        del embedded


if __name__ == "__main__":
    events, customers, batch = (int(a) for a in sys.argv[1:4])
    print(asyncio.run(run(events, customers, batch)))
