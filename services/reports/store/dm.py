"""DM response tables and their monthly entries."""

from __future__ import annotations

from datetime import date

import asyncpg

DM_TABLE_COLUMNS = "table_id, name, scope, created_at"


async def create_dm_table(conn: asyncpg.Connection, tenant_id: str, name: str, scope: str):
    """A new named table, or ``None`` when the tenant already has one of that name."""
    return await conn.fetchrow(
        "INSERT INTO report_dm_tables (tenant_id, name, scope) VALUES ($1, $2, $3)"
        f" ON CONFLICT (tenant_id, name) DO NOTHING RETURNING {DM_TABLE_COLUMNS}",
        tenant_id,
        name,
        scope,
    )


async def dm_tables(conn: asyncpg.Connection, tenant_id: str) -> list:
    return await conn.fetch(
        f"SELECT {DM_TABLE_COLUMNS}, (SELECT count(DISTINCT month) FROM report_dm_entries e"
        "  WHERE e.tenant_id = t.tenant_id AND e.table_id = t.table_id) AS months"
        " FROM report_dm_tables t WHERE tenant_id = $1 ORDER BY created_at, table_id",
        tenant_id,
    )


async def dm_table(conn: asyncpg.Connection, tenant_id: str, table_id: int):
    return await conn.fetchrow(
        f"SELECT {DM_TABLE_COLUMNS} FROM report_dm_tables WHERE tenant_id = $1 AND table_id = $2",
        tenant_id,
        table_id,
    )


async def dm_entries(conn: asyncpg.Connection, tenant_id: str, table_id: int) -> list:
    return await conn.fetch(
        "SELECT month, segment, sent_on, segment_size, mailed, responses FROM report_dm_entries"
        " WHERE tenant_id = $1 AND table_id = $2 ORDER BY month, segment",
        tenant_id,
        table_id,
    )


async def put_dm_month(
    conn: asyncpg.Connection,
    tenant_id: str,
    table_id: int,
    month: date,
    sent_on: date,
    cells: list[tuple[str, int, int, int]],
) -> None:
    """Replace a month of a table: (segment, size, mailed, responses) per segment."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM report_dm_entries WHERE tenant_id = $1 AND table_id = $2 AND month = $3",
            tenant_id,
            table_id,
            month,
        )
        await conn.executemany(
            "INSERT INTO report_dm_entries (tenant_id, table_id, month, segment, sent_on,"
            " segment_size, mailed, responses) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [(tenant_id, table_id, month, s, sent_on, size, m, r) for s, size, m, r in cells],
        )


async def delete_dm(
    conn: asyncpg.Connection, tenant_id: str, table_id: int, month: date | None
) -> bool:
    """Delete a table (``month`` None) or one month of it; whether anything was there."""
    if month is None:
        status = await conn.execute(
            "DELETE FROM report_dm_tables WHERE tenant_id = $1 AND table_id = $2",
            tenant_id,
            table_id,
        )
    else:
        status = await conn.execute(
            "DELETE FROM report_dm_entries WHERE tenant_id = $1 AND table_id = $2 AND month = $3",
            tenant_id,
            table_id,
            month,
        )
    return not status.endswith(" 0")
