"""The classifier's clock: the lapse sweep and the re-classification under new borders, on a
timer. Each batch of customers runs in one PostgreSQL transaction (states and outbox together)."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from dataclasses import replace

import asyncpg

from shared.consumer import PgOffsetConsumer
from shared.metrics import counted
from shared.settings import Settings, today_in
from shared.tenants import Tenant, load_tenant

from . import metrics, store
from .consumer import emit
from .domain import advance, is_late
from .relay import Relay

log = logging.getLogger("kizuna.classifier")


class Clock:
    def __init__(self, settings: Settings):
        self.settings = settings

    async def tenant(self, conn: asyncpg.Connection, tenant_id: str) -> Tenant:
        return await load_tenant(conn, tenant_id, self.settings.default_time_zone)

    async def sweep(self, pool: asyncpg.Pool) -> int:
        """Lapse every customer whose lapse date has come; batched, safe with several instances."""
        moved, started = 0, time.perf_counter()
        async with pool.acquire() as conn:
            tenants = await store.tenant_ids(conn)
        for tenant_id in tenants:
            while True:
                async with pool.acquire() as conn, counted(conn):
                    tenant = await self.tenant(conn, tenant_id)
                    today = today_in(tenant.time_zone, self.settings)
                    due = await store.due_states(
                        conn, tenant.tenant_id, today, self.settings.sweep_batch_size
                    )
                    if not due:
                        break
                    borders = await store.load_borders(conn, tenant.tenant_id)
                    await self._advance(conn, tenant, due, {}, today, borders)
                    moved += len(due)
                    metrics.LAPSES.inc(len(due))
        metrics.LAPSE_SWEEP_SECONDS.observe(time.perf_counter() - started)
        return moved

    async def apply_rules(self, pool: asyncpg.Pool) -> int:
        """Re-classify the customers of tenants whose borders changed: new borders take effect
        on the day the clock first sees them (cause ``rules``); a tenant with nobody classified
        yet has them from the beginning."""
        done = 0
        async with pool.acquire() as conn:
            pending = await store.tenants_with_new_rules(conn)
        for tenant_id in pending:
            while True:
                async with pool.acquire() as conn, counted(conn):
                    tenant = await self.tenant(conn, tenant_id)
                    today = today_in(tenant.time_zone, self.settings)
                    await store.date_new_rules(conn, tenant.tenant_id, today)
                    borders = await store.load_borders(conn, tenant.tenant_id)
                    batch = await store.states_before_rules(
                        conn, tenant.tenant_id, tenant.rules_version, self.settings.sweep_batch_size
                    )
                    if not batch:
                        await store.mark_rules_applied(conn, tenant.tenant_id, tenant.rules_version)
                        break
                    # A state already past the new borders' day was classified under the old
                    # ones: a correction from that day, which needs the customer's events.
                    since = {
                        (customer, scope): borders.first_after(state.rules_version)
                        for customer, scope, state in batch
                    }
                    late = sorted(
                        {
                            customer
                            for customer, scope, state in batch
                            if is_late(state, since[(customer, scope)], borders)
                        }
                    )
                    events = await store.load_purchases(conn, tenant.tenant_id, late)
                    await self._advance(
                        conn, tenant, batch, since, today, borders, events, tenant.rules_version
                    )
                    done += len(batch)
                    metrics.RECLASSIFIED.inc(len(batch))
        return done

    async def _advance(
        self, conn, tenant: Tenant, rows, since, today, borders, events=None, version=0
    ) -> None:
        """Each state's timeline up to today, in one transaction with its outbox."""
        outbox: list = []
        changed = {}
        for customer, scope, state in rows:
            after, changes = advance(
                state,
                scope,
                events.get(customer) if events else None,
                since.get((customer, scope)),
                borders,
                today,
                clock=True,
            )
            if after is not None:
                if after.rules_version < version:
                    # Borders dated after today (a clock set back): applied, from their day on.
                    after = replace(after, rules_version=version)
                changed[(customer, scope)] = after
            emit(outbox, tenant.tenant_id, customer, changes)
        await store.save_states(conn, tenant.tenant_id, changed)
        await store.queue_outbox(conn, outbox)


async def clock_loop(
    clock: Clock,
    pool,
    relay: Relay,
    consumer: PgOffsetConsumer,
    stop: asyncio.Event,
    interval: float,
    max_backlog: int,
) -> None:
    """Lapse sweep and rules changes, on a timer; no event is needed for a customer to lapse.

    While a large backlog of purchases is still to be read (history being loaded), the sweep
    waits: the events themselves catch each customer's lapse clock up in date order, and a
    sweep running ahead would lapse customers whose next purchase is still in the queue (later
    corrected — right, but twice the work); so does it before the consumer's first fetch,
    when the backlog is not known yet. Live, the backlog is near zero and the sweep runs every
    tick.
    """
    while not stop.is_set():
        try:
            moved = await clock.apply_rules(pool)
            if consumer.backlog is not None and consumer.backlog <= max_backlog:
                moved += await clock.sweep(pool)
            if moved:
                relay.wake.set()
        except Exception:  # noqa: BLE001 - keep the clock running; the next tick retries
            log.exception("clock tick failed")
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
