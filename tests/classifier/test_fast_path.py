"""The classifier's fast path through PostgreSQL: the same feed classified with the fast path
and without it (the setting) publishes the same records and ends in the same states, and the
fast path was taken for the in-order sales of known customers."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import date, timedelta

import pytest
from aiokafka import ConsumerRecord

from services.classifier import store
from services.classifier.consumer import Classifier
from shared.settings import Settings

pytestmark = pytest.mark.integration


def feed(seed: int = 5) -> list[list[dict]]:
    """Batches of a chain's history, mostly in date order: sales of new orders (some of two
    lines, some split over two batches), other branches, returns, voids, a late event."""
    rnd = random.Random(seed)
    day0 = date(2025, 1, 1)
    batches: list[list[dict]] = []
    n = 0
    for d in range(0, 300, 10):
        batch = []
        for _ in range(12):
            n += 1
            customer = f"C{rnd.randrange(8)}"
            kind = rnd.choices(["sale", "return", "void"], [90, 6, 4])[0]
            order = f"o{n}" if kind == "sale" else f"o{rnd.randrange(1, n)}"
            when = day0 + timedelta(days=d + rnd.randrange(3))
            if rnd.random() < 0.03:
                when -= timedelta(days=40)  # late
            event = {
                "event_id": f"e{n}",
                "customer_id": customer,
                "branch_id": rnd.choice(["shibuya", "shibuya", "umeda"]),
                "occurred_at": f"{when}T12:00:00",
                "amount": str(rnd.randrange(500, 40_000)),
                "kind": kind,
                "order_id": order,
            }
            batch.append(event)
            if kind == "sale" and rnd.random() < 0.2:  # a second line of the order
                second = {**event, "event_id": f"e{n}b", "amount": "700"}
                (batch if rnd.random() < 0.5 else batches[-1] if batches else batch).append(second)
        batches.append(batch)
    return batches


def records(tenant: str, batch: list[dict], offset: int) -> list[ConsumerRecord]:
    out = []
    for i, e in enumerate(batch):
        value = json.dumps({**e, "tenant_id": tenant}).encode()
        key = f"{tenant}:{e['customer_id']}".encode()
        out.append(
            ConsumerRecord("kizuna.purchases.v1", 0, offset + i, 0, 0, key, value, None, 0, 0, [])
        )
    return out


async def test_the_fast_path_publishes_what_reading_every_event_publishes(
    pool, tenant, monkeypatch
):
    queued: dict[str, list] = {}
    queue_outbox = store.queue_outbox

    async def keep(conn, rows):
        for topic, key, value in rows:
            who = key.split(":", 1)[0]
            queued.setdefault(who, []).append(
                (topic, key.split(":", 1)[1], json.loads(value) | {"tenant_id": "-"})
            )
        await queue_outbox(conn, rows)

    monkeypatch.setattr(store, "queue_outbox", keep)
    now = "2026-01-01T12:00:00+09:00"
    fast = Classifier(Settings(classifier_fast_path=True, now=now))
    slow = Classifier(Settings(classifier_fast_path=False, now=now))
    fast_tenant, slow_tenant, beside = f"{tenant}f", f"{tenant}s", f"{tenant}b"

    async def handle(classifier, who, batch, offset):
        async with pool.acquire() as conn, conn.transaction():
            await classifier.handle(conn, records(who, batch, offset))

    offset = 0
    for batch in feed():
        # the fast classifier takes two batches at once, as it does (classifier_parallel)
        await asyncio.gather(
            handle(fast, fast_tenant, batch, offset), handle(fast, beside, batch, offset)
        )
        await handle(slow, slow_tenant, batch, offset)
        offset += len(batch)

    assert slow.fast_path_customers == 0
    assert fast.fast_path_customers > 20  # most batches: in-order sales of known customers
    assert queued[fast_tenant] == queued[slow_tenant] == queued[beside]
    assert len(queued[fast_tenant]) > 100

    async def states(who: str) -> list:
        rows = await pool.fetch(
            f"SELECT {store.STATE_COLUMNS}, {store.FOLD_COLUMNS} FROM customer_states"
            " WHERE tenant_id = $1 ORDER BY customer_id, scope",
            who,
        )
        return [tuple(r) for r in rows]

    assert await states(fast_tenant) == await states(slow_tenant) == await states(beside)
