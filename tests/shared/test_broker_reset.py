"""A restarted embedded broker has an empty log and a new cluster id: a consumer whose offsets
in PostgreSQL belong to the old broker reads the new log from the beginning instead of waiting
at an offset that no longer exists."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.consumer import PgOffsetConsumer
from shared.embedded import EmbeddedBroker
from shared.kafka import ensure_topics, new_producer
from tests.helpers import TMP, free_port, wait_for

pytestmark = pytest.mark.integration

TOPIC = "kizuna.reset-test.v1"


async def test_consumer_reads_a_reset_broker_from_the_beginning(pool):
    broker = EmbeddedBroker(free_port(), log_file=TMP / "tansu-reset.log")
    await broker.start()
    group = f"reset-{uuid.uuid4().hex[:8]}"
    try:
        await ensure_topics(broker.bootstrap, 1, [TOPIC])
        # an offset stored while the earlier broker ran; the new log is longer, so only the
        # cluster id tells that offset 1 here is not the old offset 1
        await pool.execute(
            "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, cluster_id)"
            " VALUES ($1, $2, 0, 1, 'kizuna-old-broker')",
            group,
            TOPIC,
        )
        producer = new_producer(broker.bootstrap)
        await producer.start()
        for i in range(3):
            await producer.send_and_wait(TOPIC, key=b"k", value=f"m{i}".encode())
        await producer.stop()

        # Keyed by offset, like every real handler is idempotent: a rebalance during the first
        # batch may hand the same records over again (at-least-once; exactly-once is the
        # handler's business), which must not hide where reading started.
        seen: dict[int, bytes] = {}
        first_offsets: list[int] = []

        async def handle(conn, records):
            first_offsets.append(records[0].offset)
            seen.update((r.offset, r.value) for r in records)

        consumer = PgOffsetConsumer(
            service="test",
            bootstrap=broker.bootstrap,
            group_id=group,
            topics=[TOPIC],
            pool=pool,
            handle=handle,
            session_timeout_ms=2000,
        )
        await consumer.start()
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            await wait_for(lambda: _done(seen), timeout=30, what="the new log read from its start")
        finally:
            stop.set()
            await task
            await consumer.stop()
        assert first_offsets[0] == 0  # not offset 1, which belonged to the old broker
        assert seen == {0: b"m0", 1: b"m1", 2: b"m2"}
        row = await pool.fetchrow(
            "SELECT next_offset, cluster_id FROM consumer_offsets WHERE group_id = $1", group
        )
        assert row["next_offset"] == 3 and row["cluster_id"] == broker.cluster_id
    finally:
        broker.stop()


async def _done(seen):
    return len(seen) >= 3
