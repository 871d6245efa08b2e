"""Kafka helpers on aiokafka: topics, producers, and the consumer that keeps its offsets in
PostgreSQL in the same transaction as its effects (exactly-once in the database).

Why aiokafka here rather than a faststream subscriber: our consumers must seek to offsets stored
in PostgreSQL when partitions are assigned, detect a broker whose log was reset, and hand a
whole multi-partition batch to one database transaction. aiokafka exposes exactly those hooks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from itertools import groupby
from operator import attrgetter
from typing import Any

import asyncpg
import orjson
from aiokafka import (
    AIOKafkaClient,
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2
from aiokafka.protocol.metadata import MetadataRequest
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaPublishMessage
from faststream.kafka.message import KafkaMessage
from pydantic import BaseModel, ValidationError

from shared import metrics
from shared.events import ALL_TOPICS, DEADLETTER, DeadLetter
from shared.logs import record_context

log = logging.getLogger("kizuna.kafka")

Handler = Callable[[asyncpg.Connection, list[ConsumerRecord]], Awaitable[None]]


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
        offset, record count)."""
        batches: dict[tuple[str, int], list] = {}
        sizes: dict[tuple[str, int], int] = {}
        sends: list[tuple[str, int, int, asyncio.Future]] = []
        for topic, partition, key, value in records:
            where = (topic, partition)
            size = len(key) + len(value) + RECORD_FRAME_BYTES
            batch = batches.get(where)
            if batch is None:
                batch = batches[where] = []
                sizes[where] = 0
            elif sizes[where] + size > self.batch_bytes:
                await self._send(topic, partition, batch, sends)
                batch = batches[where] = []
                sizes[where] = 0
            batch.append(KafkaPublishMessage(value, key=key))
            sizes[where] += size
        for (topic, partition), batch in batches.items():
            await self._send(topic, partition, batch, sends)
        acknowledged = await asyncio.gather(*(future for *_, future in sends))
        return [
            (topic, partition, meta.offset, count)
            for (topic, partition, count, _), meta in zip(sends, acknowledged, strict=True)
        ]

    async def _send(self, topic: str, partition: int, batch: list, sends: list) -> None:
        publisher = self.to_topic.get(topic)
        if publisher is None:
            publisher = self.to_topic[topic] = self.broker.publisher(topic, batch=True)
        future = await publisher.publish(*batch, partition=partition, no_confirm=True)
        sends.append((topic, partition, len(batch), future))


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


def deadletter_row(service: str, record: ConsumerRecord, reason: str) -> tuple[str, str, str]:
    """An outbox row that sends an unprocessable record to the dead-letter topic."""
    value = record.value.decode("utf-8", "replace") if record.value else ""
    key = record.key.decode("utf-8", "replace") if record.key else ""
    letter = DeadLetter(
        service=service,
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        value=value,
        reason=reason,
        failed_at=datetime.now(UTC),
    )
    return DEADLETTER, key, letter.model_dump_json()


