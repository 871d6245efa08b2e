"""The classifier's batch handler: a consumed batch of purchases in one PostgreSQL transaction
that writes the event store, the states and the outbox together; the relay publishes the outbox
afterwards."""

from __future__ import annotations

import logging
from collections import defaultdict
from zoneinfo import ZoneInfo

import asyncpg
from aiokafka import ConsumerRecord

from shared.deadletters import decode_records
from shared.events import PurchaseEvent
from shared.settings import Settings, today_in
from shared.tenants import Tenant, ensure_tenants, load_tenant

from . import store
from .domain import ScopeState, on_new_events

log = logging.getLogger("kizuna.classifier")
SERVICE = "classifier"


def _occurred_on(event: PurchaseEvent, zone: str) -> tuple:
    tz = ZoneInfo(zone)
    at = event.occurred_at if event.occurred_at.tzinfo else event.occurred_at.replace(tzinfo=tz)
    return at, at.astimezone(tz).date()


def emit(outbox: list, tenant_id: str, customer_id: str, changes) -> None:
    for change in changes:
        outbox += store.outbox_rows(tenant_id, customer_id, change)


class Classifier:
    def __init__(self, settings: Settings):
        self.settings = settings

    async def tenant(self, conn: asyncpg.Connection, tenant_id: str) -> Tenant:
        return await load_tenant(conn, tenant_id, self.settings.default_time_zone)

    async def handle(self, conn: asyncpg.Connection, records: list[ConsumerRecord]) -> None:
        """One consumed batch: store new events once, re-classify their customers."""
        decoded, outbox = decode_records(records, PurchaseEvent, SERVICE)
        events: dict[tuple[str, str], PurchaseEvent] = {}
        for event in decoded:
            events.setdefault((event.tenant_id, event.event_id), event)
        if events:
            await ensure_tenants(conn, {t for t, _ in events}, self.settings.default_time_zone)
        tenants = {t: await self.tenant(conn, t) for t in {t for t, _ in events}}
        rows = []
        for (tenant_id, _), e in events.items():
            at, on = _occurred_on(e, tenants[tenant_id].time_zone)
            rows.append(
                (
                    tenant_id,
                    e.event_id,
                    e.branch_id,
                    e.customer_id,
                    e.kind,
                    at,
                    on,
                    e.amount,
                    e.order_id,
                    e.model_dump_json(),
                )
            )
        new_keys = await store.insert_purchases(conn, rows)
        new_by_tenant: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for tenant_id, event_id in new_keys:
            new_by_tenant[tenant_id][events[(tenant_id, event_id)].customer_id].add(event_id)
        for tenant_id, customers in new_by_tenant.items():
            await self._classify(conn, tenants[tenant_id], customers, outbox)
        await store.queue_outbox(conn, outbox)

    async def _classify(
        self, conn, tenant: Tenant, customers: dict[str, set[str]], outbox: list
    ) -> None:
        ids = sorted(customers)
        states = await store.lock_states(conn, tenant.tenant_id, ids)
        purchases = await store.load_purchases(conn, tenant.tenant_id, ids)
        borders = await store.load_borders(conn, tenant.tenant_id)
        today = today_in(tenant.time_zone, self.settings)
        changed: dict[tuple[str, str], ScopeState] = {}
        for customer in ids:
            mine = states.get(customer, {})
            done = on_new_events(mine, purchases[customer], customers[customer], borders, today)
            for scope, (after, changes) in done.items():
                if after is not None and after != mine.get(scope):
                    changed[(customer, scope)] = after
                emit(outbox, tenant.tenant_id, customer, changes)
        await store.save_states(conn, tenant.tenant_id, changed)
