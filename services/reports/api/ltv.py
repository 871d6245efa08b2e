"""``/v1/ltv``: the projection and simulations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from shared.access import Permission, TenantId, allow
from shared.http import AppSettings, Pool
from shared.settings import Settings

from .. import domain, store, views
from .params import Scope, invalid, month_of, tenant_today

router = APIRouter()


async def _simulate(
    pool, tenant_id: str, settings: Settings, scope: str, request: domain.Simulation
) -> dict:
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)
        this_month = domain.month_start(today)
        base = month_of(request.base_month, domain.add_months(this_month, -1), "base_month")
        if base >= this_month:
            raise invalid("base_month", "the base month must have ended")
        window = domain.months(domain.add_months(base, 1 - request.window_months), base)
        ends = [domain.month_end(m) for m in [domain.add_months(window[0], -1), *window]]
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            points = await store.portfolio_at(conn, tenant_id, scope, ends, by_month=True)
            moved = await store.moves(conn, tenant_id, scope, window[0], window[-1])
    at = {domain.month_start(e): domain.sizes(p) for e, p in zip(ends, points, strict=True)}
    matrix, inflow, per_customer = domain.measured_model(window, at, moved)
    try:
        return views.simulation_body(
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
        raise invalid("changes", str(exc)) from None


@router.get("/v1/ltv", tags=["ltv"], dependencies=[allow(Permission.REPORTS)])
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
    request = domain.Simulation(base_month=base_month, window_months=window_months)
    return await _simulate(pool, tenant_id, settings, scope, request)


@router.post(
    "/v1/ltv/simulations",
    tags=["ltv"],
    dependencies=[allow(Permission.REPORTS)],
)
async def ltv_simulation(
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    scope: Scope = "all",
    simulation: Annotated[domain.Simulation | None, Body()] = None,
) -> dict:
    """The baseline and a scenario with changed monthly rates, e.g. ``{"changes": [{"from":
    "first_active", "to": "fledgling_active", "rate": 0.5}]}`` or ``"factor": 1.5``, and the
    difference at each horizon. A changed rate takes its share from the row's other cells in
    proportion (staying included)."""
    return await _simulate(pool, tenant_id, settings, scope, simulation or domain.Simulation())