def decode_records(
    records: Sequence[ConsumerRecord],
    model: type[BaseModel],
    service: str,
    check: Callable[[BaseModel], str | None] | None = None,
) -> tuple[list, list[tuple[str, str, str]]]:
    """Records validated against a contract model; what cannot be used (not the model, or
    ``check`` names a problem) becomes a dead-letter outbox row with the reason."""
    values, dead = [], []
    for record in records:
        try:
            value = model.model_validate_json(record.value or b"")
        except ValidationError as exc:
            reason = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                + (f" (got {e['input']!r})" if e["type"] == "literal_error" else "")
                for e in exc.errors()
            )
        else:
            reason = check(value) if check else None
            if reason is None:
                values.append(value)
                continue
        dead.append(deadletter_row(service, record, reason))
        metrics.DEADLETTERS.labels(service, record.topic).inc()
        log.warning(
            "dead-lettered %s[%s]@%s: %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            extra=record_context(record.topic, record.partition, record.offset, record.key),
        )
    return values, dead


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def pack_outbox(rows: Sequence[tuple[str, str, str | bytes]]) -> bytearray:
    """Records as one outbox value: a line per record, ``topic TAB key-as-JSON TAB payload``.

    Payloads are JSON, where a raw newline can only be whitespace between tokens, so turning it
    into a space keeps the value and the line structure. Built in one growing buffer: a batch's
    records are megabytes, and a list of lines plus a join would hold them twice."""
    heads: dict[tuple[str, str], bytes] = {}
    out = bytearray()
    for topic, key, payload in rows:
        head = heads.get((topic, key))
        if head is None:
            head = heads[(topic, key)] = b"%s\t%s\t" % (topic.encode(), orjson.dumps(key))
        value = _bytes(payload)
        if b"\n" in value:
            value = value.replace(b"\n", b" ")
        if out:
            out += b"\n"
        out += head
        out += value
    return out


def unpack_outbox(records: bytes) -> Iterator[tuple[str, bytes, bytes]]:
    """The (topic, key, payload) records of one outbox value, in the order they were written
    (one at a time: the relay hands each to the producer before taking the next)."""
    start = 0
    end = len(records)
    while start < end:
        stop = records.find(b"\n", start)
        if stop < 0:
            stop = end
        topic_end = records.index(b"\t", start, stop)
        key_end = records.index(b"\t", topic_end + 1, stop)
        yield (
            records[start:topic_end].decode(),
            orjson.loads(records[topic_end + 1 : key_end]).encode(),
            records[key_end + 1 : stop],
        )
        start = stop + 1


OUTBOX_RECORDS_PER_ROW = 1000


async def write_outbox(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, str, str | bytes]]
) -> None:
    """Queue records for the relay in the caller's transaction: one outbox row per thousand
    records, packed one row at a time as COPY streams them (a batch's records are megabytes;
    packing them all at once held them twice more)."""
    if rows:
        counts: dict[str, int] = {}
        for topic, _, _ in rows:
            counts[topic] = counts.get(topic, 0) + 1
        for topic, n in counts.items():  # inside ``metrics.counted``: once they commit
            metrics.OUTBOX_WRITTEN.labels(topic).inc(n)
        step = OUTBOX_RECORDS_PER_ROW
        await conn.copy_records_to_table(
            "outbox",
            records=(
                (pack_outbox(rows[i : i + step]), len(rows[i : i + step]))
                for i in range(0, len(rows), step)
            ),
            columns=["records", "record_count"],
        )


async def pending_outbox(conn: asyncpg.Connection | asyncpg.Pool) -> list[tuple[str, str, str]]:
    """Every record still waiting for the relay, oldest first, as (topic, key, payload) text."""
    rows = await conn.fetch("SELECT records FROM outbox ORDER BY id")
    return [
        (topic, key.decode(), payload.decode())
        for r in rows
        for topic, key, payload in unpack_outbox(r["records"])
    ]


class _SeekFromDatabase(ConsumerRebalanceListener):
    """The subscriber's ``listener=``: where to read is what PostgreSQL says, not Kafka."""

    def __init__(self, owner: PgOffsetConsumer):
        self.owner = owner

    async def on_partitions_revoked(self, revoked):
        self.owner.forget(revoked)

    async def on_partitions_assigned(self, assigned):
        await self.owner.seek_assigned(assigned)


class _AsIs:
    """A faststream codec that leaves bodies as they are.

    Publishers hand over bytes already encoded (in bulk by ingest and the importer, packed in
    the outbox by the classifier and the consumers); a batch subscriber's handler gets the
    message itself, whose raw records the service decodes in bulk against its contract model
    (``decode_records``). faststream's default would parse every record's JSON once more and
    build an object per record: per-record work on the hot path, for nothing."""

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


