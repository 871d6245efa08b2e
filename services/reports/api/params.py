"""What the reports' routers share: query parameters, today in the tenant's zone, CSV downloads."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Literal

import asyncpg
from fastapi import Query
from fastapi.responses import StreamingResponse

from shared import access
from shared.access import privacy
from shared.cpm import SEGMENTS
from shared.http import ApiError
from shared.settings import Settings, today_in
from shared.tenants import load_tenant

from .. import domain, views

CSV_PAGE = 1000


# Query parameters shared by every customer list (segment lists, RFM lists, DM exports).
ListLimit = Annotated[
    int | None, Query(ge=1, le=1000, description="JSON page size (default 100); CSV: at most")
]


Cursor = Annotated[str | None, Query(description="`next` of the previous page")]
CsvEncoding = Annotated[str, Query(description="CSV: utf-8 (default) or cp932")]
CsvBom = Annotated[bool, Query(description="CSV in UTF-8: start with a BOM (Excel)")]
CsvHeader = Annotated[Literal["ja", "en"], Query(description="CSV header language")]


Scope = Annotated[
    str,
    Query(min_length=1, max_length=100, description="A branch_id, or 'all' for the whole chain."),
]


async def tenant_today(conn: asyncpg.Connection, tenant_id: str, settings: Settings) -> date:
    """Today in the tenant's time zone (``KIZUNA_NOW`` pins the clock)."""
    tenant = await load_tenant(conn, tenant_id, settings.default_time_zone)
    return today_in(tenant.time_zone, settings)


def known_segment(segment: str) -> str:
    if segment not in domain.KNOWN_SEGMENTS:
        raise ApiError(404, "unknown_segment", f"no segment {segment!r}", segments=list(SEGMENTS))
    return segment


MonthOrDay = Annotated[
    str | None,
    Query(max_length=10, description="YYYY-MM (month) or YYYY-MM-DD (day)"),
]


def invalid(field: str, reason: str) -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        "the request is not valid",
        problems=[{"field": field, "reason": reason}],
    )


@dataclass(frozen=True)
class Export:
    """Who takes a list out, and which list (the audit log's record)."""

    who: access.Principal
    subject: str


async def csv_download(
    pool, export: Export, settings, name, page, cells, header_row, after, limit, encoding, bom
) -> StreamingResponse:
    """A customer list as a CSV download (UTF-8 with or without BOM, or CP932), streamed page by
    page: ``page(conn, after, size)`` fetches rows after a (total, customer_id) keyset,
    ``cells(row, today)`` turns one into CSV cells. A connection is held per page, not for the
    whole download (a customer who moves during a long download may be missed or listed twice).
    The audit log records the rows sent, when the download ends or breaks off."""
    tenant_id = export.who.tenant_id
    try:
        charset = views.csv_encoding(encoding)
    except ValueError as exc:
        raise invalid("encoding", str(exc)) from None
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)

    async def stream():
        prefix = "\ufeff" if charset == "utf-8" and bom else ""
        yield views.encode_csv(prefix + views.csv_text([header_row]), charset)
        position, left, sent = after, limit, 0
        try:
            while left is None or left > 0:
                size = CSV_PAGE if left is None else min(CSV_PAGE, left)
                async with pool.acquire() as conn:
                    rows = await page(conn, position, size)
                if not rows:
                    break
                yield views.encode_csv(views.csv_text([cells(r, today) for r in rows]), charset)
                sent += len(rows)
                if len(rows) < size:
                    break
                position = (rows[-1]["total_amount"], rows[-1]["customer_id"])
                left = None if left is None else left - len(rows)
        finally:
            # Shielded: a client that hangs up cancels the stream, not its audit record.
            await asyncio.shield(
                privacy.record_export(pool, export.who, export.subject, sent, "csv")
            )

    media = "text/csv; charset=" + ("Shift_JIS" if charset == "cp932" else "utf-8")
    # Header values are latin-1: keep the file name to safe characters whatever the scope.
    filename = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-{today.isoformat()}.csv")
    return StreamingResponse(
        stream(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


Month = Annotated[str | None, Query(max_length=7, description="YYYY-MM; default this month")]


def month_of(text: str | None, default: date | None = None, field: str = "month") -> date:
    """A ``YYYY-MM`` parameter as its first day (``default``'s month when absent)."""
    if text is None and default is not None:
        return domain.month_start(default)
    try:
        return domain.parse_month(text or "")
    except ValueError as exc:
        raise invalid(field, str(exc)) from None
