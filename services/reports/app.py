"""The reports service: consumes customer states into the portfolio and its history and serves
them over HTTP: the portfolio (now and as of a day), its daily and monthly history, monthly
transition tables, segment lists (JSON, CSV), the owner's questions, RFM, an LTV projection, DM
response tables, the tenant's borders and the dashboard at ``/``. Endpoints and definitions:
services/reports/README.md."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import asyncpg
from fastapi import Body, FastAPI, Query
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from shared import http
from shared.cpm import SEGMENT_NAMES_JA, SEGMENTS, Rules
from shared.db import create_pool
from shared.events import CUSTOMER_STATES
from shared.http import ApiError, AppSettings, Pool, TenantId
from shared.kafka import PgOffsetConsumer, ensure_topics
from shared.pgstats import keep_statistics
from shared.service import supervised
from shared.settings import Settings, get_settings, today_in
from shared.tenants import load_tenant, save_rules

from . import analysis, domain, history, store
from .api import dashboard as dashboard_api
from .api import gateway
from .pipeline import GROUP, SERVICE, on_customer_states

log = logging.getLogger("kizuna.reports")
STATIC = Path(__file__).parent / "static"
CSV_PAGE = 1000
# Transactions per fetched batch, over disjoint partitions (so disjoint customers): while one
# waits for PostgreSQL, the other folds its states. Under the latency feed at 2,000 ev/s one at a
# time fell behind (5,000 states unread after 30 s); two kept up. The aggregate rows both touch
# are upserted in one global order (table, then key), so they wait for each other, never deadlock.
PARALLEL = 2


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    pool = await create_pool(settings.database_url, max_size=8)
    app.state.pool, app.state.consumer, app.state.tasks = pool, None, []
    stop = asyncio.Event()
    if settings.kafka_bootstrap_servers:
        await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)
        consumer = PgOffsetConsumer(
            service=SERVICE,
            bootstrap=settings.kafka_bootstrap_servers,
            group_id=GROUP,
            topics=[CUSTOMER_STATES],
            pool=pool,
            handle=on_customer_states,
            batch_size=settings.consumer_batch_size,
            session_timeout_ms=settings.session_timeout_ms,
            parallel=PARALLEL,
        )
        await consumer.start()
        app.state.consumer = consumer
        app.state.tasks = [
            supervised(consumer.run(stop), "consume", stop),
            supervised(keep_statistics(pool, stop, store.GROWN_TABLES), "statistics", stop),
        ]
    else:
        # `kizuna serve reports` may run read-only on a database another stack filled.
        log.warning("no KAFKA_BOOTSTRAP_SERVERS: serving the stored portfolio without consuming")
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*app.state.tasks, return_exceptions=True)
        if app.state.consumer is not None:
            await app.state.consumer.stop()
        await pool.close()


app = FastAPI(
    title="Kizuna reports",
    description="顧客ポートフォリオ: the live portfolio, segment lists and the dashboard.",
    lifespan=lifespan,
)


async def _ready() -> dict[str, bool]:
    state = app.state
    checks = {"database": await http.check_db(state.pool)}
    if state.consumer is not None:
        checks["consumer"] = state.consumer.healthy and not any(t.done() for t in state.tasks)
    return checks


http.install(app, _ready, service=SERVICE)
app.include_router(dashboard_api.router)
app.include_router(gateway.router)


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


# --- portfolio and customers ---------------------------------------------------------------------


@app.get("/v1/portfolio", tags=["portfolio"])
async def portfolio(
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    scope: Scope = "all",
    as_of: Annotated[date | None, Query(description="YYYY-MM-DD; default today")] = None,
) -> dict:
    """Customers and sales per segment (all ten, zeros included), as of a day."""
    async with pool.acquire() as conn:
        day = as_of or await tenant_today(conn, tenant_id, settings)
        counts = await store.portfolio_counts(conn, tenant_id, scope, day)
    return domain.portfolio_body(scope, day, counts)


MonthOrDay = Annotated[
    str | None,
    Query(max_length=10, description="YYYY-MM (month) or YYYY-MM-DD (day)"),
]


@app.get("/v1/portfolio/history", tags=["history"])
async def portfolio_history(
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    scope: Scope = "all",
    granularity: Literal["day", "month"] = "month",
    from_: Annotated[
        str | None,
        Query(alias="from", max_length=10, description="default: 36 months / 365 days back"),
    ] = None,
    to: MonthOrDay = None,
) -> dict:
    """Customers and sales per segment at the end of each day or month (the month under way:
    today), from the daily deltas and their monthly rollups, never from customers.

    Columns: ``periods`` (``YYYY-MM`` or ``YYYY-MM-DD``), ``as_of`` (the day each value is as of),
    ``total_customers``, ``total_sales`` and, per segment (all ten), ``customers`` and ``sales``.
    """
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)
        try:
            labels, ends = history.periods(granularity, from_, to, today)
        except ValueError as exc:
            raise _invalid("from/to", str(exc)) from None
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            points = await store.portfolio_at(
                conn, tenant_id, scope, ends, by_month=granularity == "month"
            )
    return history.history_body(scope, granularity, labels, ends, points)


@app.get("/v1/transitions", tags=["history"])
async def transitions(
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    scope: Scope = "all",
    from_: Annotated[
        str | None, Query(alias="from", max_length=7, description="YYYY-MM; default 11 months back")
    ] = None,
    to: Annotated[
        str | None, Query(max_length=7, description="YYYY-MM; default this month")
    ] = None,
) -> dict:
    """Monthly transition tables (推移率): per month, customers by (segment at the month's eve,
    segment at its end), ``new`` for those in no segment at the eve; every non-zero cell with its
    rate over the from-segment's size at the eve. Each month also has a ``headline``
    (初回→よちよち, active→lapsed and comebacks per tier) and ``six_month``: per tier, the share
    of the tier's customers at the month-end six months earlier that reached the next tier or a
    higher one by this month's end. Read from the maintained monthly moves and the portfolio
    history (services/reports/history.py), never per customer."""
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)
        try:
            ms = history.transition_months(from_, to, today)
        except ValueError as exc:
            raise _invalid("from/to", str(exc)) from None
        ends = history.month_ends_for(ms, today)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            points = await store.portfolio_at(conn, tenant_id, scope, ends, by_month=True)
            moved = await store.moves(conn, tenant_id, scope, ms[0], ms[-1])
            start = await store.history_start(conn, tenant_id, scope)
    at = {history.month_start(e): p for e, p in zip(ends, points, strict=True)}
    return history.transitions_body(scope, ms, at, moved, start, today)


@app.get("/v1/customers/{customer_id}", tags=["portfolio"])
async def customer(
    customer_id: str, pool: Pool, tenant_id: TenantId, settings: AppSettings, scope: Scope = "all"
) -> dict:
    """One customer's figures and segment; lapse days as of today.

    404 when the customer is unknown in the scope, and also when all their purchases were voided:
    such a customer is in no segment, so not in the portfolio (CPM.md).
    """
    async with pool.acquire() as conn:
        row = await store.customer(conn, tenant_id, scope, customer_id)
    if row is None or row["segment"] is None:
        raise ApiError(
            404,
            "customer_not_found",
            f"customer {customer_id!r} is not in the portfolio of scope {scope!r}",
            customer_id=customer_id,
            scope=scope,
        )
    today = today_in(row["time_zone"] or settings.default_time_zone, settings)
    return domain.customer_body(row, scope, today)


@app.get("/v1/scopes", tags=["portfolio"])
async def scopes(pool: Pool, tenant_id: TenantId) -> dict:
    """The scopes with portfolio numbers (``all`` and each branch); for the dashboard."""
    async with pool.acquire() as conn:
        found = await store.scopes(conn, tenant_id)
    return {"scopes": found or ["all"]}


# --- segment lists -------------------------------------------------------------------------------


@app.get("/v1/segments/{segment}/customers", tags=["segments"], response_model=None)
async def segment_customers(
    segment: str,
    pool: Pool,
    tenant_id: TenantId,
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
    or as CSV the whole list (from ``cursor``, up to ``limit`` when given), streamed."""
    known_segment(segment)
    try:
        after = domain.decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise _invalid("cursor", str(exc)) from None
    if format == "csv":

        async def page(conn, after, size):
            return await store.segment_page(conn, tenant_id, scope, segment, after, size)

        def cells(row, today):
            return domain.csv_row(domain.customer_body(row, scope, today), header)

        return await _csv_download(
            pool,
            tenant_id,
            settings,
            f"{segment}-{scope}",
            page,
            cells,
            domain.CSV_HEADERS[header],
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
    return {
        "segment": segment,
        "name_ja": SEGMENT_NAMES_JA[segment],
        "scope": scope,
        "items": [domain.customer_body(r, scope, today) for r in rows[:size]],
        "next": domain.encode_cursor(last["total_amount"], last["customer_id"]) if last else None,
    }


def _invalid(field: str, reason: str) -> ApiError:
    return ApiError(
        422,
        "invalid_request",
        "the request is not valid",
        problems=[{"field": field, "reason": reason}],
    )


async def _csv_download(
    pool, tenant_id, settings, name, page, cells, header_row, after, limit, encoding, bom
) -> StreamingResponse:
    """A customer list as a CSV download (UTF-8 with or without BOM, or CP932), streamed page by
    page: ``page(conn, after, size)`` fetches rows after a (total, customer_id) keyset,
    ``cells(row, today)`` turns one into CSV cells. A connection is held per page, not for the
    whole download (a customer who moves during a long download may be missed or listed twice)."""
    try:
        charset = domain.csv_encoding(encoding)
    except ValueError as exc:
        raise _invalid("encoding", str(exc)) from None
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)

    async def stream():
        prefix = "\ufeff" if charset == "utf-8" and bom else ""
        yield domain.encode_csv(prefix + domain.csv_text([header_row]), charset)
        position, left = after, limit
        while left is None or left > 0:
            size = CSV_PAGE if left is None else min(CSV_PAGE, left)
            async with pool.acquire() as conn:
                rows = await page(conn, position, size)
            if not rows:
                break
            yield domain.encode_csv(domain.csv_text([cells(r, today) for r in rows]), charset)
            if len(rows) < size:
                break
            position = (rows[-1]["total_amount"], rows[-1]["customer_id"])
            left = None if left is None else left - len(rows)

    media = "text/csv; charset=" + ("Shift_JIS" if charset == "cp932" else "utf-8")
    # Header values are latin-1: keep the file name to safe characters whatever the scope.
    filename = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-{today.isoformat()}.csv")
    return StreamingResponse(
        stream(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --- the owner's questions ------------------------------------------------------------------------

Month = Annotated[str | None, Query(max_length=7, description="YYYY-MM; default this month")]


def _month(text: str | None, default: date | None = None, field: str = "month") -> date:
    """A ``YYYY-MM`` parameter as its first day (``default``'s month when absent)."""
    if text is None and default is not None:
        return history.month_start(default)
    try:
        return history.parse_month(text or "")
    except ValueError as exc:
        raise _invalid(field, str(exc)) from None


@app.get("/v1/questions", tags=["analysis"])
async def questions(
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    scope: Scope = "all",
    month: Month = None,
    limit: Annotated[int, Query(ge=1, le=500, description="List lengths (dormant, VIPs)")] = 20,
) -> dict:
    """The owner's questions (seeds/004) for a month, as of its last day (this month: today):
    ``sales_split`` (①② sales from first-time vs repeat customers), ``dormant_60_90_days`` (③
    no purchase for 60–90 days), ``bought_this_month`` (④ share of customers who bought),
    ``new_customers_came_back`` (⑤ of last quarter's first-time customers, how many have bought
    again by then), ``vips`` (⑥⑦ most valuable customers now, with how often they buy) and
    ``vips[].top_products`` (⑧ what they buy most, from the purchases' line items)."""
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)
        m = _month(month, today)
        if m > today:
            raise _invalid("month", "the month has not begun")
        as_of = min(history.month_end(m), today)
        quarter = analysis.previous_quarter(m)
        low, high = analysis.dormant_window(as_of)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            moved = [r for r in await store.moves(conn, tenant_id, scope, m, m) if r["span"] == 1]
            at_end = (await store.portfolio_at(conn, tenant_id, scope, [as_of], by_month=True))[0]
            count, dormant = await store.dormant(conn, tenant_id, scope, as_of, low, high, limit)
            came = await store.newcomers(conn, tenant_id, scope, *quarter, as_of)
            vips = await store.top_customers(conn, tenant_id, scope, limit)
            products = await store.top_products(
                conn, tenant_id, scope, [v["customer_id"] for v in vips]
            )
    return analysis.questions_body(
        scope=scope,
        month=m,
        as_of=as_of,
        today=today,
        moves=moved,
        at_end=at_end,
        dormant=dormant,
        dormant_count=count,
        quarter=quarter,
        newcomers=came,
        vips=vips,
        products=products,
    )


# --- RFM ------------------------------------------------------------------------------------------------


async def _rfm_thresholds(conn, tenant_id: str) -> analysis.RfmThresholds:
    stored = await store.rfm_thresholds(conn, tenant_id)
    return analysis.RfmThresholds.model_validate_json(stored) if stored else analysis.DEFAULT_RFM


@app.get("/v1/rfm/thresholds", tags=["rfm"])
async def get_rfm_thresholds(pool: Pool, tenant_id: TenantId) -> dict:
    """The tenant's RFM borders (defaults until set)."""
    async with pool.acquire() as conn:
        stored = await store.rfm_thresholds(conn, tenant_id)
        t = await _rfm_thresholds(conn, tenant_id)
    return {"default": stored is None, "thresholds": t.model_dump(mode="json")}


@app.put("/v1/rfm/thresholds", tags=["rfm"])
async def put_rfm_thresholds(pool: Pool, tenant_id: TenantId, t: analysis.RfmThresholds) -> dict:
    """Set the tenant's RFM borders (four per measure, strictly increasing)."""
    async with pool.acquire() as conn:
        await store.save_rfm_thresholds(conn, tenant_id, t.model_dump_json())
    return {"default": False, "thresholds": t.model_dump(mode="json")}


@app.get("/v1/rfm", tags=["rfm"])
async def rfm(pool: Pool, tenant_id: TenantId, settings: AppSettings, scope: Scope = "all") -> dict:
    """Customers and sales per (R, F, M) cell with the tenant's borders, as of today; the R×F
    table and totals per rank. Recency changes every day, so this is one aggregate query over the
    scope's customer rows (no per-customer work in Python)."""
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)
        t = await _rfm_thresholds(conn, tenant_id)
        rows = await store.rfm_cells(conn, tenant_id, scope, today, t)
    return analysis.rfm_cells_body(scope, today, t, rows)


