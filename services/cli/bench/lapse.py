"""`kizuna bench lapse`: the lapse sweep of one day on which many customers lapse."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from .common import (
    BENCH_END,
    ServiceRun,
    append_report,
    bench_env,
)


async def scenario_lapse(customers: int, lapsing: int, partitions: int) -> str:
    """N customers in the classifier's state of whom M reach their lapse date on one day; the
    clock moves to that day; time until every lapse is in state and published."""
    lapse_day = BENCH_END
    async with bench_env(partitions) as env:
        url = await env.fresh_database("lapse")
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        print(
            f"seeding {customers:,} customer states ({lapsing:,} due on {lapse_day}) …", flush=True
        )
        await pool.execute(
            """
            INSERT INTO customer_states (tenant_id, scope, customer_id, seq, segment, purchase_count, total_amount,
                                         first_purchase_on, last_purchase_on, home_branch_id, clock_on, lapse_due_on)
            SELECT 'bench', 'all', 'C' || lpad(g::text, 8, '0'), 2, 'loyal_active', 5, 90000,
                   last - 300, last, 'br1', last, last + 240
            FROM generate_series(1, $1) g,
                 LATERAL (SELECT CASE WHEN g <= $2 THEN $3::date - 240 ELSE $3::date - 240 + 1 + (g % 200) END AS last) d
            """,
            customers,
            lapsing,
            lapse_day,
        )
        await pool.execute(
            "INSERT INTO tenants (tenant_id) VALUES ('bench') ON CONFLICT DO NOTHING"
        )
        await pool.execute("ANALYZE")
        run = ServiceRun(url, env.broker.bootstrap, {"KIZUNA_NOW": f"{lapse_day}T00:05:00+09:00"})
        started = time.perf_counter()
        try:
            while True:
                run.sample()
                due = await pool.fetchval(
                    "SELECT count(*) FROM customer_states WHERE lapse_due_on <= $1", lapse_day
                )
                backlog = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_to IS NULL")
                if not due and not backlog:
                    break
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - started
            lapsed = await pool.fetchval(
                "SELECT count(*) FROM customer_states WHERE segment = 'loyal_lapsed'"
            )
        finally:
            run.stop()
            await pool.close()
    rows = [
        ("customers / due that day", f"{customers:,} / {lapsing:,}"),
        (
            "time from the clock moving to all changes published (incl. process start)",
            f"{elapsed:.1f} s",
        ),
        ("customers lapsed", f"{lapsed:,}"),
        ("classifier peak RSS", f"{run.peak_rss / 2**20:.0f} MB"),
    ]
    notes = [
        "States seeded directly (set-based SQL) — the scenario measures the sweep, not loading. "
        "Each lapse publishes a customer-state and a segment-change. Target (issue 4): < 60 s."
    ]
    return append_report("lapse", rows, notes)
