"""The sales reader parses a block of rows column by column (Arrow); the row-at-a-time reader it
replaced is kept as the oracle (tests/ingest/imports/oracle/, a frozen copy). Both must give the same
results on every file: the same events (to the byte of their JSON), the same rejections (line,
column, value, reason, every problem), the same warnings and counters — on the fixtures and
on generated files that mix good rows, bad cells and broken records, in every encoding, and
with blocks small enough that rows of every kind meet at block borders."""

from __future__ import annotations

import codecs

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.imports import sales as columnar
from services.ingest.imports.sales import read_sales
from tests.helpers import FIXTURES
from tests.ingest.imports.oracle.sales_rows import read_sales as read_sales_by_row


def outcome(reader) -> dict:
    results = []
    for r in reader:
        if r.ok:
            results.append(("ok", r.line, r.event))
        else:
            results.append(("rejected", r.line, r.column, r.value, r.reason, r.problems))
    return {
        "results": results,
        "warnings": reader.warnings,
        "counters": (reader.rows, reader.accepted, reader.rejected),
        "encoding": reader.encoding,
    }


def both(source, **kw) -> tuple[dict, dict, list]:
    kw.setdefault("tenant", "demo")
    old = outcome(read_sales_by_row(source, **kw))
    new_reader = read_sales(source, **kw)
    rows = list(new_reader)
    # run again for the outcome (the reader is an iterator)
    new = outcome(read_sales(source, **kw))
    return old, new, rows


def assert_same(source, **kw) -> dict:
    old, new, rows = both(source, **kw)
    assert new == old
    by_row = {r[1]: r[2] for r in old["results"] if r[0] == "ok"}
    for row in rows:
        if row.ok:  # the JSON made column by column is orjson's JSON of the event
            assert row.json == orjson.dumps(by_row[row.line])
    return new


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("sales_*")), ids=lambda p: p.name)
@pytest.mark.parametrize("block", [1, 2, 3, 1000])
def test_fixtures_read_the_same(path, block, monkeypatch):
    monkeypatch.setattr(columnar.SalesReader, "block_rows", block)
    kw = {"branch": "honten"} if "no_amount" in path.name else {}
    new = assert_same(path, **kw)
    assert new["results"]


def test_options_read_the_same(monkeypatch):
    monkeypatch.setattr(columnar.SalesReader, "block_rows", 2)
    path = FIXTURES / "sales_cp932.tsv"
    assert_same(path, branch="online", channel="ec", namespace="shop-2")
    assert_same(path, default_zone="UTC")


def test_a_plain_file_is_read_by_blocks(tmp_path, monkeypatch):
    """The Arrow split takes plain lines; a block with a quote goes record by record."""
    taken = []
    plain = columnar.SalesReader._plain_block

    def spy(self):
        block = plain(self)
        taken.append(block is not None)
        return block

    monkeypatch.setattr(columnar.SalesReader, "_plain_block", spy)
    monkeypatch.setattr(columnar.SalesReader, "block_rows", 2)
    path = tmp_path / "s.csv"
    path.write_text(
        "顧客コード,購入日,金額,店舗\nA,2024/1/1,100,x\nB,2024/1/2,200,x\n"
        'C,2024/1/3,"1,000",x\nD,2024/1/4,300,x\nE,2024/1/5,400,x\n',
        encoding="utf-8",
    )
    new = assert_same(path)
    assert [r[0] for r in new["results"]] == ["ok"] * 5
    assert taken[:3] == [True, False, True]


# ------------------------------------------------------------------------- generated files

HEADERS = {
    "customer_id": ("顧客コード", "customer_id"),
    "date": ("受注日", "date"),
    "time": ("時刻", "time"),
    "branch": ("店舗コード", "branch"),
    "kind": ("区分", "kind"),
    "order_id": ("伝票番号", "order_id"),
    "sku": ("商品コード", "sku"),
    "name": ("商品名", "product_name"),
    "unit_price": ("単価", "unit_price"),
    "quantity": ("数量", "quantity"),
    "tax": ("消費税", "tax"),
    "amount": ("売上金額", "amount"),
    "net_amount": ("税抜金額", "net_amount"),
    "currency": ("通貨", "currency"),
    "channel": ("チャネル", "channel"),
}

