"""Reads for the owner's questions."""

from __future__ import annotations

from datetime import date

import asyncpg

from .portfolio import CUSTOMER_COLUMNS

LATEST_ENTRIES = (
    "SELECT DISTINCT ON (customer_id) customer_id, segment, purchase_count, total_amount,"
    " first_purchase_on, last_purchase_on, NULL::text AS home_branch_id FROM report_timeline"
    " WHERE tenant_id = $1 AND scope = $2 AND effective_on >= $3 AND effective_on <= $4"
    " ORDER BY customer_id, seq DESC"
)


async def dormant(
    conn: asyncpg.Connection,
    tenant_id: str,
    scope: str,
    as_of: date,
    last_from: date,
    last_to: date,
    limit: int,
) -> tuple[int, list]:
    """Customers whose last purchase on ``as_of`` lies in [``last_from``, ``last_to``], most
    valuable first, and how many. Reads only timeline entries since ``last_from``: an entry in
    force on ``as_of`` with such a last purchase is dated on or after it (timelines are in date
    order, so the latest of those entries is the one in force)."""
    rows = await conn.fetch(
        f"SELECT *, count(*) OVER () AS n FROM ({LATEST_ENTRIES}) x"
        " WHERE segment IS NOT NULL AND last_purchase_on >= $3 AND last_purchase_on <= $5"
        " ORDER BY total_amount DESC, customer_id LIMIT $6",
        tenant_id,
        scope,
        last_from,
        as_of,
        last_to,
        limit,
    )
    return (rows[0]["n"] if rows else 0), rows


async def newcomers(
    conn: asyncpg.Connection, tenant_id: str, scope: str, first: date, last: date, as_of: date
) -> tuple[int, int]:
    """Of the customers whose first purchase lies in [``first``, ``last``] and who are in the
    portfolio on ``as_of``: how many, and how many have bought at least twice by then."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, count(*) FILTER (WHERE purchase_count >= 2) AS back"
        f" FROM ({LATEST_ENTRIES}) x"
        " WHERE segment IS NOT NULL AND first_purchase_on >= $3 AND first_purchase_on <= $5",
        tenant_id,
        scope,
        first,
        as_of,
        last,
    )
    return int(row["n"]), int(row["back"])


async def top_customers(conn: asyncpg.Connection, tenant_id: str, scope: str, limit: int) -> list:
    """The most valuable customers of a scope now (index ``report_customers_total``)."""
    return await conn.fetch(
        f"SELECT {CUSTOMER_COLUMNS} FROM report_customers"
        " WHERE tenant_id = $1 AND scope = $2 AND segment IS NOT NULL"
        " ORDER BY total_amount DESC, customer_id LIMIT $3",
        tenant_id,
        scope,
        limit,
    )


async def top_products(
    conn: asyncpg.Connection,
    tenant_id: str,
    scope: str,
    customer_ids: list[str],
    per_customer: int = 3,
) -> dict[str, list[dict]]:
    """⑧ What each of these customers buys most: their sales' line items in the classifier's
    event store (customer states carry no line items), read through its view ``counted_sales``
    (015_views.sql, voided orders left out), by quantity. A customer whose purchases carried no
    lines has none."""
    rows = await conn.fetch(
        "SELECT c.customer_id, coalesce(l->>'sku', l->>'name') AS sku, max(l->>'name') AS name,"
        " sum(coalesce((l->>'quantity')::numeric, 1)) AS quantity,"
        " count(DISTINCT c.order_key) AS orders"
        " FROM counted_sales c CROSS JOIN LATERAL jsonb_array_elements(c.lines) l"
        " WHERE c.tenant_id = $1 AND c.customer_id = ANY($2::text[])"
        " AND ($3 = 'all' OR c.branch_id = $3)"
        " AND coalesce(l->>'sku', l->>'name') IS NOT NULL"
        " GROUP BY 1, 2 ORDER BY 1, quantity DESC, orders DESC, sku",
        tenant_id,
        customer_ids,
        scope,
    )
    out: dict[str, list[dict]] = {}
    for r in rows:
        items = out.setdefault(r["customer_id"], [])
        if len(items) < per_customer:
            items.append(
                {
                    "sku": r["sku"],
                    "name": r["name"],
                    "quantity": str(r["quantity"].normalize()),
                    "orders": r["orders"],
                }
            )
    return out
