"""Segment lists (joined with the customers' master data through ``customer_details``)."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

# Segment lists join the customer master data (CSV imports of 顧客データ) when there is any.
LIST_COLUMNS = (
    "r.customer_id, r.segment, r.purchase_count, r.total_amount, r.first_purchase_on,"
    " r.last_purchase_on, r.home_branch_id, c.name AS customer_name, c.kana, c.email, c.phone,"
    " c.postal_code, concat_ws(' ', c.address1, c.address2) AS address, c.mail_consent"
)


LIST_FROM = (
    "report_customers r LEFT JOIN customer_details c"
    " ON c.tenant_id = r.tenant_id AND c.customer_id = r.customer_id"
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
            f"SELECT {LIST_COLUMNS} FROM {LIST_FROM}"
            " WHERE r.tenant_id = $1 AND r.scope = $2 AND r.segment = $3"
            " ORDER BY r.total_amount DESC, r.customer_id LIMIT $4",
            tenant_id,
            scope,
            segment,
            limit,
        )
    total, customer_id = after
    return await conn.fetch(
        f"SELECT {LIST_COLUMNS} FROM {LIST_FROM}"
        " WHERE r.tenant_id = $1 AND r.scope = $2 AND r.segment = $3"
        " AND r.total_amount <= $4 AND (r.total_amount < $4 OR r.customer_id > $5)"
        " ORDER BY r.total_amount DESC, r.customer_id LIMIT $6",
        tenant_id,
        scope,
        segment,
        total,
        customer_id,
        limit,
    )
