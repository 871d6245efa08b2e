"""``GET /v1/segments/{segment}/customers`` (JSON pages or CSV)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from shared.access import Caller, Permission, allow, privacy
from shared.cpm import SEGMENT_NAMES_JA
from shared.http import AppSettings, Pool

from .. import store, views
from .params import (
    CsvBom,
    CsvEncoding,
    CsvHeader,
    Cursor,
    Export,
    ListLimit,
    Scope,
    csv_download,
    invalid,
    known_segment,
    tenant_today,
)

router = APIRouter()


@router.get(
    "/v1/segments/{segment}/customers",
    tags=["segments"],
    response_model=None,
    dependencies=[allow(Permission.LISTS)],
)
async def segment_customers(
    segment: str,
    pool: Pool,
    who: Caller,
    request: Request,
    settings: AppSettings,
    scope: Scope = "all",
    format: Literal["json", "csv"] = "json",
    limit: ListLimit = None,
    cursor: Cursor = None,
    encoding: CsvEncoding = "utf-8",
    bom: CsvBom = True,
    header: CsvHeader = "ja",
) -> dict | StreamingResponse:
    """A segment's customers, most valuable first (total desc, then customer_id): a JSON page,
    or as CSV the whole list (from ``cursor``, up to ``limit`` when given), streamed. Each
    response is an export of personal data: the audit log records it."""
    tenant_id = who.tenant_id
    known_segment(segment)
    try:
        after = views.decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise invalid("cursor", str(exc)) from None
    if format == "csv":

        async def page(conn, after, size):
            return await store.segment_page(conn, tenant_id, scope, segment, after, size)

        def cells(row, today):
            return views.csv_row(views.customer_body(row, scope, today), header)

        return await csv_download(
            pool,
            Export(who, privacy.list_subject(request)),
            settings,
            f"{segment}-{scope}",
            page,
            cells,
            views.CSV_HEADERS[header],
            after,
            limit,
            encoding,
            bom,
        )
    size = limit or 100
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)
        rows = await store.segment_page(conn, tenant_id, scope, segment, after, size + 1)
    last = rows[size - 1] if len(rows) > size else None
    await privacy.record_export(
        pool, who, privacy.list_subject(request), min(len(rows), size), "json"
    )
    return {
        "segment": segment,
        "name_ja": SEGMENT_NAMES_JA[segment],
        "scope": scope,
        "items": [views.customer_body(r, scope, today) for r in rows[:size]],
        "next": views.encode_cursor(last["total_amount"], last["customer_id"]) if last else None,
    }
