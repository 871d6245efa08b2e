"""How ingest, the importer and the classifier's relay publish: ``RecordPublisher``, faststream
batch publishers on aiokafka, and ``Partitioner``, Kafka's default placement of a key."""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import Any

from aiokafka import (
    AIOKafkaClient,
)
from aiokafka.partitioner import murmur2
from faststream.kafka import KafkaBroker, KafkaPublishMessage

from shared.kafka import AS_IS, FASTSTREAM_LOG, PRODUCER_OPTIONS


def _no_correlation_id() -> str:
    # faststream gives every publish a correlation id, sent as a header on each record; nobody
    # reads it here (consumers key on the events' own fields), and per record it is bytes and
    # CPU on the hot path. Records carry no headers, as the contracts describe them.
    return ""


# A record batch's header, and each record's framing in it (length, attributes, offset and
# time deltas as varints, key and value lengths, header count): what a batch holds beyond its
# keys and values, counted generously so a batch that is cut by this estimate fits.
BATCH_HEAD_BYTES = 128
RECORD_FRAME_BYTES = 32


class _Keyed(KafkaPublishMessage):
    """A record for faststream's batch publish with its own key: the value and the key, and
    none of what a handler's response carries (headers, correlation id, time), which the batch
    path does not read. Made for every record the relay sends: the less it builds, the less
    the allocator and the garbage collector have to do on the hot path."""

    __slots__ = ()

    def __init__(self, value: bytes, key: bytes):  # Response.__init__ not called: see above
        self.body = value
        self.key = key


class RecordPublisher:
    """How ingest, the importer and the classifier's relay publish: a faststream broker that
    only produces (aiokafka underneath), with a batch publisher per topic.

    Records are placed by the caller (``(topic, partition, key, value)``: each producer has
    its placement) and sent as whole record batches per partition, in order within each;
    ``publish`` returns once the broker acknowledged all of them (``acks=all``). Per record
    there is only the append to a batch: aiokafka's per-message path (a future and a
    pure-Python murmur2 per record) capped the relay at about 40,000 records/s."""

    def __init__(self, bootstrap: str, **overrides):
        options = {**PRODUCER_OPTIONS, **overrides}
        self.batch_bytes = options["max_batch_size"] - BATCH_HEAD_BYTES
        self.broker = KafkaBroker(
            bootstrap,
            **options,
            codec=AS_IS,  # values are JSON already
            apply_types=False,
            id_generator=_no_correlation_id,
            logger=FASTSTREAM_LOG,
            log_level=logging.DEBUG,
        )
        self.to_topic: dict[str, Any] = {}

    async def start(self) -> None:
        await self.broker.connect()

    async def stop(self) -> None:
        await self.broker.stop()

    @property
    def client(self) -> AIOKafkaClient:
        """The producer's connection, to ask which broker answers (``cluster_of``)."""
        return self.broker.config.producer._producer.producer.client

    async def partitions_for(self, topic: str) -> set[int]:
        return await self.broker.config.producer._producer.producer.partitions_for(topic)

    async def publish(
        self, records: Iterable[tuple[str, int, bytes, bytes]]
    ) -> list[tuple[str, int, int, int]]:
        """Publish placed records; returns each acknowledged batch as (topic, partition, base
        offset, record count).

        Until a batch is sent, a record is its key and value in two lists (bytes, which the
        garbage collector does not track); the message objects faststream wants are made
        for one batch at a time and die young with it."""
        keys: dict[tuple[str, int], list[bytes]] = defaultdict(list)
        values: dict[tuple[str, int], list[bytes]] = defaultdict(list)
        for topic, partition, key, value in records:
            keys[topic, partition].append(key)
            values[topic, partition].append(value)
        sends: list[tuple[str, int, int, asyncio.Future]] = []
        for (topic, partition), place_keys in keys.items():
            place_values = values[topic, partition]
            for start, stop in self._fitting(place_keys, place_values):
                batch = map(_Keyed, place_values[start:stop], place_keys[start:stop])
                future = await self._publisher(topic).publish(
                    *batch, partition=partition, no_confirm=True
                )
                sends.append((topic, partition, stop - start, future))
        acknowledged = await asyncio.gather(*(future for *_, future in sends))
        return [
            (topic, partition, meta.offset, count)
            for (topic, partition, count, _), meta in zip(sends, acknowledged, strict=True)
        ]

    def _fitting(self, keys: list[bytes], values: list[bytes]) -> Iterator[tuple[int, int]]:
        """(start, stop) of runs of records that each fit one record batch
        (``max_batch_size``); a record larger than that goes alone."""
        sizes = zip(map(len, keys), map(len, values), strict=True)
        ends = list(accumulate(k + v + RECORD_FRAME_BYTES for k, v in sizes))
        start = 0
        while start < len(ends):
            used = ends[start - 1] if start else 0
            stop = max(bisect_right(ends, used + self.batch_bytes, lo=start), start + 1)
            yield start, stop
            start = stop

    def _publisher(self, topic: str):
        publisher = self.to_topic.get(topic)
        if publisher is None:
            publisher = self.to_topic[topic] = self.broker.publisher(topic, batch=True)
        return publisher


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
