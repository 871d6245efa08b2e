"""Counters move with the database commit: a consumed batch whose transaction fails and is
retried counts once, like its effects; a rolled-back transaction counts nothing. Consumer lag is
reported per group and partition from the fetch responses' high-water marks."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from shared import metrics
from shared.deadletters import decode_records
from shared.events import PurchaseEvent
from shared.kafka import ensure_topics, new_producer
from tests.helpers import consuming, wait_for

pytestmark = pytest.mark.integration

TOPIC = "kizuna.metrics-test.v1"
WORK = metrics.Counter("kizuna_test_work_total", "Work done by the test handler", ["run"])


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_counted_moves_counters_only_when_the_transaction_commits(pool):
    run = uuid.uuid4().hex
    async with pool.acquire() as conn:
        async with metrics.counted(conn):
            WORK.labels(run).inc(2)
            assert sample("kizuna_test_work_total", run=run) == 0  # not before the commit
        assert sample("kizuna_test_work_total", run=run) == 2

        with pytest.raises(RuntimeError):
            async with metrics.counted(conn):
                WORK.labels(run).inc(5)
                raise RuntimeError("rolled back")
        assert sample("kizuna_test_work_total", run=run) == 2

        async with metrics.counted(conn):
            async with metrics.counted(conn):  # a savepoint: its work is the outer one's
                WORK.labels(run).inc(1)
            assert sample("kizuna_test_work_total", run=run) == 2
        assert sample("kizuna_test_work_total", run=run) == 3

    WORK.labels(run).inc()  # outside a transaction: at once
    assert sample("kizuna_test_work_total", run=run) == 4


async def test_a_retried_batch_counts_once(pool, broker):
    await ensure_topics(broker.bootstrap, 2, [TOPIC])
    service, group, run = f"svc-{uuid.uuid4().hex[:8]}", f"metrics-{uuid.uuid4().hex[:8]}", "b"
    producer = new_producer(broker.bootstrap)
    await producer.start()
    try:
        for i in range(4):
            event = {
                "event_id": f"{group}-{i}",
                "tenant_id": "t",
                "branch_id": "b",
                "customer_id": f"C{i}",
                "occurred_at": "2026-01-01T10:00:00+09:00",
                "amount": "100",
            }
            value = PurchaseEvent.model_validate(event).model_dump_json().encode()
            await producer.send_and_wait(TOPIC, value, key=f"t:C{i}".encode(), partition=i % 2)
        await producer.send_and_wait(TOPIC, b"{not json", key=b"t:bad", partition=0)
    finally:
        await producer.stop()

    attempts: list[int] = []

    async def handle(conn, records):
        events, dead = decode_records(records, PurchaseEvent, service)
        WORK.labels(run + group).inc(len(events))
        attempts.append(len(records))
        if len(attempts) == 1:
            raise OSError("the database went away mid-batch")

    async with consuming(pool, broker.bootstrap, TOPIC, handle, service=service, group=group):
        await wait_for(lambda: _all_read(pool, group), timeout=60, what="every record committed")
        await wait_for(lambda: _no_lag(service, group), timeout=30, what="lag reported as 0")

    assert len(attempts) >= 2  # the first transaction failed and was retried
    assert sample("kizuna_test_work_total", run=run + group) == 4
    assert sample("kizuna_events_in_total", service=service) == 5
    assert sample("kizuna_deadletters_total", service=service, topic=TOPIC) == 1
    assert sample("kizuna_batch_failures_total", service=service) == 1
    committed = sample("kizuna_batch_records_sum", service=service)
    assert committed == 5  # batch sizes of committed transactions only


async def _all_read(pool, group) -> bool:
    rows = await pool.fetch(
        "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1", group
    )
    return {r["partition"]: r["next_offset"] for r in rows} == {0: 3, 1: 2}


async def _no_lag(service, group) -> bool:
    lags = [
        REGISTRY.get_sample_value(
            "kizuna_consumer_lag_records",
            {"service": service, "group": group, "topic": TOPIC, "partition": str(p)},
        )
        for p in (0, 1)
    ]
    return lags == [0, 0]
