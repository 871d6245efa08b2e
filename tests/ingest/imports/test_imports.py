"""CSV import on the real broker and PostgreSQL, ingest and the classifier in-process: files
in both encodings reach the classifier's state, every broken row is reported and downloadable,
a second import changes nothing, an interrupted import resumes with every row exactly once, and
customer master data is stored and updated."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from services.classifier.app import app as classifier_app
from services.cli import build_parser
from services.cli import imports as cli_imports
from services.cli.bench.imports import write_sample_sales
from services.ingest.app import app as ingest_app
from services.ingest.imports import runner, store
from services.ingest.imports.sales import read_sales
from shared.cpm import Purchase, compute_figures
from shared.events import PURCHASES
from shared.kafka import group_lag
from shared.publisher import RecordPublisher
from shared.settings import get_settings
from tests.helpers import FIXTURES, api_key, wait_for

pytestmark = pytest.mark.integration

CP932_SALES = FIXTURES / "sales_cp932.tsv"
UTF8_SALES = FIXTURES / "sales_utf8bom.csv"
BROKEN = FIXTURES / "sales_broken.csv"
CUSTOMERS = FIXTURES / "customers_cp932.tsv"

# sales_broken.csv: (line, column, value) of each rejected row, as the sales reader reports them
BROKEN_REJECTED = [
    (3, "購入日", "2024/13/5"),
    (4, "購入金額", "12a0"),
    (5, "顧客コード", ""),
    (6, None, None),
    (7, None, None),
    (10, "購入日", "37265"),
    (11, "区分", "見積"),
    (13, "購入日", "2024/1/32"),
    (15, None, '5012,2024/1/11,C12,s1,売上,"商品L,1,500'),
    (19, "商品名", None),
    (21, "店舗", ""),
]


@pytest.fixture(scope="module")
async def running(broker, database_url):
    async with (
        classifier_app.router.lifespan_context(classifier_app),
        ingest_app.router.lifespan_context(ingest_app),
    ):

        async def assigned():
            return classifier_app.state.consumer.assigned_once.is_set()

        await wait_for(assigned, timeout=30, what="classifier partitions assigned")
        yield


@pytest.fixture
async def ingest(running, database_url, tenant):
    """The ingest app, called with an admin key of the test's tenant."""
    transport = httpx.ASGITransport(app=ingest_app)
    auth = await api_key(database_url, tenant)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://ingest", headers=auth
    ) as client:
        yield client


def data(path: Path) -> bytes:
    return path.read_bytes()  # test files: a few hundred bytes


async def post_file(ingest, tenant, kind, path: Path, *, multipart=False, **params):
    headers = {}
    if multipart:
        files = {"file": (path.name, data(path), "text/csv")}
        return await ingest.post(f"/v1/imports/{kind}", params=params, files=files, headers=headers)
    params.setdefault("file_name", path.name)
    return await ingest.post(
        f"/v1/imports/{kind}",
        params=params,
        content=data(path),
        headers={**headers, "Content-Type": "text/csv"},
    )


async def finished(ingest, tenant, import_id):
    async def ended():
        r = await ingest.get(f"/v1/imports/{import_id}", headers={})
        body = r.json()
        return body if body["status"] != "running" else None

    return await wait_for(ended, timeout=20, what=f"import {import_id} to end")


async def imported(ingest, tenant, kind, path, **kw):
    r = await post_file(ingest, tenant, kind, path, **kw)
    assert r.status_code == 202, r.text
    return await finished(ingest, tenant, r.json()["id"])


async def classified(pool, broker, tenant, events: int):
    """Every purchase consumed, and the tenant's event store holding ``events`` events."""

    async def settled():
        lag = await group_lag(pool, broker.bootstrap, "kizuna-classifier", [PURCHASES])
        stored = await pool.fetchval("SELECT count(*) FROM purchases WHERE tenant_id = $1", tenant)
        return lag == 0 and stored == events

    await wait_for(settled, timeout=30, what=f"{events} events classified")


