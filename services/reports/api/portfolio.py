"""``GET /v1/portfolio``, ``/v1/customers/{id}``, ``/v1/scopes``."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from shared.access import Caller, Permission, TenantId, allow
from shared.http import ApiError, AppSettings, Pool
from shared.settings import today_in

from .. import store, views
from .params import Scope, tenant_today

router = APIRouter()


@router.get("/v1/portfolio", tags=["portfolio"], dependencies=[allow(Permission.REPORTS)])
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
    return views.portfolio_body(scope, day, counts)


@router.get(
    "/v1/customers/{customer_id}", tags=["portfolio"], dependencies=[allow(Permission.CUSTOMERS)]
)
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
    return views.customer_body(row, scope, today)


@router.get("/v1/scopes", tags=["portfolio"], dependencies=[allow()])
async def scopes(pool: Pool, who: Caller) -> dict:
    """The scopes with portfolio numbers the caller may see (``all`` and each branch; a branch
    login: its branches); for the dashboard."""
    if not who.chain_wide:
        return {"scopes": list(who.branches)}
    async with pool.acquire() as conn:
        found = await store.scopes(conn, who.tenant_id)
    return {"scopes": found or ["all"]}