Rank = Annotated[int, Query(ge=1, le=5)]


@app.get("/v1/rfm/customers", tags=["rfm"], response_model=None)
async def rfm_customers(
    pool: Pool,
    tenant_id: TenantId,
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
    and label software (the segment list's columns plus R, F, M)."""
    for name, lo, hi in (("r", r_min, r_max), ("f", f_min, f_max), ("m", m_min, m_max)):
        if lo > hi:
            raise _invalid(f"{name}_min", f"{name}_min is above {name}_max")
    try:
        after = domain.decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise _invalid("cursor", str(exc)) from None
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)
        t = await _rfm_thresholds(conn, tenant_id)
    where = analysis.rfm_filter(t, today, (r_min, r_max), (f_min, f_max), (m_min, m_max))

    async def page(conn, position, size):
        return await store.rfm_page(conn, tenant_id, scope, where, position, size)

    if format == "csv":

        def cells(row, day):
            item = analysis.rfm_item(row, scope, day, t)
            return [*domain.csv_row(item, header), str(item["r"]), str(item["f"]), str(item["m"])]

        header_row = (*domain.CSV_HEADERS[header], *analysis.RFM_CSV_EXTRA[header])
        name = f"rfm-R{r_min}{r_max}F{f_min}{f_max}M{m_min}{m_max}-{scope}"
        return await _csv_download(
            pool, tenant_id, settings, name, page, cells, header_row, after, limit, encoding, bom
        )
    size = limit or 100
    async with pool.acquire() as conn:
        rows = await page(conn, after, size + 1)
    last = rows[size - 1] if len(rows) > size else None
    return {
        "scope": scope,
        "ranks": {"r": [r_min, r_max], "f": [f_min, f_max], "m": [m_min, m_max]},
        "items": [analysis.rfm_item(r, scope, today, t) for r in rows[:size]],
        "next": domain.encode_cursor(last["total_amount"], last["customer_id"]) if last else None,
    }


# --- LTV simulation ----------------------------------------------------------------------------------


async def _simulate(
    pool, tenant_id: str, settings: Settings, scope: str, request: analysis.Simulation
) -> dict:
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)
        this_month = history.month_start(today)
        base = _month(request.base_month, history.add_months(this_month, -1), "base_month")
        if base >= this_month:
            raise _invalid("base_month", "the base month must have ended")
        window = history.months(history.add_months(base, 1 - request.window_months), base)
        ends = [history.month_end(m) for m in [history.add_months(window[0], -1), *window]]
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            points = await store.portfolio_at(conn, tenant_id, scope, ends, by_month=True)
            moved = await store.moves(conn, tenant_id, scope, window[0], window[-1])
    at = {history.month_start(e): history.sizes(p) for e, p in zip(ends, points, strict=True)}
    matrix, inflow, per_customer = analysis.measured_model(window, at, moved)
    try:
        return analysis.simulation_body(
            scope=scope,
            base_month=base,
            window=window,
            start=at[base],
            matrix=matrix,
            inflow=inflow,
            per_customer=per_customer,
            horizons=request.horizons,
            changes=request.changes,
        )
    except ValueError as exc:
        raise _invalid("changes", str(exc)) from None