def expected_figures(path: Path, tenant: str, **kw):
    """What the classifier must hold: shared.cpm's figures over the file's events."""
    evts = [r.event for r in read_sales(path, tenant=tenant, **kw) if r.ok]
    by_customer: dict[str, list] = {}
    for e in evts:
        by_customer.setdefault(e["customer_id"], []).append(
            Purchase(
                event_id=e["event_id"],
                kind=e["kind"],
                branch_id=e["branch_id"],
                occurred_on=datetime.fromisoformat(e["occurred_at"]).date(),
                amount=Decimal(e["amount"] or 0),
                order_id=e["order_id"],
            )
        )
    return {c: compute_figures(ps) for c, ps in by_customer.items()}, {e["event_id"] for e in evts}


async def assert_state_matches(pool, tenant, *files):
    expected, ids = {}, set()
    for path in files:
        figures, file_ids = expected_figures(path, tenant)
        expected.update(figures)
        ids |= file_ids
    stored = await pool.fetch("SELECT event_id FROM purchases WHERE tenant_id = $1", tenant)
    assert {r["event_id"] for r in stored} == ids
    rows = await pool.fetch(
        "SELECT customer_id, purchase_count, total_amount, first_purchase_on, last_purchase_on"
        " FROM customer_states WHERE tenant_id = $1 AND scope = 'all'",
        tenant,
    )
    state = {r["customer_id"]: r for r in rows}
    for customer, figures in expected.items():
        row = state[customer]
        if figures is None:
            assert row["purchase_count"] == 0
            continue
        assert (row["purchase_count"], row["total_amount"]) == (
            figures.purchase_count,
            figures.total_amount,
        ), customer
        assert (row["first_purchase_on"], row["last_purchase_on"]) == (
            figures.first_purchase_on,
            figures.last_purchase_on,
        )
    return state


async def test_cp932_tab_and_utf8_bom_files_reach_the_classifier(ingest, pool, broker, tenant):
    jp = await imported(ingest, tenant, "sales", CP932_SALES)
    assert (jp["status"], jp["rows"], jp["accepted"], jp["rejected"]) == ("done", 8, 8, 0)
    assert (jp["encoding"], jp["delimiter"], jp["file_name"]) == ("cp932", "tab", CP932_SALES.name)
    assert {c["header"]: c["field"] for c in jp["mapping"]}["売上金額"] == "amount"
    assert jp["progress"] == 1.0 and jp["eta_seconds"] == 0 and jp["finished_at"]
    en = await imported(ingest, tenant, "sales", UTF8_SALES, multipart=True)
    assert (en["status"], en["encoding"], en["delimiter"]) == ("done", "utf-8-sig", "comma")
    assert (en["rows"], en["accepted"], en["file_name"]) == (5, 5, UTF8_SALES.name)

    await classified(pool, broker, tenant, 13)
    state = await assert_state_matches(pool, tenant, CP932_SALES, UTF8_SALES)
    assert (state["A-0104"]["purchase_count"], state["C002"]["total_amount"]) == (1, Decimal(3300))
    umeda = await pool.fetchrow(
        "SELECT purchase_count FROM customer_states WHERE tenant_id = $1 AND customer_id = 'A-0105'"
        " AND scope = 'shinjuku'",
        tenant,
    )
    assert umeda["purchase_count"] == 1  # the branch column became the scope


async def test_every_broken_row_is_reported_and_downloadable(ingest, pool, tenant):
    body = await imported(ingest, tenant, "sales", BROKEN)
    assert (body["status"], body["rows"], body["accepted"], body["rejected"]) == ("done", 18, 7, 11)
    inline = body["rejections"]
    assert [(r["line"], r["column"], r["value"]) for r in inline] == BROKEN_REJECTED
    assert all(r["reason"] for r in inline)
    h = {}

    r = await ingest.get(
        f"/v1/imports/{body['id']}/rejections", params={"format": "json"}, headers=h
    )
    items = r.json()["rejections"]
    assert [(i["line"], i["column"], i["value"]) for i in items] == BROKEN_REJECTED
    two = next(i for i in items if i["line"] == 13)
    assert [p["column"] for p in two["problems"]] == ["購入日", "数量"]
    assert "Excel serial date" in next(i for i in items if i["line"] == 10)["reason"]

    r = await ingest.get(f"/v1/imports/{body['id']}/rejections", headers=h)
    assert r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith("\ufeff".encode())  # Excel reads it as UTF-8
    lines = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert lines[0] == ["line", "column", "value", "reason"]
    assert sorted({int(row[0]) for row in lines[1:]}) == [line for line, _, _ in BROKEN_REJECTED]
    assert len(lines) == 1 + 12  # line 13 has two problems: one CSV line each
    assert ["4", "購入金額", "12a0"] == lines[2][:3] and "not a number" in lines[2][3]

    # the accepted rows of the file were published
    stored = await wait_for(
        lambda: _count(pool, "SELECT count(*) FROM purchases WHERE tenant_id = $1", tenant, want=7),
        what="7 accepted rows stored",
    )
    assert stored


