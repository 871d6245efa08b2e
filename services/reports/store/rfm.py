"""RFM: the tenant's borders, the rank cells and pages of ranked customers."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import asyncpg

from .portfolio import CUSTOMER_COLUMNS


async def rfm_thresholds(conn: asyncpg.Connection, tenant_id: str) -> str | None:
    return await conn.fetchval(
        "SELECT thresholds::text FROM report_rfm_thresholds WHERE tenant_id = $1", tenant_id
    )


async def save_rfm_thresholds(conn: asyncpg.Connection, tenant_id: str, thresholds: str) -> None:
    await conn.execute(
        "INSERT INTO report_rfm_thresholds (tenant_id, thresholds) VALUES ($1, $2::jsonb)"
        " ON CONFLICT (tenant_id) DO UPDATE SET thresholds = EXCLUDED.thresholds,"
        " updated_at = now()",
        tenant_id,
        thresholds,
    )


async def rfm_cells(conn: asyncpg.Connection, tenant_id: str, scope: str, today: date, t) -> list:
    """Customers and sales per (R, F, M) rank cell, ranked in SQL by the same borders as
    ``analysis.r_rank``/``f_rank``/``m_rank``. One aggregate pass over the scope's customer rows:
    recency moves with every day and the borders are the tenant's, so there is nothing a
    maintained table could keep."""
    r, f, m = t.recency_days, t.frequency, t.monetary
    return await conn.fetch(
        "SELECT r, f, m, count(*) AS customers, sum(total_amount) AS sales FROM ("
        " SELECT CASE WHEN $3::date - last_purchase_on <= $4 THEN 5"
        "  WHEN $3::date - last_purchase_on <= $5 THEN 4 WHEN $3::date - last_purchase_on <= $6"
        "  THEN 3 WHEN $3::date - last_purchase_on <= $7 THEN 2 ELSE 1 END AS r,"
        " CASE WHEN purchase_count >= $11 THEN 5 WHEN purchase_count >= $10 THEN 4"
        "  WHEN purchase_count >= $9 THEN 3 WHEN purchase_count >= $8 THEN 2 ELSE 1 END AS f,"
        " CASE WHEN total_amount >= $15 THEN 5 WHEN total_amount >= $14 THEN 4"
        "  WHEN total_amount >= $13 THEN 3 WHEN total_amount >= $12 THEN 2 ELSE 1 END AS m,"
        " total_amount FROM report_customers"
        " WHERE tenant_id = $1 AND scope = $2 AND segment IS NOT NULL) x GROUP BY r, f, m",
        tenant_id,
        scope,
        today,
        *r,
        *f,
        *m,
    )


async def rfm_page(
    conn: asyncpg.Connection,
    tenant_id: str,
    scope: str,
    where: dict,
    after: tuple[Decimal, str] | None,
    limit: int,
) -> list:
    """A page of the customers in the rank ranges ``where`` (``analysis.rfm_filter``), most
    valuable first, after the keyset ``after``."""
    total, customer_id = after if after else (None, None)
    return await conn.fetch(
        f"SELECT {CUSTOMER_COLUMNS} FROM report_customers"
        " WHERE tenant_id = $1 AND scope = $2 AND segment IS NOT NULL"
        " AND ($3::date IS NULL OR last_purchase_on >= $3)"
        " AND ($4::date IS NULL OR last_purchase_on <= $4)"
        " AND ($5::int IS NULL OR purchase_count >= $5)"
        " AND ($6::int IS NULL OR purchase_count < $6)"
        " AND ($7::numeric IS NULL OR total_amount >= $7)"
        " AND ($8::numeric IS NULL OR total_amount < $8)"
        " AND ($9::numeric IS NULL OR total_amount < $9 OR (total_amount = $9 AND customer_id > $10))"
        " ORDER BY total_amount DESC, customer_id LIMIT $11",
        tenant_id,
        scope,
        where["last_from"],
        where["last_to"],
        where["count_from"],
        where["count_below"],
        where["total_from"],
        where["total_below"],
        total,
        customer_id,
        limit,
    )