@app.get("/v1/ltv", tags=["ltv"])
async def ltv(
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    scope: Scope = "all",
    base_month: Annotated[str | None, Query(max_length=7)] = None,
    window_months: Annotated[int, Query(ge=1, le=60)] = 12,
) -> dict:
    """The baseline projection: customers and sales per segment 12, 24 and 36 months after the
    base month (default: last month) with the transition matrix, inflow of new customers and
    sales per customer measured over the window. Same shape as ``POST /v1/ltv/simulations``."""
    request = analysis.Simulation(base_month=base_month, window_months=window_months)
    return await _simulate(pool, tenant_id, settings, scope, request)


@app.post("/v1/ltv/simulations", tags=["ltv"])
async def ltv_simulation(
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    scope: Scope = "all",
    simulation: Annotated[analysis.Simulation | None, Body()] = None,
) -> dict:
    """The baseline and a scenario with changed monthly rates, e.g. ``{"changes": [{"from":
    "first_active", "to": "fledgling_active", "rate": 0.5}]}`` or ``"factor": 1.5``, and the
    difference at each horizon. A changed rate takes its share from the row's other cells in
    proportion (staying included)."""
    request = simulation or analysis.Simulation()
    return await _simulate(pool, tenant_id, settings, scope, request)


# --- DM response tracking -----------------------------------------------------------------------------