async def _count(pool, sql, *args, want):
    return await pool.fetchval(sql, *args) == want


async def test_mapping_error_dry_run_and_unknown_import(ingest, tenant, tmp_path, database_url):
    h = {}
    bad = tmp_path / "bad.csv"
    bad.write_text("Cust ID,Date,Amount\nA,2003/3/30,100\n")
    r = await post_file(ingest, tenant, "sales", bad, branch="b")
    assert r.status_code == 422
    error = r.json()["error"]
    assert (error["code"], error["field"], error["suggestion"]) == (
        "mapping_error",
        "customer_id",
        "Cust ID",
    )
    assert "--map 'Cust ID=customer_id'" in error["message"]
    ok = await post_file(ingest, tenant, "sales", bad, branch="b", map="Cust ID=customer_id")
    assert ok.status_code == 202
    assert (await finished(ingest, tenant, ok.json()["id"]))["accepted"] == 1

    r = await post_file(ingest, tenant, "sales", CP932_SALES, dry_run="true")
    assert r.status_code == 200
    p = r.json()
    assert (p["encoding"], p["delimiter"], p["error"]) == ("cp932", "tab", None)
    assert p["mapping"]["顧客コード"] == "customer_id" and len(p["rows"]) == 8
    assert p["rows"][0]["event"]["customer_id"] == "A-0104"
    r = await ingest.get("/v1/imports", headers=h)
    assert [i["id"] for i in r.json()["items"]] == [ok.json()["id"]]  # a dry run records nothing
    assert (await ingest.get("/v1/imports/99999999", headers=h)).status_code == 404
    other = await ingest.get(
        f"/v1/imports/{ok.json()['id']}", headers=await api_key(database_url, "x")
    )
    assert other.status_code == 404  # another tenant's import is not visible


async def test_importing_the_same_file_twice_changes_nothing(ingest, pool, broker, tenant):
    first = await imported(ingest, tenant, "sales", CP932_SALES)
    await classified(pool, broker, tenant, 8)

    async def clock_settled():  # 2003's customers lapse on the classifier's next sweep
        return not await pool.fetchval(
            "SELECT count(*) FROM customer_states WHERE tenant_id = $1"
            " AND lapse_due_on IS NOT NULL",
            tenant,
        )

    await wait_for(clock_settled, what="the lapse clock to reach today")
    snapshot_sql = (
        "SELECT tenant_id, scope, customer_id, seq, segment, purchase_count, total_amount,"
        " first_purchase_on, last_purchase_on, clock_on, lapse_due_on"
        " FROM customer_states WHERE tenant_id = $1 ORDER BY scope, customer_id"
    )
    before = [dict(r) for r in await pool.fetch(snapshot_sql, tenant)]
    assert before

    second = await imported(ingest, tenant, "sales", CP932_SALES)
    assert second["id"] != first["id"]
    assert (second["status"], second["rows"], second["accepted"]) == ("done", 8, 8)
    await classified(pool, broker, tenant, 8)
    assert [dict(r) for r in await pool.fetch(snapshot_sql, tenant)] == before


class CrashingPublisher(runner.PurchasePublisher):
    """Publishes normally, then — after ``ok`` batches — publishes one more batch (the broker
    acknowledges it) and fails before the checkpoint, like a process killed at that moment."""

    def __init__(self, producer, ok: int):
        super().__init__(self._producer)
        self.producer, self.ok, self.calls = producer, ok, 0

    async def _producer(self):
        return self.producer

    async def publish(self, records):
        self.calls += 1
        await super().publish(records)
        if self.calls > self.ok:
            raise KafkaConnectionError("simulated crash after the broker acknowledged")


