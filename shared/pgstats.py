"""Planner statistics for the tables a service grows and reads by key.

PostgreSQL plans from statistics that autovacuum's analyze keeps; where autovacuum is off (as on
this project's CI machines) or has not come round yet, a fresh database has none, and a query
like ``customer_id = ANY($2)`` planned on a near-empty table keeps scanning the whole tenant
as the table grows (asyncpg caches the plan too). Each service renews the statistics of its own
growing tables when they are missing or stale; with autovacuum on, its analyze (after 10%
changed) comes first and this finds nothing to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import suppress

import asyncpg

log = logging.getLogger("kizuna.pgstats")

# How many changed rows make statistics worth renewing at the least.
MIN_CHANGED_ROWS = 1000


async def stale_statistics(conn: asyncpg.Connection, tables: Sequence[str]) -> list[str]:
    """The tables whose planner statistics are missing or older than as many changed rows as they
    described: growing from empty, each is analyzed at 1,000 rows and again each time it has
    about doubled."""
    rows = await conn.fetch(
        "SELECT s.relname, greatest(c.reltuples, 0) AS described, s.n_mod_since_analyze AS changed"
        " FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
        " WHERE s.relid = ANY($1::text[]::regclass[])",
        list(tables),
    )
    return sorted(
        r["relname"] for r in rows if r["changed"] >= max(MIN_CHANGED_ROWS, r["described"])
    )


async def analyze(conn: asyncpg.Connection, tables: Sequence[str], allowed: Sequence[str]) -> None:
    """Renew the planner statistics of these tables (a sample; it does not block writers).

    With a small sample (statistics target 10, 3,000 rows): key lookups need the planner to know
    that a customer is a few rows, not fine histograms; the full sample took 120-130 ms of a
    shared core per table at 100,000 rows, about 10 ms this way. Autovacuum's own analyze,
    where it runs, replaces these statistics with its full ones."""
    for table in tables:
        if table not in allowed:  # table names cannot be query parameters: only our own
            raise ValueError(f"not a table this service keeps statistics for: {table}")
    async with conn.transaction():
        await conn.execute("SET LOCAL default_statistics_target = 10")
        for table in tables:
            await conn.execute(f"ANALYZE {table}")


async def keep_statistics(
    pool: asyncpg.Pool,
    stop: asyncio.Event,
    tables: Sequence[str],
    every: float = 2.0,
) -> None:
    """Beside a consumer: renew the statistics of ``tables`` whenever they are missing or stale.
    A failure is logged, not fatal."""
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                stale = await stale_statistics(conn, tables)
                if stale:
                    await analyze(conn, stale, tables)
                    log.info("renewed planner statistics of %s", ", ".join(stale))
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("could not renew planner statistics: %s", exc)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
