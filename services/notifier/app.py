"""The notifier service: consumes segment changes into follow-up tasks, alerts, sequence steps
and comebacks; delivers alerts by e-mail and webhook; warns early about customers whose silence
is already long for them; serves the staff's task list. (services/notifier/README.md)

    GET  /v1/followups?status=open|done|cancelled&scope=all|{branch_id}&due=today&reason=&limit=&cursor=
    POST /v1/followups/{id}/done
    GET  /v1/notifications/settings          PUT /v1/notifications/settings
    GET  /v1/notifications/deliveries?status=pending|sent|dead|cancelled|digested
    POST /v1/notifications/deliveries/{id}/retry
    GET  /v1/alerts?scope=&kind=lapsed|at_risk&since=&limit=
    GET  /v1/sequences                        GET|PUT|DELETE /v1/sequences/{segment}
    GET  /v1/comebacks?scope=&from=YYYY-MM-DD&to=YYYY-MM-DD
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Literal

import asyncpg
from fastapi import Body, Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field

from shared import http
from shared.cpm import SEGMENTS
from shared.db import create_pool
from shared.events import SEGMENT_CHANGES
from shared.http import ApiError, AppSettings, Pool, TenantId
from shared.kafka import PgOffsetConsumer, ensure_topics
from shared.service import supervised
from shared.settings import Settings, get_settings, today_in

from . import messages, store
from .domain import (
    CHAIN,
    FollowupSequence,
    NotificationSettings,
    decode_cursor,
    encode_cursor,
)
from .pipeline import SERVICE, Notifier
from .workers import AtRiskScanner, DeliveryWorker

log = logging.getLogger("kizuna.notifier")
GROUP = "kizuna-notifier"


def build_consumer(pool: asyncpg.Pool, settings: Settings) -> PgOffsetConsumer:
    """The notifier's consumer group member (also what the integration tests run)."""
    return PgOffsetConsumer(
        service=SERVICE,
        bootstrap=settings.kafka_bootstrap_servers,
        group_id=GROUP,
        topics=[SEGMENT_CHANGES],
        pool=pool,
        handle=Notifier(settings).handle,
        batch_size=settings.consumer_batch_size,
        session_timeout_ms=settings.session_timeout_ms,
    )


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    pool = await create_pool(settings.database_url, max_size=6)
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)
    consumer = build_consumer(pool, settings)
    await consumer.start()
    worker, scanner = DeliveryWorker(pool, settings), AtRiskScanner(pool, settings)
    stop = asyncio.Event()
    tasks = [
        supervised(consumer.run(stop), "consume", stop),
        supervised(worker.run(stop), "deliver", stop),
        supervised(scanner.run(stop), "at-risk scan", stop),
    ]
    app.state.pool, app.state.consumer, app.state.tasks = pool, consumer, tasks
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await worker.close()
        await consumer.stop()
        await pool.close()


app = FastAPI(title="Kizuna notifier", lifespan=lifespan)


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


async def _today(conn: asyncpg.Connection, tenant_id: str, settings: Settings) -> date:
    zones = await store.time_zones(conn, [tenant_id], settings.default_time_zone)
    return today_in(zones[tenant_id], settings)


@app.get("/v1/followups", response_model=FollowupPage, tags=["followups"])
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
        due_by = await _today(conn, tenant_id, settings) if due == "today" else None
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


