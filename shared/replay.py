"""The embedded broker's log, kept in PostgreSQL until it has been consumed (KIZUNA_BROKER_REPLAY).

Tansu, the embedded broker, keeps its log in memory: when it dies, what its consumers had not
read yet is gone, though ingest had answered 202 and the relay had deleted its outbox rows. With
replay on, every record the broker acknowledged stays in the ``outbox`` table, marked with the
broker that took it (its cluster id; each start of the embedded broker has its own) and the last
offset it took in each partition:

- ingest and the importer write the purchases they sent as rows already marked sent;
- the relay marks its outbox rows sent instead of deleting them;
- a row is deleted once every consumer group of its topics (``CONSUMED_BY``) has stored, for that
  same broker, an offset past its marks (``consumer_offsets``, written in the consumers' own
  transactions) — a cheap periodic prune;
- a row marked with another broker than the one answering now is published again by the relay,
  in id order (the consumers' idempotence — event_id in the event store, seq in reports and the
  notifier — makes a record seen twice harmless).

Which broker took a send is known by asking the broker's cluster id before (the last answer) and
after the send: the same id both times means the same broker process throughout. When the ids
differ the send is marked ``UNKNOWN_BROKER``, which matches no broker, so it is published again.

With Apache Kafka the broker's replicated log on disk is the durable copy, so replay is off there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import asyncpg
import orjson
from aiokafka import AIOKafkaClient

from shared.events import CUSTOMER_STATES, PURCHASES, SEGMENT_CHANGES
from shared.kafka import cluster_of
from shared.outbox import OUTBOX_RECORDS_PER_ROW, pack_outbox, unpack_outbox

log = logging.getLogger("kizuna.replay")

# Which consumer group must have applied a topic's records before they may be forgotten. The
# dead-letter topic has no consumer in Kizuna: its records are not kept.
CONSUMED_BY = {
    PURCHASES: "kizuna-classifier",
    CUSTOMER_STATES: "kizuna-reports",
    SEGMENT_CHANGES: "kizuna-notifier",
}
UNKNOWN_BROKER = "?"

# (topic, partition) -> the last offset written there
Marks = dict[tuple[str, int], int]


class BrokerWatch:
    """Which broker took a send: the cluster id seen before it (``last``, taken before the send
    starts) against the one asked after the acknowledgement."""

    def __init__(self) -> None:
        self.last: str | None = None

    async def current(self, client: AIOKafkaClient) -> str:
        self.last = await cluster_of(client)
        return self.last

    async def confirm(self, client: AIOKafkaClient, before: str | None) -> str:
        """The broker that acknowledged a send, ``before`` being ``last`` as it was when the
        send began; ``UNKNOWN_BROKER`` when the broker changed in between (or was not known)."""
        now = await self.current(client)
        if before != now:
            if before is not None:
                log.warning("the broker changed (%s -> %s)", before, now)
            return UNKNOWN_BROKER
        return now


def add_marks(marks: Marks, topic: str, partition: int, last_offset: int) -> None:
    if topic in CONSUMED_BY:
        key = (topic, partition)
        marks[key] = max(marks.get(key, -1), last_offset)


def _arrays(marks: Marks) -> tuple[list[str], list[int], list[int]]:
    items = sorted(marks.items())
    return [t for (t, _), _ in items], [p for (_, p), _ in items], [o for _, o in items]


async def keep_sent(
    conn: asyncpg.Connection | asyncpg.Pool,
    rows: Sequence[tuple[str, str | bytes, str | bytes]],
    broker: str,
    marks: Marks,
) -> None:
    """Records the broker acknowledged (ingest, the importer), kept until they are consumed:
    packed like the classifier's outbox rows, one statement."""
    if not rows or not marks:
        return
    rows = [(t, k.decode() if isinstance(k, bytes) else k, v) for t, k, v in rows]
    step = OUTBOX_RECORDS_PER_ROW
    packs = [pack_outbox(rows[i : i + step]) for i in range(0, len(rows), step)]
    counts = [len(rows[i : i + step]) for i in range(0, len(rows), step)]
    await conn.execute(
        "INSERT INTO outbox (records, record_count, sent_to, sent_topics, sent_partitions,"
        " sent_offsets) SELECT r, n, $3, $4, $5, $6 FROM unnest($1::bytea[], $2::int[]) AS u(r, n)",
        [bytes(p) for p in packs],
        counts,
        broker,
        *_arrays(marks),
    )


