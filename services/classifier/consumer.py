"""The classifier's batch handler: a consumed batch of purchases in one PostgreSQL transaction
that writes the event store, the states and the outbox together; the relay publishes the outbox
afterwards."""

from __future__ import annotations

import logging
from collections import defaultdict
from zoneinfo import ZoneInfo

import asyncpg
from aiokafka import ConsumerRecord

from shared.cpm import Purchase
from shared.deadletters import decode_records
from shared.events import PurchaseEvent
from shared.settings import Settings, today_in
from shared.tenants import Tenant, ensure_tenants, load_tenant

from . import metrics, store
from .domain import ScopeState, on_new_events, on_new_sales
from .fold import Fold, fold_of

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
        self.fast_path_customers = 0  # customers classified without reading their events

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
        # the new events as the figures see them (the fast path folds them without the others)
        fresh = {
            (tenant_id, event_id): Purchase(event_id, kind, branch, on, amount, order)
            for tenant_id, event_id, branch, _, kind, _, on, amount, order, _ in rows
            if (tenant_id, event_id) in new_keys
        }
        for tenant_id, customers in new_by_tenant.items():
            await self._classify(conn, tenants[tenant_id], customers, fresh, outbox)
        await store.queue_outbox(conn, outbox)

    async def _classify(
        self,
        conn,
        tenant: Tenant,
        customers: dict[str, set[str]],
        new: dict[tuple[str, str], Purchase],
        outbox: list,
    ) -> None:
        tenant_id = tenant.tenant_id
        ids = sorted(customers)
        states = await store.lock_states(conn, tenant_id, ids)
        borders = await store.load_borders(conn, tenant_id)
        today = today_in(tenant.time_zone, self.settings)
        # The fast path: a customer's in-order sales of new orders folded into their stored
        # state (domain.on_new_sales); the others' events are read (on_new_events).
        fresh = {c: [new[(tenant_id, e)] for e in sorted(customers[c])] for c in ids}
        folds = (
            await store.read_folds(conn, tenant_id, ids)
            if self.settings.classifier_fast_path
            else {}
        )
        fast = {}
        for customer in ids if folds else ():
            done = on_new_sales(
                states.get(customer, {}), folds.get(customer), fresh[customer], borders, today
            )
            if done is not None:
                fast[customer] = done
        slow = [c for c in ids if c not in fast]
        purchases = await store.load_purchases(conn, tenant_id, slow) if slow else {}
        changed: dict[tuple[str, str], ScopeState] = {}
        new_folds: dict[str, Fold] = {}
        for customer in ids:
            mine = states.get(customer, {})
            if customer in fast:
                done = fast[customer]
                new_folds[customer] = folds[customer].with_sales(fresh[customer])
            else:
                events = purchases[customer]
                done = on_new_events(mine, events, customers[customer], borders, today)
                new_folds[customer] = fold_of(events)
            for scope, (after, changes) in done.items():
                if after is not None and after != mine.get(scope):
                    changed[(customer, scope)] = after
                emit(outbox, tenant_id, customer, changes)
            if (customer, "all") not in changed and "all" in mine:
                changed[(customer, "all")] = mine["all"]  # (to keep the new fold)
        self.fast_path_customers += len(fast)
        metrics.FAST_PATH_CUSTOMERS.inc(len(fast))
        await store.save_states(conn, tenant_id, changed, new_folds)
