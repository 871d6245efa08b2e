"""``/v1/followups``: the staff's task list, marking a task done, a customer's tasks."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field

from shared.access import Caller, Permission, TenantId, allow
from shared.http import ApiError, AppSettings, Pool

from .. import store
from ..domain.followups import CHAIN, decode_cursor, encode_cursor
from .params import tenant_today

router = APIRouter()


class FollowupItem(BaseModel):
    id: int
    customer_id: str
    branch_id: str | None = Field(description="The customer's home branch.")
    segment: str = Field(
        description="The segment the customer lapsed into.", examples=["loyal_lapsed"]
    )
    reason: str = Field(examples=["lapsed"])
    status: str = Field(examples=["open"])
    created_on: date = Field(description="The day the customer lapsed.")
    due_on: date = Field(description="The day the task falls due (when the lapse was noticed).")
    total_amount: Decimal
    # Beyond the contract's fields, additive: what closed the task and when, so the done list
    # doubles as the daily report of follow-up work (done by staff, comeback, superseded,
    # left_segment, bought); and for at-risk warnings and sequence steps what to do and how.
    outcome: str | None = Field(None, examples=["comeback"])
    done_on: date | None = None
    channel: str | None = Field(None, description="Sequence steps: post | email | phone | fax.")
    note: str | None = Field(None, description="What to do, from the tenant's template.")
    step: int | None = Field(None, description="Sequence steps: position, from 0.")
    last_purchase_on: date | None = None
    staff_outcome: str | None = Field(None, description="What staff reported when done.")
    staff_note: str | None = None


class FollowupPage(BaseModel):
    items: list[FollowupItem]
    next: str | None = Field(description="Cursor of the next page; null on the last one.")


def _item(f: store.Followup) -> FollowupItem:
    return FollowupItem(
        id=f.id,
        customer_id=f.customer_id,
        branch_id=f.branch_id,
        segment=f.segment,
        reason=f.reason,
        status=f.status,
        created_on=f.created_on,
        due_on=f.due_on,
        total_amount=f.total_amount,
        outcome=f.outcome,
        done_on=f.done_on,
        channel=f.channel,
        note=f.note,
        step=f.step,
        last_purchase_on=f.last_purchase_on,
        staff_outcome=f.staff_outcome,
        staff_note=f.staff_note,
    )


@router.get(
    "/v1/followups",
    response_model=FollowupPage,
    tags=["followups"],
    dependencies=[allow(Permission.FOLLOWUPS)],
)
async def list_followups(
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    status: Literal["open", "done", "cancelled"] = "open",
    scope: Annotated[
        str, Query(min_length=1, max_length=100, description="'all' or a branch_id")
    ] = CHAIN,
    due: Annotated[
        Literal["today"] | None, Query(description="'today': due today or carried over")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
    reason: Annotated[
        Literal["lapsed", "at_risk", "sequence"] | None, Query(description="Only this kind.")
    ] = None,
) -> FollowupPage:
    """The task list, most valuable first: loyal_lapsed, trendy, steady, fledgling, first,
    then by total purchases. Holds lapses, at-risk warnings and sequence steps."""
    try:
        after = decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise ApiError(422, "invalid_cursor", str(exc)) from exc
    async with pool.acquire() as conn:
        due_by = await tenant_today(conn, tenant_id, settings) if due == "today" else None
        # One more than asked: tells whether a next page exists without a count query.
        rows = await store.list_followups(
            conn,
            tenant_id,
            status=status,
            branch_id=None if scope == CHAIN else scope,
            due_by=due_by,
            after=after,
            limit=limit + 1,
            reason=reason,
        )
    page = rows[:limit]
    more = len(rows) > limit
    return FollowupPage(
        items=[_item(f) for f in page], next=encode_cursor(page[-1].sort_key) if more else None
    )


class DoneBody(BaseModel):
    """What came of a follow-up, as staff report it (optional)."""

    model_config = ConfigDict(extra="forbid")
    outcome: Literal["reached", "no_answer", "visited", "mailed", "declined", "other"] | None = None
    note: str | None = Field(None, max_length=2000)


@router.post(
    "/v1/followups/{followup_id}/done",
    response_model=FollowupItem,
    tags=["followups"],
    dependencies=[allow(Permission.WORK_FOLLOWUPS)],
)
async def mark_done(
    followup_id: int,
    pool: Pool,
    who: Caller,
    settings: AppSettings,
    body: Annotated[DoneBody | None, Body()] = None,
) -> FollowupItem:
    """Staff did the follow-up; the body may say what came of it, ``{"outcome": "reached",
    "note": "…"}``. Doing it again changes nothing. A task of a branch outside the caller's is
    not found (404)."""
    tenant_id = who.tenant_id
    body = body or DoneBody()
    async with pool.acquire() as conn:
        followup = await store.mark_done(
            conn,
            tenant_id,
            followup_id,
            await tenant_today(conn, tenant_id, settings),
            body.outcome,
            body.note,
            branches=None if who.chain_wide else who.branches,
        )
    if followup is None:
        raise ApiError(404, "not_found", f"no follow-up {followup_id}", id=followup_id)
    if followup.status == "cancelled":
        raise ApiError(
            409,
            "cancelled",
            f"follow-up {followup_id} was cancelled: the customer never lapsed",
            id=followup_id,
            outcome=followup.outcome,
        )
    return _item(followup)


@router.get(
    "/v1/customers/{customer_id}/followups",
    tags=["followups"],
    dependencies=[allow(Permission.CUSTOMERS)],
)
async def customer_followups(customer_id: str, pool: Pool, who: Caller) -> dict:
    """Every task of one customer (open and closed), oldest first: the customer's page. A
    branch login sees the tasks of its branches only (404 when there are none)."""
    async with pool.acquire() as conn:
        rows = await store.customer_followups(conn, who.tenant_id, customer_id)
    items = [_item(f) for f in rows if who.covers(f.branch_id)]
    if not items and not who.chain_wide:
        # the same answer for a customer of another branch and one without tasks
        raise ApiError(
            404,
            "not_found",
            f"no tasks of customer {customer_id!r} in your branches",
            customer_id=customer_id,
        )
    return {"items": items}
