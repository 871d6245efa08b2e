"""Reads of the portfolio and of one customer."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import asyncpg

from ..domain.calendar import month_end, month_start
from ..domain.history import accumulate


async def portfolio_counts(
    conn: asyncpg.Connection, tenant_id: str, scope: str, as_of: date
) -> dict[str, tuple[int, Decimal]]:
    """Customers and sales per segment as of a day: the live aggregate when nothing later has
    been recorded (the usual case), else the sum of the daily deltas up to that day: O(days ×
    segments), whatever the number of customers. (The history reads the monthly rollups; this
    path keeps to the daily table, which ``kizuna bench portfolio`` seeds on its own.)"""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        later = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM portfolio_daily_deltas"
            " WHERE tenant_id = $1 AND scope = $2 AND day > $3)",
            tenant_id,
            scope,
            as_of,
        )
        if later:
            rows = await conn.fetch(
                "SELECT segment, sum(customers) AS customers, sum(sales) AS sales"
                " FROM portfolio_daily_deltas WHERE tenant_id = $1 AND scope = $2 AND day <= $3"
                " GROUP BY segment",
                tenant_id,
                scope,
                as_of,
            )
            return _sums(rows)
        rows = await conn.fetch(
            "SELECT segment, customers, sales FROM portfolio_current"
            " WHERE tenant_id = $1 AND scope = $2",
            tenant_id,
            scope,
        )
    return {r["segment"]: (int(r["customers"]), r["sales"]) for r in rows}


def _sums(rows) -> dict[str, tuple[int, Decimal]]:
    return {r["segment"]: (int(r["customers"]), r["sales"]) for r in rows}


async def portfolio_at(
    conn: asyncpg.Connection, tenant_id: str, scope: str, ends: list[date], *, by_month: bool
) -> list[dict[str, tuple[int, Decimal]]]:
    """The portfolio at each of ``ends`` (ascending) from the rollups, never from customers.

    ``by_month``: the ends are month-ends (the last one may be earlier: today), so whole months
    come from ``portfolio_monthly_deltas`` and only the last month from the daily deltas. Else
    every day between the first and last end comes from the daily deltas. Call inside a
    repeatable-read transaction when the figures must agree with other reads.
    """
    if not ends:
        return []
    first, last = month_start(ends[0]), ends[-1]
    base = _sums(
        await conn.fetch(
            "SELECT segment, sum(customers) AS customers, sum(sales) AS sales"
            " FROM portfolio_monthly_deltas WHERE tenant_id = $1 AND scope = $2 AND month < $3"
            " GROUP BY segment",
            tenant_id,
            scope,
            first,
        )
    )
    daily_from = month_start(last) if by_month else first
    deltas: list[tuple[date, str, int, Decimal]] = []
    if by_month and daily_from > first:
        rows = await conn.fetch(
            "SELECT month, segment, customers, sales FROM portfolio_monthly_deltas"
            " WHERE tenant_id = $1 AND scope = $2 AND month >= $3 AND month < $4"
            " ORDER BY month, segment",
            tenant_id,
            scope,
            first,
            daily_from,
        )
        deltas += [(month_end(r["month"]), r["segment"], r["customers"], r["sales"]) for r in rows]
    rows = await conn.fetch(
        "SELECT day, segment, customers, sales FROM portfolio_daily_deltas"
        " WHERE tenant_id = $1 AND scope = $2 AND day >= $3 AND day <= $4 ORDER BY day, segment",
        tenant_id,
        scope,
        daily_from,
        last,
    )
    deltas += [(r["day"], r["segment"], r["customers"], r["sales"]) for r in rows]
    return accumulate(base, deltas, ends)


CUSTOMER_COLUMNS = (
    "customer_id, segment, purchase_count, total_amount, first_purchase_on, last_purchase_on,"
    " home_branch_id"
)


async def customer(conn: asyncpg.Connection, tenant_id: str, scope: str, customer_id: str):
    """One customer's row with their tenant's time zone (null for a tenant not yet seen), for
    today's lapse days: one round trip for the most polled read."""
    return await conn.fetchrow(
        f"SELECT {CUSTOMER_COLUMNS},"
        " (SELECT time_zone FROM tenants WHERE tenant_id = $1) AS time_zone"
        " FROM report_customers WHERE tenant_id = $1 AND scope = $2 AND customer_id = $3",
        tenant_id,
        scope,
        customer_id,
    )


async def scopes(conn: asyncpg.Connection, tenant_id: str) -> list[str]:
    """The scopes a tenant has portfolio numbers for: ``all`` first, then branches."""
    rows = await conn.fetch(
        "SELECT DISTINCT scope FROM portfolio_current WHERE tenant_id = $1", tenant_id
    )
    return sorted((r["scope"] for r in rows), key=lambda s: (s != "all", s))


async def applied_rules_version(conn: asyncpg.Connection, tenant_id: str) -> int:
    """The borders version the classifier has finished applying (0 before any)."""
    value = await conn.fetchval(
        "SELECT applied_rules_version FROM tenants WHERE tenant_id = $1", tenant_id
    )
    return value or 0
