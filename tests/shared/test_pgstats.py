"""Services keep the planner statistics of the tables they grow when the server does not."""

from __future__ import annotations

import asyncpg
import pytest

from services.classifier.store import GROWN_TABLES
from shared.pgstats import analyze, stale_statistics
from tests.helpers import scratch_database, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def own_database(database_url):
    """A database of its own: in the shared one, running services keep these statistics too."""
    async with scratch_database(database_url, "pgstats") as url:
        yield url


async def test_grown_tables_are_analyzed_when_stale_and_only_ours(own_database):
    conn = await asyncpg.connect(own_database)
    try:
        assert await stale_statistics(conn, GROWN_TABLES) == []  # empty: nothing to plan yet
        await conn.execute(
            "INSERT INTO customer_states (tenant_id, scope, customer_id, seq, purchase_count,"
            " total_amount, clock_on) SELECT 'pgstats', 'all', 'C' || i, 1, 1, 100, current_date"
            " FROM generate_series(1, 1500) i"
        )
        await conn.execute("SELECT pg_stat_force_next_flush()")  # counters reach the view

        async def stale():
            return await stale_statistics(conn, GROWN_TABLES) == ["customer_states"]

        await wait_for(stale, timeout=10, what="customer_states reported stale")
        await analyze(conn, ["customer_states"], GROWN_TABLES)
        assert await stale_statistics(conn, GROWN_TABLES) == []
        assert await conn.fetchval(
            "SELECT reltuples >= 1500 FROM pg_class WHERE relname = 'customer_states'"
        )
        with pytest.raises(ValueError, match="not a table"):
            await analyze(conn, ["pg_class; DROP TABLE purchases"], GROWN_TABLES)
    finally:
        await conn.close()