async def on_topic(bootstrap, tenant, want: int) -> dict[int, list[dict]]:
    """The tenant's events on the purchases topic, per partition in offset order (reads until
    ``want`` distinct ids were seen and the topic stays quiet)."""
    consumer = AIOKafkaConsumer(
        PURCHASES,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: dict[int, list[dict]] = {}
    ids: set[str] = set()
    try:
        idle = 0
        while idle < 2 or (len(ids) < want and idle < 40):
            batch = await consumer.getmany(timeout_ms=250)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                for r in records:
                    if r.key.startswith(f"{tenant}:".encode()):
                        event = json.loads(r.value)
                        out.setdefault(tp.partition, []).append(event)
                        ids.add(event["event_id"])
    finally:
        await consumer.stop()
    return out


def counts(events: dict[int, list[dict]]) -> dict[str, int]:
    """How often each event id is on the topic."""
    return Counter(e["event_id"] for es in events.values() for e in es)


def assert_in_date_order(events: dict[int, list[dict]]) -> None:
    """On every partition, each event's first appearance comes in date order (a resumed run
    sends the page in flight again: that second copy is a redelivery, not history)."""
    for partition, es in events.items():
        seen: set[str] = set()
        firsts = []
        for e in es:
            if e["event_id"] not in seen:
                seen.add(e["event_id"])
                firsts.append(datetime.fromisoformat(e["occurred_at"]))
        assert firsts == sorted(firsts), f"partition {partition} is not in date order"


def newest_first(path: Path, rows: int, **kw) -> None:
    """A generated sales file with its rows reversed: newest first, as some exports write."""
    write_sample_sales(path, rows, **kw)
    raw = path.read_bytes().split(b"\r\n")
    header, body = raw[0], [line for line in raw[1:] if line]
    body.sort(key=lambda line: tuple(int(x) for x in line.split(b"\t")[1].split(b"/")))
    path.write_bytes(b"\r\n".join([header, *reversed(body), b""]))


async def import_crashing(pool, broker, path, tenant, *, ok: int):
    """Import ``path`` in batches of 20 with a publisher that crashes after ``ok`` pages."""
    producer = RecordPublisher(broker.bootstrap)
    await producer.start()
    try:
        crashing = CrashingPublisher(producer, ok=ok)
        with pytest.raises(runner.ImportFailed, match="simulated crash"):
            await runner.import_file(
                pool,
                path,
                runner.ImportRequest("sales", tenant, file_name=path.name),
                publisher=crashing,
                batch_rows=20,
                tries=1,
            )
    finally:
        await producer.stop()


async def test_interrupted_import_resumes_with_every_row_exactly_once(
    ingest, pool, broker, tenant, tmp_path
):
    path = tmp_path / "sales.tsv"
    newest_first(path, 120, customers=25, seed=3)
    await import_crashing(pool, broker, path, tenant, ok=3)
    h = {}
    (failed,) = (await ingest.get("/v1/imports", headers=h)).json()["items"]
    assert (failed["status"], failed["resumable"], failed["phase"]) == ("failed", True, "publish")
    # the whole file was read and staged; 3 pages of 20 were acknowledged and checkpointed
    assert (failed["accepted"], failed["last_line"], failed["published"]) == (120, 121, 60)
    assert "simulated crash" in failed["error"]

    # --resume with another file or a finished import is refused with the reason
    r = await post_file(ingest, tenant, "sales", CP932_SALES, resume=str(failed["id"]))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "different_file")

    # the same file again resumes after the checkpoint, automatically
    r = await post_file(ingest, tenant, "sales", path)
    assert r.status_code == 202, r.text
    assert (r.json()["id"], r.json()["started"]) == (failed["id"], "resumed")
    done = await finished(ingest, tenant, failed["id"])
    assert (done["status"], done["rows"], done["accepted"], done["rejected"]) == (
        "done",
        120,
        120,
        0,
    )
    assert (done["runs"], done["resumed_from_line"], done["last_line"]) == (2, 121, 121)
    assert (done["published"], done["resumed_from_published"]) == (120, 60)
    assert await pool.fetchval("SELECT to_regclass($1)", f"import_staged_{done['id']}") is None

    r = await post_file(ingest, tenant, "sales", path, resume=str(failed["id"]))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "already_done")

    await classified(pool, broker, tenant, 120)
    await assert_state_matches(pool, tenant, path)
    events = await on_topic(broker.bootstrap, tenant, 120)
    seen = counts(events)
    # 60 acknowledged + 20 acknowledged but not checkpointed (sent again) + 60 after the resume
    assert len(seen) == 120 and sum(seen.values()) == 140
    assert sorted(seen.values()).count(2) == 20
    assert_in_date_order(events)  # a newest-first file, published oldest first


