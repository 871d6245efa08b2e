"""The import's pure parts: batching with a resume checkpoint, Kafka's partition placement,
progress and ETA, which customer columns a file updates, the rejections CSV, and the command
line client's texts and exit codes against a scripted ingest (httpx.MockTransport)."""

from __future__ import annotations

import csv
import io
import json
import random
import struct
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner

from services.cli import build_parser
from services.cli import imports as cli_imports
from services.ingest.imports import runner, views
from services.ingest.imports.customers import read_customers
from services.ingest.imports.preview import preview
from services.ingest.imports.sales import read_sales
from shared.settings import Settings
from tests.helpers import FIXTURES

BROKEN = FIXTURES / "sales_broken.csv"
CP932_SALES = FIXTURES / "sales_cp932.tsv"
CUSTOMERS = FIXTURES / "customers_cp932.tsv"


def batches(path, limit, skip_to=0):
    reader = read_sales(path, tenant="t")
    results = iter(reader)
    out = []
    while True:
        b = runner.take(results, reader, limit, skip_to, lambda r: r.line)
        out.append(b)
        if b.done:
            return out


def test_take_cuts_batches_in_file_order_with_rejections_and_counters():
    got = batches(BROKEN, 5)
    assert [b.items for b in got] == [[2], [8], [14, 16, 17, 18], [20]]
    assert [[r.line for r in b.rejections] for b in got] == [
        [3, 4, 5, 6],
        [7, 10, 11, 13],
        [15],
        [19, 21],
    ]
    assert [b.last_line for b in got] == [6, 13, 18, 21]
    assert [b.processed for b in got] == [5, 5, 5, 3]
    assert [b.done for b in got] == [False, False, False, True]
    assert (got[-1].rows, got[-1].accepted, got[-1].rejected) == (18, 7, 11)
    assert got[0].rows == 5 and got[0].bytes_read < got[-1].bytes_read


def test_take_after_a_checkpoint_skips_what_an_earlier_run_did():
    got = batches(BROKEN, 5, skip_to=13)
    assert [b.items for b in got] == [[14, 16, 17, 18], [20]]
    # rows up to line 13 (their rejections included) were recorded by the earlier run
    assert [[r.line for r in b.rejections] for b in got] == [[15], [19, 21]]
    assert [b.processed for b in got] == [5, 3]
    assert got[-1].rows == 18  # the counters still cover the whole file


def test_take_checks_the_first_accepted_row_of_a_batch():
    reader = read_sales(CP932_SALES, tenant="t")
    seen = []
    runner.take(iter(reader), reader, 3, 0, lambda r: r, seen.append)
    assert [r.line for r in seen] == [2]


def test_events_that_break_the_contract_fail_the_import():
    (row,) = [r for r in read_sales(CP932_SALES, tenant="t")][:1]
    runner.check_sale(row)
    broken = type(row)(row.line, {**row.event, "amount": "-5"})
    with pytest.raises(runner.ImportFailed, match="line 2"):
        runner.check_sale(broken)


def test_partitioner_places_keys_as_kafkas_default_partitioner():
    rnd = random.Random(5)
    for n in (1, 3, 8, 12):
        partitions = list(range(n))
        place = runner.Partitioner(reversed(partitions))
        for _ in range(300):
            key = f"t{rnd.randrange(99)}:C{rnd.randrange(10**6):06d}".encode()
            assert place(key) == DefaultPartitioner()(key, partitions, partitions)
            assert place(key) == place(key)  # cached


def staged_fields(stream: bytes) -> list[tuple]:
    """Read a binary COPY stream of the staging table back (PostgreSQL's format)."""
    assert stream.startswith(b"PGCOPY\n\xff\r\n\x00") and stream.endswith(b"\xff\xff")
    rows, at = [], 19
    while stream[at : at + 2] != b"\xff\xff":
        (n,) = struct.unpack_from(">h", stream, at)
        at += 2
        fields = []
        for _ in range(n):
            (size,) = struct.unpack_from(">i", stream, at)
            fields.append(stream[at + 4 : at + 4 + size])
            at += 4 + size
        micros, line = (struct.unpack(">q", f)[0] for f in fields[:2])
        when = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
        rows.append((when, line, fields[2].decode(), fields[3]))
    return rows