async def mark_sent(conn, ids: Sequence[int], broker: str, marks: Marks) -> None:
    """The relay's rows, acknowledged by ``broker``: kept until consumed (or deleted at once
    when no consumer waits for any of their records)."""
    if not marks:
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)
        return
    topics, partitions, offsets = _arrays(marks)
    await conn.execute(
        "UPDATE outbox SET sent_to = $2, sent_topics = $3, sent_partitions = $4,"
        " sent_offsets = $5 WHERE id = ANY($1::bigint[])",
        ids,
        broker,
        topics,
        partitions,
        offsets,
    )


CONSUMED = """
SELECT o.id, o.sent_topics <@ ARRAY[$3::text] AS purchases_only
FROM outbox o
WHERE o.sent_to IS NOT NULL
  AND NOT EXISTS (
    SELECT 1
    FROM unnest(o.sent_topics, o.sent_partitions, o.sent_offsets) AS m(topic, partition, last)
    JOIN unnest($1::text[], $2::text[]) AS g(topic, group_id) USING (topic)
    LEFT JOIN consumer_offsets c
      ON c.group_id = g.group_id AND c.topic = m.topic AND c.partition = m.partition
     AND c.cluster_id = o.sent_to
    WHERE c.next_offset IS NULL OR c.next_offset <= m.last)
"""

# Of (row id, tenant, event id), the rows with an event the event store does not hold.
NOT_STORED = """
SELECT DISTINCT k.id
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS k(id, tenant_id, event_id)
WHERE NOT EXISTS (
    SELECT 1 FROM purchases p WHERE p.tenant_id = k.tenant_id AND p.event_id = k.event_id)
"""


async def prune(conn) -> tuple[int, int]:
    """Forget the kept rows every consumer has applied; returns (rows forgotten, records sent
    again).

    Accepted purchases are forgotten only once the event store holds every one of them, not on
    the classifier's offsets alone: several producers write that topic (ingest, the importer,
    the relay's replays), and right after a restart the embedded broker has been seen to
    acknowledge a batch it did not keep. A row the classifier read past whose events are not
    all stored is published again (its duplicates are harmless), and the log says so."""
    rows = await conn.fetch(CONSUMED, list(CONSUMED_BY), list(CONSUMED_BY.values()), PURCHASES)
    done = [r["id"] for r in rows if not r["purchases_only"]]
    check = [r["id"] for r in rows if r["purchases_only"]]
    again: list[int] = []
    if check:
        ids, tenants, events = [], [], []
        for pack in await conn.fetch("SELECT id, records FROM outbox WHERE id = ANY($1)", check):
            for _, _, payload in unpack_outbox(pack["records"]):
                event = orjson.loads(payload)
                ids.append(pack["id"])
                tenants.append(event["tenant_id"])
                events.append(event["event_id"])
        again = [r["id"] for r in await conn.fetch(NOT_STORED, ids, tenants, events)]
        done += [i for i in check if i not in set(again)]
    resent = 0
    if again:
        resent = await conn.fetchval(
            "WITH again AS (UPDATE outbox SET sent_to = NULL, sent_topics = NULL,"
            " sent_partitions = NULL, sent_offsets = NULL WHERE id = ANY($1::bigint[])"
            " RETURNING record_count) SELECT coalesce(sum(record_count), 0) FROM again",
            again,
        )
        log.warning(
            "%s accepted purchases were read past but are not in the event store (the broker"
            " did not keep what it acknowledged): publishing them again",
            resent,
        )
    if done:
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", done)
    return len(done), resent


async def resend_other_brokers(conn, broker: str) -> int:
    """Kept rows another broker took (lost with it) become rows to send again, in their id
    order; returns how many records that is."""
    return await conn.fetchval(
        "WITH again AS (UPDATE outbox SET sent_to = NULL, sent_topics = NULL,"
        " sent_partitions = NULL, sent_offsets = NULL"
        " WHERE sent_to IS NOT NULL AND sent_to <> $1 RETURNING record_count)"
        " SELECT coalesce(sum(record_count), 0) FROM again",
        broker,
    )


async def forget_sent(conn) -> None:
    """Replay is off: nothing kept is needed."""
    await conn.execute("DELETE FROM outbox WHERE sent_to IS NOT NULL")


async def unsent_records(conn) -> int:
    """Records the relay has still to publish."""
    return await conn.fetchval(
        "SELECT coalesce(sum(record_count), 0) FROM outbox WHERE sent_to IS NULL"
    )


def marks_of(sent: Iterable[tuple[str, int, int, int]]) -> Marks:
    """Marks from (topic, partition, base_offset, record_count) of acknowledged batches."""
    marks: Marks = {}
    for topic, partition, base, count in sent:
        add_marks(marks, topic, partition, base + count - 1)
    return marks