@app.post("/v1/followups/{followup_id}/done", response_model=FollowupItem, tags=["followups"])
async def mark_done(
    followup_id: int,
    pool: Pool,
    tenant_id: TenantId,
    settings: AppSettings,
    body: Annotated[DoneBody | None, Body()] = None,
) -> FollowupItem:
    """Staff did the follow-up; the body may say what came of it, ``{"outcome": "reached",
    "note": "…"}``. Doing it again changes nothing."""
    body = body or DoneBody()
    async with pool.acquire() as conn:
        followup = await store.mark_done(
            conn,
            tenant_id,
            followup_id,
            await _today(conn, tenant_id, settings),
            body.outcome,
            body.note,
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


@app.get("/v1/customers/{customer_id}/followups", tags=["followups"])
async def customer_followups(customer_id: str, pool: Pool, tenant_id: TenantId) -> dict:
    """Every task of one customer (open and closed), oldest first: the customer's page."""
    async with pool.acquire() as conn:
        rows = await store.customer_followups(conn, tenant_id, customer_id)
    return {"items": [_item(f) for f in rows]}


async def _ready() -> dict[str, bool]:
    state = app.state
    consumer = getattr(state, "consumer", None)
    tasks = getattr(state, "tasks", [])
    return {
        "database": await http.check_db(state.pool) if hasattr(state, "pool") else False,
        "consumer": bool(consumer and consumer.healthy),
        "workers": bool(tasks) and not any(t.done() for t in tasks),
    }


http.install(app, _ready, service=SERVICE)


# --- Notification settings -----------------------------------------------------------------------


class SettingsBody(NotificationSettings):
    """The settings as PUT: everything in ``NotificationSettings`` plus the webhook secret."""

    webhook_secret: str | None = Field(
        None,
        min_length=16,
        max_length=200,
        description="Signs webhook bodies (HMAC-SHA256). Write-only; omitted keeps the stored one.",
    )


def _settings_view(stored: store.StoredSettings) -> dict:
    return {
        "version": stored.version,
        "settings": stored.settings.model_dump(mode="json"),
        "webhook_secret_set": stored.webhook_secret is not None,
        "template_fields": messages.FIELDS,
        "default_templates": {
            kind: {"subject": subject, "body": body}
            for kind, (subject, body) in messages.DEFAULT_TEMPLATES.items()
        },
    }


@app.get("/v1/notifications/settings", tags=["notifications"])
async def get_notification_settings(pool: Pool, tenant_id: TenantId) -> dict:
    """Recipients (per branch, or chain-wide), immediate or digest per segment, the at-risk
    policy and templates; the defaults (version 0) until set. The webhook secret is never
    shown, only whether one is set."""
    async with pool.acquire() as conn:
        return _settings_view(await store.load_settings(conn, tenant_id))


@app.put("/v1/notifications/settings", tags=["notifications"])
async def put_notification_settings(
    pool: Pool, tenant_id: TenantId, settings: AppSettings, body: SettingsBody
) -> dict:
    """Replace the settings. They apply to alerts raised from now on (an alert's routing and
    text are fixed when it is raised, so its resends stay identical)."""
    settings = NotificationSettings.model_validate(body.model_dump(exclude={"webhook_secret"}))
    async with pool.acquire() as conn, conn.transaction():
        current = await store.load_settings(conn, tenant_id)
        if settings.has_webhooks and not (body.webhook_secret or current.webhook_secret):
            raise ApiError(
                422,
                "webhook_secret_required",
                "webhook recipients need a webhook_secret to sign with",
                problems=[{"field": "webhook_secret", "reason": "required with webhooks"}],
            )
        stored = await store.save_settings(conn, tenant_id, settings, body.webhook_secret)
    return _settings_view(stored)


DeliveryStatus = Literal["pending", "sent", "dead", "cancelled", "digested"]


@app.get("/v1/notifications/deliveries", tags=["notifications"])
async def list_deliveries(
    pool: Pool,
    tenant_id: TenantId,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict:
    """Alert deliveries, newest first; ``status=dead`` is the dead-letter list (attempts and
    the last error on each)."""
    async with pool.acquire() as conn:
        return {"items": await store.list_deliveries(conn, tenant_id, status, limit)}


@app.post("/v1/notifications/deliveries/{delivery_id}/retry", tags=["notifications"])
async def retry_delivery(delivery_id: str, pool: Pool, tenant_id: TenantId) -> dict:
    """Send a dead delivery again (same id: a receiver that did get it can drop it)."""
    async with pool.acquire() as conn:
        row = await store.retry_delivery(conn, tenant_id, delivery_id)
    if row is None:
        raise ApiError(404, "not_found", f"no delivery {delivery_id}", id=delivery_id)
    if row["status"] != "pending":
        raise ApiError(
            409, "not_dead", f"delivery {delivery_id} is {row['status']}", current=row["status"]
        )
    return row


@app.get("/v1/alerts", tags=["notifications"])
async def list_alerts(
    pool: Pool,
    tenant_id: TenantId,
    scope: Annotated[
        str, Query(min_length=1, max_length=100, description="'all' or a branch_id")
    ] = CHAIN,
    kind: Literal["lapsed", "at_risk"] | None = None,
    since: Annotated[date | None, Query(description="Raised for this day or later.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict:
    """Alerts most valuable first, with where each went: a branch sees its customers', the
    chain (``scope=all``) sees all."""
    async with pool.acquire() as conn:
        items = await store.list_alerts(
            conn,
            tenant_id,
            branch_id=None if scope == CHAIN else scope,
            kind=kind,
            since=since,
            limit=limit,
        )
    return {"items": items}


# --- Follow-up sequences -------------------------------------------------------------------------


async def _segment(segment: str) -> str:
    """The path's segment; 404 for one that does not exist (before the body is looked at)."""
    if segment not in SEGMENTS:
        raise ApiError(404, "unknown_segment", f"no segment {segment!r}", segments=list(SEGMENTS))
    return segment


Segment = Annotated[str, Depends(_segment)]


@app.get("/v1/sequences", tags=["sequences"])
async def list_sequences(pool: Pool, tenant_id: TenantId) -> dict:
    async with pool.acquire() as conn:
        return {"items": await store.list_sequences(conn, tenant_id)}


@app.get("/v1/sequences/{segment}", tags=["sequences"])
async def get_sequence(segment: Segment, pool: Pool, tenant_id: TenantId) -> dict:
    """The steps scheduled when a customer enters ``segment`` (chain-wide)."""
    async with pool.acquire() as conn:
        found = [s for s in await store.list_sequences(conn, tenant_id) if s["segment"] == segment]
    if not found:
        raise ApiError(404, "not_found", f"no sequence for {segment}", segment=segment)
    return found[0]


@app.put("/v1/sequences/{segment}", tags=["sequences"])
async def put_sequence(
    segment: Segment, pool: Pool, tenant_id: TenantId, sequence: FollowupSequence
) -> dict:
    """Define the steps for customers entering ``segment`` from now on: each step due
    ``offset_days`` after the entry, by post / email / phone / fax, with a template of the
    customer's fields. A customer who moves to another segment stops the sequence (open steps
    not yet due are cancelled). Tasks already scheduled are left as they are."""
    async with pool.acquire() as conn:
        version = await store.save_sequence(conn, tenant_id, segment, sequence)
    return {"segment": segment, "version": version, **sequence.model_dump(mode="json")}


@app.delete("/v1/sequences/{segment}", status_code=204, tags=["sequences"])
async def delete_sequence(segment: Segment, pool: Pool, tenant_id: TenantId) -> None:
    """No new steps for entries from now on (scheduled ones stay, and still stop on a move)."""
    async with pool.acquire() as conn:
        if not await store.delete_sequence(conn, tenant_id, segment):
            raise ApiError(404, "not_found", f"no sequence for {segment}", segment=segment)


# --- Comebacks -----------------------------------------------------------------------------------


@app.get("/v1/comebacks", tags=["followups"])
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
        end = to or await _today(conn, tenant_id, settings)
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