class PgOffsetConsumer:
    """A consumer group member: a faststream batch subscriber (aiokafka underneath) that hands
    each batch to ``handle`` inside one PostgreSQL transaction, storing the next offsets in
    ``consumer_offsets`` in that same transaction.

    Acknowledgement is manual: the offsets in PostgreSQL are the truth, sought on every
    partition assignment (the subscriber's ``listener=``); the commit to Kafka after a batch is
    for lag tooling only. A crash anywhere replays from the stored offsets; handlers are
    idempotent, so nothing is lost or counted twice. A broker whose cluster id differs from
    the stored one (a restarted embedded broker has a new, empty log) is read from the
    beginning.
    """

    def __init__(
        self,
        *,
        service: str,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        pool: asyncpg.Pool,
        handle: Handler,
        batch_size: int = 5000,
        session_timeout_ms: int = 6000,
        idle_wait_ms: int = 20,
        parallel: int = 1,
        fetch_max_wait_ms: int = 50,
        committed: Callable[[], None] | None = None,
    ):
        self.service = service
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = list(topics)
        self.pool = pool
        self.handle = handle
        self.committed = committed  # called after each batch's transaction has committed
        self.parallel = max(1, parallel)
        self.cluster: str | None = None
        self.broker = KafkaBroker(
            bootstrap,
            consumer_only=True,  # no producer, no admin client: topics exist (ensure_topics)
            apply_types=False,  # the handler takes the message as it is: nothing to validate
            codec=AS_IS,
            logger=FASTSTREAM_LOG,
            log_level=logging.DEBUG,
            graceful_timeout=30,  # on stop, the batch in hand is finished and committed
        )
        self.subscriber = self.broker.subscriber(
            *self.topics,
            batch=True,
            max_records=batch_size,
            max_poll_records=batch_size,
            # An empty fetch makes faststream nap this long before it asks again, which a
            # record arriving meanwhile waits out: short, so that is no latency on a hop.
            batch_timeout_ms=idle_wait_ms,
            group_id=group_id,
            ack_policy=AckPolicy.MANUAL,
            listener=_SeekFromDatabase(self),
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(500, session_timeout_ms // 6),
            # How long the broker may hold an empty fetch. Tansu answers a waiting fetch only
            # when the wait ends, not when records arrive, so this is latency on every hop.
            fetch_max_wait_ms=fetch_max_wait_ms,
            max_partition_fetch_bytes=4 << 20,
            fetch_max_bytes=32 << 20,
        )
        self.subscriber(self.on_batch)
        self.assigned_once = asyncio.Event()
        self.reset_seen = False
        self.healthy = False
        self.backoff = 0.5
        self.positions: dict[TopicPartition, int] = {}
        metrics.declare(metrics.EVENTS_IN, (service,))
        metrics.declare(metrics.BATCH_FAILURES, (service,))
        metrics.declare(metrics.BROKER_RESETS, (service,))
        metrics.declare(metrics.DEADLETTERS, *((service, t) for t in self.topics))

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        """The subscriber's aiokafka consumer (None until started)."""
        return self.subscriber.consumer

    @property
    def backlog(self) -> int | None:
        """Records of this member's partitions not processed yet, as the last fetches saw them;
        None until every assigned partition has been fetched once (a member that has not looked
        yet does not know it is caught up)."""
        consumer = self.consumer
        if consumer is None or not self.assigned_once.is_set():
            return None
        backlog = 0
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                return None
            backlog += max(0, high - self.positions.get(tp, high))
        return backlog

    async def seek_assigned(self, assigned) -> None:
        # the broker may have been restarted (a new, empty log) since this consumer started
        self.cluster = await cluster_of(self.consumer._client)
        wait = 0.5
        while True:
            # Until PostgreSQL answers: without the stored offsets, reading would start where
            # the broker's own group offsets say, which are not the truth.
            try:
                rows = await self.pool.fetch(
                    "SELECT topic, partition, next_offset, cluster_id FROM consumer_offsets"
                    " WHERE group_id = $1 AND topic = ANY($2::text[])",
                    self.group_id,
                    self.topics,
                )
                break
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("%s: cannot read the stored offsets (%s); retrying", self.group_id, exc)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 5)
        stored = {(r["topic"], r["partition"]): r for r in rows}
        for tp in assigned:
            row = stored.get((tp.topic, tp.partition))
            if row is not None and row["cluster_id"] == self.cluster:
                self.consumer.seek(tp, row["next_offset"])
                self.positions[tp] = row["next_offset"]
            else:
                if row is not None:
                    log.warning(
                        "%s: broker %s is not the one offsets were stored for (%s): reading %s from the beginning",
                        self.group_id,
                        self.cluster,
                        row["cluster_id"],
                        tp,
                        extra={
                            "group": self.group_id,
                            "topic": tp.topic,
                            "partition": tp.partition,
                        },
                    )
                    metrics.BROKER_RESETS.labels(self.service).inc()
                self.positions.pop(tp, None)
                await self.consumer.seek_to_beginning(tp)
        self.healthy = True  # a member with nothing to read yet is ready
        self.assigned_once.set()

    def forget(self, revoked) -> None:
        """Partitions this member no longer reads: their lag is another member's to report."""
        for tp in revoked:
            self.positions.pop(tp, None)
            with suppress(KeyError):
                metrics.CONSUMER_LAG.remove(
                    self.service, self.group_id, tp.topic, str(tp.partition)
                )

    async def start(self) -> None:
        """Join the group; faststream's loop fetches and calls ``on_batch`` from here on."""
        self.cluster = await cluster_id(self.bootstrap)
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain: the batch in hand is finished (and its
        offsets stored) before the member leaves its group."""
        await stop.wait()
        await self.broker.stop()

    async def on_batch(self, message: KafkaMessage) -> None:
        """One fetched batch (faststream's ``max_records``, over the partitions this member
        reads); a failed batch is fetched again from its first offsets."""
        batches = by_partition(message.raw_message)
        self._observe_lag(batches)
        broker = await self._same_broker()
        if broker is None:
            if self.reset_seen:  # where the new broker's offsets say (its beginning)
                self.reset_seen = False
                await self.seek_assigned(self.consumer.assignment())
            else:  # not processed: fetched again
                await message.nack()
            return
        failed = await self._process_in_groups(batches, broker)
        if failed:
            # Database or network trouble heals; a bug in a handler does not, but retrying
            # keeps the records (never skipped) and readiness reports the service unhealthy.
            self.healthy = False
            for group, exc in failed:
                metrics.BATCH_FAILURES.labels(self.service).inc()
                expected = isinstance(exc, (asyncpg.PostgresError, OSError, TimeoutError))
                starts = {tp: part[0].offset for tp, part in group.items()}
                log.warning(
                    "%s: batch failed (%r); retrying %s in %.1fs",
                    self.group_id,
                    exc,
                    ", ".join(f"{partition_of(tp)}@{o}" for tp, o in starts.items()),
                    self.backoff,
                    exc_info=exc if not expected else None,
                    extra={
                        "group": self.group_id,
                        "topic": ",".join(sorted({tp.topic for tp in starts})),
                        "offsets": {partition_of(tp): o for tp, o in starts.items()},
                    },
                )
                # only the failed groups' partitions: the others' transactions committed
                for tp, offset in starts.items():
                    self.consumer.seek(tp, offset)
            await asyncio.sleep(self.backoff)
            self.backoff = min(self.backoff * 2, 10)
            return
        self.backoff = 0.5
        self.healthy = True
        if broker != self.cluster:
            return  # the batch came from a broker that has since been replaced
        try:  # for lag tooling only; the truth is in PostgreSQL
            await message.ack()
        except KafkaError as exc:
            log.debug("kafka commit skipped: %s", exc)

    async def _same_broker(self) -> str | None:
        """The broker the records just fetched came from, or None when that is not certain.

        The cluster id was known (``self.cluster``) before the fetch; the same id after it
        means the same broker throughout. A different one: the broker was restarted with an
        empty log, and its offsets mean other records — the batch is dropped and every
        partition is read again from where the new broker's offsets say (its beginning).

        The batch's offsets are stored under the id returned here, not under ``self.cluster``
        as it is at commit time: a rebalance onto a new broker while the batch is processed
        changes ``self.cluster``, and the old broker's offsets must not pass for the new one's
        (the replay log in PostgreSQL is pruned by them)."""
        try:
            now = await cluster_of(self.consumer._client)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("%s: cannot ask the broker its cluster id (%s)", self.group_id, exc)
            await asyncio.sleep(0.5)
            return None
        if now == self.cluster:
            return now
        log.warning(
            "%s: the broker was reset (%s -> %s): reading the new log from its start",
            self.group_id,
            self.cluster,
            now,
        )
        self.reset_seen = True
        return None

    async def _process_in_groups(self, batches, broker: str) -> list[tuple[dict, BaseException]]:
        """Process a fetched batch as ``parallel`` transactions over disjoint partitions.

        Partitions are keyed by customer, so the groups touch disjoint customers: while one
        transaction waits for PostgreSQL, the event loop classifies the next group. Returns the
        groups that failed (their partitions are replayed; the others are committed).
        """
        parts = sorted(batches.items(), key=lambda item: (item[0].topic, item[0].partition))
        groups = [dict(parts[i :: self.parallel]) for i in range(min(self.parallel, len(parts)))]
        results = await asyncio.gather(
            *(self._process(g, broker) for g in groups), return_exceptions=True
        )
        failed = [
            (g, r) for g, r in zip(groups, results, strict=True) if isinstance(r, BaseException)
        ]
        for _, r in failed:
            if not isinstance(r, Exception):  # cancellation and the like: not ours to retry
                raise r
        return failed

    async def _process(self, batches, broker: str) -> None:
        records = [r for part in batches.values() for r in part]
        started = time.perf_counter()
        async with self.pool.acquire() as conn, metrics.counted(conn):
            metrics.EVENTS_IN.labels(self.service).inc(len(records))
            await self.handle(conn, records)
            await conn.executemany(
                "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, cluster_id)"
                " VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (group_id, topic, partition) DO UPDATE"
                " SET next_offset = EXCLUDED.next_offset, cluster_id = EXCLUDED.cluster_id, updated_at = now()",
                [
                    (self.group_id, tp.topic, tp.partition, part[-1].offset + 1, broker)
                    for tp, part in batches.items()
                ],
            )
        metrics.BATCH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        metrics.BATCH_RECORDS.labels(self.service).observe(len(records))
        if self.committed is not None:
            self.committed()  # after the commit: what the batch wrote is visible now

    def _observe_lag(self, batches) -> None:
        for tp, part in batches.items():
            self.positions[tp] = part[-1].offset + 1
        for tp in self.consumer.assignment():
            high, position = self.consumer.highwater(tp), self.positions.get(tp)
            if high is not None and position is not None:
                metrics.CONSUMER_LAG.labels(
                    self.service, self.group_id, tp.topic, str(tp.partition)
                ).set(max(0, high - position))


def by_partition(records: Sequence[ConsumerRecord]) -> dict[TopicPartition, list[ConsumerRecord]]:
    """A batch's records by partition, in offset order within each (as fetched)."""
    batches: dict[TopicPartition, list[ConsumerRecord]] = {}
    for (topic, partition), part in groupby(records, key=_PLACE):
        batches.setdefault(TopicPartition(topic, partition), []).extend(part)
    return batches


_PLACE = attrgetter("topic", "partition")


def partition_of(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


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
