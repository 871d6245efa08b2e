"""The reports service: consumes customer states into the portfolio and serves it over HTTP,
with segment lists (JSON, CSV), the tenant's borders and the dashboard at ``/``."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from shared import http
from shared.cpm import SEGMENT_NAMES_JA, SEGMENTS, Rules
from shared.db import create_pool
from shared.events import CUSTOMER_STATES
from shared.http import ApiError, tenant_header
from shared.kafka import PgOffsetConsumer, ensure_topics
from shared.settings import get_settings, today_in
from shared.tenants import load_tenant, save_rules

from . import domain, store
from .pipeline import GROUP, SERVICE, on_customer_states

log = logging.getLogger("kizuna.reports")
STATIC = Path(__file__).parent / "static"
CSV_PAGE = 1000


def _log_crash(task: asyncio.Task) -> None:
    # A consumer that died must be visible at once (readiness also turns false), not only when
    # the task is awaited at shutdown.
    if not task.cancelled() and task.exception() is not None:
        log.error("the consumer stopped", exc_info=task.exception())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    pool = await create_pool(settings.database_url, max_size=8)
    app.state.pool, app.state.consumer, app.state.consume_task = pool, None, None
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
        )
        await consumer.start()
        app.state.consumer = consumer
        app.state.consume_task = asyncio.create_task(consumer.run(stop), name="consume")
        app.state.consume_task.add_done_callback(_log_crash)
    else:
        # `kizuna serve reports` may run read-only on a database another stack filled.
        log.warning("no KAFKA_BOOTSTRAP_SERVERS: serving the stored portfolio without consuming")
    try:
        yield
    finally:
        stop.set()
        if app.state.consume_task is not None:
            with suppress(Exception):
                await app.state.consume_task
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
        task = state.consume_task
        checks["consumer"] = state.consumer.healthy and task is not None and not task.done()
    return checks


http.install(app, _ready)


def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
TenantId = Annotated[str, Depends(tenant_header)]
Scope = Annotated[
    str,
    Query(min_length=1, max_length=100, description="A branch_id, or 'all' for the whole chain."),
]


async def tenant_today(conn: asyncpg.Connection, tenant_id: str) -> date:
    """Today in the tenant's time zone (``KIZUNA_NOW`` pins the clock)."""
    settings = get_settings()
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
    scope: Scope = "all",
    as_of: Annotated[date | None, Query(description="YYYY-MM-DD; default today")] = None,
) -> dict:
    """Customers and sales per segment (all ten, zeros included), as of a day."""
    async with pool.acquire() as conn:
        day = as_of or await tenant_today(conn, tenant_id)
        counts = await store.portfolio_counts(conn, tenant_id, scope, day)
    return domain.portfolio_body(scope, day, counts)


@app.get("/v1/customers/{customer_id}", tags=["portfolio"])
async def customer(customer_id: str, pool: Pool, tenant_id: TenantId, scope: Scope = "all") -> dict:
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
        today = await tenant_today(conn, tenant_id)
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
    scope: Scope = "all",
    format: Literal["json", "csv"] = "json",
    limit: Annotated[
        int | None, Query(ge=1, le=1000, description="JSON page size (default 100); CSV: at most")
    ] = None,
    cursor: Annotated[str | None, Query(description="`next` of the previous page")] = None,
    encoding: Annotated[str, Query(description="CSV: utf-8 (default) or cp932")] = "utf-8",
    bom: Annotated[bool, Query(description="CSV in UTF-8: start with a BOM (Excel)")] = True,
    header: Annotated[Literal["ja", "en"], Query(description="CSV header language")] = "ja",
) -> dict | StreamingResponse:
    """A segment's customers, most valuable first (total desc, then customer_id): a JSON page,
    or as CSV the whole list (from ``cursor``, up to ``limit`` when given), streamed."""
    known_segment(segment)
    try:
        after = domain.decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise _invalid("cursor", str(exc)) from None
    if format == "csv":
        try:
            charset = domain.csv_encoding(encoding)
        except ValueError as exc:
            raise _invalid("encoding", str(exc)) from None
        async with pool.acquire() as conn:
            today = await tenant_today(conn, tenant_id)
        media = "text/csv; charset=" + ("Shift_JIS" if charset == "cp932" else "utf-8")
        # Header values are latin-1: keep the file name to safe characters whatever the scope.
        filename = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{segment}-{scope}-{today.isoformat()}.csv")
        return StreamingResponse(
            _csv_stream(pool, tenant_id, scope, segment, after, limit, today, charset, bom, header),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    size = limit or 100
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id)
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


async def _csv_stream(pool, tenant_id, scope, segment, after, limit, today, charset, bom, header):
    """The CSV, page by page: a connection is held per page, not for the whole download (a
    customer who moves segment during a long download may be missed or listed twice)."""
    prefix = "\ufeff" if charset == "utf-8" and bom else ""
    yield domain.encode_csv(prefix + domain.csv_text([domain.CSV_HEADERS[header]]), charset)
    left = limit
    while left is None or left > 0:
        size = CSV_PAGE if left is None else min(CSV_PAGE, left)
        async with pool.acquire() as conn:
            rows = await store.segment_page(conn, tenant_id, scope, segment, after, size)
        if not rows:
            break
        lines = [domain.csv_row(domain.customer_body(r, scope, today), header) for r in rows]
        yield domain.encode_csv(domain.csv_text(lines), charset)
        if len(rows) < size:
            break
        after = (rows[-1]["total_amount"], rows[-1]["customer_id"])
        left = None if left is None else left - len(rows)


# --- rules ---------------------------------------------------------------------------------------

RULES_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": Rules.model_json_schema()}},
    }
}


@app.get("/v1/rules", tags=["rules"])
async def get_rules(pool: Pool, tenant_id: TenantId) -> dict:
    """The tenant's current borders (the published defaults, version 0, until set)."""
    async with pool.acquire() as conn:
        tenant = await load_tenant(conn, tenant_id, get_settings().default_time_zone)
        applied = await store.applied_rules_version(conn, tenant_id)
    return {
        "version": tenant.rules_version,
        "applied_version": applied,
        "rules": tenant.rules.model_dump(mode="json"),
    }


@app.put("/v1/rules", tags=["rules"], openapi_extra=RULES_BODY)
async def put_rules(
    pool: Pool, tenant_id: TenantId, payload: Annotated[Any, Body()] = None
) -> dict:
    """Store a new version of the borders; the classifier re-classifies every customer."""
    try:
        rules = Rules.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(
            422, "invalid_rules", "the borders are not valid", problems=domain.rule_problems(exc)
        ) from None
    async with pool.acquire() as conn:
        version = await save_rules(conn, tenant_id, rules, get_settings().default_time_zone)
    return {"version": version, "rules": rules.model_dump(mode="json")}


# --- dashboard -----------------------------------------------------------------------------------


@app.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


app.mount("/static", StaticFiles(directory=STATIC), name="static")
