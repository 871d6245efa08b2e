"""``GET /v1/comebacks``: customers who came back after follow-up work."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from shared.access import Permission, TenantId, allow
from shared.http import ApiError, AppSettings, Pool

from .. import store
from ..domain.followups import CHAIN
from .params import tenant_today

router = APIRouter()


@router.get("/v1/comebacks", tags=["followups"], dependencies=[allow(Permission.FOLLOWUPS)])
async def comebacks(
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    scope: Annotated[
        str, Query(min_length=1, max_length=100, description="'all' or a branch_id")
    ] = CHAIN,
    from_: Annotated[date | None, Query(alias="from", description="Default: 30 days ago")] = None,
    to: Annotated[date | None, Query(description="Inclusive; default today")] = None,
) -> dict:
    """Lapsed customers who bought again, so follow-up work shows up as results: how many in
    all, how many after a follow-up task, how many after staff had done it; per segment they
    came back from and per day."""
    async with pool.acquire() as conn:
        end = to or await tenant_today(conn, tenant_id, settings)
        start = from_ or end - timedelta(days=30)
        if start > end:
            raise ApiError(
                422,
                "invalid_request",
                "the request is not valid",
                problems=[{"field": "from", "reason": "must not be after 'to'"}],
            )
        counts = await store.comeback_counts(
            conn, tenant_id, None if scope == CHAIN else scope, start, end
        )
    return {"scope": scope, "from": start, "to": end, **counts}