def test_a_sale_is_staged_with_its_sort_key_then_published_as_key_partition_and_json():
    rows = list(read_sales(CP932_SALES, tenant="demo"))[:2]
    odd = type(rows[1])(rows[1].line, {**rows[1].event, "customer_id": 'A-"0104",\n'})
    staged = staged_fields(runner.staged_rows(runner.stage_record(r) for r in (rows[0], odd)))
    assert [s[:3] for s in staged] == [
        (datetime(2003, 3, 29, 15, tzinfo=UTC), 2, "A-0104"),  # 2003-03-30 00:00 in Tokyo
        (datetime.fromisoformat(odd.event["occurred_at"]), 3, 'A-"0104",\n'),
    ]
    assert [json.loads(s[3]) for s in staged] == [rows[0].event, odd.event]
    # what the publish phase reads back: (occurred_at, line, customer, event bytes)
    published = runner.publish_records("demo", lambda k: 7)(staged)
    assert [(p, k) for p, k, _ in published] == [(7, b"demo:A-0104"), (7, b'demo:A-"0104",\n')]
    assert json.loads(published[0][2]) == rows[0].event


def test_rate_over_a_window_and_eta_from_bytes():
    now = [100.0]
    rate = runner.Rate(total_bytes=1000, window=10, clock=lambda: now[0])
    now[0] = 102
    assert rate.update(2000, 200) == (1000.0, 8.0)  # 100 bytes/s, 800 bytes left
    now[0] = 104
    assert rate.update(4000, 600) == (1500.0, 2.7)  # 150 bytes/s, 400 left
    now[0] = 120  # the window keeps the last sample before it: from t=104 on
    assert rate.update(1000, 1000) == (62.5, 0.0)
    assert rate.overall() == 350.0
    assert runner.Rate(None, clock=lambda: 5.0).update(10, 10) == (None, None)


def test_options_are_canonical():
    assert runner.options_of(None) == {} == runner.options_of("  ", [])
    assert runner.options_of(" web ", ["A=b", ""]) == {"branch": "web", "map": ["A=b"]}
    assert runner.ImportRequest("sales", "t", "x", ("A=b",)).options == {
        "branch": "x",
        "map": ["A=b"],
    }


def test_customer_columns_are_the_ones_the_file_has():
    reader = read_customers(CUSTOMERS, tenant="t")
    assert runner.customer_columns(reader.mapping.fields, False) == [
        "name",
        "kana",
        "company",
        "postal_code",
        "address1",
        "address2",
        "phone",
        "fax",
        "email",
        "mail_consent",
    ]
    reader.close()
    assert runner.customer_columns(["customer_id", "family_name", "city"], True) == [
        "name",
        "address1",
        "branch_id",
    ]


def test_rejections_csv_has_a_line_per_problem_and_survives_any_value():
    rejections = [
        {
            "line": 13,
            "column": "購入日",
            "value": "2024/1/32",
            "reason": "no such date",
            "problems": [
                {"column": "購入日", "value": "2024/1/32", "reason": "no such date"},
                {"column": "数量", "value": "x", "reason": "not a number"},
            ],
        },
        {"line": 15, "column": None, "value": 'a,"b\nc', "reason": "unterminated", "problems": []},
    ]
    text = views.rejections_csv(rejections)
    assert list(csv.reader(io.StringIO(text))) == [
        ["line", "column", "value", "reason"],
        ["13", "購入日", "2024/1/32", "no such date"],
        ["13", "数量", "x", "not a number"],
        ["15", "", 'a,"b\nc', "unterminated"],
    ]
    assert not views.rejections_csv(rejections, header=False).startswith("line")


def test_import_view_progress():
    row = {
        "id": 3,
        "tenant_id": "t",
        "kind": "sales",
        "file_name": "f.csv",
        "file_sha256": "ab",
        "size_bytes": 200,
        "options": {},
        "status": "running",
        "rows": 10,
        "accepted": 9,
        "rejected": 1,
        "bytes_read": 50,
        "rows_per_second": 5.0,
        "eta_seconds": 3.0,
        "last_line": 11,
        "runs": 1,
        "resumed_from_line": None,
        "encoding": "cp932",
        "delimiter": "tab",
        "mapping": [],
        "notes": [],
        "started_at": datetime(2026, 1, 1, tzinfo=UTC),
        "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
        "finished_at": None,
        "error": None,
    }
    view = views.import_view(row)
    assert (view["progress"], view["resumable"]) == (0.25, False)
    assert views.import_view({**row, "status": "failed"})["resumable"] is True
    assert views.import_view({**row, "status": "done"})["progress"] == 1.0
    # then the sales are published: progress is the fraction of the staged events sent
    publishing = views.import_view({**row, "phase": "publish", "published": 3})
    assert (publishing["phase"], publishing["progress"], publishing["published"]) == (
        "publish",
        0.3333,
        3,
    )
    customers = views.import_view({**row, "kind": "customers"})
    assert (customers["phase"], customers["published"]) == ("read", None)


# ----------------------------------------------------------------------------- command line


