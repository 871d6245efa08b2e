"""``/v1/rfm``: cells, ranked customers and the tenant's borders."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from shared.access import Caller, Permission, TenantId, allow, privacy
from shared.http import AppSettings, Pool

from .. import domain, store, views
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
    tenant_today,
)

router = APIRouter()


async def _rfm_thresholds(conn, tenant_id: str) -> domain.RfmThresholds:
    stored = await store.rfm_thresholds(conn, tenant_id)
    return domain.RfmThresholds.model_validate_json(stored) if stored else domain.DEFAULT_RFM


@router.get("/v1/rfm/thresholds", tags=["rfm"], dependencies=[allow(Permission.REPORTS)])
async def get_rfm_thresholds(pool: Pool, tenant_id: TenantId) -> dict:
    """The tenant's RFM borders (defaults until set)."""
    async with pool.acquire() as conn:
        stored = await store.rfm_thresholds(conn, tenant_id)
        t = await _rfm_thresholds(conn, tenant_id)
    return {"default": stored is None, "thresholds": t.model_dump(mode="json")}


@router.put(
    "/v1/rfm/thresholds",
    tags=["rfm"],
    dependencies=[allow(Permission.SETTINGS, chain_only=True)],
)
async def put_rfm_thresholds(pool: Pool, tenant_id: TenantId, t: domain.RfmThresholds) -> dict:
    """Set the tenant's RFM borders (four per measure, strictly increasing)."""
    async with pool.acquire() as conn:
        await store.save_rfm_thresholds(conn, tenant_id, t.model_dump_json())
    return {"default": False, "thresholds": t.model_dump(mode="json")}


@router.get("/v1/rfm", tags=["rfm"], dependencies=[allow(Permission.REPORTS)])
async def rfm(pool: Pool, tenant_id: TenantId, settings: AppSettings, scope: Scope = "all") -> dict:
    """Customers and sales per (R, F, M) cell with the tenant's borders, as of today; the R×F
    table and totals per rank. Recency changes every day, so this is one aggregate query over the
    scope's customer rows (no per-customer work in Python)."""
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)
        t = await _rfm_thresholds(conn, tenant_id)
        rows = await store.rfm_cells(conn, tenant_id, scope, today, t)
    return views.rfm_cells_body(scope, today, t, rows)


Rank = Annotated[int, Query(ge=1, le=5)]


@router.get(
    "/v1/rfm/customers", tags=["rfm"], response_model=None, dependencies=[allow(Permission.LISTS)]
)
async def rfm_customers(
    pool: Pool,
    who: Caller,
    request: Request,
    settings: AppSettings,
    scope: Scope = "all",
    r_min: Rank = 1,
    r_max: Rank = 5,
    f_min: Rank = 1,
    f_max: Rank = 5,
    m_min: Rank = 1,
    m_max: Rank = 5,
    format: Literal["json", "csv"] = "json",
    limit: ListLimit = None,
    cursor: Cursor = None,
    encoding: CsvEncoding = "utf-8",
    bom: CsvBom = True,
    header: CsvHeader = "ja",
) -> dict | StreamingResponse:
    """The customers whose ranks lie in the given ranges (e.g. ``r_min=4&f_min=4``: bought
    recently and often), most valuable first: a JSON page, or the whole list as CSV for mail
    and label software (the segment list's columns plus R, F, M). Audited as an export."""
    tenant_id = who.tenant_id
    for name, lo, hi in (("r", r_min, r_max), ("f", f_min, f_max), ("m", m_min, m_max)):
        if lo > hi:
            raise invalid(f"{name}_min", f"{name}_min is above {name}_max")
    try:
        after = views.decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise invalid("cursor", str(exc)) from None
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)
        t = await _rfm_thresholds(conn, tenant_id)
    where = domain.rfm_filter(t, today, (r_min, r_max), (f_min, f_max), (m_min, m_max))

    async def page(conn, position, size):
        return await store.rfm_page(conn, tenant_id, scope, where, position, size)

    if format == "csv":

        def cells(row, day):
            item = views.rfm_item(row, scope, day, t)
            return [*views.csv_row(item, header), str(item["r"]), str(item["f"]), str(item["m"])]

        header_row = (*views.CSV_HEADERS[header], *views.RFM_CSV_EXTRA[header])
        name = f"rfm-R{r_min}{r_max}F{f_min}{f_max}M{m_min}{m_max}-{scope}"
        export = Export(who, privacy.list_subject(request))
        return await csv_download(
            pool, export, settings, name, page, cells, header_row, after, limit, encoding, bom
        )
    size = limit or 100
    async with pool.acquire() as conn:
        rows = await page(conn, after, size + 1)
    last = rows[size - 1] if len(rows) > size else None
    await privacy.record_export(
        pool, who, privacy.list_subject(request), min(len(rows), size), "json"
    )
    return {
        "scope": scope,
        "ranks": {"r": [r_min, r_max], "f": [f_min, f_max], "m": [m_min, m_max]},
        "items": [views.rfm_item(r, scope, today, t) for r in rows[:size]],
        "next": views.encode_cursor(last["total_amount"], last["customer_id"]) if last else None,
    }
