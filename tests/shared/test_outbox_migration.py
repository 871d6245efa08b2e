"""Migration 007 packs the outbox: records that were waiting in the one-row-per-record table
when it runs are carried over in order, and the relay publishes them like any other."""

from __future__ import annotations

import json

import asyncpg
import pytest

from shared.db import migrate
from shared.outbox import pending_outbox, unpack_outbox, write_outbox
from tests.helpers import scratch_database

pytestmark = pytest.mark.integration


async def test_waiting_records_survive_the_move_to_packed_rows(database_url):
    old = [
        ("kizuna.customer-states.v1", "t:C1", json.dumps({"seq": 1, "name": "山田\tさん"})),
        ("kizuna.deadletter.v1", "t:odd\nkey", '{\n  "reason": "bad"\n}'),
        ("kizuna.customer-states.v1", "t:C1", json.dumps({"seq": 2})),
    ]
    async with scratch_database(database_url, "outbox", before="007") as url:
        conn = await asyncpg.connect(url)
        try:
            for topic, key, payload in old:
                await conn.execute(
                    "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)",
                    topic,
                    key,
                    payload,
                )

            await migrate(url)

            carried = await pending_outbox(conn)
            assert [(t, k, json.loads(p)) for t, k, p in carried] == [
                (t, k, json.loads(p)) for t, k, p in old
            ]
            await write_outbox(conn, [("kizuna.segment-changes.v1", "t:C1", '{"seq": 2}')])
            keys = [k for _, k, _ in await pending_outbox(conn)]
            assert keys == [k for _, k, _ in old] + ["t:C1"]
            assert await conn.fetchval("SELECT sum(record_count) FROM outbox") == 4
        finally:
            await conn.close()


async def test_a_large_batch_is_several_rows_in_order(database_url):
    conn = await asyncpg.connect(database_url)
    tx = conn.transaction()
    await tx.start()
    try:
        before = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
        await write_outbox(conn, [("t", f"k{i}", json.dumps({"i": i})) for i in range(2500)])
        mine = await conn.fetch(
            "SELECT records, record_count FROM outbox WHERE id > $1 ORDER BY id", before
        )
        assert [r["record_count"] for r in mine] == [1000, 1000, 500]
        unpacked = [rec for r in mine for rec in unpack_outbox(r["records"])]
        assert [json.loads(p)["i"] for _, _, p in unpacked] == list(range(2500))
    finally:
        await tx.rollback()  # other tests share this database and its relay
        await conn.close()
