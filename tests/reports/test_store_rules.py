"""Rules the reports' SQL repeats for speed, held to their Python definition on one table of
cases: the RFM ranks of ``store.rfm_cells`` and the rank ranges of ``store.rfm_page`` against
``analysis.r_rank``/``f_rank``/``m_rank`` (the ranks each customer is shown with)."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest

from services.reports import store
from services.reports.domain.rfm import DEFAULT_RFM, f_rank, m_rank, r_rank, rfm_filter

pytestmark = pytest.mark.integration

TODAY = date(2025, 6, 30)
T = DEFAULT_RFM


def _around(borders) -> list:
    """Every border, one below and one above it, and the extremes."""
    values = {0}
    for b in borders:
        values |= {b - 1, b, b + 1}
    return sorted(v for v in values if v >= 0)


# One customer per (days since the last purchase, purchases, total): each value at, just
# below and just above every border.
CASES = list(
    itertools.product(
        _around(T.recency_days),
        _around(T.frequency),
        [Decimal(v) for v in _around([int(m) for m in T.monetary])],
    )
)


@pytest.fixture
async def customers(pool, tenant):
    rows = [
        (tenant, f"C{i:04d}", n, Decimal(total), TODAY - timedelta(days=days))
        for i, (days, n, total) in enumerate(CASES)
    ]
    await pool.executemany(
        "INSERT INTO report_customers (tenant_id, scope, customer_id, seq, segment,"
        " purchase_count, total_amount, first_purchase_on, last_purchase_on, effective_on)"
        " VALUES ($1, 'all', $2, 1, 'loyal_active', $3, $4, $5::date - 400, $5, $5)",
        rows,
    )
    return {
        f"C{i:04d}": (r_rank(days, T), f_rank(n, T), m_rank(total, T))
        for i, (days, n, total) in enumerate(CASES)
    }


async def test_rfm_cells_rank_as_the_python_ranks(pool, tenant, customers):
    async with pool.acquire() as conn:
        cells = await store.rfm_cells(conn, tenant, "all", TODAY, T)
    assert {(c["r"], c["f"], c["m"]): c["customers"] for c in cells} == Counter(customers.values())


@pytest.mark.parametrize("measure", ["r", "f", "m"])
async def test_rfm_page_selects_the_customers_whose_python_ranks_are_in_range(
    pool, tenant, customers, measure
):
    full = (1, 5)
    for low, high in itertools.combinations_with_replacement(range(1, 6), 2):
        ranges = {m: ((low, high) if m == measure else full) for m in "rfm"}
        where = rfm_filter(T, TODAY, ranges["r"], ranges["f"], ranges["m"])
        async with pool.acquire() as conn:
            rows = await store.rfm_page(conn, tenant, "all", where, None, len(CASES) + 1)
        index = "rfm".index(measure)
        assert {r["customer_id"] for r in rows} == {
            c for c, ranks in customers.items() if low <= ranks[index] <= high
        }, (measure, low, high)
