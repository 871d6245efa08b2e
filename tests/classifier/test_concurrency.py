"""A batch locks the states it classifies; the lapse sweep running beside it skips them (no
waiting, no lost or doubled change) and the batch ends where a serial run would."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord

from services.classifier import store
from services.classifier.clock import Clock
from services.classifier.consumer import Classifier
from shared.settings import Settings

pytestmark = pytest.mark.integration


def record(tenant, offset, event_id, customer, when, amount="12000"):
    value = {
        "event_id": event_id,
        "tenant_id": tenant,
        "branch_id": "shibuya",
        "customer_id": customer,
        "occurred_at": when,
        "amount": amount,
    }
    key = f"{tenant}:{customer}".encode()
    return ConsumerRecord(
        "kizuna.purchases.v1", 0, offset, 0, 0, key, json.dumps(value).encode(), None, 0, 0, []
    )


async def handle(pool, records):
    async with pool.acquire() as conn, conn.transaction():
        await Classifier(Settings()).handle(conn, records)


async def test_a_sweep_beside_a_batch_skips_its_customers(pool, tenant, monkeypatch):
    await handle(pool, [record(tenant, 0, "e1", "C1", "2025-01-10T10:00:00")])
    lock_states = store.lock_states
    swept = []

    async def lock_then_sweep(conn, tenant_id, customers):
        states = await lock_states(conn, tenant_id, customers)
        # The clock ticks while this batch holds C1: the sweep must neither wait nor lapse it.
        sweeper = Clock(Settings(now=datetime(2025, 12, 1, tzinfo=UTC)))
        swept.append(await sweeper.sweep(pool))
        return states

    monkeypatch.setattr(store, "lock_states", lock_then_sweep)
    await handle(pool, [record(tenant, 1, "e2", "C1", "2025-12-05T10:00:00")])
    assert swept == [0]

    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT seq, segment, purchase_count FROM customer_states"
            " WHERE tenant_id = $1 AND customer_id = 'C1' AND scope = 'all'",
            tenant,
        )
    # first_active (1) → the batch's own lapse catch-up to first_lapsed (2) → two purchases
    # 329 days apart, 24,000 yen: steady_active (3) — what the events alone give.
    assert (row["seq"], row["segment"], row["purchase_count"]) == (3, "steady_active", 2)
    changes = await Clock(Settings(now=datetime(2025, 12, 6, tzinfo=UTC))).sweep(pool)
    assert changes == 0  # nothing was left due: the sweep had not lapsed it behind the batch


async def test_one_batch_of_two_tenants_with_the_same_customer_codes(pool, tenant):
    """A batch is one transaction over every tenant in it: each tenant's states stay its own."""
    other = f"{tenant}x"
    await handle(
        pool,
        [
            record(tenant, 0, "e1", "C1", "2026-01-10T10:00:00", "12000"),
            record(other, 1, "e1", "C1", "2026-01-11T10:00:00", "90000"),
            record(other, 2, "e2", "C2", "2026-01-12T10:00:00", "5000"),
        ],
    )
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, customer_id, scope, purchase_count, total_amount FROM customer_states"
            " WHERE tenant_id = ANY($1::text[]) ORDER BY tenant_id, customer_id, scope",
            [tenant, other],
        )
    assert [(r["tenant_id"], r["customer_id"], r["scope"], r["total_amount"]) for r in rows] == [
        (tenant, "C1", "all", 12000),
        (tenant, "C1", "shibuya", 12000),
        (other, "C1", "all", 90000),
        (other, "C1", "shibuya", 90000),
        (other, "C2", "all", 5000),
        (other, "C2", "shibuya", 5000),
    ]
