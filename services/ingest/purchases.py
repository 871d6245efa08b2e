"""``POST /v1/purchases``: one event, ``{"events": [...]}`` or NDJSON; checked all or nothing,
202 only after the broker acknowledged every event."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress

import asyncpg
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from shared import access, http, replay
from shared.access import Permission, Principal
from shared.events import PURCHASES, PurchaseEvent, message_key
from shared.kafka import ensure_topics
from shared.publisher import Partitioner, RecordPublisher

from . import metrics

log = logging.getLogger("kizuna.ingest")
router = APIRouter(tags=["purchases"])
MAX_EVENTS = 20000


class Publisher:
    """Owns the Kafka publisher (``RecordPublisher``, faststream); (re)connects lazily so
    ingest starts while the broker is down.

    With ``keep`` (KIZUNA_BROKER_REPLAY, the embedded broker) what the broker acknowledged is
    also written to PostgreSQL before the 202, until the classifier has stored it
    (shared/replay.py): a broker that dies cannot take accepted events with it."""

    def __init__(self, bootstrap: str, partitions: int, keep=None):
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.producer = None
        self.lock = asyncio.Lock()
        self.keep = keep  # async (rows, broker, marks) -> None, or None
        self.watch = replay.BrokerWatch()

    async def get(self):
        async with self.lock:
            if self.producer is None:
                producer = RecordPublisher(
                    self.bootstrap, request_timeout_ms=5000, retry_backoff_ms=200
                )
                try:
                    await ensure_topics(self.bootstrap, self.partitions)
                    await producer.start()
                    if self.keep:
                        await self.watch.current(producer.client)
                except (TimeoutError, KafkaError, OSError) as exc:
                    with suppress(Exception):
                        await producer.stop()
                    raise http.ApiError(
                        503, "broker_unavailable", f"Kafka is not reachable: {exc}"
                    ) from exc
                self.producer = producer
            return self.producer

    async def reset(self) -> None:
        async with self.lock:
            if self.producer is not None:
                with suppress(Exception):
                    await self.producer.stop()
                self.producer = None

    async def publish(self, events: list[PurchaseEvent]) -> None:
        """Publish a request's events, placed as a Java client or the importer would place
        them (Kafka's murmur2 of ``tenant:customer``), with other requests' records in the
        producer's open batches (``RecordPublisher.send``)."""
        producer = await self.get()
        before = self.watch.last
        rows = [
            (
                PURCHASES,
                message_key(e.tenant_id, e.customer_id),
                e.model_dump_json(exclude_none=True).encode(),
            )
            for e in events
        ]
        try:
            async with asyncio.timeout(15):
                place = Partitioner(await producer.partitions_for(PURCHASES))
                batches = await producer.send((t, place(k), k, v) for t, k, v in rows)
                if self.keep:
                    broker = await self.watch.confirm(producer.client, before)
                    await self._keep(rows, broker, replay.marks_of(batches))
        except (KafkaError, OSError, TimeoutError) as exc:
            await self.reset()
            raise http.ApiError(
                503,
                "broker_unavailable",
                "Kafka did not acknowledge the events; nothing is confirmed. Resending is safe.",
                cause=str(exc) or type(exc).__name__,
            ) from exc

    async def _keep(self, rows, broker, marks) -> None:
        try:
            await self.keep(rows, broker, marks)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise http.ApiError(
                503,
                "database_unavailable",
                "the events could not be recorded until they are counted; nothing is "
                "confirmed. Resending is safe.",
                cause=str(exc) or type(exc).__name__,
            ) from exc

    async def close(self) -> None:
        await self.reset()


def _items(body: bytes, content_type: str) -> list:
    text = body.decode("utf-8-sig")
    if "ndjson" in content_type or "jsonlines" in content_type:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        items = []
        for n, line in lines:
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise http.ApiError(
                    400,
                    "invalid_json",
                    f"line {n} is not JSON: {exc.msg}",
                    line=n,
                    column=exc.colno,
                ) from exc
        return items
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise http.ApiError(
            400,
            "invalid_json",
            f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from exc
    if isinstance(data, dict) and "events" in data:
        data = data["events"]
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    raise http.ApiError(
        422, "invalid_request", 'send one event object, {"events": [...]} or NDJSON'
    )


def validate(items: list, who: Principal) -> tuple[list[PurchaseEvent], list[dict], list[dict]]:
    """Every item checked; problems named by index, field and reason. Returns the events, the
    invalid items' problems, and the items the caller may not send (another tenant, or a
    branch outside an ingest key's)."""
    events, problems, forbidden = [], [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(
                {"index": index, "field": "", "reason": "an event must be a JSON object"}
            )
            continue
        item = {**item}
        given = item.setdefault("tenant_id", who.tenant_id)
        if len(who.branches) == 1:
            item.setdefault("branch_id", who.branches[0])
        if given != who.tenant_id:
            forbidden.append(
                {
                    "index": index,
                    "event_id": item.get("event_id"),
                    "field": "tenant_id",
                    "reason": f"tenant_id {given!r} is not the key's tenant",
                }
            )
            continue
        branch = item.get("branch_id")
        if isinstance(branch, str) and not who.covers(branch):
            forbidden.append(
                {
                    "index": index,
                    "event_id": item.get("event_id"),
                    "field": "branch_id",
                    "reason": f"branch_id {branch!r} is not one of the key's branches"
                    f" ({', '.join(who.branches)})",
                }
            )
            continue
        try:
            events.append(PurchaseEvent.model_validate(item))
        except ValidationError as exc:
            for e in exc.errors():
                problems.append(
                    {
                        "index": index,
                        "event_id": item.get("event_id"),
                        "field": ".".join(str(p) for p in e["loc"]),
                        "reason": e["msg"],
                    }
                )
    return events, problems, forbidden


@router.post("/v1/purchases", status_code=202, dependencies=[access.allow(Permission.INGEST)])
async def post_purchases(request: Request, who: access.Caller):
    """Accept events; 202 only after the broker acknowledged every one. All or nothing: when
    any item is for another tenant or (a branch key) another branch, nothing is sent and the
    403 names each such item; when any is invalid, the 422 names each problem."""
    items = _items(await request.body(), request.headers.get("content-type", ""))
    if not items:
        raise http.ApiError(422, "invalid_request", "no events in the request")
    if len(items) > MAX_EVENTS:
        raise http.ApiError(
            413, "too_many_events", f"at most {MAX_EVENTS} events per request", received=len(items)
        )
    events, problems, forbidden = validate(items, who)
    if forbidden:
        metrics.INGEST_REJECTED.inc(len(forbidden))
        return JSONResponse(
            http.error_body(
                "forbidden_events",
                f"{len(forbidden)} of {len(items)} events are not this key's to send;"
                " nothing was accepted",
                problems=forbidden,
            ),
            status_code=403,
        )
    if problems:
        metrics.INGEST_REJECTED.inc(len({p["index"] for p in problems}))
        return JSONResponse(
            http.error_body(
                "invalid_events",
                f"{len({p['index'] for p in problems})} of {len(items)} events are invalid; nothing was accepted",
                problems=problems,
            ),
            status_code=422,
        )
    await request.app.state.publisher.publish(events)
    metrics.INGEST_ACCEPTED.inc(len(events))
    return {"accepted": len(events)}
