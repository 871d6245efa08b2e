"""`kizuna bench portfolio`: GET /v1/portfolio on report tables of 10,000 and 1,000,000
customers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from contextlib import suppress
from datetime import timedelta

import asyncpg
import httpx

from shared.db import resolve_database_url
from shared.settings import Settings

from .common import (
    BENCH_END,
    BENCH_NOW,
    Env,
    append_report,
    bench_key,
    free_port,
    percentile,
)

SEGMENT_MIX = [  # share of customers per segment, roughly the demo chain's
    ("first_active", 0.13),
    ("first_lapsed", 0.44),
    ("fledgling_active", 0.02),
    ("fledgling_lapsed", 0.04),
    ("steady_active", 0.06),
    ("steady_lapsed", 0.07),
    ("trendy_active", 0.01),
    ("trendy_lapsed", 0.01),
    ("loyal_active", 0.18),
    ("loyal_lapsed", 0.04),
]


async def seed_reports(pool, tenant: str, customers: int) -> None:
    """Report tables as the consumer would leave them for N customers over three years, written
    set-based (the portfolio read never looks at customers; this only makes the tables real)."""
    mix = "ARRAY[" + ",".join(f"'{seg}'" for seg, _ in SEGMENT_MIX) + "]"
    cum, bounds = 0.0, []
    for _, share in SEGMENT_MIX:
        cum += share
        bounds.append(f"{cum:.4f}")
    edges = "ARRAY[" + ",".join(bounds) + "]::float8[]"
    await pool.execute(
        f"""
        INSERT INTO report_customers (tenant_id, scope, customer_id, seq, segment, purchase_count, total_amount,
                                      first_purchase_on, last_purchase_on, home_branch_id, effective_on)
        SELECT $1, scope, 'C' || lpad(g::text, 8, '0'), 1, seg, 1 + (g % 9), (1000 + (g::bigint * 7919) % 90000)::numeric,
               $2::date - (g % 1095), $2::date - (g % 300), 'br' || (g % 5), $2::date - (g % 1095)
        FROM generate_series(1, $3) g,
             LATERAL (SELECT ({mix})[least(10, 1 + width_bucket(((g * 2654435761::bigint) % 10000) / 10000.0,
                                                                 {edges}))] AS seg) s,
             LATERAL (VALUES ('all'), ('br' || (g % 5))) AS v(scope)
        """,
        tenant,
        BENCH_END,
        customers,
    )
    await pool.execute(
        "INSERT INTO portfolio_daily_deltas (tenant_id, scope, day, segment, customers, sales)"
        " SELECT tenant_id, scope, effective_on, segment, count(*), sum(total_amount) FROM report_customers"
        " WHERE tenant_id = $1 GROUP BY 1, 2, 3, 4",
        tenant,
    )
    await pool.execute(
        "INSERT INTO portfolio_current (tenant_id, scope, segment, customers, sales)"
        " SELECT tenant_id, scope, segment, count(*), sum(total_amount) FROM report_customers"
        " WHERE tenant_id = $1 GROUP BY 1, 2, 3",
        tenant,
    )
    await pool.execute("ANALYZE")


async def scenario_portfolio(sizes: list[int], requests: int) -> str:
    rows = []
    settings = Settings()
    server_url, embedded = await resolve_database_url(settings)
    env = Env(None, server_url)  # type: ignore[arg-type]
    try:
        for size in sizes:
            url = await env.fresh_database(f"portfolio{size}")
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
            print(f"seeding report tables for {size:,} customers …", flush=True)
            await seed_reports(pool, "bench", size)
            await pool.close()
            auth = await bench_key(url)
            port = free_port()
            proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [sys.executable, "-m", "services.cli", "serve", "reports"],
                env={
                    **os.environ,
                    "DATABASE_URL": url,
                    "KIZUNA_REPORTS_PORT": str(port),
                    "KIZUNA_NOW": BENCH_NOW,
                    "KIZUNA_LOG_LEVEL": "WARNING",
                    "KAFKA_BOOTSTRAP_SERVERS": "",
                },
            )
            try:
                base = f"http://127.0.0.1:{port}"
                async with httpx.AsyncClient(timeout=10, headers=auth) as c:
                    for _ in range(200):
                        with suppress(httpx.HTTPError):
                            if (await c.get(base + "/healthz")).status_code == 200:
                                break
                        await asyncio.sleep(0.1)
                    for label, params in (
                        ("now", {"scope": "all"}),
                        (
                            "as_of a year ago",
                            {"scope": "all", "as_of": str(BENCH_END - timedelta(days=365))},
                        ),
                    ):
                        for _ in range(20):  # warm up
                            await c.get(base + "/v1/portfolio", params=params)
                        times = []
                        for _ in range(requests):
                            t = time.perf_counter()
                            r = await c.get(base + "/v1/portfolio", params=params)
                            times.append((time.perf_counter() - t) * 1000)
                            assert r.status_code == 200, r.text
                        total = r.json()["total_customers"]
                        rows.append(
                            (
                                f"{size:,} customers, {label} (total_customers {total:,})",
                                f"median {percentile(times, 0.5):.1f} ms, p99 {percentile(times, 0.99):.1f} ms",
                            )
                        )
                        print(f"  {rows[-1][0]}: {rows[-1][1]}", flush=True)
            finally:
                proc.terminate()
                proc.wait(30)
    finally:
        await env.drop()
        del embedded
    notes = [
        f"{requests} sequential requests each after 20 warm-up ones, over HTTP to one reports process "
        "(uvicorn, one worker). Target (issue 4): p99 < 50 ms at both sizes, and the same time at both."
    ]
    return append_report("portfolio", rows, notes)
