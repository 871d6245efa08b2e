"""The CSV reading layer of the import: real files in both encodings, every kind of broken row
with its line, column and reason, header mapping and suggestions, stable event ids, amounts
computed from unit price × quantity, and the order grouping key the classifier relies on."""

from __future__ import annotations

import codecs
import csv
import io
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.imports.cells import (
    parse_amount,
    parse_consent,
    parse_date,
    parse_datetime,
    parse_number,
)
from services.ingest.imports.customers import read_customers
from services.ingest.imports.dialect import detect
from services.ingest.imports.headers import MappingError, map_headers, normalize_header
from services.ingest.imports.preview import preview
from services.ingest.imports.reader import Rejection, _Occurrences
from services.ingest.imports.sales import read_sales
from shared.cpm import Purchase, compute_figures
from shared.events.purchases import PurchaseEvent
from tests.helpers import FIXTURES

CP932_SALES = FIXTURES / "sales_cp932.tsv"
UTF8_SALES = FIXTURES / "sales_utf8bom.csv"
NO_AMOUNT = FIXTURES / "sales_no_amount.csv"
BROKEN = FIXTURES / "sales_broken.csv"
CUSTOMERS = FIXTURES / "customers_cp932.tsv"


def sales(source, **kw):
    kw.setdefault("tenant", "demo")
    return list(read_sales(source, **kw))


def events(results):
    return [r.event for r in results if r.ok]


def figures(evts, customer):
    """The classifier's own grouping (shared.cpm) over imported events."""
    return compute_figures(
        Purchase(
            event_id=e["event_id"],
            kind=e["kind"],
            branch_id=e["branch_id"],
            occurred_on=datetime.fromisoformat(e["occurred_at"]).date(),
            amount=Decimal(e["amount"] or 0),
            order_id=e["order_id"],
        )
        for e in evts
        if e["customer_id"] == customer
    )


# --------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2003/3/30", date(2003, 3, 30)),
        ("2003/03/30", date(2003, 3, 30)),
        ("2003-03-30", date(2003, 3, 30)),
        ("2003.3.30", date(2003, 3, 30)),
        ("2003年3月30日", date(2003, 3, 30)),
        ("2003年 3月 30日", date(2003, 3, 30)),
        ("20030330", date(2003, 3, 30)),
        ("２００３／３／３０", date(2003, 3, 30)),  # full-width
        ("2003/3/30(日)", date(2003, 3, 30)),  # with the weekday
        ("2003/3/30 14:03", date(2003, 3, 30)),
        ("2003-03-30T23:59:59+09:00", date(2003, 3, 30)),
        ("平成15年3月30日", date(2003, 3, 30)),
        ("H15.3.30", date(2003, 3, 30)),
        ("令和元年5月1日", date(2019, 5, 1)),
        ("  2024/2/29 ", date(2024, 2, 29)),
    ],
)
def test_parse_date(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty date"),
        ("2003/2/30", "no such date"),
        ("2003/13/1", "no such date"),
        ("2023/2/29", "no such date"),
        ("37710", "Excel serial date"),
        ("3/30/2003", "year must come first"),
        ("03/3/30", "two-digit year"),
        ("2003330", "8 digits"),
        ("yesterday", "not a date"),
        ("1850/1/1", "out of range"),
        ("2003/3/30 25:00", "no such time"),
    ],
)
def test_parse_date_failures_say_why(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_date(text)


def test_parse_datetime_keeps_time_and_offset():
    assert parse_datetime("2003/3/30 9:05") == datetime(2003, 3, 30, 9, 5)
    assert parse_datetime("2003/3/30 14:03:05") == datetime(2003, 3, 30, 14, 3, 5)
    assert parse_datetime("2003年3月30日 14時03分") == datetime(2003, 3, 30, 14, 3)
    aware = parse_datetime("2003-03-30T14:03:00+09:00")
    assert aware.utcoffset() == timedelta(hours=9)
    assert parse_datetime("2003-03-30T05:03:00Z").tzinfo == UTC
    assert parse_datetime("2003/3/30") == datetime(2003, 3, 30)  # midnight, naive


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("105607", "105607"),
        ("105,607", "105607"),
        ("¥105,607", "105607"),
        ("￥１０５，６０７", "105607"),  # full-width yen, digits and comma
        ("１０５６０７", "105607"),
        ("\\105,607", "105607"),  # CP932 0x5C: a yen sign on screen, a backslash in Python
        ("105,607円", "105607"),
        ("1,946,700", "1946700"),
        ("-1,200", "-1200"),
        ("−1,200", "-1200"),  # U+2212 minus sign
        ("－1,200", "-1200"),  # full-width hyphen-minus (what CP932 0x817C decodes to)
        ("△1,200", "-1200"),  # Japanese accounting negative
        ("▲1,200", "-1200"),
        ("(1,200)", "-1200"),
        ("1,200-", "-1200"),
        ("¥-1,200", "-1200"),
        ("+500", "500"),
        ("1200.5", "1200.5"),
        ("0", "0"),
        (" 42 ", "42"),
    ],
)
def test_parse_amount(text, expected):
    assert parse_amount(text) == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty amount"),
        ("   ", "empty amount"),
        ("12a0", "not a number"),
        ("1,20,0", "misplaced thousands separator"),
        ("1.05607E+05", "scientific notation"),
        ("1.005", "more than 2 decimal places"),
        ("△-100", "two minus signs"),
        ("¥", "not a number"),
        ("1 000", "not a number"),
    ],
)
def test_parse_amount_failures_say_why(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_amount(text)


def test_parse_number_quantity_places():
    assert parse_number("1.5", places=3, what="quantity") == Decimal("1.5")
    assert parse_number("0.125", places=3, what="quantity") == Decimal("0.125")
    with pytest.raises(ValueError, match="quantity has more than 3 decimal places"):
        parse_number("0.1255", places=3, what="quantity")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("可", True),
        ("不可", False),
        ("yes", True),
        ("No", False),
        ("1", True),
        ("0", False),
        ("○", True),
        ("〇", True),
        ("×", False),
        ("希望する", True),
        ("配信停止", False),
        ("１", True),  # full-width
        ("", None),
    ],
)
def test_parse_consent(text, expected):
    assert parse_consent(text) is expected


