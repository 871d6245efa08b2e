"""What Kizuna needs from Kafka beyond faststream.

The services consume and publish through faststream (``shared.consumer``,
``shared.publisher``, aiokafka underneath). What is left here is what faststream does not do:

- ``cluster_id`` / ``cluster_of``: which broker answers. A restarted embedded broker has a new,
  empty log and a new cluster id, and stored offsets are only good for the broker they were
  stored for (the consumers' reset detection, the broker replay in ``shared.replay``).
- ``ensure_topics``: the topics with their final partition count, created before anything runs
  (Tansu cannot add partitions later; faststream would create them with its defaults).
- ``high_watermarks`` / ``group_lag``: lag from fetch responses against the offsets stored in
  PostgreSQL (Tansu's ListOffsets answers are wrong; the group's Kafka offsets are not the
  truth).
- the producer settings every producer shares, a bare producer for tools that write records
  as they are (benches, tests), and the codec that keeps faststream from decoding bodies one
  record at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import asyncpg
from aiokafka import (
    AIOKafkaClient,
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.metadata import MetadataRequest

from shared.events import ALL_TOPICS

log = logging.getLogger("kizuna.kafka")


async def cluster_id(bootstrap: str) -> str:
    """The broker's cluster id: a restarted embedded broker gets a new one."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await client.bootstrap()
        response = await client.send(client.get_random_node(), MetadataRequest([]))
        return getattr(response, "cluster_id", None) or "unknown"
    finally:
        await client.close()


async def cluster_of(client: AIOKafkaClient) -> str:
    """The cluster id of the broker an open client talks to (a metadata request naming no
    topic: one small round trip on its connection)."""
    node = client.get_random_node()
    if node is None:
        await client.force_metadata_update()
        node = client.get_random_node()
    response = await client.send(node, MetadataRequest([]))
    return getattr(response, "cluster_id", None) or "unknown"


async def ensure_topics(
    bootstrap: str, partitions: int, topics: Sequence[str] = ALL_TOPICS
) -> None:
    """Create the topics with their final partition count (Tansu cannot add partitions later)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


# No idempotent producer: Tansu refuses InitProducerId. Duplicates from retries are made
# harmless downstream (event_id in the event store, seq in the consumers).
PRODUCER_OPTIONS = dict(
    acks="all",
    enable_idempotence=False,
    linger_ms=5,
    max_batch_size=1 << 20,
    request_timeout_ms=10000,
)


def new_producer(bootstrap: str, **overrides) -> AIOKafkaProducer:
    """A bare aiokafka producer, for tools that write records as they are (the benches' feeds,
    the tests); the services publish through ``RecordPublisher``."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **{**PRODUCER_OPTIONS, **overrides})


class _AsIs:
    """The consumers' faststream codec: it leaves bodies as they are.

    A batch subscriber's handler gets the message itself, whose raw records the service decodes
    in bulk against its contract model (``decode_records``); faststream's default decoder would
    parse every record's JSON once more and build an object per record — per-record work on the
    hot path, for nothing. (The encode half is the codec protocol's; nothing publishes through
    it: ``RecordPublisher`` appends to record batches itself.)"""

    async def encode(self, msg, serializer=None):
        return msg, None

    async def encode_batch(self, msgs, serializer=None):
        return [(m, None) for m in msgs]

    async def decode(self, msg):
        return msg

    async def decode_batch(self, msg):
        return msg


AS_IS = _AsIs()
# faststream logs every message it handles ("Received", "Processed") at the broker's log level:
# debug here, one line per batch when asked for; its errors still reach this logger.
FASTSTREAM_LOG = logging.getLogger("kizuna.kafka.faststream")


class _TopicsExist(logging.Filter):
    """faststream warns at every consumer's start that a consumer-only broker does not create
    topics; Kizuna creates them, with their partition counts, before anything runs
    (``ensure_topics``), so the warning would only send operators looking for a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Topic creation is skipped in consumer-only")


FASTSTREAM_LOG.addFilter(_TopicsExist())


async def high_watermarks(
    bootstrap: str, topics: Sequence[str], timeout: float = 10
) -> dict[TopicPartition, int]:
    """High-water marks as fetch responses report them (Tansu's ListOffsets answers are wrong)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_bytes=1 << 16
    )
    await consumer.start()
    try:
        parts = [
            TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())
        ]
        if not parts:
            await consumer._client.force_metadata_update()
            parts = [
                TopicPartition(t, p)
                for t in topics
                for p in (consumer.partitions_for_topic(t) or ())
            ]
        consumer.assign(parts)
        reported = await consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, max(0, reported.get(tp, 0) - 1))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(consumer.highwater(tp) is not None for tp in parts):
                break
            await consumer.getmany(timeout_ms=200, max_records=1)
        return {tp: consumer.highwater(tp) or 0 for tp in parts}
    finally:
        await consumer.stop()


async def group_lag(
    pool: asyncpg.Pool, bootstrap: str, group_id: str, topics: Sequence[str]
) -> int:
    """Records not yet processed by a group that keeps its offsets in PostgreSQL."""
    marks = await high_watermarks(bootstrap, topics)
    current = await cluster_id(bootstrap)
    rows = await pool.fetch(
        "SELECT topic, partition, next_offset, cluster_id FROM consumer_offsets WHERE group_id = $1",
        group_id,
    )
    done = {
        (r["topic"], r["partition"]): r["next_offset"] for r in rows if r["cluster_id"] == current
    }
    return sum(max(0, hw - done.get((tp.topic, tp.partition), 0)) for tp, hw in marks.items())
