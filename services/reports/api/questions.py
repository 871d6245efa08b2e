"""``GET /v1/questions``: the owner's questions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from shared.access import Permission, TenantId, allow
from shared.http import AppSettings, Pool

from .. import domain, store, views
from .params import Month, Scope, invalid, month_of, tenant_today

router = APIRouter()


@router.get("/v1/questions", tags=["analysis"], dependencies=[allow(Permission.REPORTS)])
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
        m = month_of(month, today)
        if m > today:
            raise invalid("month", "the month has not begun")
        as_of = min(domain.month_end(m), today)
        quarter = domain.previous_quarter(m)
        low, high = domain.dormant_window(as_of)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            moved = [r for r in await store.moves(conn, tenant_id, scope, m, m) if r["span"] == 1]
            at_end = (await store.portfolio_at(conn, tenant_id, scope, [as_of], by_month=True))[0]
            count, dormant = await store.dormant(conn, tenant_id, scope, as_of, low, high, limit)
            came = await store.newcomers(conn, tenant_id, scope, *quarter, as_of)
            vips = await store.top_customers(conn, tenant_id, scope, limit)
            products = await store.top_products(
                conn, tenant_id, scope, [v["customer_id"] for v in vips]
            )
    return views.questions_body(
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