def test_import_arguments():
    args = build_parser().parse_args(
        ["import", "sales", "f.csv", "--map", "A=b", "--map", "C=-", "--branch", "web"]
    )
    assert (args.kind, args.file, args.map, args.branch) == (
        "sales",
        "f.csv",
        ["A=b", "C=-"],
        "web",
    )
    assert (args.dry_run, args.resume, args.tenant, args.rejections) == (False, None, None, None)
    args = build_parser().parse_args(["import", "customers", "c.tsv", "--resume", "7", "--dry-run"])
    assert (args.kind, args.resume, args.dry_run) == ("customers", 7, True)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["import", "orders", "f.csv"])


def test_preview_text_in_japanese_and_english():
    text = cli_imports.render_preview(
        views.preview_dict(preview(CP932_SALES, 3), "sales.tsv"), "sales.tsv"
    )
    for label in ("文字コード encoding: CP932", "区切り delimiter: tab", "見出し行 header line: 1"):
        assert label in text
    assert "列の対応 mapping" in text and "売上金額  → amount" in text
    assert "✓ 2行目 line 2: A-0104 @shibuya 2003-03-30 00:00 sale ¥6,480 order 1001" in text
    text = cli_imports.render_preview(
        views.preview_dict(preview(CUSTOMERS, 6, kind="customers")), "c.tsv"
    )
    assert "✗ 6行目 line 6: column メール配信 'たぶん'" in text
    assert "黒木 健一 (クロキ ケンイチ)" in text and "メール可 mail ok" in text
    assert "read as kana" in text  # the mapping's note


def test_progress_line_and_duration():
    row = {
        "kind": "sales",
        "status": "running",
        "progress": 0.452,
        "rows": 452000,
        "accepted": 451990,
        "rejected": 10,
        "rows_per_second": 28512.4,
        "eta_seconds": 3725,
    }
    assert cli_imports.progress_line(row) == (
        "sales   45.2%  行 rows 452,000  取込 accepted 451,990  除外 rejected 10  "
        "28,512 rows/s  残り ETA 1:02:05"
    )
    assert cli_imports.duration(65) == "1:05" and cli_imports.duration(None) == "–"


def test_progress_line_names_the_phase_of_a_sales_import():
    row = {
        "kind": "sales",
        "status": "running",
        "phase": "read",
        "progress": 0.452,
        "rows": 452000,
        "accepted": 451990,
        "rejected": 10,
        "published": 0,
        "rows_per_second": 98512.4,
        "eta_seconds": 5,
    }
    assert cli_imports.progress_line(row) == (
        "sales  1/2 読込 reading   45.2%  行 rows 452,000  取込 accepted 451,990  "
        "除外 rejected 10  98,512 rows/s  残り ETA 0:05"
    )
    publishing = {**row, "phase": "publish", "progress": 0.3, "published": 300000}
    publishing.update(rows=1000000, accepted=999990, rows_per_second=70000, eta_seconds=10)
    assert cli_imports.progress_line(publishing) == (
        "sales  2/2 送信 publishing   30.0%  送信 published 300,000 / 999,990  "
        "除外 rejected 10  70,000 events/s  残り ETA 0:10"
    )
    done = {**publishing, "status": "done", "progress": 1.0, "rows_per_second": 40000}
    assert cli_imports.progress_line(done) == (
        "sales  100.0%  行 rows 1,000,000  取込 accepted 999,990  除外 rejected 10  40,000 rows/s"
    )


def test_summary_of_a_sales_import_resumed_while_publishing():
    row = base_row(
        status="failed",
        phase="publish",
        rows=120,
        accepted=120,
        published=60,
        last_line=121,
        error="the broker did not acknowledge",
    )
    text = cli_imports.summary(row, 1.0, None)
    assert "送信 published 60 events in date order" in text
    assert "the file was read to the end and 60 of 120 events were published" in text
    resumed = {**row, "status": "done", "published": 120, "runs": 2}
    resumed.update(resumed_from_line=121, resumed_from_published=60)
    text = cli_imports.summary(resumed, 1.0, None)
    assert "送信 published 120 events in date order (日付順), 再開 resumed after 60" in text
    assert "再開 resumed after line 121" in text


class ScriptedIngest:
    """An ingest that answers the import API from a script (no server)."""

    def __init__(self, final: dict, polls: int = 2, post_status: int = 202, post_body=None):
        self.final, self.polls, self.requests = final, polls, []
        self.post_status, self.post_body = post_status, post_body

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.method == "POST" and path.startswith("/v1/imports/") and "cancel" not in path:
            request.read()
            if self.post_status != 202:
                return httpx.Response(self.post_status, json=self.post_body)
            return httpx.Response(202, json={**self.row("running", 0), "started": "new"})
        if path.endswith("/rejections"):
            rejected = [{"line": 5, "column": "顧客コード", "value": "", "reason": "missing"}]
            return httpx.Response(
                200, content=b"\xef\xbb\xbf" + views.rejections_csv(rejected).encode()
            )
        if path.endswith("/cancel"):
            self.final = {**self.final, "status": "interrupted"}
            return httpx.Response(200, json=self.row("interrupted", 1))
        self.polls -= 1
        return httpx.Response(200, json=self.row("running", 0.5) if self.polls > 0 else self.final)

    def row(self, status, progress):
        return {
            **self.final,
            "status": status,
            "progress": progress,
            "rows_per_second": 100.0,
            "eta_seconds": 1.0,
        }


