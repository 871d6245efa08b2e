"""The reports service's SQL: per-customer rows, portfolio aggregates, daily deltas.

Writes are set-based (one statement per table and batch, arrays through ``unnest``); reads of the
portfolio touch only the aggregate tables, never ``report_customers``.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import asyncpg

from .domain import CurrentKey, CustomerRow, DailyKey

Key = tuple[str, str, str]  # tenant, scope, customer

ROW_COLUMNS = (
    "seq, segment, purchase_count, total_amount, first_purchase_on, last_purchase_on,"
    " home_branch_id, effective_on, prev_segment, prev_total_amount"
)
ROW_TYPES = (
    "$4::bigint[], $5::text[], $6::int[], $7::numeric[], $8::date[], $9::date[], $10::text[],"
    " $11::date[], $12::text[], $13::numeric[]"
)


def _row(r) -> CustomerRow:
    return CustomerRow(
        seq=r["seq"],
        segment=r["segment"],
        purchase_count=r["purchase_count"],
        total_amount=r["total_amount"],
        first_purchase_on=r["first_purchase_on"],
        last_purchase_on=r["last_purchase_on"],
        home_branch_id=r["home_branch_id"],
        effective_on=r["effective_on"],
        prev_segment=r["prev_segment"],
        prev_total_amount=r["prev_total_amount"],
    )


def _columns(rows: dict[Key, CustomerRow]) -> list[list]:
    tuples = [
        (
            *key,
            r.seq,
            r.segment,
            r.purchase_count,
            r.total_amount,
            r.first_purchase_on,
            r.last_purchase_on,
            r.home_branch_id,
            r.effective_on,
            r.prev_segment,
            r.prev_total_amount,
        )
        for key, r in sorted(rows.items())
    ]
    return [list(c) for c in zip(*tuples, strict=True)]


async def lock_customers(conn: asyncpg.Connection, keys: list[Key]) -> dict[Key, CustomerRow]:
    """Read and lock the stored rows of these customers, in key order (no deadlocks between
    instances during a rebalance)."""
    if not keys:
        return {}
    tenants, scopes, customers = (list(c) for c in zip(*sorted(keys), strict=True))
    rows = await conn.fetch(
        f"SELECT r.tenant_id, r.scope, r.customer_id, {ROW_COLUMNS} FROM report_customers r"
        " JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant_id, scope, customer_id)"
        " USING (tenant_id, scope, customer_id)"
        " ORDER BY r.tenant_id, r.scope, r.customer_id FOR UPDATE OF r",
        tenants,
        scopes,
        customers,
    )
    return {(r["tenant_id"], r["scope"], r["customer_id"]): _row(r) for r in rows}


async def insert_customers(conn: asyncpg.Connection, rows: dict[Key, CustomerRow]) -> None:
    """Rows of customers seen for the first time. Deliberately no ON CONFLICT: if another
    instance inserted the same customer meanwhile (a rebalance), the unique violation fails the
    batch, which is retried and then sees that row instead of counting the customer twice."""
    if rows:
        await conn.execute(
            f"INSERT INTO report_customers (tenant_id, scope, customer_id, {ROW_COLUMNS})"
            f" SELECT * FROM unnest($1::text[], $2::text[], $3::text[], {ROW_TYPES})",
            *_columns(rows),
        )


async def update_customers(conn: asyncpg.Connection, rows: dict[Key, CustomerRow]) -> None:
    """Rows locked by ``lock_customers`` that took newer states."""
    if rows:
        await conn.execute(
            "UPDATE report_customers r SET seq = u.seq, segment = u.segment,"
            " purchase_count = u.purchase_count, total_amount = u.total_amount,"
            " first_purchase_on = u.first_purchase_on, last_purchase_on = u.last_purchase_on,"
            " home_branch_id = u.home_branch_id, effective_on = u.effective_on,"
            " prev_segment = u.prev_segment, prev_total_amount = u.prev_total_amount,"
            " updated_at = now()"
            f" FROM unnest($1::text[], $2::text[], $3::text[], {ROW_TYPES})"
            f" AS u(tenant_id, scope, customer_id, {ROW_COLUMNS})"
            " WHERE r.tenant_id = u.tenant_id AND r.scope = u.scope AND r.customer_id = u.customer_id",
            *_columns(rows),
        )


async def add_daily(conn: asyncpg.Connection, daily: dict[DailyKey, tuple[int, Decimal]]) -> None:
    if daily:
        cols = [list(c) for c in zip(*((*k, *v) for k, v in daily.items()), strict=True)]
        await conn.execute(
            "INSERT INTO portfolio_daily_deltas AS t (tenant_id, scope, day, segment, customers, sales)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::text[], $5::bigint[],"
            " $6::numeric[])"
            " ON CONFLICT (tenant_id, scope, day, segment) DO UPDATE"
            " SET customers = t.customers + EXCLUDED.customers, sales = t.sales + EXCLUDED.sales",
            *cols,
        )


async def add_current(
    conn: asyncpg.Connection, current: dict[CurrentKey, tuple[int, Decimal]]
) -> None:
    if current:
        cols = [list(c) for c in zip(*((*k, *v) for k, v in current.items()), strict=True)]
        await conn.execute(
            "INSERT INTO portfolio_current AS t (tenant_id, scope, segment, customers, sales)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::numeric[])"
            " ON CONFLICT (tenant_id, scope, segment) DO UPDATE"
            " SET customers = t.customers + EXCLUDED.customers, sales = t.sales + EXCLUDED.sales",
            *cols,
        )


# --- reads ----------------------------------------------------------------------------------------


async def portfolio_counts(
    conn: asyncpg.Connection, tenant_id: str, scope: str, as_of: date
) -> dict[str, tuple[int, Decimal]]:
    """Customers and sales per segment as of a day: the live aggregate when nothing later has
    been recorded (the usual case), else the sum of the daily deltas up to that day."""
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
        else:
            rows = await conn.fetch(
                "SELECT segment, customers, sales FROM portfolio_current"
                " WHERE tenant_id = $1 AND scope = $2",
                tenant_id,
                scope,
            )
    return {r["segment"]: (int(r["customers"]), r["sales"]) for r in rows}


CUSTOMER_COLUMNS = (
    "customer_id, segment, purchase_count, total_amount, first_purchase_on, last_purchase_on,"
    " home_branch_id"
)


async def customer(conn: asyncpg.Connection, tenant_id: str, scope: str, customer_id: str):
    return await conn.fetchrow(
        f"SELECT {CUSTOMER_COLUMNS} FROM report_customers"
        " WHERE tenant_id = $1 AND scope = $2 AND customer_id = $3",
        tenant_id,
        scope,
        customer_id,
    )


async def segment_page(
    conn: asyncpg.Connection,
    tenant_id: str,
    scope: str,
    segment: str,
    after: tuple[Decimal, str] | None,
    limit: int,
) -> list:
    """One page of a segment list, most valuable first (total desc, then customer_id), after the
    keyset ``after`` (the previous page's last item)."""
    if after is None:
        return await conn.fetch(
            f"SELECT {CUSTOMER_COLUMNS} FROM report_customers"
            " WHERE tenant_id = $1 AND scope = $2 AND segment = $3"
            " ORDER BY total_amount DESC, customer_id LIMIT $4",
            tenant_id,
            scope,
            segment,
            limit,
        )
    total, customer_id = after
    return await conn.fetch(
        f"SELECT {CUSTOMER_COLUMNS} FROM report_customers"
        " WHERE tenant_id = $1 AND scope = $2 AND segment = $3"
        " AND total_amount <= $4 AND (total_amount < $4 OR customer_id > $5)"
        " ORDER BY total_amount DESC, customer_id LIMIT $6",
        tenant_id,
        scope,
        segment,
        total,
        customer_id,
        limit,
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
