"""What the dashboard needs beyond the documented reports API: the day's news, a customer's
whole page, searchable and sortable segment lists, the rules page's distributions, a suggested
set of borders and a preview of a change of borders, and the tenant's 初回→よちよち target."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from shared.access import Caller, Permission, TenantId, allow, privacy
from shared.cpm import SEGMENT_NAMES_JA, Rules
from shared.http import ApiError, AppSettings, Pool
from shared.tenants import load_tenant

from .. import domain, store, views
from .params import Scope, tenant_today

router = APIRouter(tags=["dashboard"])


DEFAULT_TARGET = Decimal("0.5")
NEWS_LIST = 20


@router.get("/v1/dashboard/news", dependencies=[allow(Permission.REPORTS)])
async def news(
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    scope: Scope = "all",
    as_of: Annotated[date | None, Query(description="YYYY-MM-DD; default today")] = None,
) -> dict:
    """The day's news for the home page: new first-time customers, comebacks and newly lapsed
    customers on ``as_of``, each with how many and the most valuable first (up to 20)."""
    async with pool.acquire() as conn:
        day = as_of or await tenant_today(conn, tenant_id, settings)
        rows = await store.day_changes(conn, tenant_id, scope, day)
    lists: dict[str, list] = {kind: [] for kind in domain.NEWS_KINDS}
    for r in rows:
        kind = domain.news_kind(r["before"], r["after"])
        if kind:
            lists[kind].append(
                {
                    "customer_id": r["customer_id"],
                    "from_segment": r["before"],
                    "to_segment": r["after"],
                    "total_amount": str(r["total_amount"]),
                }
            )
    return {
        "scope": scope,
        "as_of": day.isoformat(),
        **{k: {"count": len(v), "items": v[:NEWS_LIST]} for k, v in lists.items()},
    }


@router.get("/v1/dashboard/customers/{customer_id}", dependencies=[allow(Permission.CUSTOMERS)])
async def customer_page(
    customer_id: str,
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    scope: Scope = "all",
    limit: Annotated[int, Query(ge=1, le=5000, description="purchases shown")] = 500,
) -> dict:
    """One customer: figures, RFM ranks, every purchase (newest first, up to ``limit``) and
    every segment change with its cause. 404 when unknown in the scope."""
    async with pool.acquire() as conn:
        row = await store.customer(conn, tenant_id, scope, customer_id)
        if row is None:
            raise ApiError(
                404,
                "customer_not_found",
                f"customer {customer_id!r} is not in scope {scope!r}",
                customer_id=customer_id,
                scope=scope,
            )
        today = await tenant_today(conn, tenant_id, settings)
        stored = await store.rfm_thresholds(conn, tenant_id)
        entries = await store.timeline(conn, tenant_id, scope, customer_id)
        bought = await store.purchases(conn, tenant_id, scope, customer_id, limit)
    thresholds = domain.RfmThresholds.model_validate_json(stored) if stored else domain.DEFAULT_RFM
    body = (
        views.rfm_item(row, scope, today, thresholds)
        if row["segment"]
        else views.customer_body(row, scope, today)
    )
    return {
        "customer": body,
        "changes": domain.timeline_changes(entries),
        "purchases": [
            {
                "event_id": p["event_id"],
                "kind": p["kind"],
                "branch_id": p["branch_id"],
                "occurred_at": p["occurred_at"].isoformat(),
                "occurred_on": p["occurred_on"].isoformat(),
                "amount": str(p["amount"]),
                "order_id": p["order_id"],
                "lines": json.loads(p["lines"]) if p["lines"] else [],
            }
            for p in bought
        ],
    }


@router.get("/v1/dashboard/segments/{segment}/customers", dependencies=[allow(Permission.LISTS)])
async def segment_list(
    segment: str,
    pool: Pool,
    who: Caller,
    request: Request,
    settings: AppSettings,
    scope: Scope = "all",
    q: Annotated[str | None, Query(max_length=100, description="customer_id starts with")] = None,
    sort: Literal["-total", "total", "-last", "last", "-count", "count", "id"] = "-total",
    page: Annotated[int, Query(ge=1, le=100000)] = 1,
    size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict:
    """A page of a segment's customers for the list screen: search by id prefix, sort, numbered
    pages and the number that match (the CSV download is ``/v1/segments/{segment}/customers``).
    Each page is recorded in the audit log as an export."""
    tenant_id = who.tenant_id
    if segment not in domain.KNOWN_SEGMENTS:
        raise ApiError(404, "unknown_segment", f"no segment {segment!r}")
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)
        total, rows = await store.segment_search(
            conn, tenant_id, scope, segment, q or None, sort, (page - 1) * size, size
        )
    await privacy.record_export(pool, who, privacy.list_subject(request), len(rows), "json")
    return {
        "segment": segment,
        "name_ja": SEGMENT_NAMES_JA[segment],
        "scope": scope,
        "total": total,
        "page": page,
        "size": size,
        "items": [views.customer_body(r, scope, today) for r in rows],
    }


def _buckets(raw) -> dict[int, int]:
    return {int(k): v for k, v in json.loads(raw).items()}


@router.get("/v1/rules/distribution", tags=["rules"], dependencies=[allow(Permission.REPORTS)])
async def rules_distribution(
    pool: Pool, tenant_id: TenantId, settings: AppSettings, scope: Scope = "all"
) -> dict:
    """What the borders cut: the distribution of repurchase gaps (days between a customer's
    consecutive purchase days) and of customers' totals, with the current borders. Counted in
    PostgreSQL (one pass over the scope's sales, one over its customers)."""
    async with pool.acquire() as conn:
        tenant = await load_tenant(conn, tenant_id, settings.default_time_zone)
        gaps = await store.gap_figures(conn, tenant_id, scope, domain.GAP_EDGES)
        totals = await store.total_figures(conn, tenant_id, scope, domain.TOTAL_EDGES)
    return {
        "scope": scope,
        "rules": tenant.rules.model_dump(mode="json"),
        "repurchase_gaps": domain.histogram(domain.GAP_EDGES, _buckets(gaps["buckets"])),
        "totals": domain.histogram(domain.TOTAL_EDGES, _buckets(totals["buckets"])),
    }


@router.get("/v1/rules/suggestion", tags=["rules"], dependencies=[allow(Permission.REPORTS)])
async def rules_suggestion(
    pool: Pool, tenant_id: TenantId, settings: AppSettings, scope: Scope = "all"
) -> dict:
    """Borders computed from the tenant's data (see dashboard_domain.suggest_rules for how),
    each with the figure it came from; nothing is saved."""
    async with pool.acquire() as conn:
        tenant = await load_tenant(conn, tenant_id, settings.default_time_zone)
        gaps = await store.gap_figures(conn, tenant_id, scope, domain.GAP_EDGES)
        totals = await store.total_figures(conn, tenant_id, scope, domain.TOTAL_EDGES)
    rules, reasons = domain.suggest_rules(
        tenant.rules,
        gap_p90=gaps["gap_p90"],
        second_purchase_p75=gaps["second_p75"],
        repeat_total_p80=totals["repeat_total_p80"],
        repeat_tenure_median=totals["repeat_tenure_median"],
    )
    return {"scope": scope, "rules": rules.model_dump(mode="json"), "basis": reasons}


@router.post("/v1/rules/preview", tags=["rules"], dependencies=[allow(Permission.REPORTS)])
async def rules_preview(
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    rules: Rules,
    scope: Scope = "all",
) -> dict:
    """How many customers of the scope would move between segments if these borders were
    saved now: each customer's figures classified by the same function the classifier uses,
    against the segment they are in. Nothing is saved."""
    moves: Counter = Counter()
    async with pool.acquire() as conn:
        today = await tenant_today(conn, tenant_id, settings)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            async for rows in store.customer_figures(conn, tenant_id, scope):
                domain.preview_moves(rows, today, rules, moves)
    return views.preview_body(scope, today, rules, moves)


class DashboardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first_to_fledgling_target: Decimal = Field(
        gt=0, le=1, description="Target of the monthly 初回→よちよち rate (0.5 = 50 %)."
    )


@router.get("/v1/dashboard/settings", dependencies=[allow()])
async def get_dashboard_settings(pool: Pool, tenant_id: TenantId, settings: AppSettings) -> dict:
    """The tenant's dashboard settings and its today (every login needs the day: a task due
    before it was carried over)."""
    async with pool.acquire() as conn:
        value = await store.target(conn, tenant_id)
        today = await tenant_today(conn, tenant_id, settings)
    return {
        "first_to_fledgling_target": str(value if value is not None else DEFAULT_TARGET),
        "today": today.isoformat(),
    }


@router.put("/v1/dashboard/settings", dependencies=[allow(Permission.SETTINGS, chain_only=True)])
async def put_dashboard_settings(pool: Pool, tenant_id: TenantId, body: DashboardSettings) -> dict:
    async with pool.acquire() as conn:
        await store.save_target(conn, tenant_id, body.first_to_fledgling_target)
    return {"first_to_fledgling_target": str(body.first_to_fledgling_target)}
