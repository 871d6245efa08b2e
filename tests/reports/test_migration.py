"""Migration 004 on a database that already had reports: the timeline starts from each
customer's row, the moves and monthly rollups agree with their definitions, earlier months are
marked incomplete, and the consumer carries on from there."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import asyncpg
import pytest

from services.reports.consumer import on_customer_states
from shared.db import migrate
from shared.events import CUSTOMER_STATES, CustomerState
from tests.helpers import consumed, scratch_database
from tests.reports.test_history_service import assert_tables_equal_a_recompute

pytestmark = pytest.mark.integration

T = "legacy"


@pytest.fixture
async def legacy(database_url):
    """A database migrated up to 003, with report rows written the way the consumer did then."""
    async with scratch_database(database_url, "legacy", before="004") as url:
        conn = await asyncpg.connect(url)
        try:
            rows = [
                ("a", 2, "fledgling_active", 2, 25000, "2025-01-05", "2025-03-10", "2025-03-10"),
                ("b", 1, "first_active", 1, 8000, "2025-02-01", "2025-02-01", "2025-02-01"),
                ("c", 3, "loyal_lapsed", 6, 150000, "2022-06-01", "2023-06-01", "2024-01-27"),
            ]
            for cid, seq, seg, count, total, first, last, eff in rows:
                await conn.execute(
                    "INSERT INTO report_customers (tenant_id, scope, customer_id, seq, segment,"
                    " purchase_count, total_amount, first_purchase_on, last_purchase_on, effective_on)"
                    " VALUES ($1, 'all', $2, $3, $4, $5, $6, $7, $8, $9)",
                    T,
                    cid,
                    seq,
                    seg,
                    count,
                    total,
                    date.fromisoformat(first),
                    date.fromisoformat(last),
                    date.fromisoformat(eff),
                )
            await conn.execute(
                "INSERT INTO portfolio_daily_deltas (tenant_id, scope, day, segment, customers, sales)"
                " VALUES ($1, 'all', '2025-01-05', 'first_active', 1, 10000),"
                " ($1, 'all', '2025-02-01', 'first_active', 1, 8000),"
                " ($1, 'all', '2025-03-10', 'first_active', -1, -10000),"
                " ($1, 'all', '2025-03-10', 'fledgling_active', 1, 25000),"
                " ($1, 'all', '2023-06-01', 'loyal_active', 1, 120000),"
                " ($1, 'all', '2024-01-27', 'loyal_active', -1, -120000),"
                " ($1, 'all', '2024-01-27', 'loyal_lapsed', 1, 150000)",
                T,
            )
        finally:
            await conn.close()
        await migrate(url)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        yield pool
        await pool.close()


def record(state: CustomerState, offset: int):
    return consumed(CUSTOMER_STATES, state.model_dump_json().encode(), offset)


async def test_migration_starts_timelines_from_the_rows_and_the_consumer_carries_on(legacy):
    assert (
        await legacy.fetchval("SELECT count(*) FROM report_timeline WHERE tenant_id = $1", T) == 3
    )
    start = await legacy.fetchval(
        "SELECT complete_from FROM report_history_start WHERE tenant_id = $1 AND scope = 'all'", T
    )
    assert start is not None and start.day == 1
    await assert_tables_equal_a_recompute(legacy, T, date(2022, 1, 1), date(2027, 1, 1))

    # b buys again: the timeline carries on from the row's entry.
    again = CustomerState(
        tenant_id=T,
        scope="all",
        customer_id="b",
        seq=2,
        from_segment="first_active",
        to_segment="fledgling_active",
        effective_on=date(2025, 4, 2),
        cause="purchase",
        purchase_count=2,
        total_amount=Decimal(18000),
        first_purchase_on=date(2025, 2, 1),
        last_purchase_on=date(2025, 4, 2),
        tenure_days=60,
        lapse_days=0,
    )
    async with legacy.acquire() as conn, conn.transaction():
        await on_customer_states(conn, [record(again, 0)])
    await assert_tables_equal_a_recompute(legacy, T, date(2022, 1, 1), date(2027, 1, 1))
    moves = await legacy.fetch(
        "SELECT from_segment, to_segment, customers FROM report_moves WHERE tenant_id = $1"
        " AND span = 1 AND month = '2025-04-01'",
        T,
    )
    assert [tuple(r) for r in moves] == [("first_active", "fledgling_active", 1)]
