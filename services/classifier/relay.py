"""The outbox relay: publishes outbox rows in id order and retries with back-off while it
cannot. One relay is active at a time (a PostgreSQL advisory lock), so several classifier
instances keep the per-key order.

A row the broker acknowledged is deleted at once — or, with ``KIZUNA_BROKER_REPLAY`` (the
embedded broker), kept until its consumers have applied it, and published again when the broker
that took it is gone (shared/replay.py; ingest and the importer keep the purchases they sent the
same way, and this relay replays those too)."""

from __future__ import annotations

import asyncio
import logging
import time
import zlib

import asyncpg
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from shared import replay
from shared.events import ALL_TOPICS, PURCHASES
from shared.outbox import unpack_outbox
from shared.publisher import RecordPublisher

from . import metrics, store

log = logging.getLogger("kizuna.relay")


class Relay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        bootstrap: str,
        batch_size: int = 5000,
        keep_until_consumed: bool = False,
        upkeep_interval: float = 1.0,
    ):
        self.pool = pool
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.keep = keep_until_consumed
        self.upkeep_interval = upkeep_interval
        self.next_upkeep = 0.0
        self.watch = replay.BrokerWatch()
        self.wake = asyncio.Event()
        self.healthy = False
        self.partition_counts: dict[str, int] = {}
        self.backlog = 0

    async def run(self, stop: asyncio.Event) -> None:
        producer = RecordPublisher(self.bootstrap)
        await producer.start()
        try:
            async with self.pool.acquire() as lock_conn:
                while not stop.is_set():
                    if await store.try_relay_lock(lock_conn):
                        try:
                            await self._publish_until_stopped(producer, stop)
                        finally:
                            await store.release_relay_lock(lock_conn)
                    else:
                        self.healthy = True  # another instance relays
                        await self._nap(stop, 1.0)
        finally:
            await producer.stop()

    async def _nap(self, stop: asyncio.Event, seconds: float) -> None:
        self.wake.clear()
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()

    async def _publish_until_stopped(self, producer, stop: asyncio.Event) -> None:
        backoff = 0.2
        if not self.keep:
            await replay.forget_sent(self.pool)
        while not stop.is_set():
            try:
                if self.keep and time.monotonic() >= self.next_upkeep:
                    await self.upkeep(producer)
                sent = await self.publish_once(producer)
            except (TimeoutError, KafkaError, asyncpg.PostgresError, OSError) as exc:
                self.healthy = False
                log.warning("relay: publishing failed (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
                continue
            backoff = 0.2
            self.healthy = True
            if not sent or not self.backlog:
                await self._nap(stop, 0.2)

    async def upkeep(self, producer) -> None:
        """Publish again what a broker that is gone had taken; forget what was consumed."""
        broker = await self.watch.current(producer.client)
        again = await replay.resend_other_brokers(self.pool, broker)
        if again:
            log.warning(
                "relay: broker %s does not hold %s records an earlier broker acknowledged;"
                " publishing them again",
                broker,
                again,
            )
            metrics.REPLAYED.inc(again)
        _, resent = await replay.prune(self.pool)
        if resent:
            metrics.REPLAYED.inc(resent)
        self.next_upkeep = time.monotonic() + self.upkeep_interval

    async def publish_once(self, producer) -> int:
        """Publish the oldest outbox rows (whole packs, about ``batch_size`` records)."""
        heads = await store.outbox_heads(self.pool)
        if not heads:
            self.backlog = 0
            return 0
        ids, total = [], 0
        for head in heads:
            if ids and total + head["record_count"] > self.batch_size:
                break
            ids.append(head["id"])
            total += head["record_count"]
        packs = await store.outbox_packs(self.pool, ids)
        before = self.watch.last
        sent, marks = await self._send(
            producer, (record for p in packs for record in unpack_outbox(p["records"]))
        )
        # Exact ids: a row with a lower id may commit later; it must not be deleted unsent.
        if self.keep:
            broker = await self.watch.confirm(producer.client, before)
            await replay.mark_sent(self.pool, ids, broker, marks)
        else:
            await store.delete_outbox(self.pool, ids)
        metrics.OUTBOX_PUBLISHED.inc(sent)
        self.backlog = await store.outbox_backlog(self.pool)
        return sent

    async def _send(self, producer: RecordPublisher, rows) -> tuple[int, replay.Marks]:
        """Publish rows, in id order within each partition; returns how many were sent and the
        last offset each partition gave them.

        Keys are placed by CRC-32 (C speed; murmur2 is pure Python in aiokafka): Kizuna's relay
        is the only producer of the topics it writes, so every record of a customer still
        lands in one partition, in order. Purchases (sent here only when replayed) go where
        ingest and the importer put them: Kafka's murmur2.
        """
        for topic in ALL_TOPICS:  # every topic an outbox row can name (cached after the first)
            await self._partitions(producer, topic)
        counts = self.partition_counts

        def placed():  # one pass: each record goes into its batch as it is unpacked
            for topic, key, value in rows:
                if topic == PURCHASES:
                    yield topic, (murmur2(key) & 0x7FFFFFFF) % counts[topic], key, value
                else:
                    yield topic, zlib.crc32(key) % counts[topic], key, value

        batches = await producer.publish(placed())
        return sum(count for *_, count in batches), replay.marks_of(batches)

    async def _partitions(self, producer, topic: str) -> int:
        count = self.partition_counts.get(topic)
        if count is None:
            count = self.partition_counts[topic] = len(await producer.partitions_for(topic))
        return count

    async def drain(self, producer=None, timeout: float = 60) -> None:
        """Publish everything left (a clean stop)."""
        own = producer is None
        producer = producer or RecordPublisher(self.bootstrap)
        if own:
            await producer.start()
        try:
            async with asyncio.timeout(timeout):
                while await self.publish_once(producer):
                    pass
        finally:
            if own:
                await producer.stop()
