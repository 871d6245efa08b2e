"""How ingest, the importer and the classifier's relay publish: ``RecordPublisher``, record
batches on the aiokafka producer of a faststream broker, and ``Partitioner``, Kafka's default
placement of a key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaClient, AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from faststream.kafka import KafkaBroker

from shared.kafka import FASTSTREAM_LOG, PRODUCER_OPTIONS


class RecordPublisher:
    """How ingest, the importer and the classifier's relay publish: a faststream broker that
    only produces (its aiokafka producer underneath), filled a record batch at a time.

    Records are placed by the caller (``(topic, partition, key, value)``: each producer has
    its placement) and sent as whole record batches per partition, in order within each;
    ``publish`` returns once the broker acknowledged all of them (``acks=all``).

    faststream owns the connection — its options, start, stop and logging — and the records go
    into record batches of the aiokafka producer it connected. Its batch publish
    (``publisher.publish(*messages)``) builds, per record, a message object, a key lookup, a
    headers dict and list, and a tuple from the codec: about 1 µs of CPU per record more,
    which doubled the relay's share of the classifier's CPU (docs/BENCHMARKS.md, "faststream
    as the runtime, on a quiet machine"). Here the only per-record work is the
    append to a batch, which also keeps the records as the contracts describe them: a key and
    a value, no headers (faststream's correlation id header included)."""

    def __init__(self, bootstrap: str, **overrides):
        self.broker = KafkaBroker(
            bootstrap,
            **{**PRODUCER_OPTIONS, **overrides},
            logger=FASTSTREAM_LOG,
            log_level=logging.DEBUG,
        )

    async def start(self) -> None:
        await self.broker.connect()

    async def stop(self) -> None:
        await self.broker.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        """The aiokafka producer faststream connected (faststream keeps it on its producer
        state; there is no public accessor in 0.7)."""
        return self.broker.config.producer._producer.producer

    @property
    def client(self) -> AIOKafkaClient:
        """The producer's connection, to ask which broker answers (``cluster_of``)."""
        return self.producer.client

    async def partitions_for(self, topic: str) -> set[int]:
        return await self.producer.partitions_for(topic)

    async def publish(
        self, records: Iterable[tuple[str, int, bytes, bytes]]
    ) -> list[tuple[str, int, int, int]]:
        """Publish placed records; returns each acknowledged batch as (topic, partition, base
        offset, record count). A record larger than a batch (``max_batch_size``) goes alone:
        aiokafka takes any first record into a batch."""
        producer = self.producer
        open_batches: dict[tuple[str, int], BatchBuilder] = {}
        sends: list[tuple[str, int, int, asyncio.Future]] = []

        async def send(topic: str, partition: int, batch: BatchBuilder) -> None:
            count = batch.record_count()
            future = await producer.send_batch(batch, topic, partition=partition)
            sends.append((topic, partition, count, future))

        for topic, partition, key, value in records:
            batch = open_batches.get((topic, partition))
            if batch is None:
                batch = open_batches[topic, partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                await send(topic, partition, batch)  # full
                batch = open_batches[topic, partition] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # a first fits
        for (topic, partition), batch in open_batches.items():
            await send(topic, partition, batch)
        acknowledged = await asyncio.gather(*(future for *_, future in sends))
        return [
            (topic, partition, meta.offset, count)
            for (topic, partition, count, _), meta in zip(sends, acknowledged, strict=True)
        ]

    async def send(
        self, records: Iterable[tuple[str, int, bytes, bytes]]
    ) -> list[tuple[str, int, int, int]]:
        """Publish placed records through the producer's shared open batches; returns each
        record's (topic, partition, offset, 1) once the broker acknowledged all of them.

        For many small publishes at once (ingest's HTTP requests): aiokafka sends a broker one
        produce request at a time with at most one batch per partition, so a batch per caller
        (``publish``) would wait behind every other caller's batch for that partition, a round
        trip each; appended to the open batches, concurrent callers' records travel together
        (as ingest sent them before faststream). The price is a future per record, which bulk
        publishers (the relay, the importer) avoid with ``publish``."""
        producer = self.producer
        futures = [
            await producer.send(topic, value, key=key, partition=partition)
            for topic, partition, key, value in records
        ]
        return [
            (meta.topic, meta.partition, meta.offset, 1) for meta in await asyncio.gather(*futures)
        ]


class Partitioner:
    """Kafka's default placement: murmur2 of the key over the sorted partitions (what aiokafka's
    and the Java client's default partitioner do), cached per key — a sales file names each
    customer many times and murmur2 is pure Python in aiokafka."""

    def __init__(self, partitions: Iterable[int]):
        self.partitions = sorted(partitions)
        if not self.partitions:
            raise ValueError("the topic has no partitions")
        self.cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        p = self.cache.get(key)
        if p is None:
            if len(self.cache) >= 1_000_000:
                self.cache.clear()
            p = self.partitions[(murmur2(key) & 0x7FFFFFFF) % len(self.partitions)]
            self.cache[key] = p
        return p
