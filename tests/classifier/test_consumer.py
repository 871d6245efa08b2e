"""The classifier on the real broker and PostgreSQL: HTTP ingest → Kafka → classifier →
outbox → relay → topics, in-process."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from services.classifier.app import app as classifier_app
from services.classifier.clock import Clock
from services.ingest.app import app as ingest_app
from shared.cpm import Rules
from shared.events import DEADLETTER, SEGMENT_CHANGES
from shared.kafka import new_producer
from shared.settings import Settings
from shared.tenants import save_rules
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def running(broker, database_url):
    async with (
        classifier_app.router.lifespan_context(classifier_app),
        ingest_app.router.lifespan_context(ingest_app),
    ):
        await wait_for(lambda: _assigned(), timeout=30, what="classifier partitions assigned")
        yield


async def _assigned():
    return classifier_app.state.consumer.assigned_once.is_set()


@pytest.fixture
async def ingest(auth):
    """The ingest app, called with an admin key of the test's tenant."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ingest_app), base_url="http://ingest", headers=auth
    ) as c:
        yield c


async def state_of(pool, tenant, customer, scope="all"):
    return await pool.fetchrow(
        "SELECT * FROM customer_states WHERE tenant_id = $1 AND customer_id = $2 AND scope = $3",
        tenant,
        customer,
        scope,
    )


async def read_topic(bootstrap, topic, predicate, want: int, timeout=20):
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(found) < want and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for r in records:
                    value = json.loads(r.value)
                    if predicate(value):
                        found.append(value)
    finally:
        await consumer.stop()
    return found


def ev(tenant, eid, customer, when, amount="10000", **kw):
    return {
        "event_id": eid,
        "tenant_id": tenant,
        "branch_id": kw.pop("branch", "shibuya"),
        "customer_id": customer,
        "occurred_at": when,
        "amount": amount,
        **kw,
    }


async def test_sales_returns_voids_duplicates_reach_state_and_topics(
    running, ingest, pool, broker, tenant
):
    events = [
        ev(tenant, "e1", "C1", "2026-01-10T10:00:00", "40000", order_id="o1"),
        ev(tenant, "e2", "C1", "2026-01-10T10:05:00+09:00", "5000", order_id="o1"),  # same order
        ev(tenant, "e3", "C1", "2026-03-01T12:00:00", "30000", order_id="o2", branch="umeda"),
        ev(
            tenant,
            "e4",
            "C1",
            "2026-03-05T12:00:00",
            "3000",
            kind="return",
            order_id="o2",
            branch="umeda",
        ),
        ev(tenant, "e5", "C1", "2026-04-01T12:00:00", "9000", order_id="o3"),
        ev(tenant, "e6", "C1", "2026-04-01T13:00:00", kind="void", order_id="o3"),
    ]
    r = await ingest.post("/v1/purchases", json={"events": events})
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 6}
    # redelivery of the same events: harmless
    r = await ingest.post("/v1/purchases", json={"events": events[:3]})
    assert r.status_code == 202

    async def settled():
        row = await state_of(pool, tenant, "C1")
        return (
            row
            if row and row["purchase_count"] == 2 and row["total_amount"] == Decimal(72000)
            else None
        )

    row = await wait_for(settled, what="C1's figures")
    assert row["segment"] == "fledgling_active"
    assert (
        str(row["first_purchase_on"]) == "2026-01-10"
        and str(row["last_purchase_on"]) == "2026-03-01"
    )
    umeda = await state_of(pool, tenant, "C1", "umeda")
    assert (umeda["purchase_count"], umeda["total_amount"], umeda["segment"]) == (
        1,
        Decimal(27000),
        "first_active",
    )
    assert await pool.fetchval("SELECT count(*) FROM purchases WHERE tenant_id = $1", tenant) == 6

    changes = await read_topic(
        broker.bootstrap,
        SEGMENT_CHANGES,
        lambda v: v["tenant_id"] == tenant and v["scope"] == "all",
        want=2,
    )
    assert [(c["from_segment"], c["to_segment"]) for c in changes][:2] == [
        (None, "first_active"),
        ("first_active", "fledgling_active"),
    ]
    assert [c["seq"] for c in changes] == sorted(c["seq"] for c in changes)


