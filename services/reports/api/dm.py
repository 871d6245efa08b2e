"""``/v1/dm-tables``: DM response tracking."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import Response

from shared.access import Permission, TenantId, allow
from shared.http import ApiError, Pool

from .. import domain, store, views
from .params import CsvBom, CsvEncoding, CsvHeader, invalid, month_of

router = APIRouter()


async def _dm_table(conn, tenant_id: str, table_id: int):
    table = await store.dm_table(conn, tenant_id, table_id)
    if table is None:
        raise ApiError(404, "dm_table_not_found", f"no DM table {table_id}", id=table_id)
    return table


@router.post(
    "/v1/dm-tables",
    tags=["dm"],
    status_code=201,
    dependencies=[allow(Permission.EDIT_LISTS, chain_only=True)],
)
async def create_dm_table(pool: Pool, tenant_id: TenantId, spec: domain.DmTable) -> dict:
    """A new named DM response table (レスポンス推移表) for a scope: ``{"name", "scope"}``."""
    async with pool.acquire() as conn:
        row = await store.create_dm_table(conn, tenant_id, spec.name, spec.scope)
    if row is None:
        raise ApiError(409, "dm_table_exists", f"a DM table named {spec.name!r} exists")
    return views.dm_body(row, [])


@router.get("/v1/dm-tables", tags=["dm"], dependencies=[allow(Permission.REPORTS, chain_only=True)])
async def list_dm_tables(pool: Pool, tenant_id: TenantId) -> dict:
    """The tenant's saved DM response tables."""
    async with pool.acquire() as conn:
        rows = await store.dm_tables(conn, tenant_id)
    return {
        "items": [
            {
                "id": r["table_id"],
                "name": r["name"],
                "scope": r["scope"],
                "created_at": r["created_at"].isoformat(),
                "months": r["months"],
            }
            for r in rows
        ]
    }


@router.get(
    "/v1/dm-tables/{table_id}",
    tags=["dm"],
    response_model=None,
    dependencies=[allow(Permission.REPORTS, chain_only=True)],
)
async def get_dm_table(
    table_id: int,
    pool: Pool,
    tenant_id: TenantId,
    format: Literal["json", "csv"] = "json",
    encoding: CsvEncoding = "utf-8",
    bom: CsvBom = True,
    header: CsvHeader = "ja",
) -> dict | Response:
    """A DM table: per month and segment the segment's size on the mailing day, mails sent,
    responses and response rate; per segment the totals. ``format=csv`` downloads it."""
    async with pool.acquire() as conn:
        table = await _dm_table(conn, tenant_id, table_id)
        entries = await store.dm_entries(conn, tenant_id, table_id)
    body = views.dm_body(table, entries)
    if format == "json":
        return body
    try:
        charset = views.csv_encoding(encoding)
    except ValueError as exc:
        raise invalid("encoding", str(exc)) from None
    prefix = "\ufeff" if charset == "utf-8" and bom else ""
    content = views.encode_csv(prefix + views.dm_csv(body, header), charset)
    return Response(
        content,
        media_type="text/csv; charset=" + ("Shift_JIS" if charset == "cp932" else "utf-8"),
        headers={"Content-Disposition": f'attachment; filename="dm-table-{table_id}.csv"'},
    )


@router.put(
    "/v1/dm-tables/{table_id}/months/{month}",
    tags=["dm"],
    dependencies=[allow(Permission.EDIT_LISTS, chain_only=True)],
)
async def put_dm_month(
    table_id: int,
    month: str,
    pool: Pool,
    tenant_id: TenantId,
    entry: domain.DmMonth,
) -> dict:
    """Record (or replace) a month: ``{"sent_on": "YYYY-MM-DD"?, "segments": [{"segment",
    "mailed", "responses"}, …]}``; each segment's size on ``sent_on`` (default the month's first
    day) is filled in from the portfolio history. Returns the whole table."""
    m = month_of(month)
    sent_on = entry.sent_on or m
    if domain.month_start(sent_on) != m:
        raise invalid("sent_on", f"must lie in {domain.month_text(m)}")
    async with pool.acquire() as conn:
        table = await _dm_table(conn, tenant_id, table_id)
        at = (await store.portfolio_at(conn, tenant_id, table["scope"], [sent_on], by_month=False))[
            0
        ]
        cells = [
            (c.segment, int(at.get(c.segment, (0, 0))[0]), c.mailed, c.responses)
            for c in entry.segments
        ]
        await store.put_dm_month(conn, tenant_id, table_id, m, sent_on, cells)
        entries = await store.dm_entries(conn, tenant_id, table_id)
    return views.dm_body(table, entries)


@router.delete(
    "/v1/dm-tables/{table_id}/months/{month}",
    tags=["dm"],
    dependencies=[allow(Permission.EDIT_LISTS, chain_only=True)],
)
async def delete_dm_month(table_id: int, month: str, pool: Pool, tenant_id: TenantId) -> dict:
    """Delete one month of a DM table; returns the table."""
    m = month_of(month)
    async with pool.acquire() as conn:
        table = await _dm_table(conn, tenant_id, table_id)
        if not await store.delete_dm(conn, tenant_id, table_id, m):
            raise ApiError(404, "dm_month_not_found", f"no {domain.month_text(m)} in the table")
        entries = await store.dm_entries(conn, tenant_id, table_id)
    return views.dm_body(table, entries)


@router.delete(
    "/v1/dm-tables/{table_id}",
    tags=["dm"],
    status_code=204,
    response_model=None,
    dependencies=[allow(Permission.EDIT_LISTS, chain_only=True)],
)
async def delete_dm_table(table_id: int, pool: Pool, tenant_id: TenantId) -> Response:
    """Delete a DM table and its months."""
    async with pool.acquire() as conn:
        if not await store.delete_dm(conn, tenant_id, table_id, None):
            raise ApiError(404, "dm_table_not_found", f"no DM table {table_id}", id=table_id)
    return Response(status_code=204)
