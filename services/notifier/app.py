"""The notifier service: consumes segment changes into follow-up tasks and comebacks, and
serves the staff's task list.

    GET  /v1/followups?status=open|done&scope=all|{branch_id}&due=today&limit=&cursor=
    POST /v1/followups/{id}/done
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager, suppress
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

import asyncpg
from fastapi import Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field

from shared import http
from shared.db import create_pool
from shared.events import SEGMENT_CHANGES
from shared.http import ApiError, tenant_header
from shared.kafka import PgOffsetConsumer, ensure_topics
from shared.settings import Settings, get_settings, today_in

from . import store
from .domain import CHAIN, decode_cursor, encode_cursor
from .pipeline import SERVICE, Notifier

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


class ConsumerSupervisor:
    """Keeps one consumer running. ``PgOffsetConsumer.run`` retries database and network
    failures itself, but any other error ends it, and a silently dead task would leave the
    service up while nothing is consumed. Here such an error replaces the consumer with a fresh
    one, which seeks to the offsets stored in PostgreSQL: what the dead one fetched but did not
    commit is read again, never skipped."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool = pool
        self.settings = settings
        self.consumer: PgOffsetConsumer | None = None
        self.restarts = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Start consuming; the first start raises, so a service that cannot reach its broker
        fails at start-up instead of pretending to run."""
        self._stop = asyncio.Event()
        self.consumer = build_consumer(self.pool, self.settings)
        await self.consumer.start()
        self._task = asyncio.create_task(self._run(), name="consume")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    @property
    def healthy(self) -> bool:
        return (
            self._task is not None
            and not self._task.done()
            and bool(self.consumer and self.consumer.healthy)
        )

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            consumer = self.consumer
            try:
                if consumer is not None:
                    await consumer.run(self._stop)
            except Exception:  # noqa: BLE001 - whatever it was, a fresh consumer recovers
                log.exception("consumer failed; starting a new one from the stored offsets")
            finally:
                if consumer is not None:
                    with suppress(Exception):
                        await consumer.stop()
                self.consumer = None
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            if self._stop.is_set():
                return
            backoff = min(backoff * 2, 30)
            self.restarts += 1
            try:
                fresh = build_consumer(self.pool, self.settings)
                await fresh.start()
                self.consumer = fresh
            except Exception:  # noqa: BLE001 - broker still away: try again after the back-off
                log.exception("consumer could not start")


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    pool = await create_pool(settings.database_url, max_size=6)
    await ensure_topics(settings.kafka_bootstrap_servers, settings.topic_partitions)
    supervisor = ConsumerSupervisor(pool, settings)
    await supervisor.start()
    app.state.pool, app.state.supervisor = pool, supervisor
    try:
        yield
    finally:
        await supervisor.stop()
        await pool.close()


app = FastAPI(title="Kizuna notifier", lifespan=lifespan)


def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]
TenantId = Annotated[str, Depends(tenant_header)]


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
    # doubles as the daily report of follow-up work (done by staff, comeback, superseded).
    outcome: str | None = Field(None, examples=["comeback"])
    done_on: date | None = None


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
    )


async def _today(conn: asyncpg.Connection, tenant_id: str) -> date:
    settings = get_settings()
    zones = await store.time_zones(conn, [tenant_id], settings.default_time_zone)
    return today_in(zones[tenant_id], settings)


@app.get("/v1/followups", response_model=FollowupPage, tags=["followups"])
async def list_followups(
    pool: Pool,
    tenant_id: TenantId,
    status: Literal["open", "done", "cancelled"] = "open",
    scope: Annotated[
        str, Query(min_length=1, max_length=100, description="'all' or a branch_id")
    ] = CHAIN,
    due: Annotated[
        Literal["today"] | None, Query(description="'today': due today or carried over")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> FollowupPage:
    """The task list, most valuable first: loyal_lapsed, trendy, steady, fledgling, first,
    then by total purchases."""
    try:
        after = decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise ApiError(422, "invalid_cursor", str(exc)) from exc
    async with pool.acquire() as conn:
        due_by = await _today(conn, tenant_id) if due == "today" else None
        # One more than asked: tells whether a next page exists without a count query.
        rows = await store.list_followups(
            conn,
            tenant_id,
            status=status,
            branch_id=None if scope == CHAIN else scope,
            due_by=due_by,
            after=after,
            limit=limit + 1,
        )
    page = rows[:limit]
    more = len(rows) > limit
    return FollowupPage(
        items=[_item(f) for f in page], next=encode_cursor(page[-1].sort_key) if more else None
    )


@app.post("/v1/followups/{followup_id}/done", response_model=FollowupItem, tags=["followups"])
async def mark_done(followup_id: int, pool: Pool, tenant_id: TenantId) -> FollowupItem:
    """Staff did the follow-up. Doing it again changes nothing."""
    async with pool.acquire() as conn:
        followup = await store.mark_done(
            conn, tenant_id, followup_id, await _today(conn, tenant_id)
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


async def _ready() -> dict[str, bool]:
    state = app.state
    supervisor = getattr(state, "supervisor", None)
    return {
        "database": await http.check_db(state.pool) if hasattr(state, "pool") else False,
        "consumer": bool(supervisor and supervisor.healthy),
    }


http.install(app, _ready)