async def test_bad_items_are_named_and_nothing_is_sent(running, ingest, pool, tenant):
    events = [
        ev(tenant, "ok1", "C9", "2026-01-10T10:00:00"),
        ev(tenant, "bad1", "C9", "not-a-date"),
        {
            "event_id": "bad2",
            "branch_id": "x",
            "customer_id": "C9",
            "occurred_at": "2026-01-01T00:00:00",
            "amount": "-5",
        },
        ev(tenant, "bad3", "C9", "2026-01-10T10:00:00", kind="void"),
    ]
    r = await ingest.post("/v1/purchases", json={"events": events})
    assert r.status_code == 422
    problems = r.json()["error"]["problems"]
    assert {(p["index"], p["field"]) for p in problems} >= {
        (1, "occurred_at"),
        (2, "amount"),
        (3, ""),
    }
    assert any("order_id" in p["reason"] for p in problems if p["index"] == 3)
    r = await ingest.post("/v1/purchases", content=b"{nope")
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]
    other = await ingest.post(
        "/v1/purchases",
        json=ev("someone-else", "x1", "C9", "2026-01-10T10:00:00"),
    )
    # another tenant's event is refused by name (403), not taken as merely invalid
    assert other.status_code == 403 and other.json()["error"]["problems"][0]["field"] == "tenant_id"


async def test_ndjson_and_single_event(running, ingest, pool, tenant):
    lines = "\n".join(
        json.dumps(ev(tenant, f"n{i}", f"N{i}", "2026-02-01T09:00:00")) for i in range(3)
    )
    r = await ingest.post(
        "/v1/purchases",
        content=lines.encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert r.json() == {"accepted": 3}
    r = await ingest.post(
        "/v1/purchases",
        json=ev(tenant, "single", "N9", "2026-02-01T09:00:00"),
    )
    assert r.json() == {"accepted": 1}

    async def four():
        return (
            await pool.fetchval(
                "SELECT count(*) FROM customer_states WHERE tenant_id = $1 AND scope = 'all'",
                tenant,
            )
            == 4
        )

    await wait_for(four, what="four customers classified")


async def test_poison_message_goes_to_deadletter_with_reason(running, broker, tenant):
    producer = new_producer(broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            "kizuna.purchases.v1",
            key=f"{tenant}:X".encode(),
            value=b'{"event_id": "p1", "tenant_id": "' + tenant.encode() + b'"}',
        )
    finally:
        await producer.stop()
    letters = await read_topic(broker.bootstrap, DEADLETTER, lambda v: tenant in v["value"], want=1)
    assert letters and letters[0]["service"] == "classifier"
    assert "customer_id" in letters[0]["reason"] and "branch_id" in letters[0]["reason"]


async def test_lapse_clock_and_rules_change(running, ingest, pool, database_url, tenant):
    r = await ingest.post(
        "/v1/purchases",
        json={
            "events": [
                ev(tenant, "l1", "L1", "2026-01-05T10:00:00", "80000"),
                ev(tenant, "l2", "L1", "2026-09-01T10:00:00", "1000"),
            ]
        },
    )
    assert r.status_code == 202

    async def classified():
        row = await state_of(pool, tenant, "L1")
        return row if row and row["purchase_count"] == 2 else None

    row = await wait_for(classified, what="L1 classified")
    assert row["segment"] == "loyal_active"
    assert str(row["lapse_due_on"]) == "2027-04-29"  # 2026-09-01 + 240 days
    # move the clock: the day before the border nothing happens, on it the customer lapses
    day_before = Settings(database_url=database_url, now=datetime(2027, 4, 28, 12, 0))
    await Clock(day_before).sweep(pool)
    assert (await state_of(pool, tenant, "L1"))["segment"] == "loyal_active"
    on_the_day = Settings(database_url=database_url, now=datetime(2027, 4, 29, 0, 30))
    await Clock(on_the_day).sweep(pool)
    row = await state_of(pool, tenant, "L1")
    assert row["segment"] == "loyal_lapsed" and row["lapse_due_on"] is None
    # new borders: a longer lapse border makes the customer active again, cause 'rules'
    async with pool.acquire() as conn:
        version = await save_rules(conn, tenant, Rules(lapse_days=365), "Asia/Tokyo")
    await Clock(on_the_day).apply_rules(pool)
    row = await state_of(pool, tenant, "L1")
    assert (row["segment"], row["rules_version"]) == ("loyal_active", version)
    assert str(row["lapse_due_on"]) == str((datetime(2026, 9, 1) + timedelta(days=365)).date())
    assert (
        await pool.fetchval(
            "SELECT applied_rules_version FROM tenants WHERE tenant_id = $1", tenant
        )
        == version
    )
