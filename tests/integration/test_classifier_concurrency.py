"""States are read without locks and saved only if nobody changed them meanwhile (the lapse
sweep, new borders, a second instance during a rebalance); otherwise the batch is retried and
ends where a serial run would."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from aiokafka import ConsumerRecord

from services.classifier import store
from services.classifier.domain import ScopeState
from services.classifier.pipeline import Classifier
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


async def test_a_state_changed_between_read_and_save_is_not_overwritten(pool, tenant):
    await handle(pool, [record(tenant, 0, "e1", "C1", "2026-01-10T10:00:00")])
    async with pool.acquire() as conn:
        read = await store.read_states(conn, tenant, ["C1"])
        assert set(read) == {("C1", "all"), ("C1", "shibuya")}
        # Someone else (here: a sweep) moves the chain-wide state on.
        await conn.execute(
            "UPDATE customer_states SET seq = seq + 1, segment = 'first_lapsed'"
            " WHERE tenant_id = $1 AND customer_id = 'C1' AND scope = 'all'",
            tenant,
        )
        mine = {
            key: ScopeState(s.seq + 1, "x", s.figures, s.clock_on, None) for key, s in read.items()
        }
        with pytest.raises(store.StaleState, match="1 of 2"):
            async with conn.transaction():  # rolled back: the other state is not written either
                await store.save_states(conn, tenant, mine, read)
        rows = await conn.fetch(
            "SELECT scope, seq, segment FROM customer_states WHERE tenant_id = $1 ORDER BY scope",
            tenant,
        )
    assert [tuple(r) for r in rows] == [("all", 2, "first_lapsed"), ("shibuya", 1, "first_active")]


async def test_a_state_created_meanwhile_is_a_conflict_too(pool, tenant):
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO customer_states (tenant_id, scope, customer_id, seq, segment,"
            " purchase_count, total_amount, clock_on) VALUES ($1, 'all', 'C2', 1, NULL, 0, 0, $2)",
            tenant,
            date(2026, 1, 1),
        )
        new = {("C2", "all"): ScopeState(1, "first_active", None, date(2026, 1, 2), None)}
        with pytest.raises(store.StaleState):
            async with conn.transaction():
                await store.save_states(conn, tenant, new, {})


async def test_a_batch_that_lost_the_race_is_retried_to_the_serial_result(
    pool, tenant, monkeypatch
):
    await handle(pool, [record(tenant, 0, "e1", "C1", "2025-01-10T10:00:00")])
    read_states = store.read_states
    raced = []

    async def read_then_sweep(conn, tenant_id, customers):
        states = await read_states(conn, tenant_id, customers)
        if not raced:  # the first attempt: the customer lapses right after we read it
            raced.append(True)
            async with pool.acquire() as other:
                await Classifier(Settings(now=datetime(2025, 12, 1, tzinfo=UTC))).sweep(pool)
                assert (
                    await other.fetchval(
                        "SELECT segment FROM customer_states WHERE tenant_id = $1 AND scope = 'all'",
                        tenant,
                    )
                    == "first_lapsed"
                )
        return states

    monkeypatch.setattr(store, "read_states", read_then_sweep)
    comeback = [record(tenant, 1, "e2", "C1", "2025-12-05T10:00:00")]
    with pytest.raises(store.StaleState):
        await handle(pool, comeback)
    await handle(pool, comeback)  # what the consumer does: the same records again

    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT seq, segment, purchase_count FROM customer_states"
            " WHERE tenant_id = $1 AND customer_id = 'C1' AND scope = 'all'",
            tenant,
        )
    # first_active (1) → first_lapsed by the sweep (2) → two purchases 329 days apart,
    # 24,000 yen: steady_active (3). Nothing overwritten, nothing skipped.
    assert (row["seq"], row["segment"], row["purchase_count"]) == (3, "steady_active", 2)
