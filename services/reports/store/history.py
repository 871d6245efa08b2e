"""Reads of the monthly moves and of where history starts."""

from __future__ import annotations

from datetime import date

import asyncpg


async def moves(
    conn: asyncpg.Connection, tenant_id: str, scope: str, first: date, last: date
) -> list:
    """The stored monthly moves (both spans) of the months from ``first`` to ``last``."""
    return await conn.fetch(
        "SELECT span, month, from_segment, to_segment, customers, sales, buyers"
        " FROM report_moves WHERE tenant_id = $1 AND scope = $2 AND span = ANY($5::smallint[])"
        " AND month >= $3 AND month <= $4 AND (customers <> 0 OR sales <> 0 OR buyers <> 0)",
        tenant_id,
        scope,
        first,
        last,
        [1, 6],
    )


async def history_start(conn: asyncpg.Connection, tenant_id: str, scope: str) -> date | None:
    """The first month whose transitions are complete (databases that had reports before the
    timeline existed), or ``None``: complete from the beginning."""
    return await conn.fetchval(
        "SELECT complete_from FROM report_history_start WHERE tenant_id = $1 AND scope = $2",
        tenant_id,
        scope,
    )