async def test_an_import_interrupted_while_reading_stages_every_row_once(
    ingest, pool, broker, tenant, tmp_path, monkeypatch
):
    path = tmp_path / "sales.tsv"
    newest_first(path, 120, customers=25, seed=4)
    stager, calls = store.stager, []

    def failing_stager(import_id, records):
        calls.append(len(records))
        stage = stager(import_id, records)
        if len(calls) <= 3:
            return stage

        async def crash(conn):
            await stage(conn)  # the rows are copied, then the connection is lost
            raise ConnectionResetError("simulated loss of the database mid-transaction")

        return crash

    monkeypatch.setattr(runner.store, "stager", failing_stager)
    producer = RecordPublisher(broker.bootstrap)
    await producer.start()
    try:
        with pytest.raises(runner.ImportFailed, match="simulated loss"):
            await runner.import_file(
                pool,
                path,
                runner.ImportRequest("sales", tenant, file_name=path.name),
                publisher=runner.PurchasePublisher.for_producer(producer),
                batch_rows=20,
            )
    finally:
        await producer.stop()
    monkeypatch.undo()
    h = {}
    (failed,) = (await ingest.get("/v1/imports", headers=h)).json()["items"]
    assert (failed["status"], failed["phase"], failed["published"]) == ("failed", "read", 0)
    assert (failed["accepted"], failed["last_line"]) == (60, 61)
    staged = await pool.fetchval(f"SELECT count(*) FROM import_staged_{failed['id']}")
    assert staged == 60  # the fourth batch rolled back with its checkpoint

    r = await post_file(ingest, tenant, "sales", path)
    assert (r.json()["id"], r.json()["started"]) == (failed["id"], "resumed")
    done = await finished(ingest, tenant, failed["id"])
    assert (done["status"], done["rows"], done["accepted"], done["published"]) == (
        "done",
        120,
        120,
        120,
    )
    assert (done["runs"], done["resumed_from_line"], done["resumed_from_published"]) == (2, 61, 0)
    await classified(pool, broker, tenant, 120)
    await assert_state_matches(pool, tenant, path)
    events = await on_topic(broker.bootstrap, tenant, 120)
    assert set(counts(events).values()) == {1}  # nothing was published before the crash
    assert len(counts(events)) == 120
    assert_in_date_order(events)


async def test_staged_rows_lost_with_the_database_are_read_again(
    ingest, pool, broker, tenant, tmp_path
):
    path = tmp_path / "sales.tsv"
    newest_first(path, 120, customers=25, seed=5)
    await import_crashing(pool, broker, path, tenant, ok=2)
    h = {}
    (failed,) = (await ingest.get("/v1/imports", headers=h)).json()["items"]
    assert (failed["phase"], failed["published"]) == ("publish", 40)
    # what a crash of PostgreSQL does to an unlogged table
    await pool.execute(f"TRUNCATE import_staged_{failed['id']}")

    r = await post_file(ingest, tenant, "sales", path)
    assert (r.json()["id"], r.json()["started"]) == (failed["id"], "resumed")
    done = await finished(ingest, tenant, failed["id"])
    assert (done["status"], done["rows"], done["accepted"], done["published"]) == (
        "done",
        120,
        120,
        120,
    )
    assert any("read again from the start" in n for n in done["notes"])
    await classified(pool, broker, tenant, 120)
    await assert_state_matches(pool, tenant, path)
    seen = counts(await on_topic(broker.bootstrap, tenant, 120))
    # 40 checkpointed + 20 not + all 120 again from the start
    assert len(seen) == 120 and sum(seen.values()) == 180


