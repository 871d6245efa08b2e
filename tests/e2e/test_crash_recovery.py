"""Kill the classifier with SIGKILL mid-stream, restart it, and get exactly the state that a
from-scratch recompute of the event store gives: nothing lost, nothing counted twice."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import date, timedelta

import pytest

from shared.cpm import Purchase
from shared.events import PURCHASES
from shared.kafka import group_lag, new_producer
from shared.timeline import Borders, timeline
from tests.helpers import wait_for
from tests.timelines import held, read_changes, segment_days, timeline_segment_days

pytestmark = pytest.mark.e2e

TODAY = date(2026, 11, 20)
NOW = "2026-11-20T12:00:00+09:00"


def stream(tenant: str, customers: int, rnd: random.Random) -> list[dict]:
    events = []
    n = 0
    for c in range(customers):
        orders = []
        for _ in range(rnd.randint(1, 12)):
            n += 1
            day = TODAY - timedelta(days=rnd.randint(0, 900))
            order = f"o{n}"
            orders.append(order)
            events.append(
                {
                    "event_id": f"e{n}",
                    "tenant_id": tenant,
                    "branch_id": rnd.choice(["b1", "b2", "b3"]),
                    "customer_id": f"C{c:05d}",
                    "occurred_at": f"{day}T10:00:00",
                    "amount": str(rnd.randint(500, 40000)),
                    "order_id": order,
                }
            )
            if rnd.random() < 0.05:
                n += 1
                events.append(
                    {**events[-1], "event_id": f"e{n}", "kind": "return", "amount": "300"}
                )
            if rnd.random() < 0.03:
                n += 1
                events.append({**events[-1], "event_id": f"e{n}", "kind": "void", "amount": "0"})
    events += rnd.sample(events, k=len(events) // 10)  # duplicates
    rnd.shuffle(events)  # late and out of order
    return events


async def produce(bootstrap: str, events: list[dict]) -> None:
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        futures = [
            await producer.send(
                PURCHASES,
                key=f"{e['tenant_id']}:{e['customer_id']}".encode(),
                value=json.dumps(e).encode(),
            )
            for e in events
        ]
        for f in futures:
            await f
    finally:
        await producer.stop()


async def test_sigkill_mid_stream_loses_and_doubles_nothing(services, broker, pool, tenant):
    rnd = random.Random(20261120)
    events = stream(tenant, 1500, rnd)
    unique = {e["event_id"] for e in events}
    env = {
        "KIZUNA_NOW": NOW,
        "KIZUNA_CLASSIFIER_BATCH_SIZE": "400",
        "KIZUNA_CONSUMER_BATCH_SIZE": "400",
    }
    classifier = services("classifier", **env)
    reports = services("reports", **env)
    classifier.start()
    reports.start()
    await classifier.ready()
    await reports.ready()
    await produce(broker.bootstrap, events)

    async def some_stored():
        return (
            await pool.fetchval("SELECT count(*) FROM purchases WHERE tenant_id = $1", tenant)
            >= len(unique) // 4
        )

    for _ in range(2):  # kill it twice, at different points of the stream
        await wait_for(
            some_stored, timeout=120, interval=0.02, what="part of the stream classified"
        )
        classifier.kill()
        classifier.start()
        await classifier.ready()

    async def idle():
        if await pool.fetchval("SELECT count(*) FROM outbox"):
            return False
        # the lapse clock has caught up too (it may still be writing its last changes)
        if await pool.fetchval(
            "SELECT count(*) FROM customer_states WHERE tenant_id = $1 AND lapse_due_on <= $2",
            tenant,
            TODAY,
        ):
            return False
        for group, topic in (
            ("kizuna-classifier", PURCHASES),
            ("kizuna-reports", "kizuna.customer-states.v1"),
        ):
            if await group_lag(pool, broker.bootstrap, group, [topic]):
                return False
        return True

    await wait_for(idle, timeout=240, interval=0.5, what="the pipeline to drain")

    # 1. the event store holds every event exactly once
    assert await pool.fetchval(
        "SELECT count(*) FROM purchases WHERE tenant_id = $1", tenant
    ) == len(unique)
    # 2. every state equals a from-scratch recompute of the event store
    rows = await pool.fetch(
        "SELECT customer_id, event_id, kind, branch_id, occurred_on, amount, order_id FROM purchases WHERE tenant_id = $1",
        tenant,
    )
    by_customer = defaultdict(list)
    for r in rows:
        by_customer[r["customer_id"]].append(
            Purchase(
                r["event_id"],
                r["kind"],
                r["branch_id"],
                r["occurred_on"],
                r["amount"],
                r["order_id"],
            )
        )
    states = {
        (r["customer_id"], r["scope"]): r
        for r in await pool.fetch("SELECT * FROM customer_states WHERE tenant_id = $1", tenant)
    }
    checked = 0
    scratch = {}
    for customer, purchases in by_customer.items():
        for scope in {"all"} | {p.branch_id for p in purchases}:
            entries = timeline(purchases, scope, Borders(), TODAY)
            figures, segment = (
                (entries[-1].figures, entries[-1].segment) if entries else (None, None)
            )
            scratch[(customer, scope)] = entries
            state = states.get((customer, scope))
            if figures is None:
                assert state is None or state["segment"] is None
                continue
            assert (state["segment"], state["purchase_count"], state["total_amount"]) == (
                segment,
                figures.purchase_count,
                figures.total_amount,
            ), (customer, scope)
            checked += 1
    assert checked > 1500
    # 3. the reports' aggregates equal the states, segment by segment
    expected = await pool.fetch(
        "SELECT scope, segment, count(*) AS customers, sum(total_amount) AS sales FROM customer_states"
        " WHERE tenant_id = $1 AND segment IS NOT NULL GROUP BY scope, segment ORDER BY scope, segment",
        tenant,
    )
    got = await pool.fetch(
        "SELECT scope, segment, customers, sales FROM portfolio_current WHERE tenant_id = $1 AND customers <> 0"
        " ORDER BY scope, segment",
        tenant,
    )
    assert [tuple(r) for r in got] == [tuple(r) for r in expected]
    # 4. no segment change lost, none doubled: per customer and scope, what a consumer holds
    # after applying corrections is the from-scratch timeline's moves
    chains = held(await read_changes(broker.bootstrap, tenant))
    for key, kept in chains.items():
        assert segment_days(kept) == timeline_segment_days(scratch[key]), key
        assert kept[-1]["to_segment"] == states[key]["segment"], key
    assert all(key in chains for key, s in states.items() if s["segment"])
