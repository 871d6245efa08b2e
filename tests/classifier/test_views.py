"""The classifier's views for other services (shared/migrations/015_views.sql) keep its rules:
``counted_sales`` counts a customer's purchases as ``shared.cpm.compute_figures`` does, on one
table of cases (the void rule lives in SQL for the readers' speed and in Python for the
classifier; this holds the two together)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest

from shared.cpm import Purchase, compute_figures

pytestmark = pytest.mark.integration

D1, D2, D3 = date(2025, 3, 1), date(2025, 3, 5), date(2025, 4, 2)

# (kind, order_id, day, amount, branch); event ids are given in order.
CASES = {
    "one sale": [("sale", None, D1, 100, "a")],
    "two sales without order ids are two purchases": [
        ("sale", None, D1, 100, "a"),
        ("sale", None, D1, 200, "a"),
    ],
    "lines of one order are one purchase, dated by the earliest": [
        ("sale", "o1", D2, 100, "a"),
        ("sale", "o1", D1, 50, "a"),
        ("sale", "o2", D3, 70, "b"),
    ],
    "a void cancels its order": [
        ("sale", "o1", D1, 100, "a"),
        ("sale", "o2", D2, 100, "a"),
        ("void", "o1", D2, 0, "a"),
    ],
    "a void at another branch cancels the order too": [
        ("sale", "o1", D1, 100, "a"),
        ("void", "o1", D2, 0, "b"),
        ("sale", None, D3, 100, "b"),
    ],
    "a void without an order id cancels nothing": [
        ("sale", "o1", D1, 100, "a"),
        ("void", None, D2, 0, "a"),
    ],
    "a return is not a purchase": [
        ("sale", "o1", D1, 100, "a"),
        ("return", "o1", D2, 40, "a"),
        ("return", None, D3, 10, "a"),
    ],
    "every order voided: no purchase": [
        ("sale", "o1", D1, 100, "a"),
        ("void", "o1", D1, 0, "a"),
    ],
    "an order id and an event id that look alike stay apart": [
        ("sale", "e0", D1, 100, "a"),
        ("sale", None, D2, 100, "a"),
    ],
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_counted_sales_counts_purchases_as_compute_figures(pool, tenant, case):
    rows = CASES[case]
    purchases = [
        Purchase(f"e{i}", kind, branch, day, Decimal(amount), order)
        for i, (kind, order, day, amount, branch) in enumerate(rows)
    ]
    await pool.executemany(
        "INSERT INTO purchases (tenant_id, event_id, branch_id, customer_id, kind, occurred_at,"
        " occurred_on, amount, order_id, payload) VALUES ($1, $2, $3, 'C1', $4, $5, $6, $7, $8, '{}')",
        [
            (
                tenant,
                p.event_id,
                p.branch_id,
                p.kind,
                datetime.combine(p.occurred_on, time(12), tzinfo=UTC),
                p.occurred_on,
                p.amount,
                p.order_id,
            )
            for p in purchases
        ],
    )
    orders = await pool.fetch(
        "SELECT order_key, min(occurred_on) AS day FROM counted_sales"
        " WHERE tenant_id = $1 AND customer_id = 'C1' GROUP BY order_key",
        tenant,
    )
    figures = compute_figures(purchases)
    if figures is None:
        assert orders == []
        return
    assert len(orders) == figures.purchase_count
    assert min(o["day"] for o in orders) == figures.first_purchase_on
    assert max(o["day"] for o in orders) == figures.last_purchase_on
