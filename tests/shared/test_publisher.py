"""``RecordPublisher``: placed records reach their partitions in order, with their keys and no
headers, and the acknowledged batches it returns tell where they went — also when one
partition's records fill several record batches."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka import ensure_topics, high_watermarks
from shared.publisher import RecordPublisher

pytestmark = pytest.mark.integration


async def read_partitions(bootstrap: str, topic: str) -> dict[int, list]:
    marks = await high_watermarks(bootstrap, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: dict[int, list] = {}
    try:
        consumer.assign(list(marks))
        for tp in marks:
            consumer.seek(tp, 0)
        while sum(len(v) for v in out.values()) < sum(marks.values()):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out.setdefault(tp.partition, []).extend(records)
    finally:
        await consumer.stop()
    return out


async def test_records_arrive_in_order_in_batches_that_fit(broker):
    topic = f"kizuna.publisher-test-{uuid.uuid4().hex[:8]}.v1"
    await ensure_topics(broker.bootstrap, 2, [topic])
    # 3 MB for partition 0: more than three record batches of max_batch_size (1 MiB)
    big = [
        (topic, 0, f"k{i % 7}".encode(), b'{"n": %d, "pad": "%s"}' % (i, b"x" * 3000))
        for i in range(1000)
    ]
    small = [(topic, 1, b"k", b'{"n": %d}' % i) for i in range(5)]
    publisher = RecordPublisher(broker.bootstrap)
    await publisher.start()
    try:
        batches = await publisher.publish(big + small)
    finally:
        await publisher.stop()

    per_partition = {p: [(b, n) for t, q, b, n in batches if q == p] for p in (0, 1)}
    assert len(per_partition[0]) >= 3 and sum(n for _, n in per_partition[0]) == 1000
    assert per_partition[1] == [(0, 5)]
    assert [b for b, _ in per_partition[0]] == sorted(b for b, _ in per_partition[0])

    read = await read_partitions(broker.bootstrap, topic)
    assert [(r.key, r.value) for r in read[0]] == [(k, v) for _, _, k, v in big]
    assert [(r.key, r.value) for r in read[1]] == [(k, v) for _, _, k, v in small]
    assert all(not r.headers for r in read[0] + read[1])
    marks = await high_watermarks(broker.bootstrap, [topic])
    assert marks[TopicPartition(topic, 0)] == 1000