async def _dm_table(conn, tenant_id: str, table_id: int):
    table = await store.dm_table(conn, tenant_id, table_id)
    if table is None:
        raise ApiError(404, "dm_table_not_found", f"no DM table {table_id}", id=table_id)
    return table


@app.post("/v1/dm-tables", tags=["dm"], status_code=201)
async def create_dm_table(pool: Pool, tenant_id: TenantId, spec: analysis.DmTable) -> dict:
    """A new named DM response table (レスポンス推移表) for a scope: ``{"name", "scope"}``."""
    async with pool.acquire() as conn:
        row = await store.create_dm_table(conn, tenant_id, spec.name, spec.scope)
    if row is None:
        raise ApiError(409, "dm_table_exists", f"a DM table named {spec.name!r} exists")
    return analysis.dm_body(row, [])


@app.get("/v1/dm-tables", tags=["dm"])
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


@app.get("/v1/dm-tables/{table_id}", tags=["dm"], response_model=None)
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
    body = analysis.dm_body(table, entries)
    if format == "json":
        return body
    try:
        charset = domain.csv_encoding(encoding)
    except ValueError as exc:
        raise _invalid("encoding", str(exc)) from None
    prefix = "\ufeff" if charset == "utf-8" and bom else ""
    content = domain.encode_csv(prefix + analysis.dm_csv(body, header), charset)
    return Response(
        content,
        media_type="text/csv; charset=" + ("Shift_JIS" if charset == "cp932" else "utf-8"),
        headers={"Content-Disposition": f'attachment; filename="dm-table-{table_id}.csv"'},
    )


