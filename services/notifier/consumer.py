"""The notifier's work unit: one consumed batch of segment changes, in one PostgreSQL
transaction (the consumer stores its offsets in the same one).

Decode (what cannot be read goes to the dead-letter topic through the outbox), apply the
batch's corrections (``Withdrawal``), decide each remaining change with the pure ``domain``
functions, then apply the decisions set-based, one statement per kind of action: tasks, alerts
with their deliveries (the worker in ``workers.py`` sends them after the commit), sequence steps
scheduled and stopped, comebacks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import asyncpg
from aiokafka import ConsumerRecord

from shared.deadletters import decode_records
from shared.events import SegmentChange
from shared.outbox import write_outbox
from shared.settings import Settings, today_in, utcnow

from . import metrics, store
from .domain.alerts import plan_alert
from .domain.followups import LAPSED, SEQUENCE, OpenFollowup, Reactivated, decide, in_force
from .domain.sequences import plan_sequence, stop_sequence

log = logging.getLogger("kizuna.notifier")
SERVICE = "notifier"

# (conn, tenant_id, customer_ids) -> {customer_id: name}; ``store.customer_names`` by default.
NameLookup = Callable[[asyncpg.Connection, str, Iterable[str]], Awaitable[dict[str, str]]]


@dataclass(frozen=True, slots=True)
class Applied:
    """What one batch changed (after idempotency: redelivered changes count zero)."""

    opened: int = 0
    cancelled: int = 0  # open tasks a correction withdrew
    comebacks: int = 0
    alerts: int = 0
    scheduled: int = 0
    stopped: int = 0


class Notifier:
    def __init__(self, settings: Settings, names: NameLookup = store.customer_names):
        self.settings = settings
        self.names = names

    async def handle(self, conn: asyncpg.Connection, records: list[ConsumerRecord]) -> None:
        """One consumed batch: decode, dead-letter what cannot be used, apply the rest."""
        changes, outbox = decode_records(records, SegmentChange, SERVICE)
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
        now = utcnow(self.settings)
        max_age = self.settings.followup_max_age_days
        # Corrections first: they withdraw what earlier batches made; what they withdraw in
        # this batch is left out of it.
        changes, withdrawals = in_force(changes, today)
        cancelled = await store.withdraw(conn, withdrawals)
        actions = [decide(c, today[c.tenant_id], max_age) for c in changes]
        lapses = [a for a in actions if isinstance(a, OpenFollowup)]
        sequences = await store.tenant_sequences(conn, zones)
        entering = [c for c in changes if (c.tenant_id, c.to_segment) in sequences]
        names = await self._names(
            conn,
            [(a.tenant_id, a.customer_id) for a in lapses]
            + [(c.tenant_id, c.customer_id) for c in entering],
        )

        # Open before closing: a lapse and the change that ends it may share a batch.
        opened = await store.open_followups(conn, lapses)
        notify = await store.tenant_settings(conn, {a.tenant_id for a in lapses}) if lapses else {}
        alerts = [
            plan_alert(
                kind=LAPSED,
                tenant_id=a.tenant_id,
                customer_id=a.customer_id,
                name=names.get((a.tenant_id, a.customer_id)),
                branch_id=a.branch_id,
                segment=a.segment,
                total_amount=a.total_amount,
                last_purchase_on=a.last_purchase_on,
                effective_on=a.created_on,
                seq=a.lapse_seq,
                settings=notify[a.tenant_id],
                today=today[a.tenant_id],
                now=now,
                zone=zones[a.tenant_id],
            )
            for a in lapses
        ]
        raised = await store.raise_alerts(conn, alerts)
        # Schedule before stopping, for the same reason; stopping is keyed by seq.
        steps = [
            task
            for c in entering
            for task in plan_sequence(
                c,
                sequences[(c.tenant_id, c.to_segment)],
                today[c.tenant_id],
                max_age,
                names.get((c.tenant_id, c.customer_id)),
            )
        ]
        scheduled = await store.open_tasks(conn, steps)
        stopped = await store.stop_sequences(
            conn, [s for c in changes if (s := stop_sequence(c)) is not None]
        )
        comebacks = await store.reactivate(conn, [a for a in actions if isinstance(a, Reactivated)])
        # Counted when the consumer's transaction commits (shared.metrics.counted).
        if opened:
            metrics.FOLLOWUPS_OPENED.labels(LAPSED).inc(opened)
        if raised:
            metrics.ALERTS_RAISED.labels(LAPSED).inc(raised)
        if scheduled:
            metrics.FOLLOWUPS_OPENED.labels(SEQUENCE).inc(scheduled)
        if stopped:
            metrics.SEQUENCE_STEPS_CANCELLED.inc(stopped)
        return Applied(opened, cancelled, comebacks, raised, scheduled, stopped)

    async def _names(
        self, conn: asyncpg.Connection, customers: list[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """Customers' names through the lookup hook, per tenant."""
        by_tenant: dict[str, set[str]] = {}
        for tenant, customer in customers:
            by_tenant.setdefault(tenant, set()).add(customer)
        names: dict[tuple[str, str], str] = {}
        for tenant, ids in sorted(by_tenant.items()):
            for customer, name in (await self.names(conn, tenant, sorted(ids))).items():
                names[(tenant, customer)] = name
        return names