def base_row(**kw):
    return {
        "id": 9,
        "tenant_id": "demo",
        "kind": "sales",
        "file_name": "s.tsv",
        "status": "done",
        "rows": 8,
        "accepted": 8,
        "rejected": 0,
        "rows_per_second": 800.0,
        "eta_seconds": 0,
        "progress": 1.0,
        "last_line": 10,
        "runs": 1,
        "resumed_from_line": None,
        "encoding": "cp932",
        "delimiter": "tab",
        "notes": [],
        "error": None,
        **kw,
    }


async def cli(argv, ingest: ScriptedIngest):
    args = build_parser().parse_args(["import", "--key", "kzk_test", *argv])
    args.tenant = args.tenant or "demo"
    out, err = io.StringIO(), io.StringIO()
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(ingest), base_url="http://ingest"
    ) as client:
        code = await cli_imports.run(
            args, Settings(), client=client, out=out, err=err, poll_seconds=0
        )
    return code, out.getvalue(), err.getvalue()


async def test_cli_without_a_key_says_how_to_get_one(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_bytes(CP932_SALES.read_bytes())
    args = build_parser().parse_args(["import", "sales", str(path), "--tenant", "demo"])
    err = io.StringIO()
    code = await cli_imports.run(args, Settings(api_key=None), out=io.StringIO(), err=err)
    assert code == 3 and "KIZUNA_API_KEY" in err.getvalue() and "keys create" in err.getvalue()


async def test_cli_all_rows_imported_exits_0(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_bytes(CP932_SALES.read_bytes())
    ingest = ScriptedIngest(base_row())
    code, out, err = await cli(["sales", str(path), "--map", "伝票番号=order_id"], ingest)
    assert code == 0, err
    post = ingest.requests[0]
    assert (post.url.params["file_name"], post.url.params.get_list("map")) == (
        "s.tsv",
        ["伝票番号=order_id"],
    )
    assert post.headers["Authorization"] == "Bearer kzk_test"
    assert post.content == CP932_SALES.read_bytes()
    assert "取込完了 / import done — import 9" in out and "accepted 8" in out
    assert "行 rows" in err and not (tmp_path / "s.tsv.rejections.csv").exists()


async def test_cli_rejected_rows_exit_1_and_land_next_to_the_file(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_bytes(CUSTOMERS.read_bytes())
    ingest = ScriptedIngest(base_row(kind="customers", rows=6, accepted=4, rejected=2))
    code, out, _ = await cli(["customers", str(path)], ingest)
    written = tmp_path / "c.tsv.rejections.csv"
    assert code == 1 and f"→ {written}" in out
    assert written.read_text("utf-8-sig").splitlines()[1] == "5,顧客コード,,missing"


async def test_cli_mapping_errors_exit_2_before_any_upload(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("Cust ID,Date,Amount\nA,2003/3/30,100\n")
    ingest = ScriptedIngest(base_row())
    code, _, err = await cli(["sales", str(path), "--branch", "b"], ingest)
    assert code == 2 and "Closest header: 'Cust ID'" in err and ingest.requests == []
    code, _, err = await cli(["sales", str(tmp_path / "missing.csv")], ingest)
    assert code == 2 and "no such file" in err
    code, out, _ = await cli(["sales", str(CP932_SALES), "--dry-run"], ingest)
    assert code == 0 and "文字コード encoding" in out and ingest.requests == []


async def test_cli_server_side_errors(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_bytes(CP932_SALES.read_bytes())
    down = ScriptedIngest(
        base_row(),
        post_status=503,
        post_body={"error": {"code": "broker_unavailable", "message": "Kafka is not reachable"}},
    )
    code, _, err = await cli(["sales", str(path)], down)
    assert code == 3 and "Kafka is not reachable" in err
    failed = ScriptedIngest(
        base_row(status="failed", error="the broker did not acknowledge", accepted=5, rejected=0)
    )
    code, out, _ = await cli(["sales", str(path)], failed)
    assert code == 3 and "取込失敗 / import failed" in out and "--resume 9" in out

    def refuse(request):
        raise httpx.ConnectError("connection refused")

    args = build_parser().parse_args(
        ["import", "sales", str(path), "--tenant", "demo", "--key", "kzk_test"]
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse), base_url="http://x") as c:
        err = io.StringIO()
        assert await cli_imports.run(args, Settings(), client=c, out=io.StringIO(), err=err) == 3
    assert "kizuna up" in err.getvalue()
