"""The consumer failing outside a batch's transaction (faststream would log the error and read
on past the batch): the batch is not skipped, ``run`` ends with the error (so the service stops
and restarts), and the next member reads from the offsets stored in PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.consumer import PgOffsetConsumer
from shared.kafka import ensure_topics
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


async def test_a_failing_consumer_stops_and_skips_nothing(broker, pool, producer):
    topic = f"kizuna.failure-test-{uuid.uuid4().hex[:8]}.v1"
    group = f"failure-{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker.bootstrap, 1, [topic])
    for i in range(3):
        await producer.send_and_wait(topic, key=b"k", value=f"m{i}".encode())
    seen: dict[int, bytes] = {}

    async def handle(conn, records):
        seen.update((r.offset, r.value) for r in records)

    def member() -> PgOffsetConsumer:
        return PgOffsetConsumer(
            service="test",
            bootstrap=broker.bootstrap,
            group_id=group,
            topics=[topic],
            pool=pool,
            handle=handle,
            session_timeout_ms=2000,
        )

    broken = member()

    async def cannot_ask_the_broker():
        raise RuntimeError("simulated bug outside the handler")

    broken._same_broker = cannot_ask_the_broker
    await broken.start()
    try:
        with pytest.raises(RuntimeError, match="simulated bug"):
            await asyncio.wait_for(broken.run(asyncio.Event()), 30)
    finally:
        await broken.stop()
    assert seen == {}
    assert (
        await pool.fetchval("SELECT count(*) FROM consumer_offsets WHERE group_id = $1", group) == 0
    )

    healthy = member()
    await healthy.start()
    stop = asyncio.Event()
    task = asyncio.create_task(healthy.run(stop))
    try:
        await wait_for(lambda: _all_read(seen), what="the batch read again by the next member")
    finally:
        stop.set()
        await task
        await healthy.stop()
    assert seen == {0: b"m0", 1: b"m1", 2: b"m2"}


async def _all_read(seen):
    return len(seen) >= 3