async def test_customers_are_stored_and_updated(ingest, pool, tenant, tmp_path):
    body = await imported(ingest, tenant, "customers", CUSTOMERS)
    assert (body["status"], body["rows"], body["accepted"], body["rejected"]) == ("done", 6, 4, 2)
    assert [(r["line"], r["column"]) for r in body["rejections"]] == [
        (5, "顧客コード"),
        (6, "メール配信"),
    ]
    details = await store.customer_details(pool, tenant, ["0001", "0013", "0017", "0100", "0005"])
    assert sorted(details) == ["0001", "0013", "0017", "0100"]
    assert details["0001"] == {
        "name": "黒木 健一",
        "kana": "クロキ ケンイチ",
        "company": "(株)ウィング",
        "postal_code": "100-0011",
        "address1": "東京都千代田区内幸町",
        "address2": "1-2-3",
        "phone": "03-5100-0000",
        "fax": "03-5100-0001",
        "email": "kuroki@example.jp",
        "mail_consent": True,
        "branch_id": None,
    }
    assert details["0017"]["mail_consent"] is False
    stamp = await pool.fetchval(
        "SELECT updated_at FROM customers WHERE tenant_id = $1 AND customer_id = '0013'", tenant
    )

    # a file with fewer columns updates those and leaves the rest; a new code is added
    update = tmp_path / "update.csv"
    update.write_text(
        "顧客コード,メールアドレス,店舗\n0001,kenichi@example.jp,shibuya\n0200,new@example.jp,umeda\n",
        encoding="utf-8",
    )
    assert (await imported(ingest, tenant, "customers", update))["accepted"] == 2
    details = await store.customer_details(pool, tenant, ["0001", "0200"])
    assert details["0001"]["email"] == "kenichi@example.jp"
    assert (details["0001"]["name"], details["0001"]["branch_id"]) == ("黒木 健一", "shibuya")
    assert details["0200"]["email"] == "new@example.jp" and details["0200"]["name"] is None

    # the same customer file again: nothing changes, not even updated_at
    assert (await imported(ingest, tenant, "customers", CUSTOMERS))["accepted"] == 4
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tenant) == 5
    assert (
        await pool.fetchval(
            "SELECT updated_at FROM customers WHERE tenant_id = $1 AND customer_id = '0013'",
            tenant,
        )
        == stamp
    )
    assert (await store.customer_details(pool, tenant, ["0001"]))["0001"][
        "email"
    ] == "kuroki@example.jp"


