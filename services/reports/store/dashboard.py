"""Reads for the dashboard (the classifier's events through its view ``purchase_events``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import asyncpg

from .portfolio import CUSTOMER_COLUMNS


async def day_changes(conn: asyncpg.Connection, tenant_id: str, scope: str, day: date) -> list:
    """Each customer with a timeline entry on ``day``: their segment at the day's end and on its
    eve (null: in no segment), with their total. An index range on (tenant, scope, day), then
    one key lookup per customer for the eve."""
    return await conn.fetch(
        "WITH d AS ("
        "  SELECT DISTINCT ON (customer_id) customer_id, segment, total_amount"
        "  FROM report_timeline WHERE tenant_id = $1 AND scope = $2 AND effective_on = $3"
        "  ORDER BY customer_id, seq DESC)"
        " SELECT d.customer_id, d.segment AS after, d.total_amount,"
        "  (SELECT t.segment FROM report_timeline t WHERE t.tenant_id = $1 AND t.scope = $2"
        "   AND t.customer_id = d.customer_id AND t.effective_on < $3"
        "   ORDER BY t.effective_on DESC, t.seq DESC LIMIT 1) AS before"
        " FROM d ORDER BY d.total_amount DESC, d.customer_id",
        tenant_id,
        scope,
        day,
    )


async def timeline(conn: asyncpg.Connection, tenant_id: str, scope: str, customer_id: str):
    """A customer's timeline in the scope, oldest first (a primary-key range)."""
    return await conn.fetch(
        "SELECT effective_on, seq, segment, purchase_count, total_amount FROM report_timeline"
        " WHERE tenant_id = $1 AND scope = $2 AND customer_id = $3 ORDER BY effective_on, seq",
        tenant_id,
        scope,
        customer_id,
    )


async def purchases(
    conn: asyncpg.Connection, tenant_id: str, scope: str, customer_id: str, limit: int
) -> list:
    """A customer's purchase events, newest first (voids count everywhere, like cpm.in_scope)."""
    return await conn.fetch(
        "SELECT event_id, kind, branch_id, occurred_at, occurred_on, amount, order_id,"
        " lines FROM purchase_events"
        " WHERE tenant_id = $1 AND customer_id = $2"
        "  AND ($3 = 'all' OR branch_id = $3 OR kind = 'void')"
        " ORDER BY occurred_at DESC, event_id LIMIT $4",
        tenant_id,
        customer_id,
        scope,
        limit,
    )


SORTS = {
    "-total": "r.total_amount DESC, r.customer_id",
    "total": "r.total_amount, r.customer_id",
    "-last": "r.last_purchase_on DESC, r.customer_id",
    "last": "r.last_purchase_on, r.customer_id",
    "-count": "r.purchase_count DESC, r.customer_id",
    "count": "r.purchase_count, r.customer_id",
    "id": "r.customer_id",
}


async def segment_search(
    conn: asyncpg.Connection,
    tenant_id: str,
    scope: str,
    segment: str,
    query: str | None,
    sort: str,
    offset: int,
    limit: int,
) -> tuple[int, list]:
    """One page of a segment's customers whose id starts with ``query``, in ``sort`` order
    (a key of SORTS), and how many match. Walks the segment's index; the default order
    (most valuable first) is that index's own."""
    where = "r.tenant_id = $1 AND r.scope = $2 AND r.segment = $3"
    args: list = [tenant_id, scope, segment]
    if query:
        args.append(query)
        where += f" AND starts_with(r.customer_id, ${len(args)})"
    total = await conn.fetchval(f"SELECT count(*) FROM report_customers r WHERE {where}", *args)
    columns = ", ".join(f"r.{c.strip()}" for c in CUSTOMER_COLUMNS.split(","))
    rows = await conn.fetch(
        f"SELECT {columns} FROM report_customers r WHERE {where}"
        f" ORDER BY {SORTS[sort]} OFFSET ${len(args) + 1} LIMIT ${len(args) + 2}",
        *args,
        offset,
        limit,
    )
    return total, rows


