"""`kizuna import` as a user runs it, against ingest as a real process: exit codes, the
rejections file next to the input, and an import whose ingest is killed (SIGKILL) mid-file,
resumed by running the same command again — every row on the topic, none lost."""

from __future__ import annotations

import asyncio
import json
import shutil

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from services.cli.bench.imports import write_sample_sales
from shared.embedded import EmbeddedBroker
from shared.events import PURCHASES
from tests.helpers import FIXTURES, TMP, free_port, kizuna, wait_for

pytestmark = pytest.mark.e2e


async def run(*argv: str) -> tuple[int, str, str]:
    proc = await kizuna(*argv)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def event_ids_on_topic(bootstrap: str, tenant: str, want: int) -> dict[str, int]:
    consumer = AIOKafkaConsumer(
        PURCHASES,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    seen: dict[str, int] = {}
    prefix = f"{tenant}:".encode()
    try:
        idle = 0
        while idle < 3 or len(seen) < want and idle < 20:
            batch = await consumer.getmany(timeout_ms=300, max_records=20000)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                for r in records:
                    if r.key.startswith(prefix):
                        event_id = json.loads(r.value)["event_id"]
                        seen[event_id] = seen.get(event_id, 0) + 1
    finally:
        await consumer.stop()
    return seen


@pytest.fixture
async def own_broker():
    """A broker of this test's own: its 60,000 events must not become a backlog for the
    classifier of the tests that follow (they share the session broker and the group)."""
    b = EmbeddedBroker(free_port(), log_file=TMP / "tansu-import-cli.log")
    await b.start()
    yield b
    b.stop()


async def test_cli_exit_codes_and_resume_after_ingest_is_killed(
    services, own_broker, database_url, tenant, tmp_path
):
    broker = own_broker
    # TMPDIR: the upload a SIGKILL leaves behind is spooled under tmp_path, not /tmp
    ingest = services("ingest", KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, TMPDIR=str(tmp_path))
    ingest.start()
    await ingest.ready()
    # the key as an operator gets it: `kizuna keys create` prints it alone on its last line
    code, out, err = await run("keys", "create", "--tenant", tenant, "--role", "ingest")
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    common = ("--tenant", tenant, "--url", ingest.url, "--key", key)

    broken = tmp_path / "broken.csv"
    shutil.copy(FIXTURES / "sales_broken.csv", broken)
    code, out, err = await run("import", "sales", str(broken), *common)
    assert code == 1, err
    assert "accepted 7" in out and "rejected 11" in out
    rejections = tmp_path / "broken.csv.rejections.csv"
    assert rejections.read_text("utf-8-sig").startswith("line,column,value,reason")

    code, _, err = await run("import", "sales", str(FIXTURES / "sales_no_amount.csv"), *common)
    assert code == 2 and "branch" in err  # no branch column and no --branch
    code, out, _ = await run(
        "import", "sales", str(FIXTURES / "sales_no_amount.csv"), "--branch", "web", "--dry-run"
    )
    assert code == 0 and "amount = 単価 × 数量 + 消費税" in out

    big, big_tenant = tmp_path / "big.tsv", f"{tenant}big"
    code, out, err = await run("keys", "create", "--tenant", big_tenant, "--role", "ingest")
    assert code == 0, err
    big_key = out.strip().splitlines()[-1]
    common = ("--tenant", big_tenant, "--url", ingest.url, "--key", big_key)
    rows = 60_000
    write_sample_sales(big, rows, customers=5_000, seed=11)
    cli = await kizuna("import", "sales", str(big), *common)
    conn = await asyncpg.connect(database_url)
    try:

        async def checkpointed():
            return await conn.fetchrow(
                "SELECT id, last_line FROM imports WHERE tenant_id = $1 AND file_name = 'big.tsv'"
                " AND last_line > 0 AND status = 'running'",
                big_tenant,
            )

        first = await wait_for(checkpointed, timeout=30, interval=0.05, what="a checkpoint")
        ingest.kill()  # mid-file: no clean stop
        out, err = await asyncio.wait_for(cli.communicate(), 30)
        assert cli.returncode == 3, err.decode()

        ingest.start()
        await ingest.ready()
        code, out, err = await run("import", "sales", str(big), *common)
        assert code == 0, err
        assert f"resuming import {first['id']}" in err and "resumed after line" in out
        row = await conn.fetchrow("SELECT * FROM imports WHERE id = $1", first["id"])
        assert (row["status"], row["rows"], row["accepted"], row["runs"]) == ("done", rows, rows, 2)
        assert row["resumed_from_line"] >= first["last_line"]
    finally:
        await conn.close()
    seen = await event_ids_on_topic(broker.bootstrap, big_tenant, rows)
    assert len(seen) == rows  # every row, once or (the batch in flight at the kill) twice
    assert sum(seen.values()) - rows <= 2 * 5000
