"""The notifier's work unit: one consumed batch of segment changes, in one PostgreSQL
transaction (the consumer stores its offsets in the same one).

Decode (what cannot be read goes to the dead-letter topic through the outbox), decide each
change with the pure ``domain.decide``, then apply the decisions set-based, one statement per
kind of action.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from shared import metrics
from shared.cpm import SEGMENTS
from shared.events import SegmentChange
from shared.kafka import deadletter_row, write_outbox
from shared.settings import Settings, today_in

from . import store
from .domain import LAPSED, CancelFollowup, OpenFollowup, Reactivated, decide

log = logging.getLogger("kizuna.notifier")
SERVICE = "notifier"
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Applied:
    """What one batch changed (after idempotency: redelivered changes count zero)."""

    opened: int = 0
    cancelled: int = 0
    comebacks: int = 0


def contract_problem(change: SegmentChange) -> str | None:
    """Why a well-formed message still breaks the contract, or ``None``."""
    if change.schema_version != SCHEMA_VERSION:
        # A newer version may mean something else; dead-lettered rather than guessed at.
        return f"schema_version: {change.schema_version} is not supported (only {SCHEMA_VERSION})"
    for field in ("from_segment", "to_segment"):
        value = getattr(change, field)
        if value is not None and value not in SEGMENTS:
            return f"{field}: unknown segment {value!r}"
    return None


class Notifier:
    def __init__(self, settings: Settings):
        self.settings = settings

    async def handle(self, conn: asyncpg.Connection, records: list[ConsumerRecord]) -> None:
        """One consumed batch: decode, dead-letter what cannot be used, apply the rest."""
        outbox: list[tuple[str, str, str]] = []
        changes: list[SegmentChange] = []
        for record in records:
            try:
                change = SegmentChange.model_validate_json(record.value or b"")
            except ValidationError as exc:
                reason = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()
                )
            else:
                reason = contract_problem(change)
                if reason is None:
                    changes.append(change)
                    continue
            outbox.append(deadletter_row(SERVICE, record, reason))
            metrics.DEADLETTERS.labels(SERVICE).inc()
            log.warning(
                "dead-lettered %s[%s]@%s: %s", record.topic, record.partition, record.offset, reason
            )
        await self.apply(conn, changes)
        await write_outbox(conn, outbox)

    async def apply(self, conn: asyncpg.Connection, changes: list[SegmentChange]) -> Applied:
        """Apply decoded changes. Idempotent, and independent of how changes fall into batches:
        every write is keyed by the changes' seq, never by arrival order."""
        if not changes:
            return Applied()
        zones = await store.time_zones(
            conn, (c.tenant_id for c in changes), self.settings.default_time_zone
        )
        # "Today" per tenant: the day a lapse is noticed is the day its task falls due.
        today = {tenant: today_in(zone, self.settings) for tenant, zone in zones.items()}
        actions = [
            decide(c, today[c.tenant_id], self.settings.followup_max_age_days) for c in changes
        ]
        # Open before closing: a lapse and the change that ends it may share a batch.
        opened = await store.open_followups(
            conn, [a for a in actions if isinstance(a, OpenFollowup)]
        )
        cancelled = await store.cancel_followups(
            conn, [a for a in actions if isinstance(a, CancelFollowup)]
        )
        comebacks = await store.reactivate(conn, [a for a in actions if isinstance(a, Reactivated)])
        # Counted before the commit: a batch that then fails and is retried counts twice,
        # which a counter of work created can bear (the tasks themselves are exact).
        if opened:
            metrics.FOLLOWUPS_OPENED.labels(LAPSED).inc(opened)
        return Applied(opened, cancelled, comebacks)
