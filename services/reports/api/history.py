"""``GET /v1/portfolio/history`` and ``/v1/transitions``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from shared.access import Permission, TenantId, allow
from shared.http import AppSettings, Pool

from .. import domain, store, views
from .params import MonthOrDay, Scope, invalid, tenant_today

router = APIRouter()


@router.get("/v1/portfolio/history", tags=["history"], dependencies=[allow(Permission.REPORTS)])
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
            labels, ends = domain.periods(granularity, from_, to, today)
        except ValueError as exc:
            raise invalid("from/to", str(exc)) from None
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            points = await store.portfolio_at(
                conn, tenant_id, scope, ends, by_month=granularity == "month"
            )
    return views.history_body(scope, granularity, labels, ends, points)


@router.get("/v1/transitions", tags=["history"], dependencies=[allow(Permission.REPORTS)])
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
            ms = domain.transition_months(from_, to, today)
        except ValueError as exc:
            raise invalid("from/to", str(exc)) from None
        ends = domain.month_ends_for(ms, today)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            points = await store.portfolio_at(conn, tenant_id, scope, ends, by_month=True)
            moved = await store.moves(conn, tenant_id, scope, ms[0], ms[-1])
            start = await store.history_start(conn, tenant_id, scope)
    at = {domain.month_start(e): p for e, p in zip(ends, points, strict=True)}
    return views.transitions_body(scope, ms, at, moved, start, today)
