"""The transactional outbox: records a transaction wants published, packed a thousand to a row
and written in that transaction; the classifier's relay publishes them afterwards."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import asyncpg
import orjson

from shared import metrics


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
