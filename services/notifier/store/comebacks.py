"""Comebacks: follow-up work showing up as results."""

from __future__ import annotations

from datetime import date

import asyncpg


async def comeback_counts(
    conn: asyncpg.Connection, tenant_id: str, branch_id: str | None, start: date, end: date
) -> dict:
    """Comebacks from ``start`` to ``end`` (inclusive): in all, after a follow-up task, after
    staff had done it; per segment they came back from and per day. A comeback recorded before
    its branch was stored takes its task's branch."""
    where = (
        " FROM comebacks c LEFT JOIN followups f ON f.id = c.followup_id"
        " WHERE c.tenant_id = $1 AND c.came_back_on BETWEEN $2 AND $3"
        "   AND ($4::text IS NULL OR coalesce(c.branch_id, f.branch_id) = $4)"
    )
    args = (tenant_id, start, end, branch_id)
    totals = await conn.fetchrow(
        "SELECT count(*) AS comebacks, count(f.id) AS after_followup,"
        " count(*) FILTER (WHERE f.outcome = 'done') AS after_contact" + where,
        *args,
    )
    segments = await conn.fetch(
        "SELECT coalesce(c.from_segment, f.segment) AS segment, count(*) AS comebacks"
        + where
        + " GROUP BY 1 ORDER BY 2 DESC, 1",
        *args,
    )
    days = await conn.fetch(
        "SELECT c.came_back_on AS day, count(*) AS comebacks" + where + " GROUP BY 1 ORDER BY 1",
        *args,
    )
    return {
        **dict(totals),
        "by_segment": [dict(r) for r in segments],
        "by_day": [{"date": r["day"], "comebacks": r["comebacks"]} for r in days],
    }