def test_parse_consent_failure():
    with pytest.raises(ValueError, match="expected 可/不可, yes/no, 1/0"):
        parse_consent("たぶん")


# --------------------------------------------------------------------------------- detect


def test_detect_cp932_tab():
    d = detect(CP932_SALES.read_bytes())
    assert (d.encoding, d.delimiter, d.newline, d.confident) == ("cp932", "\t", b"\n", True)


def test_detect_utf8_bom_comma():
    d = detect(UTF8_SALES.read_bytes())
    assert (d.encoding, d.delimiter) == ("utf-8-sig", ",")


def test_detect_utf8_without_bom():
    assert detect("顧客コード,購入日\n".encode()).encoding == "utf-8"


def test_detect_prefers_tab_over_commas_in_amounts():
    raw = "顧客コード\t購入日\t購入金額\nA\t2003/3/30\t1,105,607\n".encode("cp932")
    assert detect(raw).delimiter == "\t"
    assert detect(b"a;b;c\n1;2;3\n").delimiter == ";"


def test_detect_cut_multibyte_character_at_the_end_of_the_sample():
    raw = ("顧客コード,氏名\n" + "A,黒木\n" * 100).encode()
    assert detect(raw[:-2]).encoding == "utf-8"  # cut inside 木
    raw = ("顧客コード,氏名\n" + "A,黒木\n" * 100).encode("cp932")
    assert detect(raw[:-2]).encoding == "cp932"


def test_detect_utf8_with_one_stray_byte_is_still_utf8():
    assert detect(BROKEN.read_bytes()).encoding == "utf-8"


def test_detect_ascii_sample_is_not_confident():
    d = detect(b"customer,date,amount\nA,2003/3/30,100\n")
    assert (d.encoding, d.confident) == ("utf-8", False)


def test_detect_bare_cr_and_utf16():
    assert detect("顧客コード,購入日\r1,2\r".encode("cp932")).newline == b"\r"
    d = detect("顧客コード\t購入日\r\n".encode("utf-16"))
    assert (d.encoding, d.delimiter) == ("utf-16", "\t")


# --------------------------------------------------------------------------------- mapping


def test_normalize_header():
    assert normalize_header("顧客ｺｰﾄﾞ") == normalize_header("顧客コード")
    assert normalize_header(" Customer_ID ") == "customerid"
    assert normalize_header("受注Ｎｏ．") == normalize_header("受注番号")
    assert normalize_header("得意先CD") == normalize_header("得意先コード")
    assert normalize_header("E-Mail") == "email"
    assert normalize_header("【住所１】") == "住所1"


def test_map_japanese_and_english_headers():
    m = map_headers(
        ["受注番号", "受注日", "顧客ｺｰﾄﾞ", "店舗", "商品コード", "商品名", "単価", "数量", "消費税",
         "購入金額（税込）"],
        "sales",
    )  # fmt: skip
    assert m.fields == {
        "order_id": 0, "date": 1, "customer_id": 2, "branch": 3, "sku": 4, "name": 5,
        "unit_price": 6, "quantity": 7, "tax": 8, "amount": 9,
    }  # fmt: skip
    m = map_headers(
        ["Order No.", "Purchase Date", "Customer ID", "Store", "SKU", "Product", "Price", "Qty",
         "Tax", "Amount"],
        "sales",
    )  # fmt: skip
    assert list(m.fields) == [
        "order_id", "date", "customer_id", "branch", "sku", "name", "unit_price", "quantity",
        "tax", "amount",
    ]  # fmt: skip