@app.put("/v1/dm-tables/{table_id}/months/{month}", tags=["dm"])
async def put_dm_month(
    table_id: int,
    month: str,
    pool: Pool,
    tenant_id: TenantId,
    entry: analysis.DmMonth,
) -> dict:
    """Record (or replace) a month: ``{"sent_on": "YYYY-MM-DD"?, "segments": [{"segment",
    "mailed", "responses"}, …]}``; each segment's size on ``sent_on`` (default the month's first
    day) is filled in from the portfolio history. Returns the whole table."""
    m = _month(month)
    sent_on = entry.sent_on or m
    if history.month_start(sent_on) != m:
        raise _invalid("sent_on", f"must lie in {history.month_text(m)}")
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
    return analysis.dm_body(table, entries)


@app.delete("/v1/dm-tables/{table_id}/months/{month}", tags=["dm"])
async def delete_dm_month(table_id: int, month: str, pool: Pool, tenant_id: TenantId) -> dict:
    """Delete one month of a DM table; returns the table."""
    m = _month(month)
    async with pool.acquire() as conn:
        table = await _dm_table(conn, tenant_id, table_id)
        if not await store.delete_dm(conn, tenant_id, table_id, m):
            raise ApiError(404, "dm_month_not_found", f"no {history.month_text(m)} in the table")
        entries = await store.dm_entries(conn, tenant_id, table_id)
    return analysis.dm_body(table, entries)


