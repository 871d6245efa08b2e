"""The consumer group member every Kizuna consumer is: a faststream batch subscriber that keeps
its offsets in PostgreSQL, in the same transaction as its effects (exactly-once in the
database)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from itertools import chain, groupby
from operator import attrgetter

import asyncpg
from aiokafka import (
    AIOKafkaConsumer,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaAckableMessage, KafkaMessage

from shared import metrics
from shared.kafka import AS_IS, FASTSTREAM_LOG, cluster_id, cluster_of

log = logging.getLogger("kizuna.kafka")


Handler = Callable[[asyncpg.Connection, list[ConsumerRecord]], Awaitable[None]]


class _SeekFromDatabase(ConsumerRebalanceListener):
    """The subscriber's ``listener=``: where to read is what PostgreSQL says, not Kafka."""

    def __init__(self, owner: PgOffsetConsumer):
        self.owner = owner

    async def on_partitions_revoked(self, revoked):
        self.owner.forget(revoked)

    async def on_partitions_assigned(self, assigned):
        await self.owner.seek_assigned(assigned)


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
        poll_wait_ms: int = 200,
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
            client_id=f"kizuna-{service}",
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
            batch_timeout_ms=poll_wait_ms,
            group_id=group_id,
            ack_policy=AckPolicy.MANUAL,
            listener=_SeekFromDatabase(self),
            parser=self._as_message,
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
        # faststream's batch loop naps as long as a poll may wait (``batch_timeout_ms``) after
        # every empty poll, and a record arriving during the nap waits it out: +6 to +20 ms p50
        # and +17 to +50% p99 across the stack in paired `bench latency` runs (2026-12-06). Its
        # loop polls through this instead, which waits for records (up to ``poll_wait_ms``)
        # and, when none came, goes straight back to waiting.
        self.subscriber.get_msg = self._poll
        self.assigned_once = asyncio.Event()
        self.reset_seen = False
        self.healthy = False
        self.backoff = 0.5
        self.broken = asyncio.Event()
        self.failure: Exception | None = None
        self.positions: dict[TopicPartition, int] = {}
        metrics.declare(metrics.EVENTS_IN, (service,))
        metrics.declare(metrics.BATCH_FAILURES, (service,))
        metrics.declare(metrics.BROKER_RESETS, (service,))
        metrics.declare(metrics.DEADLETTERS, *((service, t) for t in self.topics))

    async def _poll(self, consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord, ...]:
        fetched = await consumer.getmany(
            timeout_ms=self.subscriber.batch_timeout_ms, max_records=self.subscriber.max_records
        )
        return tuple(chain.from_iterable(fetched.values()))

    async def _as_message(self, records: tuple[ConsumerRecord, ...]) -> KafkaAckableMessage:
        """A fetched batch as faststream's message: the records as they came. (faststream's own
        batch parser decodes every record's headers into a dict and lists every value, work the
        handler never reads: 1.4% of the classifier's CPU in a paired profile, 2026-12-06.)"""
        first, last = records[0], records[-1]
        return KafkaAckableMessage(
            raw_message=records,
            body=records,
            message_id=f"{first.topic}[{first.partition}]@{first.offset}-{last.offset}",
            consumer=self.consumer,
        )

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
        offsets stored) before the member leaves its group. A failure of the consumer itself
        (not of a batch's transaction, which is retried) ends it: the service stops, as it does
        when any background task ends (``shared.service.supervised``), and its next start
        resumes from PostgreSQL."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.broken.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await self.broker.stop()
        if self.failure is not None:
            raise self.failure

    async def on_batch(self, message: KafkaMessage) -> None:
        """faststream's handler: one fetched batch. Whatever fails here beyond the batch's own
        transaction leaves the batch to be read again (faststream would log the error and read
        on past it) and stops the consumer (``run``)."""
        try:
            await self._consume(message)
        except Exception as exc:
            with suppress(Exception):
                await message.nack()
            self.failure = exc
            self.broken.set()
            raise

    async def _consume(self, message: KafkaMessage) -> None:
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