def test_map_picks_the_most_specific_amount_and_says_so():
    m = map_headers(
        ["顧客コード", "売上日", "合計金額", "売上金額", "メモ"], "sales", branch_given=True
    )
    assert m.fields["amount"] == 3
    assert "also looks like amount" in m.ignored[2]
    assert m.ignored[4] == "no field of that name"
    assert m.describe()[3] == {"column": 4, "header": "売上金額", "field": "amount", "note": ""}


def test_missing_customer_column_suggests_the_closest_header():
    with pytest.raises(MappingError) as info:
        map_headers(["Cust ID", "Date", "Amount"], "sales", branch_given=True)
    e = info.value
    assert e.field == "customer_id" and e.suggestion == "Cust ID"
    assert "顧客コード (customer_id)" in str(e)
    assert "Closest header: 'Cust ID' (column 1)" in str(e)
    assert "--map 'Cust ID=customer_id'" in str(e)


def test_missing_date_column_suggests_the_closest_header():
    with pytest.raises(MappingError) as info:
        map_headers(["顧客コード", "購入日付け", "購入金額"], "sales", branch_given=True)
    assert info.value.field == "date"
    assert info.value.suggestion == "購入日付け"


def test_missing_column_without_anything_close_lists_the_headers():
    with pytest.raises(MappingError, match=r"Headers are: '顧客コード', 'xyz'") as info:
        map_headers(["顧客コード", "xyz"], "sales", branch_given=True)
    assert info.value.suggestion is None


def test_missing_amount_and_unit_price():
    with pytest.raises(MappingError, match="and no 単価 .unit_price. to compute it from") as info:
        map_headers(["顧客コード", "購入日", "数量"], "sales", branch_given=True)
    assert info.value.field == "amount"


def test_no_branch_column_and_no_branch_given():
    with pytest.raises(MappingError, match="--branch"):
        map_headers(["顧客コード", "購入日", "金額"], "sales")
    assert (
        "branch"
        not in map_headers(["顧客コード", "購入日", "金額"], "sales", branch_given=True).fields
    )


def test_map_overrides():
    headers = ["得意先", "伝票日", "税込", "備考"]
    m = map_headers(
        headers, "sales", ["得意先=customer_id", "伝票日=購入日", "3=amount"], branch_given=True
    )
    assert m.fields == {"customer_id": 0, "date": 1, "amount": 2}
    m = map_headers(
        ["顧客コード", "購入日", "金額", "受注番号"], "sales", {"受注番号": "-"}, branch_given=True
    )
    assert "order_id" not in m.fields and m.ignored[3] == "ignored (--map)"
    with pytest.raises(
        MappingError, match="unknown field 'custmer_id'. Did you mean 'customer_id'"
    ):
        map_headers(headers, "sales", ["得意先=custmer_id"])
    with pytest.raises(MappingError, match="no column '得意' in the header; did you mean '得意先'"):
        map_headers(headers, "sales", ["得意=customer_id"])
    with pytest.raises(MappingError, match="expected COLUMN=field"):
        map_headers(headers, "sales", ["得意先"])


