"""faststream's batch loop sleeps after an empty poll, and a record that arrives meanwhile waits
the sleep out on every hop; ``PgOffsetConsumer`` has faststream poll through its own ``_poll``,
which waits for records instead. If faststream stops polling through ``get_msg`` (a rename in a
new release), the sleep and its latency come back silently: these tests fail first."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.consumer import PgOffsetConsumer
from shared.kafka import ensure_topics
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def test_the_subscriber_polls_through_the_consumer():
    consumer = PgOffsetConsumer(
        service="test",
        bootstrap="127.0.0.1:9",
        group_id="poll-wiring",
        topics=["kizuna.poll-test.v1"],
        pool=None,  # type: ignore[arg-type]  # never started
        handle=None,  # type: ignore[arg-type]
    )
    assert consumer.subscriber.get_msg == consumer._poll
    assert callable(getattr(type(consumer.subscriber), "get_msg", None))


async def test_records_after_an_idle_spell_arrive_through_our_poll(broker, pool, producer):
    topic = f"kizuna.poll-test-{uuid.uuid4().hex[:8]}.v1"
    await ensure_topics(broker.bootstrap, 2, [topic])
    handled: list[bytes] = []

    async def handle(conn, records):
        handled.extend(r.value for r in records)

    consumer = PgOffsetConsumer(
        service="test",
        bootstrap=broker.bootstrap,
        group_id=f"poll-{uuid.uuid4().hex[:8]}",
        topics=[topic],
        pool=pool,
        handle=handle,
        session_timeout_ms=2000,
    )
    polls: list[int] = []
    ours = consumer._poll

    async def counted(aiokafka_consumer):
        records = await ours(aiokafka_consumer)
        polls.append(len(records))
        return records

    consumer.subscriber.get_msg = counted
    await consumer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await wait_for(lambda: _idle(polls), what="an empty poll on an idle topic")
        for i in range(3):
            await producer.send_and_wait(topic, key=f"k{i}".encode(), value=f"m{i}".encode())
        await wait_for(lambda: _handled(handled, 3), what="the three records handled")
    finally:
        stop.set()
        await task
        await consumer.stop()
    assert sorted(handled) == [b"m0", b"m1", b"m2"]
    assert sum(polls) == 3  # every record came through our poll


async def _idle(polls):
    return 0 in polls


async def _handled(handled, n):
    return len(handled) >= n