# Days between consecutive purchase days of each customer (sales; same-day purchases are one
# visit), and days from each customer's first purchase day to their second.
_GAPS = (
    "SELECT occurred_on - lag(occurred_on) OVER (PARTITION BY customer_id ORDER BY occurred_on)"
    " AS gap, row_number() OVER (PARTITION BY customer_id ORDER BY occurred_on) AS n"
    " FROM (SELECT DISTINCT customer_id, occurred_on FROM purchase_events"
    "  WHERE tenant_id = $1 AND kind = 'sale' AND ($2 = 'all' OR branch_id = $2)) v"
)


async def gap_figures(conn: asyncpg.Connection, tenant_id: str, scope: str, edges: list[int]):
    """The repurchase gaps counted per bucket of ``edges`` (``width_bucket`` index → count),
    their 90th percentile, and the 75th percentile of the gap to the second purchase: one pass
    over the scope's sales, aggregated in PostgreSQL."""
    return await conn.fetchrow(
        f"WITH g AS ({_GAPS})"
        " SELECT (SELECT percentile_disc(0.9) WITHIN GROUP (ORDER BY gap) FROM g"
        "          WHERE gap IS NOT NULL) AS gap_p90,"
        "  (SELECT percentile_disc(0.75) WITHIN GROUP (ORDER BY gap) FROM g WHERE n = 2)"
        "   AS second_p75,"
        "  (SELECT coalesce(jsonb_object_agg(b, c), '{}') FROM (SELECT width_bucket(gap, $3::int[])"
        "    AS b, count(*) AS c FROM g WHERE gap IS NOT NULL GROUP BY 1) x) AS buckets",
        tenant_id,
        scope,
        edges,
    )


async def total_figures(conn: asyncpg.Connection, tenant_id: str, scope: str, edges: list[int]):
    """Customers' totals counted per bucket of ``edges``, and for repeat customers the 80th
    percentile of totals and the median tenure: one aggregate over the scope's customers."""
    return await conn.fetchrow(
        "WITH c AS (SELECT purchase_count, total_amount, last_purchase_on - first_purchase_on"
        "  AS tenure FROM report_customers WHERE tenant_id = $1 AND scope = $2"
        "  AND segment IS NOT NULL)"
        " SELECT (SELECT percentile_disc(0.8) WITHIN GROUP (ORDER BY total_amount) FROM c"
        "          WHERE purchase_count >= 2) AS repeat_total_p80,"
        "  (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY tenure) FROM c"
        "    WHERE purchase_count >= 2) AS repeat_tenure_median,"
        "  (SELECT coalesce(jsonb_object_agg(b, n), '{}') FROM (SELECT"
        "    width_bucket(total_amount, $3::numeric[]) AS b, count(*) AS n FROM c GROUP BY 1) x)"
        "   AS buckets",
        tenant_id,
        scope,
        edges,
    )


PREVIEW_BATCH = 10_000


async def customer_figures(
    conn: asyncpg.Connection, tenant_id: str, scope: str
) -> AsyncIterator[list]:
    """Every customer of the scope in a segment, with the figures a classification needs, in
    batches from a server-side cursor (a million customers never sit in memory at once).
    ``conn`` must be in a transaction."""
    cursor = await conn.cursor(
        "SELECT segment, purchase_count, total_amount, first_purchase_on, last_purchase_on"
        " FROM report_customers WHERE tenant_id = $1 AND scope = $2 AND segment IS NOT NULL",
        tenant_id,
        scope,
    )
    while rows := await cursor.fetch(PREVIEW_BATCH):
        yield rows


async def target(conn: asyncpg.Connection, tenant_id: str) -> Decimal | None:
    return await conn.fetchval(
        "SELECT fledgling_target FROM dashboard_settings WHERE tenant_id = $1", tenant_id
    )


async def save_target(conn: asyncpg.Connection, tenant_id: str, value: Decimal) -> None:
    await conn.execute(
        "INSERT INTO dashboard_settings (tenant_id, fledgling_target) VALUES ($1, $2)"
        " ON CONFLICT (tenant_id) DO UPDATE SET fledgling_target = EXCLUDED.fledgling_target,"
        " updated_at = now()",
        tenant_id,
        value,
    )