CELLS = {
    "customer_id": ["C001", "C002", " C003 ", '="0004"', "Ｃ００５", "", "x" * 201, "x" * 185,
                    'a"b', "顧客1", "C\\1"],
    "date": ["2024/1/5", "2024-01-06", "2024年1月7日", "20240108", "R6.1.9", "45000",
             "1/2/2024", "2024/2/30", "", "2024-01-05T10:00:00+09:00", "yesterday"],
    "time": ["10:00", "23:59:59", "", "25:00", "１０：３０"],
    "branch": ["shibuya", "umeda", "", " online ", "店舗Ａ", "b" * 101],
    "kind": ["", "売上", "返品", "取消", "sale", "return", "void", "refund?"],
    "order_id": ["O1", "O1", "O2", "O3", "", '="0007"', "o" * 201, "注文9"],
    "sku": ["K-01", "", "ｋ－０２"],
    "name": ["黒酢", "", "青汁 30包"],
    "unit_price": ["3,000", "1200", "", "△500", "1.005", "abc", "1e5"],
    "quantity": ["1", "2", "", "-1", "0.5", "1,000,000,000"],
    "tax": ["240", "", "(10)", "8.5"],
    "amount": ["3,240", "105,607", "", "-1,200", "△1,200", "1,200-", "¥3,000", "1,2,3",
               "999999999999999", "0"],
    "net_amount": ["3000", "", "x"],
    "currency": ["", "JPY", "usd", "YEN1"],
    "channel": ["", "ec", "店頭"],
}  # fmt: skip

FIELD_SETS = [
    ("customer_id", "date", "branch", "amount"),
    ("order_id", "date", "customer_id", "branch", "sku", "name", "unit_price", "quantity", "tax",
     "amount"),
    ("customer_id", "date", "time", "kind", "order_id", "unit_price", "quantity", "tax",
     "currency", "channel"),
    ("customer_id", "date", "branch", "kind", "order_id", "net_amount", "tax", "amount"),
]  # fmt: skip


@st.composite
def sales_files(draw) -> tuple[bytes, dict]:
    fields = list(draw(st.sampled_from(FIELD_SETS)))
    english = draw(st.booleans())
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp932", "utf-16"]))
    delimiter = draw(st.sampled_from(["\t", ","]))
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    header = [HEADERS[f][1 if english else 0] for f in fields]
    lines = [delimiter.join(header)]
    for _ in range(draw(st.integers(0, 14))):
        shape = draw(st.sampled_from(["row"] * 6 + ["blank", "spaces", "short", "long", "quoted",
                                                     "multiline", "unterminated", "trailing"]))  # fmt: skip
        cells = [draw(st.sampled_from(CELLS[f])) for f in fields]
        if shape == "blank":
            lines.append("")
        elif shape == "spaces":
            lines.append(delimiter.join(" " for _ in fields))
        elif shape == "short":
            lines.append(delimiter.join(cells[:-1]))
        elif shape == "long":
            lines.append(delimiter.join([*cells, "extra"]))
        elif shape == "trailing":
            lines.append(delimiter.join([*cells, "", ""]))
        elif shape == "quoted":
            lines.append(delimiter.join(f'"{c}"' if '"' not in c else c for c in cells))
        elif shape == "multiline":
            cells[-1] = f'"{cells[-1]}\n2行目"'
            lines.append(delimiter.join(cells))
        elif shape == "unterminated":
            cells[0] = '"' + cells[0]
            lines.append(delimiter.join(cells))
        else:
            lines.append(delimiter.join(c if delimiter not in c else f'"{c}"' for c in cells))
    text = newline.join(lines) + draw(st.sampled_from([newline, ""]))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()) and len(data) > 40:  # a stray byte in the middle
        at = draw(st.integers(20, len(data) - 1))
        data = data[:at] + b"\x82" + data[at:]
    options = {}
    if "branch" not in fields or draw(st.booleans()):
        options["branch"] = draw(st.sampled_from(["honten", " "]))
    return data, options


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sales_files(), st.sampled_from([1, 2, 3, 5, 1000]))
def test_generated_files_read_the_same(tmp_path, monkeypatch, file, block):
    data, options = file
    monkeypatch.setattr(columnar.SalesReader, "block_rows", block)
    path = tmp_path / "sales.csv"
    path.write_bytes(data)
    try:
        old = outcome(read_sales_by_row(path, tenant="demo", **options))
    except Exception as exc:  # a mapping error: the same one
        with pytest.raises(type(exc)) as caught:
            outcome(read_sales(path, tenant="demo", **options))
        assert str(caught.value) == str(exc)
        return
    assert_same(path, **options)
    assert old["counters"][0] == len(old["results"])


def test_utf16_and_bom_files_read_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(columnar.SalesReader, "block_rows", 2)
    text = "顧客コード\t購入日\t金額\t店舗\r\nA\t2024/1/1\t1,000\tx\r\nB\t2024/1/2\t△200\tx\r\n"
    for encoding in ("utf-16", "utf-8-sig"):
        path = tmp_path / f"{encoding}.tsv"
        path.write_bytes(text.encode(encoding))
        assert codecs.lookup(encoding)
        new = assert_same(path)
        assert [r[0] for r in new["results"]] == ["ok", "ok"]
