"""The reports service keeps the planner statistics of the tables its consumer grows
(``shared.pgstats``): on a server without autovacuum (this project's CI machine) a table that
grew from empty would otherwise keep the plans chosen for an empty one (services/reports/store/consumer.py).
Here: when, as a table grows, its statistics count as stale."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg
import pytest

from services.reports import store
from shared import pgstats
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def scratch(database_url):
    """A connection whose ``report_timeline`` is a fresh, empty copy in a schema of its own."""
    schema = f"stats_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(database_url)
    await conn.execute(
        f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.report_timeline"
        " (LIKE public.report_timeline INCLUDING ALL)"
    )
    await conn.execute(f"SET search_path = {schema}, public")
    yield conn
    await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    await conn.close()


async def test_a_grown_table_is_analyzed_once_then_again_when_it_has_doubled(scratch):
    tables = ("report_timeline",)

    async def add(first: int, n: int) -> None:
        await scratch.execute(
            "INSERT INTO report_timeline (tenant_id, scope, customer_id, seq, effective_on,"
            " segment, purchase_count, total_amount)"
            " SELECT 't', 'all', 'C' || i, 1, $1, 'first_active', 1, 100"
            " FROM generate_series($2::int, $3::int) i",
            date(2025, 6, 30),
            first,
            first + n - 1,
        )

    async def stale() -> list[str]:
        return await pgstats.stale_statistics(scratch, tables)

    await add(0, pgstats.MIN_CHANGED_ROWS - 1)
    assert await stale() == []  # too small to matter yet
    await add(pgstats.MIN_CHANGED_ROWS, 1)
    await wait_for(stale, what="the grown table to need statistics")  # stats are flushed ~1 s
    await pgstats.analyze(scratch, await stale(), store.GROWN_TABLES)
    assert await stale() == []
    assert await scratch.fetchval(
        "SELECT reltuples FROM pg_class WHERE oid = 'report_timeline'::regclass"
    ) == pytest.approx(pgstats.MIN_CHANGED_ROWS, rel=0.01)

    await add(10_000, pgstats.MIN_CHANGED_ROWS + 10)  # about doubled since the last analyze
    assert await wait_for(stale, what="the doubled table to need statistics again") == [
        "report_timeline"
    ]


async def test_only_the_consumers_tables_are_analyzed(scratch):
    with pytest.raises(ValueError):
        await pgstats.analyze(scratch, ["customer_states"], store.GROWN_TABLES)