async def run_cli(argv, tenant):
    key = (await api_key(get_settings().database_url, tenant, "ingest"))["Authorization"][7:]
    args = build_parser().parse_args(["import", *argv, "--tenant", tenant, "--key", key])
    out, err = io.StringIO(), io.StringIO()
    transport = httpx.ASGITransport(app=ingest_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        code = await cli_imports.run(
            args, get_settings(), client=client, out=out, err=err, poll_seconds=0.02
        )
    return code, out.getvalue(), err.getvalue()


async def test_cli_exit_codes_summary_and_rejections_file(running, pool, tenant, tmp_path):
    good = tmp_path / "売上.tsv"
    good.write_bytes(CP932_SALES.read_bytes())
    code, out, err = await run_cli(["sales", str(good)], tenant)
    assert code == 0, err
    assert "取込完了 / import done" in out and "accepted 8" in out and "rejected 0" in out
    assert "rows/s" in err  # the progress line
    assert not (tmp_path / "売上.tsv.rejections.csv").exists()

    broken = tmp_path / "broken.csv"
    broken.write_bytes(BROKEN.read_bytes())
    code, out, err = await run_cli(["sales", str(broken)], tenant)
    assert code == 1, err
    written = tmp_path / "broken.csv.rejections.csv"
    assert f"→ {written}" in out and "rejected 11" in out
    lines = list(csv.reader(io.StringIO(written.read_text(encoding="utf-8-sig"))))
    assert lines[0] == ["line", "column", "value", "reason"] and len(lines) == 13
    assert {int(line[0]) for line in lines[1:]} == {line for line, _, _ in BROKEN_REJECTED}

    elsewhere = tmp_path / "out" / "rejected.csv"
    elsewhere.parent.mkdir()
    code, out, _ = await run_cli(
        ["customers", str(CUSTOMERS), "--rejections", str(elsewhere)], tenant
    )
    assert code == 1 and elsewhere.exists() and "たぶん" in elsewhere.read_text("utf-8-sig")

    bad = tmp_path / "bad.csv"
    bad.write_text("Cust ID,Date,Amount\nA,2003/3/30,100\n")
    code, _, err = await run_cli(["sales", str(bad), "--branch", "b"], tenant)
    assert code == 2 and "--map 'Cust ID=customer_id'" in err
    code, out, _ = await run_cli(["sales", str(bad), "--branch", "b", "--dry-run"], tenant)
    assert code == 2 and "Closest header: 'Cust ID'" in out and "文字コード encoding" in out
    code, out, _ = await run_cli(
        ["sales", str(bad), "--branch", "b", "--map", "Cust ID=customer_id"], tenant
    )
    assert code == 0 and "accepted 1" in out
    assert (
        await pool.fetchval("SELECT count(*) FROM imports WHERE tenant_id = $1", tenant) == 4
    )  # the dry run and the mapping errors recorded nothing


def write_customers(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("顧客コード,氏名,メールアドレス\n")
        f.writelines(f"K{i:06d},顧客 {i},k{i}@example.jp\n" for i in range(rows))


async def test_a_cancelled_import_keeps_what_it_stored_and_resumes(ingest, pool, tenant, tmp_path):
    path, rows = tmp_path / "customers.csv", 60_000
    write_customers(path, rows)
    r = await post_file(ingest, tenant, "customers", path)
    assert r.status_code == 202 and r.json()["started"] == "new"
    import_id = r.json()["id"]
    h = {}

    async def checkpointed():
        body = (await ingest.get(f"/v1/imports/{import_id}", headers=h)).json()
        return body["status"] == "running" and body["last_line"] > 0

    await wait_for(checkpointed, interval=0.02, what="a first checkpoint")
    r = await ingest.post(f"/v1/imports/{import_id}/cancel", headers=h)
    assert r.status_code == 200, r.text
    stopped = r.json()
    assert (stopped["status"], stopped["resumable"]) == ("interrupted", True)
    assert 0 < stopped["accepted"] < rows
    stored = await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tenant)
    assert stored == stopped["accepted"]  # stored in the checkpoint's own transaction
    r = await ingest.post(f"/v1/imports/{import_id}/cancel", headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "not_running")

    r = await post_file(ingest, tenant, "customers", path)
    assert (r.json()["id"], r.json()["started"]) == (import_id, "resumed")
    done = await finished(ingest, tenant, import_id)
    assert (done["status"], done["rows"], done["accepted"], done["runs"]) == ("done", rows, rows, 2)
    assert done["resumed_from_line"] == stopped["last_line"]
    assert (
        await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tenant) == rows
    )


async def test_staging_tables_nobody_will_read_are_dropped(pool, tenant):
    async def new_import(status: str, age_days: int = 0) -> int:
        return await pool.fetchval(
            "INSERT INTO imports (tenant_id, kind, file_sha256, status, updated_at)"
            " VALUES ($1, 'sales', 'x', $2, now() - make_interval(days => $3)) RETURNING id",
            tenant,
            status,
            age_days,
        )

    done, stale = await new_import("done"), await new_import("failed", 8)
    recent = await new_import("interrupted", 1)
    gone = 10**12  # an import that no longer exists
    async with pool.acquire() as conn:
        for import_id in (done, stale, recent, gone):
            await store.create_staging(conn, import_id)
        dropped = await store.drop_stale_staging(conn)
        assert {done, stale, gone} <= set(dropped) and recent not in dropped
        assert await store.staged_count(conn, recent) == 0  # still there, empty
        assert await store.staged_count(conn, stale) is None
        await store.drop_staging(conn, recent)
