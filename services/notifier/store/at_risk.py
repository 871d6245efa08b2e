"""At risk: the classifier's state read through its views (``chain_customer_states``,
``counted_sales``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import asyncpg

from ..domain.at_risk import AtRiskCandidate


async def tenants(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch("SELECT tenant_id, time_zone FROM tenants ORDER BY tenant_id")
    return [(r["tenant_id"], r["time_zone"]) for r in rows]


async def at_risk_candidates(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    segments: Sequence[str],
    silent_since: date,
    today: date,
    after: str,
    limit: int,
) -> list[AtRiskCandidate]:
    """One page (by customer id, after ``after``) of active customers of ``segments`` silent
    since ``silent_since`` or longer and not yet warned about this silence, with their purchase
    days: one per order (sales sharing an order_id are one order, dated by the earliest),
    voided orders left out, as ``shared.cpm.compute_figures`` counts them.

    Why the notifier reads the classifier's state here, through its views
    ``chain_customer_states`` and ``counted_sales`` (015_views.sql), instead of consuming a
    topic: both services share the database; the silence looked for is the *absence* of events,
    so no event carries it; and a customer's rhythm (the median gap between their purchase days)
    needs their whole purchase history, which the classifier already keeps. A topic would only
    copy that table. Should the services ever get databases of their own, this query (and
    ``close_at_risk``) is what a read model must replace."""
    rows = await conn.fetch(
        "SELECT s.customer_id, s.segment, s.home_branch_id, s.total_amount, s.last_purchase_on,"
        "   s.lapse_due_on,"
        # A purchase day is the day of an order's earliest sale; counted_sales leaves voided
        # orders out (the rule of compute_figures, held to it by a test).
        "   ARRAY(SELECT DISTINCT o.on_ FROM ("
        "     SELECT min(c.occurred_on) AS on_ FROM counted_sales c"
        "     WHERE c.tenant_id = s.tenant_id AND c.customer_id = s.customer_id"
        "     GROUP BY c.order_key) o"
        "   WHERE o.on_ <= $4 ORDER BY o.on_) AS order_dates"
        " FROM chain_customer_states s"
        " WHERE s.tenant_id = $1 AND s.customer_id > $5"
        "   AND s.segment = ANY($2::text[]) AND s.last_purchase_on <= $3"
        "   AND NOT EXISTS (SELECT 1 FROM followups f WHERE f.tenant_id = $1"
        "     AND f.dedupe_key = 'at_risk:' || s.customer_id || ':'"
        "       || to_char(s.last_purchase_on, 'YYYY-MM-DD'))"
        " ORDER BY s.customer_id LIMIT $6",
        tenant_id,
        list(segments),
        silent_since,
        today,
        after,
        limit,
    )
    return [
        AtRiskCandidate(
            tenant_id=tenant_id,
            customer_id=r["customer_id"],
            segment=r["segment"],
            branch_id=r["home_branch_id"],
            total_amount=r["total_amount"],
            last_purchase_on=r["last_purchase_on"],
            lapse_due_on=r["lapse_due_on"],
            order_dates=tuple(r["order_dates"]),
        )
        for r in rows
    ]


async def close_at_risk(conn: asyncpg.Connection, tenant_id: str, on: date) -> int:
    """Close open at-risk tasks whose silence ended: the customer bought again, lapsed (the
    lapse task takes over) or left the portfolio."""
    result = await conn.execute(
        "UPDATE followups f SET status = 'done', done_on = $2, updated_at = now(),"
        "   outcome = CASE WHEN s.last_purchase_on > f.last_purchase_on THEN 'bought'"
        "     WHEN s.segment LIKE '%\\_lapsed' THEN 'lapsed' ELSE 'left' END"
        " FROM chain_customer_states s"
        " WHERE f.tenant_id = $1 AND f.reason = 'at_risk' AND f.status = 'open'"
        "   AND s.tenant_id = f.tenant_id AND s.customer_id = f.customer_id"
        "   AND (s.last_purchase_on > f.last_purchase_on OR s.segment IS NULL"
        "     OR s.segment NOT LIKE '%\\_active')",
        tenant_id,
        on,
    )
    return int(result.split()[-1])