@app.delete("/v1/dm-tables/{table_id}", tags=["dm"], status_code=204, response_model=None)
async def delete_dm_table(table_id: int, pool: Pool, tenant_id: TenantId) -> Response:
    """Delete a DM table and its months."""
    async with pool.acquire() as conn:
        if not await store.delete_dm(conn, tenant_id, table_id, None):
            raise ApiError(404, "dm_table_not_found", f"no DM table {table_id}", id=table_id)
    return Response(status_code=204)


# --- rules ---------------------------------------------------------------------------------------


@app.get("/v1/rules", tags=["rules"])
async def get_rules(pool: Pool, tenant_id: TenantId, settings: AppSettings) -> dict:
    """The tenant's current borders (the published defaults, version 0, until set)."""
    async with pool.acquire() as conn:
        tenant = await load_tenant(conn, tenant_id, settings.default_time_zone)
        applied = await store.applied_rules_version(conn, tenant_id)
    return {
        "version": tenant.rules_version,
        "applied_version": applied,
        "rules": tenant.rules.model_dump(mode="json"),
    }


@app.put("/v1/rules", tags=["rules"])
async def put_rules(pool: Pool, tenant_id: TenantId, settings: AppSettings, rules: Rules) -> dict:
    """Store a new version of the borders; the classifier re-classifies every customer."""
    async with pool.acquire() as conn:
        version = await save_rules(conn, tenant_id, rules, settings.default_time_zone)
    return {"version": version, "rules": rules.model_dump(mode="json")}


# --- dashboard -----------------------------------------------------------------------------------


@app.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


app.mount("/static", StaticFiles(directory=STATIC), name="static")