def test_reader_raises_mapping_error_at_once(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("お客様,日付,金額\nA,2003/3/30,100\n", encoding="utf-8")
    with pytest.raises(MappingError, match="顧客コード"):
        read_sales(path, tenant="demo", branch="b")
    rows = sales(path, branch="b", mapping_overrides=["お客様=customer_id"])
    assert [r.event["customer_id"] for r in rows] == ["A"]


# --------------------------------------------------------------------------------- real files


def test_cp932_tab_file_with_japanese_headers():
    reader = read_sales(CP932_SALES, tenant="demo")
    assert reader.dialect.encoding == "cp932" and reader.dialect.delimiter == "\t"
    results = list(reader)
    assert all(r.ok for r in results)
    # line 4 holds a quoted newline: the next row starts on line 6
    assert [r.line for r in results] == [2, 3, 4, 6, 7, 8, 9, 10]
    evts = events(results)
    assert [e["amount"] for e in evts] == [
        "6480",
        "540",
        "3240",
        "2160",
        "3240",
        "1080",
        "1080",
        "3888",
    ]
    first = evts[0]
    assert first == {
        "schema_version": 1,
        "event_id": first["event_id"],
        "tenant_id": "demo",
        "branch_id": "shibuya",
        "customer_id": "A-0104",
        "occurred_at": "2003-03-30T00:00:00+09:00",
        "amount": "6480",
        "kind": "sale",
        "order_id": "1001",
        "tax": "480",
        "currency": "JPY",
        "channel": None,
        "lines": [{"sku": "K-01", "name": "黒酢にんにく", "unit_price": "3000", "quantity": "2"}],
    }
    assert evts[1]["lines"][0]["name"] == "ｺｰﾋｰ(半角ｶﾅ)"
    assert (
        evts[2]["lines"][0]["name"] == "黒酢にんにく\r\n（お徳用\tタブ入り）"
    )  # newline and tab kept
    assert evts[2]["occurred_at"].startswith("2003-04-02")  # 2003年4月2日
    assert evts[3]["occurred_at"].startswith("2003-04-05")  # 20030405
    assert evts[3]["lines"][0]["unit_price"] == "2000"  # \2,000 (0x5C yen)
    ret = evts[4]  # △3,240 with quantity -1
    assert (ret["kind"], ret["amount"], ret["tax"], ret["lines"][0]["quantity"]) == (
        "return", "3240", "240", "1",
    )  # fmt: skip
    assert evts[7]["lines"][0]["name"] == 'ドリンク "特選"'
    for e in evts:
        PurchaseEvent.model_validate(e)  # what ingest accepts
    assert reader.rows == reader.accepted == 8 and reader.rejected == 0
    assert reader.bytes_read == reader.total_bytes == CP932_SALES.stat().st_size
    assert reader.warnings == []


def test_utf8_bom_comma_file_with_english_headers():
    reader = read_sales(UTF8_SALES, tenant="demo")
    assert reader.dialect.encoding == "utf-8-sig"
    assert reader.columns[0] == "Order ID"  # no BOM in the header
    results = list(reader)
    assert [r.line for r in results] == [2, 3, 5, 6, 7]
    evts = events(results)
    assert evts[0]["lines"][0]["name"] == "Black vinegar, garlic"
    assert evts[1]["lines"][0]["name"] == 'Green juice\n(30 sachets, "value")'
    assert evts[2]["occurred_at"] == "2024-01-06T14:03:00+09:00"
    assert (evts[3]["kind"], evts[3]["amount"], evts[3]["branch_id"]) == (
        "return",
        "3300",
        "store-1",
    )
    assert evts[4]["lines"] == [] and evts[4]["amount"] == "1000"
    for e in evts:
        PurchaseEvent.model_validate(e)


BROKEN_EXPECTED = [
    (3, "購入日", "2024/13/5", "no such date"),
    (4, "購入金額", "12a0", "not a number"),
    (5, "顧客コード", "", "missing customer code"),
    (6, None, None, "wrong number of columns: 7, the header has 8"),
    (7, None, None, "wrong number of columns: 9, the header has 8"),
    (10, "購入日", "37265", "Excel serial date"),
    (11, "区分", "見積", "unknown kind"),
    (13, "購入日", "2024/1/32", "no such date"),
    (15, None, '5012,2024/1/11,C12,s1,売上,"商品L,1,500', "unterminated quote"),
    (19, "商品名", None, "not valid UTF-8"),
    (21, "店舗", "", "missing branch"),
]


def test_every_kind_of_broken_row_with_line_column_and_reason():
    reader = read_sales(BROKEN, tenant="demo")
    results = list(reader)
    rejected = [r for r in results if not r.ok]
    assert [(r.line, r.column, r.value) for r in rejected] == [
        (line, column, value) for line, column, value, _ in BROKEN_EXPECTED
    ]
    for r, (_, _, _, reason) in zip(rejected, BROKEN_EXPECTED, strict=True):
        assert reason in r.reason, (r, reason)
    # a row with two problems reports both
    two = next(r for r in rejected if r.line == 13)
    assert [p[0] for p in two.problems] == ["購入日", "数量"]
    assert "column 数量 'x': not a number" in str(two)
    # the rows an unterminated quote swallowed are read again; a quoted newline (line 8-9)
    # and a blank line (12) do not shift the numbers
    assert [r.line for r in results if r.ok] == [2, 8, 14, 16, 17, 18, 20]
    assert (reader.rows, reader.accepted, reader.rejected) == (18, 7, 11)
    evts = events(results)
    assert evts[1]["lines"][0]["name"] == "商品G\n2行目"
    assert (evts[2]["kind"], evts[2]["amount"]) == ("return", "1200")  # 区分 返品
    void = evts[5]
    assert (void["kind"], void["order_id"], void["amount"]) == ("void", "5015", None)
    for e in evts:
        PurchaseEvent.model_validate(e)


def test_rejection_str():
    r = Rejection(7, "購入金額", "12a0", "not a number")
    assert str(r) == "line 7: column 購入金額 '12a0': not a number"
    assert (
        str(Rejection(6, None, None, "wrong number of columns"))
        == "line 6: row: wrong number of columns"
    )


def test_unterminated_quote_at_the_end_of_the_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('顧客コード,購入日,金額\nA,2003/3/30,100\nB,"2003/3/31,200\nC,2003/4/1,300\n')
    results = sales(path, branch="b")
    assert [(r.line, r.ok) for r in results] == [(2, True), (3, False), (4, True)]
    assert "unterminated quote" in results[1].reason


def test_a_runaway_quote_does_not_eat_the_file(tmp_path):
    body = "".join(f"C{i},2003/3/30,{i}\n" for i in range(3000))
    path = tmp_path / "x.csv"
    path.write_text('顧客コード,購入日,金額\nA,"2003/3/30,100\n' + body)
    results = sales(path, branch="b")
    assert not results[0].ok and results[0].line == 2
    assert sum(r.ok for r in results) == 3000
    assert results[-1].line == 3002


def test_quoted_first_column_spanning_lines_is_one_row(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(
        'メモ,顧客コード,購入日,金額\n"first\nsecond",A,2003/3/30,100\nx,B,2003/3/30,5\n'
    )
    results = sales(path, branch="b")
    assert [(r.line, r.ok) for r in results] == [(2, True), (4, True)]


def test_excel_text_codes_and_branch_fallback(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(
        '顧客コード,購入日,金額,店舗\n="0001",2003/3/30,100,\n="0002",2003/3/30,100,s2\n'
    )
    evts = events(sales(path, branch="honten"))
    assert [(e["customer_id"], e["branch_id"]) for e in evts] == [
        ("0001", "honten"),
        ("0002", "s2"),
    ]


def test_time_column_and_kind_column(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(
        "受注番号,売上日,時刻,顧客コード,売上区分,金額\n"
        "1,2024/5/1,14:03,A,売上,1000\n"
        "1,2024/5/2,9:00:30,A,返品,1000\n"
        "1,2024/5/3,,A,キャンセル,\n"
    )
    evts = events(sales(path, branch="b"))
    assert [(e["occurred_at"], e["kind"], e["amount"]) for e in evts] == [
        ("2024-05-01T14:03:00+09:00", "sale", "1000"),
        ("2024-05-02T09:00:30+09:00", "return", "1000"),
        ("2024-05-03T00:00:00+09:00", "void", None),
    ]


def test_void_needs_an_order_number(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("顧客コード,売上日,区分,金額\nA,2024/5/3,取消,100\n")
    (r,) = sales(path, branch="b")
    assert not r.ok and "needs the order number" in r.reason


def test_default_zone(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("顧客コード,購入日,金額\nA,2024/5/1 23:30,100\n")
    (e,) = events(sales(path, branch="b", default_zone="UTC"))
    assert e["occurred_at"] == "2024-05-01T23:30:00+00:00"


# --------------------------------------------------------------------------------- event ids


def test_same_file_twice_gives_the_same_ids():
    first = [e["event_id"] for e in events(sales(CP932_SALES))]
    second = [e["event_id"] for e in events(sales(CP932_SALES))]
    assert first == second
    assert all(i.startswith("imp-") for i in first)


def test_identical_rows_are_not_duplicates():
    evts = events(sales(CP932_SALES))  # lines 8 and 9 are identical
    assert evts[5]["event_id"] != evts[6]["event_id"]
    assert evts[5]["event_id"].endswith("-1") and evts[6]["event_id"].endswith("-2")
    assert len({e["event_id"] for e in evts}) == len(evts)
    fig = figures(evts, "A-0107")
    assert fig.total_amount == Decimal(2160)  # both count (one order: 1005)
    assert fig.purchase_count == 1


def test_ids_survive_re_encoding_reordering_and_fixing_a_row(tmp_path):
    """What people do between two imports must not double the history."""
    original = {e["event_id"] for e in events(sales(UTF8_SALES))}
    # the same data saved from Excel as CP932, tab-separated, columns and rows in another order
    rows = list(csv.reader(io.StringIO(UTF8_SALES.read_text(encoding="utf-8-sig"))))
    header, data = rows[0], rows[1:]
    order = list(reversed(range(len(header))))
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\r\n")
    w.writerow([header[i] for i in order])
    for row in reversed(data):
        w.writerow([row[i].replace("¥", "￥") for i in order])
    resaved = tmp_path / "resaved.tsv"
    resaved.write_bytes(buf.getvalue().encode("cp932"))
    assert {e["event_id"] for e in events(sales(resaved))} == original
    # a broken file, fixed and imported again: only the fixed rows are new
    before = {e["event_id"] for e in events(sales(BROKEN, branch="s1"))}
    fixed = tmp_path / "fixed.csv"
    fixed.write_bytes(BROKEN.read_bytes().replace(b"2024/13/5", b"2024/1/5"))
    after = {e["event_id"] for e in events(sales(fixed, branch="s1"))}
    assert before < after and len(after - before) == 1


def test_namespace_separates_sources():
    a = events(sales(NO_AMOUNT, branch="b"))
    b = events(sales(NO_AMOUNT, branch="b", namespace="register-2"))
    assert not {e["event_id"] for e in a} & {e["event_id"] for e in b}


def test_tenant_is_not_part_of_the_id():
    a = events(sales(NO_AMOUNT, branch="b", tenant="one"))
    b = events(sales(NO_AMOUNT, branch="b", tenant="two"))
    assert [e["event_id"] for e in a] == [e["event_id"] for e in b]


def test_occurrence_table_counts_like_a_dict():
    rng = random.Random(7)
    table, ref = _Occurrences(), {}
    keys = [rng.getrandbits(63) or 1 for _ in range(5000)]
    for key in keys + rng.sample(keys, 3000) + keys[:10]:
        ref[key] = ref.get(key, 0) + 1
        assert table.add(key) == ref[key]
    assert len(table.slots) >= 5000 / 0.7


# --------------------------------------------------------------------------------- amounts


def test_amount_from_unit_price_times_quantity_plus_tax():
    reader = read_sales(NO_AMOUNT, tenant="demo", branch="honten")
    assert "no amount column: amount = 単価 × 数量 + 消費税" in reader.mapping.notes
    evts = events(reader)
    assert [(e["amount"], e["tax"], e["kind"]) for e in evts] == [
        ("2160", "160", "sale"),  # 1,000 × 2 + 160
        ("540", "40", "sale"),
        ("540", "40", "sale"),
        ("1080", "80", "sale"),
        ("1000", None, "sale"),  # no tax
        ("216", "16", "return"),  # -200 × 1 - 16: a return of 216
        ("999.99", None, "sale"),  # 333.33 × 3
    ]
    for e in evts:
        PurchaseEvent.model_validate(e)


def test_net_amount_plus_tax(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('顧客コード,購入日,税抜金額,消費税\nA,2024/1/1,"1,000",100\n')
    (e,) = events(sales(path, branch="b"))
    assert e["amount"] == "1100"


def test_empty_amount_cell_falls_back_to_unit_price_else_is_rejected(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("顧客コード,購入日,単価,数量,金額\nA,2024/1/1,500,2,\nB,2024/1/1,,,\n")
    ok, bad = sales(path, branch="b")
    assert ok.event["amount"] == "1000"
    assert (bad.line, bad.column, bad.reason) == (
        3,
        "金額",
        "missing amount (and nothing to compute it from)",
    )


# --------------------------------------------------------------------------------- grouping


def test_order_id_is_the_files_order_number():
    evts = events(sales(CP932_SALES))
    assert [e["order_id"] for e in evts[:3]] == ["1001", "1001", "1002"]
    fig = figures(evts, "A-0104")  # order 1001 (two lines) and a return
    assert fig.purchase_count == 1
    assert fig.total_amount == Decimal(6480 + 540 - 3240)


def test_without_order_numbers_a_customers_rows_on_one_date_are_one_purchase():
    evts = events(sales(NO_AMOUNT, branch="honten"))
    assert [e["order_id"] for e in evts] == [
        "d:0001:2003-03-30",
        "d:0001:2003-03-30",
        "d:0001:2003-03-30",
        "d:0001:2003-03-31",
        "d:0002:2003-03-30",
        "d:0002:2003-04-01",
        "d:0003:2003-04-02",
    ]
    fig = figures(evts, "0001")
    assert fig.purchase_count == 2  # 3/30 (three rows) and 3/31
    assert fig.total_amount == Decimal(2160 + 540 + 540 + 1080)
    assert fig.tenure_days == 1


def test_synthetic_order_is_the_local_date(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("顧客コード,購入日,金額\nA,2024-05-01T23:30:00+00:00,100\n")
    (e,) = events(sales(path, branch="b"))
    assert e["order_id"] == "d:A:2024-05-02"  # 08:30 the next day in Tokyo


def test_warning_when_order_numbers_repeat_across_customers(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(
        "伝票番号,顧客コード,売上日,金額\n1,A,2024/1/1,100\n1,A,2024/1/1,50\n1,B,2024/1/2,70\n"
    )
    reader = read_sales(path, tenant="demo", branch="b")
    list(reader)
    (warning,) = reader.warnings
    assert (
        "reuse an order number of another customer" in warning
        and "1 (line 2: A, line 4: B)" in warning
    )


def test_warning_when_the_amount_looks_like_an_order_total(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(
        "受注番号,顧客コード,受注日,単価,数量,合計金額\n"
        "1,A,2024/1/1,100,1,350\n1,A,2024/1/1,250,1,350\n2,B,2024/1/1,100,1,100\n"
    )
    reader = read_sales(path, tenant="demo", branch="b")
    list(reader)
    (warning,) = reader.warnings
    assert "the same 合計金額 on every line" in warning and "(e.g. 1)" in warning


# --------------------------------------------------------------------------------- customers


def test_customers_file():
    reader = read_customers(CUSTOMERS, tenant="demo")
    assert reader.dialect.encoding == "cp932"
    assert "a second name column, read as kana" in reader.mapping.notes[0]
    results = list(reader)
    assert [(r.line, r.ok) for r in results] == [
        (2, True), (3, True), (4, True), (5, False), (6, False), (7, True),
    ]  # fmt: skip
    kuroki = results[0].as_dict()
    assert kuroki == {
        "tenant_id": "demo",
        "customer_id": "0001",
        "branch_id": None,
        "name": "黒木 健一",
        "kana": "クロキ ケンイチ",  # half-width kana made full-width
        "company": "(株)ウィング",
        "postal_code": "100-0011",
        "address1": "東京都千代田区内幸町",
        "address2": "1-2-3",
        "phone": "03-5100-0000",
        "fax": "03-5100-0001",
        "email": "kuroki@example.jp",
        "mail_consent": True,
    }
    suzuki = results[1]
    assert (suzuki.name, suzuki.postal_code, suzuki.mail_consent) == ("鈴木 三郎", "112-0001", True)
    assert results[2].mail_consent is False
    assert (results[3].column, results[3].reason) == (
        "顧客コード",
        "missing customer code (顧客コード)",
    )
    assert (results[4].column, results[4].value) == ("メール配信", "たぶん")
    assert results[5].name == "池田" and results[5].email is None


def test_customers_english_headers_and_split_names(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(
        "Customer ID,Last Name,First Name,セイ,メイ,Zip,都道府県,Address,Building,E-mail,Newsletter\n"
        "C1,山田,太郎,ﾔﾏﾀﾞ,ﾀﾛｳ,1000001,東京都,千代田区1-1,ABCビル3F,taro@example.jp,yes\n",
        encoding="utf-8",
    )
    (c,) = read_customers(path, tenant="demo", branch="web")
    assert (c.name, c.kana, c.postal_code) == ("山田 太郎", "ヤマダ タロウ", "100-0001")
    assert (c.address1, c.address2, c.mail_consent, c.branch_id) == (
        "東京都千代田区1-1", "ABCビル3F", True, "web",
    )  # fmt: skip


# --------------------------------------------------------------------------------- preview


def test_preview():
    p = preview(CP932_SALES, n=3)
    assert (p.encoding, p.delimiter, p.header_line, p.error) == ("cp932", "tab", 1, None)
    assert p.mapping["売上金額"] == "amount" and p.mapping["伝票番号"] == "order_id"
    assert [r.line for r in p.rows] == [2, 3, 4]
    assert p.total_bytes == CP932_SALES.stat().st_size
    assert p.rows[0].event["event_id"] == events(sales(CP932_SALES))[0]["event_id"]


def test_preview_of_a_file_it_cannot_map_reports_instead_of_raising(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("Cust ID,Date,Amount\nA,2003/3/30,100\n")
    p = preview(path, branch="b")
    assert p.rows == [] and "Closest header: 'Cust ID'" in p.error
    assert [c["header"] for c in p.columns] == ["Cust ID", "Date", "Amount"]


def test_preview_customers_with_rejections():
    p = preview(CUSTOMERS, n=10, kind="customers")
    assert p.mapping["メール配信"] == "mail_consent"
    assert [r.ok for r in p.rows] == [True, True, True, False, False, True]


# --------------------------------------------------------------------------------- streams


def test_progress_callback_and_counters():
    seen = []
    reader = read_sales(
        NO_AMOUNT, tenant="demo", branch="b", progress_every=3,
        on_progress=lambda r: seen.append((r.rows, r.bytes_read, r.total_bytes)),
    )  # fmt: skip
    list(reader)
    size = NO_AMOUNT.stat().st_size
    assert [s[0] for s in seen] == [3, 6, 7]  # every 3 rows, and at the end
    assert seen[0][1] < seen[1][1] < seen[2][1] == size
    assert all(s[2] == size for s in seen)
    assert reader.closed


class Pipe(io.RawIOBase):
    """A stream that cannot seek (stdin, a download)."""

    def __init__(self, data: bytes):
        self.data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, b):
        chunk = self.data.read(min(len(b), 100))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_binary_streams():
    data = CP932_SALES.read_bytes()
    from_path = events(sales(CP932_SALES))
    assert events(sales(io.BytesIO(data))) == from_path
    reader = read_sales(io.BufferedReader(Pipe(data)), tenant="demo")
    assert events(reader) == from_path
    assert reader.total_bytes is None and reader.bytes_read == len(data)
    with pytest.raises(TypeError, match="binary"):
        read_sales(io.StringIO("顧客コード"), tenant="demo")


def test_context_manager_closes_the_file():
    with read_sales(CP932_SALES, tenant="demo") as reader:
        next(reader)
    assert reader.closed and reader._stream.closed


def test_ascii_start_then_cp932_switches_encoding(tmp_path):
    head = "customer,date,amount,name\n" + "".join(f"C{i},2003/3/30,100,x\n" for i in range(5000))
    path = tmp_path / "x.csv"
    path.write_bytes(head.encode() + "C9,2003/3/30,100,黒酢\n".encode("cp932"))
    reader = read_sales(path, tenant="demo", branch="b")
    results = list(reader)
    assert all(r.ok for r in results) and len(results) == 5001
    assert reader.encoding == "cp932"
    assert "line 5002" in reader.warnings[0] and "CP932" in reader.warnings[0]


def test_mixed_encodings_reject_the_odd_line(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(
        "顧客コード,購入日,金額,商品名\nA,2003/3/30,100,黒酢\n".encode()
        + "B,2003/3/30,100,青汁\n".encode("cp932")
        + "C,2003/3/30,100,黒酢\n".encode()
    )
    results = sales(path, branch="b")
    assert [(r.line, r.ok) for r in results] == [(2, True), (3, False), (4, True)]
    assert results[1].column == "商品名" and "not valid UTF-8" in results[1].reason


def test_title_rows_before_the_header(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("売上データ 2024年1月\n\n顧客コード,購入日,金額\nA,2024/1/1,100\n")
    reader = read_sales(path, tenant="demo", branch="b")
    assert reader.header_line == 3
    assert [r.line for r in reader] == [4]
    assert reader.warnings == ["line 1 before the header (line 3) skipped"]


def test_bare_cr_and_utf16_files(tmp_path):
    text = '顧客コード\t購入日\t金額\nA\t2003/3/30\t100\nB\t2003/3/31\t"1,000"\n'
    mac = tmp_path / "mac.tsv"
    mac.write_bytes(text.replace("\n", "\r").encode("cp932"))
    excel_unicode = tmp_path / "unicode.txt"
    excel_unicode.write_bytes(codecs.BOM_UTF16_LE + text.replace("\n", "\r\n").encode("utf-16-le"))
    for path in (mac, excel_unicode):
        reader = read_sales(path, tenant="demo", branch="b")
        evts = events(reader)
        assert [(e["customer_id"], e["amount"]) for e in evts] == [("A", "100"), ("B", "1000")]
        assert reader.bytes_read == path.stat().st_size


def test_empty_and_header_only_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(MappingError, match="empty"):
        read_sales(empty, tenant="demo", branch="b")
    header_only = tmp_path / "h.csv"
    header_only.write_text("顧客コード,購入日,金額\n")
    assert sales(header_only, branch="b") == []


def test_many_rows_stream(tmp_path):
    rng = random.Random(3)
    lines = ["伝票番号\t売上日\t顧客コード\t店舗\t商品名\t売上金額"]
    for i in range(20000):
        lines.append(
            f"{i}\t2024/{rng.randint(1, 12)}/{rng.randint(1, 28)}\tC{rng.randint(1, 500)}\ts1\t黒酢\t{rng.randint(1, 99):,}00"
        )
    path = tmp_path / "big.tsv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp932"))
    reader = read_sales(path, tenant="demo")
    ids = [r.event["event_id"] for r in reader]
    assert len(ids) == len(set(ids)) == 20000
    assert reader.bytes_read == reader.total_bytes


# --------------------------------------------------------------------------------- property

cell_text = st.text(
    alphabet=st.sampled_from(list('abcあいう黒酢 ,\t"\n\r-1')), min_size=0, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(cell_text, min_size=1, max_size=8),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp932"]),
    delimiter=st.sampled_from([",", "\t"]),
    crlf=st.booleans(),
)
def test_line_numbers_and_values_survive_any_quoting(names, encoding, delimiter, crlf):
    """Whatever the product names hold (delimiters, quotes, newlines), every row is read once,
    with the physical line it starts on, and its name comes back as written."""
    if not crlf:  # csv.writer leaves a lone CR unquoted when the line ends in LF only
        names = [n.replace("\r", "") for n in names]
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n")
    w.writerow(["顧客コード", "購入日", "商品名", "購入金額"])
    starts, line = [], 2
    for i, name in enumerate(names):
        before = buf.tell()
        w.writerow([f"C{i}", "2003/3/30", name, "1,000"])
        starts.append(line)
        written = buf.getvalue()[before:]
        line += written.count("\n")  # a CR inside a quoted field is not a line break
    results = sales(io.BytesIO(buf.getvalue().encode(encoding)), branch="b")
    assert [r.line for r in results] == starts
    assert all(r.ok for r in results)
    assert [r.event["lines"][0]["name"] if r.event["lines"] else "" for r in results] == [
        n.strip() for n in names
    ]


def test_numbers_too_large_for_the_event_are_rejected(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(
        "顧客コード,購入日,単価,数量,金額\n"
        "A,2024/1/1,1,1000000000,\n"
        "B,2024/1/1,999999999,10000,\n"
        'C,2024/1/1,,,"1,000,000,000,000"\n'
    )
    results = sales(path, branch="b")
    assert [(r.line, r.column, r.reason) for r in results] == [
        (2, "数量", "quantity is too large"),
        (3, "単価", "amount is too large"),
        (4, "金額", "amount is too large"),
    ]
