"""Broker replay (shared/replay.py): what the embedded broker acknowledged stays in PostgreSQL
until its consumers have applied it, and is published again into a broker that was restarted
empty; ingest's accepted events and the relay's records alike."""

from __future__ import annotations

import asyncio
import json
import signal

import asyncpg
import pytest

from services.classifier.relay import Relay
from services.ingest.purchases import Publisher
from shared import replay
from shared.embedded import EmbeddedBroker
from shared.events import CUSTOMER_STATES, PURCHASES, PurchaseEvent
from shared.kafka import ensure_topics
from shared.outbox import write_outbox
from shared.publisher import RecordPublisher
from tests.helpers import TMP, free_port, read_topic, scratch_database

pytestmark = pytest.mark.integration


async def consumed(conn, group: str, cluster: str, topic: str, partitions: int, offset: int):
    """A consumer group that has applied everything below ``offset`` of every partition."""
    await conn.executemany(
        "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, cluster_id)"
        " VALUES ($1, $2, $3, $4, $5)",
        [(group, topic, p, offset, cluster) for p in range(partitions)],
    )


async def test_what_a_dead_broker_held_is_published_into_its_successor(database_url):
    broker = EmbeddedBroker(free_port(), log_file=TMP / "tansu-replay.log")
    await broker.start()
    try:
        async with scratch_database(database_url, "replay") as url:
            await run_replay(url, broker)
    finally:
        broker.stop()


async def run_replay(url: str, broker: EmbeddedBroker) -> None:
    await ensure_topics(broker.bootstrap, 2)
    first = broker.cluster_id
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:

        async def keep(rows, acknowledged_by, marks):
            await replay.keep_sent(pool, rows, acknowledged_by, marks)

        # ingest accepts five events: acknowledged and kept
        ingest = Publisher(broker.bootstrap, 2, keep)
        events = [
            PurchaseEvent(
                event_id=f"e{i}",
                tenant_id="t",
                branch_id="b",
                customer_id=f"C{i}",
                occurred_at="2026-11-01T10:00:00+09:00",
                amount="1000",
            )
            for i in range(5)
        ]
        await ingest.publish(events)
        # the classifier's outbox: three customer states, published by the relay and kept
        async with pool.acquire() as conn:
            await write_outbox(
                conn, [(CUSTOMER_STATES, f"t:C{i}", json.dumps({"seq": i})) for i in range(3)]
            )
        relay = Relay(pool, broker.bootstrap, keep_until_consumed=True)
        producer = RecordPublisher(broker.bootstrap)
        await producer.start()
        try:
            await relay.upkeep(producer)
            assert await relay.publish_once(producer) == 3
            kept = await pool.fetch("SELECT sent_to, record_count FROM outbox ORDER BY id")
            assert [(r["sent_to"], r["record_count"]) for r in kept] == [(first, 5), (first, 3)]
            assert await replay.unsent_records(pool) == 0

            # the classifier has stored the purchases; reports has not applied the states
            async with pool.acquire() as conn:
                await consumed(conn, "kizuna-classifier", first, PURCHASES, 2, 100)
                await conn.executemany(
                    "INSERT INTO purchases (tenant_id, event_id, branch_id, customer_id, kind,"
                    " occurred_at, occurred_on, amount, payload)"
                    " VALUES ('t', $1, 'b', 'C1', 'sale', now(), current_date, 1000, '{}')",
                    [(e.event_id,) for e in events],
                )
                await consumed(conn, "kizuna-reports", first, CUSTOMER_STATES, 2, 0)
            await relay.upkeep(producer)
            left = await pool.fetch("SELECT sent_to, record_count FROM outbox")
            assert [(r["sent_to"], r["record_count"]) for r in left] == [(first, 3)]

            # the broker dies and starts again, empty, as another cluster
            broker.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(broker.process.wait)
            await broker.start()
            await ensure_topics(broker.bootstrap, 2)
            assert broker.cluster_id != first
            for _ in range(3):  # the producer reconnects to the new broker
                try:
                    await relay.upkeep(producer)
                    break
                except Exception:  # noqa: BLE001
                    await asyncio.sleep(1)
            assert await replay.unsent_records(pool) == 3  # to be published again
            assert await relay.publish_once(producer) == 3
            states = await read_topic(broker.bootstrap, CUSTOMER_STATES)
            assert sorted(json.loads(r.value)["seq"] for r in states) == [0, 1, 2]
            row = await pool.fetchrow("SELECT sent_to FROM outbox")
            assert row["sent_to"] in (broker.cluster_id, replay.UNKNOWN_BROKER)

            # once reports has applied them on the new broker, they are forgotten
            async with pool.acquire() as conn:
                await conn.execute("DELETE FROM consumer_offsets")
                await consumed(conn, "kizuna-reports", broker.cluster_id, CUSTOMER_STATES, 2, 100)
            await relay.upkeep(producer)  # an unknown broker's rows go round once more
            await relay.publish_once(producer)
            await relay.upkeep(producer)
            assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
        finally:
            await producer.stop()
            await ingest.close()
    finally:
        await pool.close()


async def test_purchases_are_forgotten_only_once_the_event_store_holds_them(database_url):
    """The embedded broker has been seen to acknowledge, right after a restart with several
    producers writing one partition, records it did not keep (the classifier then reads past
    their offsets without ever seeing them): accepted purchases are forgotten only when the
    event store holds each one; the others are published again."""
    events = {
        name: PurchaseEvent(
            event_id=name,
            tenant_id="t",
            branch_id="b",
            customer_id="C1",
            occurred_at="2026-11-01T10:00:00+09:00",
            amount="1000",
        )
        for name in ("stored-1", "stored-2", "lost-1")
    }

    def rows(*names):
        return [(PURCHASES, "t:C1", events[n].model_dump_json()) for n in names]

    async with scratch_database(database_url, "replay") as url:
        conn = await asyncpg.connect(url)
        try:
            # a request's events go to several partitions: one mark each
            both = {(PURCHASES, 0): 1, (PURCHASES, 1): 4}
            await replay.keep_sent(conn, rows("stored-1", "stored-2"), "B", both)
            await replay.keep_sent(
                conn, rows("lost-1"), "B", {(PURCHASES, 0): 2, (PURCHASES, 1): 5}
            )
            await consumed(conn, "kizuna-classifier", "B", PURCHASES, 2, 10)  # read past all
            await conn.executemany(
                "INSERT INTO purchases (tenant_id, event_id, branch_id, customer_id, kind,"
                " occurred_at, occurred_on, amount, payload)"
                " VALUES ('t', $1, 'b', 'C1', 'sale', now(), current_date, 1000, '{}')",
                [("stored-1",), ("stored-2",)],
            )
            assert await replay.prune(conn) == (1, 1)
            left = await conn.fetch("SELECT sent_to, records FROM outbox")
            assert len(left) == 1 and left[0]["sent_to"] is None  # to be published again
            assert b"lost-1" in left[0]["records"]
        finally:
            await conn.close()
