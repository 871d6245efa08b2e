"""Reading the CSV files people really have into purchase events and customer rows.

CPM.md, "Where the data comes from": exports from customer, order and POS software and Excel,
first row a header, often tab-separated, often CP932, dates like ``2003/3/30``, amounts like
``105,607``. Pure: no network, no database, no clock. Streaming: one row in memory at a time
(plus a compact table of row digests, 8 bytes a row, for the event ids, and bounded caches of
parsed cells).

Fast enough for millions of rows in Python: lines are decoded a chunk of lines at a time, the
``csv`` module's C reader splits them, and since a file repeats its dates, amounts, branches
and products over and over, each distinct cell text is parsed once per column — its value,
formatted value or problem looked up afterwards (``CACHE_ENTRIES`` per column). The messages and
accepted forms are those of the parse functions below, whichever path a cell takes.

- :func:`detect` guesses encoding (UTF-8 with or without BOM, CP932, UTF-16 with BOM), the
  line ending and the delimiter (tab, comma, semicolon, pipe) from the first bytes.
- :func:`map_headers` maps Japanese and English headers to fields; :class:`MappingError` names
  a missing field and the closest header.
- :func:`read_sales` / :func:`read_customers` return a reader: iterate it for
  :class:`SaleRow` / :class:`CustomerRow` or :class:`Rejection` (one result per data row, in
  file order, with the physical line number where the row starts, header = line 1).
- :func:`preview` is the ``--dry-run``: what was detected and the first rows.

Event ids (``imp-<20 hex>-<n>``) are derived from the row's parsed content (branch, customer,
date and time, kind, amount, tax, order, currency, channel, line item) and ``n``, the
occurrence of that same content in the file (1 for the first). So importing the same file
twice gives the same ids, identical rows in one file get distinct ids (both count), and the ids
also survive what people do between two imports: fixing a rejected row, re-exporting a longer
period that overlaps the first, re-saving in another encoding or column order.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import os
import re
import unicodedata
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Mapping as MappingABC
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo

__all__ = [
    "CUSTOMER_FIELDS",
    "SALES_FIELDS",
    "CustomerReader",
    "CustomerRow",
    "Dialect",
    "FieldSpec",
    "Mapping",
    "MappingError",
    "Preview",
    "Rejection",
    "SaleRow",
    "SalesReader",
    "detect",
    "map_headers",
    "normalize_header",
    "parse_amount",
    "parse_consent",
    "parse_date",
    "parse_datetime",
    "parse_number",
    "preview",
    "read_customers",
    "read_sales",
]

HEAD_BYTES = 64 * 1024  # what detect() looks at
CHUNK_BYTES = 1 << 20
MAX_RECORD_LINES = 1000  # a quoted field spanning more lines is an unterminated quote
HEADER_SCAN = 20  # non-blank records searched for the header (title rows may come first)
MAX_AMOUNT = Decimal(10) ** 12  # PurchaseEvent: 14 digits, 2 decimals
MAX_QUANTITY = Decimal(10) ** 9  # LineItem: 12 digits, 3 decimals

Source = str | os.PathLike | IO[bytes]


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class Rejection:
    """A data row that was not imported. ``line`` is the physical line where the row starts
    (header = 1); ``column`` the header of the offending column (``None`` for the whole row);
    ``problems`` every (column, value, reason) found in the row, the first one repeated in
    ``column``/``value``/``reason``."""

    line: int
    column: str | None
    value: str | None
    reason: str
    problems: tuple[tuple[str | None, str | None, str], ...] = ()

    ok = False

    def __str__(self) -> str:
        parts = []
        for column, value, reason in self.problems or ((self.column, self.value, self.reason),):
            where = f"column {column}" if column else "row"
            shown = f" {_show(value)}" if value not in (None, "") else ""
            parts.append(f"{where}{shown}: {reason}")
        return f"line {self.line}: " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class SaleRow:
    """An accepted sales row: ``event`` is a JSON-ready ``kizuna.purchases.v1`` dict."""

    line: int
    event: dict[str, Any]

    ok = True


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """An accepted customer row (text fields NFKC-normalised, ``None`` when empty)."""

    line: int
    tenant_id: str
    customer_id: str
    branch_id: str | None = None
    name: str | None = None
    kana: str | None = None
    company: str | None = None
    postal_code: str | None = None
    address1: str | None = None
    address2: str | None = None
    phone: str | None = None
    fax: str | None = None
    email: str | None = None
    mail_consent: bool | None = None

    ok = True

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["line"]
        return d


def _show(value: str | None, limit: int = 40) -> str:
    if value is None:
        return ""
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


# --------------------------------------------------------------------------------------------
# Parsing cells

_DASHES = "-−‐‑–—"  # hyphen-minus, minus sign, hyphens, dashes (full-width ones NFKC to "-")
_NEG_MARKS = "△▲"  # Japanese accounting: △1,200 is -1,200
_CURRENCY = ("¥", "\\", "$", "JPY", "円")  # a CP932 0x5C is shown as ¥ and decoded as "\"
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\.\d+")
_EXCEL_TEXT_RE = re.compile(r'^="(.*)"$', re.S)  # ="0001": Excel-safe exports of codes


def _nfkc(text: str) -> str:
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def parse_number(text: str, *, places: int = 2, what: str = "amount") -> Decimal:
    """A number as Japanese business software writes it: ``105607``, ``105,607``,
    ``¥105,607``, ``105,607円``, full-width ``１０５６０７``, negatives ``-1,200``, ``△1,200``,
    ``▲1,200``, ``(1,200)``, ``1,200-``. At most ``places`` decimals. Raises ``ValueError``
    with the reason."""
    s = text.strip()
    if s.isdigit() and s.isascii():
        return Decimal(s)
    s = _nfkc(s).strip()
    if not s:
        raise ValueError(f"empty {what}")
    body, negative = s, False
    if body.startswith("(") and body.endswith(")"):
        body, negative = body[1:-1].strip(), True
    changed = True
    while changed and body:  # signs and currency marks, in whatever order they come
        changed = False
        if body[0] in _NEG_MARKS or body[0] in _DASHES:
            if negative:
                raise ValueError(f"not a number: two minus signs in {s!r}")
            body, negative, changed = body[1:].strip(), True, True
        elif body[0] == "+":
            body, changed = body[1:].strip(), True
        for mark in _CURRENCY:
            if body.startswith(mark):
                body, changed = body[len(mark) :].strip(), True
            if body.endswith(mark):
                body, changed = body[: -len(mark)].strip(), True
    if body and body[-1] in _DASHES and not negative:  # 1,200- (trailing minus)
        body, negative = body[:-1].strip(), True
    if not _NUMBER_RE.fullmatch(body):
        if re.fullmatch(r"[\d.,]*\d[eE][+-]?\d+", body):
            raise ValueError(
                f"{what} in scientific notation ({s}): format the column as a number before exporting"
            )
        if re.fullmatch(r"[\d,]+(?:\.\d+)?", body):
            raise ValueError(f"not a number: misplaced thousands separator in {s!r}")
        raise ValueError(
            f"not a number: expected digits such as 105,607, ¥105,607, -1,200 or △1,200, got {s!r}"
        )
    value = Decimal(body.replace(",", ""))
    if -value.as_tuple().exponent > places and value != value.quantize(Decimal(1).scaleb(-places)):
        raise ValueError(f"{what} has more than {places} decimal places: {s!r}")
    return -value if negative else value


def parse_amount(text: str) -> Decimal:
    """A money amount (see :func:`parse_number`); negative for returns."""
    return parse_number(text, places=2, what="amount")


_ERAS = {
    "明治": 1867, "大正": 1911, "昭和": 1925, "平成": 1988, "令和": 2018,
    "m": 1867, "t": 1911, "s": 1925, "h": 1988, "r": 2018,
}  # fmt: skip
_TIME = (
    r"(?:[\st]+(?P<H>\d{1,2})[:時](?P<M>\d{1,2})(?:[:分](?P<S>\d{1,2})(?:\.(?P<F>\d{1,6})\d*)?秒?)?分?"
    r"\s*(?P<Z>z|[+-]\d{2}:?\d{2})?)?"
)
_WEEKDAY = r"(?:\s*\(\s*[^)]{1,3}\s*\))?"  # 2003/3/30(日)
_DATE_RES = (
    re.compile(
        r"(?P<y>\d{4})\s*[/.\-年]\s*(?P<m>\d{1,2})\s*[/.\-月]\s*(?P<d>\d{1,2})\s*日?"
        + _WEEKDAY
        + _TIME
    ),
    re.compile(
        r"(?P<era>明治|大正|昭和|平成|令和|[mtshr])\s*(?P<ey>\d{1,2}|元)\s*[/.\-年]\s*(?P<m>\d{1,2})"
        r"\s*[/.\-月]\s*(?P<d>\d{1,2})\s*日?" + _WEEKDAY + _TIME
    ),
    re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})(?:(?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})?)?"),
)


def parse_datetime(text: str) -> datetime:
    """A date, optionally with a time: ``2003/3/30``, ``2003-03-30``, ``2003.3.30``,
    ``2003年3月30日``, ``20030330``, ``2003/3/30(日)``, ``平成15年3月30日``, ``H15.3.30``, and any of
    them followed by ``14:03`` or ``14:03:05``; ISO 8601 with ``T`` and an offset. Naive unless
    the text has an offset; midnight when there is no time. Raises ``ValueError`` with the
    reason."""
    s = _nfkc(text).strip()
    if not s:
        raise ValueError("empty date")
    low = s.lower()
    for pattern in _DATE_RES:
        m = pattern.fullmatch(low)
        if m:
            break
    else:
        raise ValueError(_date_failure(s))
    g = m.groupdict()
    if g.get("era"):
        n = 1 if g["ey"] == "元" else int(g["ey"])
        year = _ERAS[g["era"]] + n
    else:
        year = int(g["y"])
    if not 1900 <= year <= 2100:
        raise ValueError(f"year {year} is out of range in {s!r}")
    try:
        day = date(year, int(g["m"]), int(g["d"]))
    except ValueError:
        raise ValueError(f"no such date: {s!r}") from None
    tz = None
    if g.get("Z"):
        z = g["Z"].replace(":", "")
        if z == "z":
            tz = UTC
        else:
            sign = -1 if z[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(z[1:3]), minutes=int(z[3:5])))
    if g.get("H") is None:
        return datetime(day.year, day.month, day.day, tzinfo=tz)
    try:
        at = time(
            int(g["H"]), int(g["M"]), int(g["S"] or 0), int((g.get("F") or "0").ljust(6, "0"))
        )
    except ValueError:
        raise ValueError(f"no such time: {s!r}") from None
    return datetime.combine(day, at, tzinfo=tz)


def parse_date(text: str) -> date:
    """The calendar date of :func:`parse_datetime` (a time, if any, is checked and dropped)."""
    return parse_datetime(text).date()


def _date_failure(s: str) -> str:
    if re.fullmatch(r"\d{5}(?:\.\d+)?", s) and 10000 <= float(s) < 80000:
        return (
            f"{s!r} looks like an Excel serial date: format the column as a date before exporting"
        )
    if re.fullmatch(r"\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}.*", s):
        return f"{s!r}: the year must come first (YYYY/M/D); day/month order is ambiguous"
    if re.fullmatch(r"\d{2}[/.\-]\d{1,2}[/.\-]\d{1,2}.*", s):
        return f"{s!r}: two-digit year; write the year in full (YYYY/M/D)"
    if re.fullmatch(r"\d+", s):
        return f"{s!r} is not a date: 8 digits (YYYYMMDD) expected"
    return f"not a date: {s!r}; expected YYYY/M/D, YYYY-MM-DD, YYYY年M月D日 or YYYYMMDD"


_CONSENT = {
    True: ("可", "許可", "同意", "希望", "希望する", "する", "受け取る", "配信", "配信する", "要",
           "有", "あり", "はい", "○", "〇", "◯", "●", "◎", "y", "yes", "true", "t", "1", "ok",
           "on", "opt-in", "optin", "subscribed"),
    False: ("不可", "拒否", "不同意", "希望しない", "しない", "受け取らない", "配信しない",
            "停止", "配信停止", "不要", "否", "無", "なし", "いいえ", "×", "✕", "x", "n",
            "no", "false", "f", "0", "ng", "off", "opt-out", "optout", "unsubscribed"),
}  # fmt: skip
_CONSENT_MAP = {v: k for k, vs in _CONSENT.items() for v in vs}


def parse_consent(text: str) -> bool | None:
    """Mail consent: 可/不可, 希望/不要, yes/no, 1/0, ○/× and the like; ``None`` when empty."""
    s = _nfkc(text).strip().lower()
    if not s:
        return None
    if s in _CONSENT_MAP:
        return _CONSENT_MAP[s]
    raise ValueError(f"not a yes/no value: {text.strip()!r}; expected 可/不可, yes/no, 1/0 or ○/×")


# --------------------------------------------------------------------------------------------
# Detecting the dialect


@dataclass(frozen=True, slots=True)
class Dialect:
    """What :func:`detect` found. Usable as a :mod:`csv` dialect (``csv.reader(lines, d)``).
    ``confident`` is ``False`` when the sample was plain ASCII: UTF-8 is assumed and the reader
    switches to CP932 if the first non-ASCII line is not UTF-8."""

    encoding: str  # "utf-8-sig" | "utf-8" | "cp932" | "utf-16"
    delimiter: str  # "\t" | "," | ";" | "|"
    newline: bytes = b"\n"  # b"\r" for old Mac files
    confident: bool = True
    quotechar: str = '"'
    escapechar: str | None = None
    doublequote: bool = True
    skipinitialspace: bool = False
    lineterminator: str = "\r\n"
    quoting: int = csv.QUOTE_MINIMAL
    strict: bool = False

    @property
    def delimiter_name(self) -> str:
        return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}[self.delimiter]


_DELIMITERS = ("\t", ",", ";", "|")  # ties go to the first


def detect(raw_head: bytes) -> Dialect:
    """Guess encoding, line ending and delimiter from the first bytes of a file.

    Encoding: a BOM decides (UTF-8, UTF-16); else UTF-8 if the sample decodes (a cut
    multi-byte character at the end is fine, and so are a few bad bytes among many valid
    UTF-8 characters), else CP932 (the Windows superset of Shift_JIS).
    Delimiter: the candidate that splits the first line with more than one field into the most
    fields (the header: amounts like ``105,607`` in data rows do not confuse it)."""
    confident = True
    if raw_head.startswith(codecs.BOM_UTF8):
        encoding, text = "utf-8-sig", _decode_head(raw_head[3:], "utf-8", "replace")
    elif raw_head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, text = "utf-16", _decode_head(raw_head, "utf-16", "replace")
    else:
        try:
            text = _decode_head(raw_head, "utf-8", "strict")
            encoding, confident = "utf-8", not raw_head.isascii()
        except UnicodeDecodeError:
            # a UTF-8 file with a stray bad byte is still UTF-8: CP932 text is almost never
            # valid UTF-8, so compare the valid non-ASCII characters with the invalid bytes
            text = _decode_head(raw_head, "utf-8", "replace")
            bad = text.count("\ufffd")
            good = sum(1 for ch in text if ch > "\x7f") - bad
            if good < 10 * bad:
                encoding, text = "cp932", _decode_head(raw_head, "cp932", "replace")
            else:
                encoding = "utf-8"
    if "\n" in text:
        newline = b"\n"
    elif "\r" in text:
        newline = b"\r"
    else:
        newline = b"\n"
    delimiter = ","
    for line in text.split(newline.decode())[:50]:
        if not line.strip():
            continue
        counts = {d: len(next(csv.reader([line], delimiter=d), [])) for d in _DELIMITERS}
        best = max(_DELIMITERS, key=lambda d: counts[d])  # max keeps the first on ties
        if counts[best] > 1:
            delimiter = best
            break
    return Dialect(encoding=encoding, delimiter=delimiter, newline=newline, confident=confident)


def _decode_head(raw: bytes, encoding: str, errors: str) -> str:
    return codecs.getincrementaldecoder(encoding)(errors).decode(raw, final=False)


# --------------------------------------------------------------------------------------------
# Header mapping


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    label: str  # how the message names it (Japanese first)
    synonyms: tuple[str, ...]  # in order of preference when several columns match


def _spec(name: str, label: str, synonyms: str) -> FieldSpec:
    return FieldSpec(name, label, tuple(s.strip() for s in synonyms.split("|") if s.strip()))


_CUSTOMER_ID = _spec(
    "customer_id",
    "顧客コード",
    "顧客コード|顧客番号|顧客ID|顧客No|会員番号|会員コード|会員ID|お客様番号|お客様コード|"
    "お客様ID|得意先コード|取引先コード|customer_id|customer id|customer code|customer no|"
    "customer number|member id|member no|client id|client code|customer|client|member",
)
_BRANCH = _spec(
    "branch",
    "店舗コード",
    "店舗コード|店舗|店舗ID|店舗番号|店コード|店番|支店コード|支店|営業所コード|営業所|"
    "拠点コード|拠点|店舗名|branch|branch_id|branch id|branch code|store|store id|store code|"
    "shop|shop id|shop code|location",
)

SALES_FIELDS: tuple[FieldSpec, ...] = (
    _CUSTOMER_ID,
    _spec(
        "date",
        "購入日",
        "購入日|受注日|注文日|売上日|販売日|取引日|購入日付|受注日付|注文日付|売上日付|販売日付|"
        "取引日付|購入年月日|受注年月日|注文年月日|売上年月日|伝票日付|計上日|日付|年月日|購入日時|"
        "受注日時|注文日時|売上日時|販売日時|取引日時|日時|date|order date|purchase date|"
        "sale date|sales date|transaction date|invoice date|occurred_at|datetime|timestamp",
    ),
    _spec("time", "時刻", "時刻|購入時刻|売上時刻|受注時刻|時間|time"),
    _spec(
        "amount",
        "購入金額",
        "購入金額|売上金額|販売金額|税込金額|金額税込|明細金額|金額|購入額|売上額|売上|"
        "合計金額|受注金額|注文金額|請求金額|税込合計|合計|総額|amount|line amount|sales amount|"
        "sale amount|amount incl tax|total amount|total|gross",
    ),
    _spec(
        "net_amount",
        "税抜金額",
        "税抜金額|金額税抜|本体金額|税抜合計|税抜|小計|net amount|amount excl tax|subtotal|net",
    ),
    _spec(
        "order_id",
        "受注番号",
        "受注番号|注文番号|伝票番号|受注ID|注文ID|伝票ID|オーダー番号|オーダーID|受付番号|"
        "売上番号|取引番号|レシート番号|order_id|order id|order no|order number|order|"
        "invoice no|invoice number|receipt no|receipt number|transaction id",
    ),
    _BRANCH,
    _spec(
        "sku",
        "商品コード",
        "商品コード|商品番号|品番|商品ID|品目コード|JANコード|JAN|型番|sku|product code|"
        "product id|item code|item id|item no|article",
    ),
    _spec(
        "name",
        "商品名",
        "商品名|品名|商品名称|品目名|品目|商品|product name|product|item name|item|description",
    ),
    _spec(
        "unit_price",
        "単価",
        "単価|販売単価|売価|税込単価|価格|販売価格|unit price|unit_price|price",
    ),
    _spec(
        "quantity",
        "数量",
        "数量|個数|数|点数|販売数|受注数|注文数|購入数|qty|quantity|units",
    ),
    _spec("tax", "消費税", "消費税|消費税額|税額|内消費税|税|tax|tax amount|consumption tax|vat"),
    _spec(
        "kind",
        "区分",
        "売上区分|取引区分|伝票区分|明細区分|処理区分|区分|種別|kind|type|transaction type",
    ),
    _spec(
        "channel",
        "販売チャネル",
        "販売チャネル|チャネル|受注経路|販売経路|経路|channel|sales channel",
    ),
    _spec("currency", "通貨", "通貨|通貨コード|currency"),
)

CUSTOMER_FIELDS: tuple[FieldSpec, ...] = (
    _CUSTOMER_ID,
    _spec(
        "name",
        "氏名",
        "氏名|名前|顧客名|お名前|氏名漢字|姓名|会員名|お客様名|得意先名|宛名|name|full name|"
        "customer name",
    ),
    _spec(
        "kana",
        "フリガナ",
        "フリガナ|ふりがな|カナ|氏名カナ|氏名フリガナ|カナ氏名|フリガナ氏名|ヨミ|よみ|読み|"
        "読みがな|顧客名カナ|顧客カナ|kana|furigana|name kana|reading",
    ),
    _spec("family_name", "姓", "姓|苗字|名字|last name|family name|surname"),
    _spec("given_name", "名", "名|first name|given name"),
    _spec("family_kana", "セイ", "セイ|姓カナ|姓フリガナ|せい"),
    _spec("given_kana", "メイ", "メイ|名カナ|名フリガナ|めい"),
    _spec(
        "company",
        "会社名",
        "会社名|会社|法人名|企業名|社名|勤務先|勤務先名|団体名|company|company name|organization|"
        "organisation",
    ),
    _spec(
        "postal_code", "郵便番号", "郵便番号|〒|郵便|zip|zip code|postal code|postcode|post code"
    ),
    _spec("prefecture", "都道府県", "都道府県|県|prefecture|state"),
    _spec("city", "市区町村", "市区町村|市区郡町村|市町村|市区郡|city"),
    _spec(
        "address1",
        "住所1",
        "住所1|住所|住所上段|address1|address|address line 1|street",
    ),
    _spec("address2", "住所2", "住所2|番地|住所下段|address2|address line 2"),
    _spec(
        "address3",
        "住所3",
        "住所3|建物名|建物|アパートマンション名|マンション名|address3|address line 3|building",
    ),
    _spec(
        "phone",
        "電話番号",
        "電話番号|電話|TEL|TEL番号|電話番号1|携帯電話|携帯番号|携帯|phone|phone number|telephone|"
        "tel|mobile",
    ),
    _spec("fax", "FAX", "FAX|FAX番号|ファックス|ファクス|ファックス番号|fax number"),
    _spec(
        "email",
        "メールアドレス",
        "メールアドレス|メール|Eメール|E-mail|Eメールアドレス|PCメール|携帯メール|email|"
        "email address|mail|mail address",
    ),
    _spec(
        "mail_consent",
        "メール配信",
        "メール配信|メール配信可否|メール可否|メルマガ|メルマガ配信|メールマガジン|DM可否|DM送付|"
        "DM送付可否|DM希望|DM|案内可否|配信可否|配信希望|mail consent|email consent|"
        "marketing consent|consent|opt in|newsletter",
    ),
    _BRANCH,
)

_FIELD_ALIASES = {
    "customer": "customer_id",
    "occurred_at": "date",
    "purchase_date": "date",
    "order": "order_id",
    "order_no": "order_id",
    "branch_id": "branch",
    "store": "branch",
    "product_code": "sku",
    "product_name": "name",
    "product": "name",
    "price": "unit_price",
    "qty": "quantity",
    "total": "amount",
}
_IGNORE = {"", "-", "ignore", "skip", "none"}

_BRACKETS = str.maketrans("", "", "()[]{}<>「」『』【】〔〕〈〉《》")
_DROP = re.compile(r"[\s_\-.・:*※'\"/]+")
_BRACKETED = re.compile(r"[(\[{<「『【〔〈《][^)\]}>」』】〕〉》]*[)\]}>」』】〕〉》]")


def normalize_header(text: str) -> str:
    """Header text as compared: NFKC (full/half width), lower case, no spaces, ``_ - . ・ *``,
    brackets dropped (contents kept), ``#``/trailing ``no`` read as 番号, trailing ``cd`` as
    コード (``得意先CD`` = ``得意先コード``)."""
    s = unicodedata.normalize("NFKC", text).lower().replace("\ufeff", "")
    s = _DROP.sub("", s.translate(_BRACKETS))
    s = s.replace("#", "番号")
    if s.endswith("no") and len(s) > 2:
        s = s[:-2] + "番号"
    if s.endswith("cd") and len(s) > 2:
        s = s[:-2] + "コード"
    return s


def _header_keys(text: str) -> list[str]:
    """The normalised forms tried for one header: as is, then without bracketed parts
    (``金額(税込)`` → ``金額税込`` → ``金額``)."""
    keys = [normalize_header(text)]
    stripped = _BRACKETED.sub("", unicodedata.normalize("NFKC", text))
    if stripped.strip() and stripped != text:
        key = normalize_header(stripped)
        if key not in keys:
            keys.append(key)
    return keys


def _index(specs: tuple[FieldSpec, ...]) -> dict[str, tuple[str, int]]:
    index: dict[str, tuple[str, int]] = {}
    for spec in specs:
        for rank, synonym in enumerate(spec.synonyms):
            index.setdefault(normalize_header(synonym), (spec.name, rank))
    return index


_SPECS = {"sales": SALES_FIELDS, "customers": CUSTOMER_FIELDS}
_INDEX = {kind: _index(specs) for kind, specs in _SPECS.items()}


class MappingError(ValueError):
    """The header cannot be mapped: a required field has no column, or ``--map`` names an
    unknown column or field. ``field`` is the field concerned, ``suggestion`` the closest
    header (or field name), ``columns`` the file's headers."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        suggestion: str | None = None,
        columns: tuple[str, ...] = (),
    ):
        super().__init__(message)
        self.field = field
        self.suggestion = suggestion
        self.columns = columns


@dataclass
class Mapping:
    """Which column feeds which field. ``fields``: field → 0-based column index."""

    kind: str
    headers: list[str]
    fields: dict[str, int]
    ignored: dict[int, str] = field(default_factory=dict)  # column index → why
    notes: list[str] = field(default_factory=list)

    def field_of(self, index: int) -> str | None:
        for name, i in self.fields.items():
            if i == index:
                return name
        return None

    def describe(self) -> list[dict[str, Any]]:
        """One entry per column: ``{"column": 1, "header": ..., "field": ... | None, "note": ...}``."""
        return [
            {
                "column": i + 1,
                "header": h,
                "field": self.field_of(i),
                "note": self.ignored.get(i, ""),
            }
            for i, h in enumerate(self.headers)
        ]

    def column(self, name: str) -> str:
        """The header of the column feeding ``name`` (for messages)."""
        i = self.fields.get(name)
        return self.headers[i] if i is not None else name


def _parse_overrides(
    overrides: MappingABC[str, str] | Iterable[str] | None,
) -> list[tuple[str, str]]:
    if not overrides:
        return []
    if isinstance(overrides, MappingABC):
        return [(str(k), str(v)) for k, v in overrides.items()]
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise MappingError(f"--map {item!r}: expected COLUMN=field")
        column, name = item.rsplit("=", 1)
        pairs.append((column.strip(), name.strip()))
    return pairs


def _resolve_field(kind: str, name: str, headers: tuple[str, ...]) -> str | None:
    specs = _SPECS[kind]
    names = [s.name for s in specs]
    key = name.strip().lower()
    if key in _IGNORE:
        return None
    if key in names:
        return key
    if _FIELD_ALIASES.get(key) in names:
        return _FIELD_ALIASES[key]
    for k in _header_keys(name):
        if k in _INDEX[kind]:
            return _INDEX[kind][k][0]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise MappingError(
        f"--map: unknown field {name!r}.{hint} Fields: {', '.join(names)} (or '-' to ignore a column).",
        field=name,
        suggestion=close[0] if close else None,
        columns=headers,
    )


def _find_column(column: str, headers: list[str]) -> int | None:
    for i, h in enumerate(headers):
        if h == column:
            return i
    key = normalize_header(column)
    for i, h in enumerate(headers):
        if normalize_header(h) == key:
            return i
    if column.isdigit() and 1 <= int(column) <= len(headers):
        return int(column) - 1
    return None


def _closest(spec: FieldSpec, headers: list[str], taken: set[int]) -> tuple[int, float] | None:
    """The free column whose header is nearest to one of the field's names."""
    best: tuple[int, float] | None = None
    synonyms = [normalize_header(s) for s in spec.synonyms]
    for i, h in enumerate(headers):
        if i in taken or not h.strip():
            continue
        key = normalize_header(h)
        score = max(difflib.SequenceMatcher(None, key, s).ratio() for s in synonyms)
        if any(len(s) >= 2 and (s in key or key in s) for s in synonyms if key):
            score = max(score, 0.75)
        if best is None or score > best[1]:
            best = (i, score)
    return best if best and best[1] >= 0.4 else None


def _missing(spec: FieldSpec, headers: list[str], taken: set[int], what: str = "") -> MappingError:
    near = _closest(spec, headers, taken)
    known = ", ".join(spec.synonyms[:4])
    message = (
        f"no column for {spec.label} ({spec.name}){what}: none of the headers is a known name "
        f"for it ({known}, …)."
    )
    suggestion = None
    if near:
        suggestion = headers[near[0]]
        message += (
            f" Closest header: {suggestion!r} (column {near[0] + 1}); if that is it, "
            f"use --map '{suggestion}={spec.name}'."
        )
    else:
        message += (
            f" Headers are: {', '.join(repr(h) for h in headers)}. "
            f"Name the column with --map 'COLUMN={spec.name}'."
        )
    return MappingError(message, field=spec.name, suggestion=suggestion, columns=tuple(headers))


def map_headers(
    headers: list[str],
    kind: Literal["sales", "customers"] = "sales",
    overrides: MappingABC[str, str] | Iterable[str] | None = None,
    *,
    branch_given: bool = False,
) -> Mapping:
    """Map a header row to fields. ``overrides`` (``{"COLUMN": "field"}`` or ``["COLUMN=field"]``;
    COLUMN is a header or a 1-based column number; field a field name, one of its Japanese or
    English names, or ``-`` to ignore the column) win over the tables. When several columns
    match a field the most specific name wins (``売上金額`` over ``合計金額``), then the
    leftmost. Raises :class:`MappingError` when a required field has no column."""
    specs = {s.name: s for s in _SPECS[kind]}
    index = _INDEX[kind]
    headers = [h.strip().replace("\ufeff", "") for h in headers]
    fields: dict[str, int] = {}
    ignored: dict[int, str] = {}
    fixed: set[int] = set()
    for column, name in _parse_overrides(overrides):
        i = _find_column(column, headers)
        if i is None:
            near = difflib.get_close_matches(column, headers, n=1, cutoff=0.3)
            raise MappingError(
                f"--map: no column {column!r} in the header"
                + (f"; did you mean {near[0]!r}?" if near else "")
                + f" Headers are: {', '.join(repr(h) for h in headers)}.",
                field=name,
                suggestion=near[0] if near else None,
                columns=tuple(headers),
            )
        target = _resolve_field(kind, name, tuple(headers))
        fixed.add(i)
        if target is None:
            ignored[i] = "ignored (--map)"
            continue
        if target in fields:
            raise MappingError(
                f"--map: two columns mapped to {target}: {headers[fields[target]]!r} and {column!r}",
                field=target,
                columns=tuple(headers),
            )
        fields[target] = i
    candidates: dict[str, list[tuple[int, int]]] = {}
    for i, h in enumerate(headers):
        if i in fixed:
            continue
        for key in _header_keys(h):
            if key in index:
                name, rank = index[key]
                candidates.setdefault(name, []).append((rank, i))
                break
        else:
            ignored[i] = "no field of that name" if h else "no header"
    notes: list[str] = []
    for name, found in candidates.items():
        found.sort()
        if name in fields:
            for _, i in found:
                ignored[i] = f"{name} comes from --map"
            continue
        fields[name] = found[0][1]
        for _, i in found[1:]:
            ignored[i] = (
                f"also looks like {name}; using column {found[0][1] + 1} ({headers[found[0][1]]})"
            )
    if kind == "customers":
        names = candidates.get("name", [])
        if "kana" not in fields and len(names) >= 2 and "name" in fields:
            second = sorted(i for _, i in names if i != fields["name"])[0]
            fields["kana"] = second
            ignored.pop(second, None)
            notes.append(
                f"column {second + 1} ({headers[second]}), a second name column, read as kana"
            )
    taken = set(fields.values())
    if "customer_id" not in fields:
        raise _missing(specs["customer_id"], headers, taken)
    if kind == "sales":
        if "date" not in fields:
            raise _missing(specs["date"], headers, taken)
        if not {"amount", "net_amount", "unit_price"} & fields.keys():
            raise _missing(
                specs["amount"], headers, taken, " and no 単価 (unit_price) to compute it from"
            )
        if "amount" not in fields:
            parts = [
                headers[fields["net_amount"]]
                if "net_amount" in fields
                else " × ".join(
                    headers[fields[f]] for f in ("unit_price", "quantity") if f in fields
                )
            ]
            if "tax" in fields:
                parts.append(headers[fields["tax"]])
            notes.append(f"no amount column: amount = {' + '.join(parts)}")
        if "order_id" not in fields:
            notes.append(
                "no order number column: a customer's rows on the same date are one purchase"
            )
    if "branch" not in fields and not branch_given and kind == "sales":
        raise MappingError(
            f"no branch column ({', '.join(_BRANCH.synonyms[:3])}, branch) and no branch given: "
            "pass --branch BRANCH_ID for a file of one branch.",
            field="branch",
            columns=tuple(headers),
        )
    for i in fields.values():
        ignored.pop(i, None)
    return Mapping(kind=kind, headers=headers, fields=fields, ignored=ignored, notes=notes)


# --------------------------------------------------------------------------------------------
# Physical lines


class _TooLong(Exception):
    pass


class _Lines:
    """The file's physical lines, decoded one at a time and numbered (header = 1). Splitting
    bytes on the newline byte is safe in UTF-8 and CP932 (0x0A/0x0D are never trail bytes);
    UTF-16 is transcoded to UTF-8 first. A line that does not decode is decoded with
    replacement characters and remembered in ``bad``. Lines of the record being read are kept
    in ``record`` so they can be pushed back and read again (unterminated quotes)."""

    def __init__(self, stream: IO[bytes], head: bytes, dialect: Dialect, offset: int = 0):
        self.stream = stream
        self.encoding = dialect.encoding
        self.codec = "utf-8" if dialect.encoding in ("utf-8-sig", "utf-16") else dialect.encoding
        self.tentative = not dialect.confident
        self.newline = dialect.newline
        self.consumed = len(head)  # raw bytes taken from the stream
        self.position = 0  # bytes up to the end of the last line read (not UTF-16)
        if dialect.encoding == "utf-8-sig" and head.startswith(codecs.BOM_UTF8):
            head = head[3:]
            self.position = 3
        self._raw = self._split(self._chunks(head))
        self.read = 0  # lines read from the file
        self.pushed: deque[tuple[int, str]] = deque()
        self.record: list[tuple[int, str]] = []
        self.bad: dict[int, str] = {}
        self.warnings: list[str] = []

    @property
    def bytes_read(self) -> int:
        return self.consumed if self.encoding == "utf-16" else self.position

    def _chunks(self, head: bytes) -> Iterator[bytes]:
        if self.encoding == "utf-16":
            decoder = codecs.getincrementaldecoder("utf-16")("replace")
            data = head
            while data:
                yield decoder.decode(data).encode("utf-8")
                data = self.stream.read(CHUNK_BYTES)
                self.consumed += len(data)
            yield decoder.decode(b"", final=True).encode("utf-8")
            return
        if head:
            yield head
        while chunk := self.stream.read(CHUNK_BYTES):
            self.consumed += len(chunk)
            yield chunk

    def _split(self, chunks: Iterator[bytes]) -> Iterator[tuple[int, str]]:
        """(number, text) of each line, decoded a chunk at a time: one decode call per chunk
        of lines rather than per line. A chunk that does not decode as a whole (a bad byte
        somewhere, or a first non-ASCII byte while the encoding is still a guess) is decoded
        line by line, which finds the bad lines and makes the guess."""
        nl = self.newline
        nl_text = nl.decode()
        step = len(nl)
        rest = b""
        for chunk in chunks:
            if rest:
                chunk = rest + chunk
            cut = chunk.rfind(nl) + step
            if cut < step:
                rest = chunk
                continue
            body, rest = chunk[:cut], chunk[cut:]
            parts = body.split(nl)
            parts.pop()  # after the last newline: nothing
            texts = None
            if not self.tentative or body.isascii():
                try:
                    texts = body.decode(self.codec).split(nl_text)
                except UnicodeDecodeError:
                    pass
            if texts is not None and len(texts) == len(parts) + 1:
                texts.pop()
                for part, text in zip(parts, texts, strict=True):
                    self.position += len(part) + step
                    self.read += 1
                    yield self.read, text + nl_text
            else:
                for part in parts:
                    raw = part + nl
                    self.position += len(raw)
                    self.read += 1
                    yield self.read, self._decode(raw, self.read)
        if rest:
            self.position += len(rest)
            self.read += 1
            yield self.read, self._decode(rest, self.read)

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        record = self.record
        if len(record) >= MAX_RECORD_LINES:
            raise _TooLong
        item = self.pushed.popleft() if self.pushed else next(self._raw)
        record.append(item)
        return item[1]

    def _decode(self, raw: bytes, number: int) -> str:
        try:
            text = raw.decode(self.codec)
        except UnicodeDecodeError as exc:
            if self.tentative:
                try:
                    text = raw.decode("cp932")
                except UnicodeDecodeError:
                    pass
                else:
                    self.codec = self.encoding = "cp932"
                    self.tentative = False
                    self.warnings.append(
                        f"line {number}: the first non-ASCII bytes are not UTF-8; "
                        "reading the file as CP932 (Shift_JIS)"
                    )
                    return text
            label = {"cp932": "CP932 (Shift_JIS)", "utf-8": "UTF-8"}.get(self.codec, self.codec)
            self.bad[number] = (
                f"bytes {raw[exc.start : exc.start + 4].hex(' ')} (byte {exc.start + 1} of the line) "
                f"are not valid {label}; is the file in one encoding?"
            )
            return raw.decode(self.codec, "replace")
        if self.tentative and not raw.isascii():
            self.tentative = False  # real UTF-8 seen
        return text

    def start_record(self) -> None:
        self.record = []

    def push_back(self, lines: list[tuple[int, str]]) -> None:
        self.pushed.extendleft(reversed(lines))


@dataclass(slots=True)
class _Record:
    start: int
    lines: list[tuple[int, str]]
    cells: list[str]
    error: str | None = None  # structural: csv error, unterminated quote


def _open(source: Source) -> tuple[IO[bytes], bool, int]:
    """(binary stream, whether we opened it, its start offset)."""
    if isinstance(source, str | os.PathLike):
        return open(source, "rb"), True, 0  # closed by the reader
    if isinstance(source, io.TextIOBase):
        raise TypeError("read_sales/read_customers need a binary stream (open the file with 'rb')")
    start = 0
    try:
        if source.seekable():
            start = source.tell()
    except (AttributeError, OSError):
        pass
    return source, False, start


def _size(stream: IO[bytes], start: int) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size - start
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    try:
        if stream.seekable():
            here = stream.tell()
            end = stream.seek(0, io.SEEK_END)
            stream.seek(here)
            return end - start
    except (AttributeError, OSError):
        pass
    return None


class _Occurrences:
    """How many times each 63-bit row digest was seen: an open-addressing table in an
    ``array('Q')`` (8 bytes a row at most 70 % full, ~16 MB per million rows, against ~70 MB
    for a Python set); counts above one in a dict (identical rows are rare)."""

    def __init__(self) -> None:
        self.slots = array("Q", bytes(8 * 1024))
        self.mask = 1023
        self.size = 0
        self.repeats: dict[int, int] = {}

    def add(self, key: int) -> int:
        slots, mask = self.slots, self.mask
        i = key & mask
        while True:
            v = slots[i]
            if v == 0:
                slots[i] = key
                self.size += 1
                if self.size * 10 > len(slots) * 7:
                    self._grow()
                return 1
            if v == key:
                n = self.repeats.get(key, 1) + 1
                self.repeats[key] = n
                return n
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self.slots
        self.slots = array("Q", bytes(16 * len(old)))
        self.mask = len(self.slots) - 1
        slots, mask = self.slots, self.mask
        for key in old:
            if key:
                i = key & mask
                while slots[i]:
                    i = (i + 1) & mask
                slots[i] = key


# --------------------------------------------------------------------------------------------
# Readers


class _Reader:
    kind: Literal["sales", "customers"]

    def __init__(
        self,
        source: Source,
        *,
        tenant: str,
        branch: str | None,
        mapping_overrides: MappingABC[str, str] | Iterable[str] | None,
        on_progress: Callable[[Any], None] | None,
        progress_every: int,
        raise_mapping: bool = True,
    ):
        if not tenant:
            raise ValueError("tenant is required")
        self.tenant = tenant
        self.branch = branch.strip() if branch and branch.strip() else None
        self.on_progress = on_progress
        self.progress_every = max(1, progress_every)
        self.rows = 0  # data rows read (blank lines not counted)
        self.accepted = 0
        self.rejected = 0
        self.header_line: int | None = None
        self.mapping: Mapping | None = None
        self.mapping_error: MappingError | None = None
        self.closed = False
        self._stream, self._owned, start = _open(source)
        self._pending: list[_Record] = []
        try:
            head = self._stream.read(HEAD_BYTES)
            if isinstance(head, str):
                raise TypeError("read_sales/read_customers need a binary stream (open with 'rb')")
            self.total_bytes = _size(self._stream, start)
            self.dialect = detect(head)
            self._strict = replace(self.dialect, strict=True)
            self._lines = _Lines(self._stream, head, self.dialect)
            self._records = self._read_records()
            self._find_header(mapping_overrides)
        except MappingError as exc:
            if raise_mapping:
                self.close()
                raise
            self.mapping_error = exc
        except BaseException:
            self.close()
            raise
        self._results = self._run()

    # -- public ---------------------------------------------------------------------------

    @property
    def encoding(self) -> str:
        """The encoding in use (may turn from ``utf-8`` to ``cp932`` after an ASCII start)."""
        return self._lines.encoding

    @property
    def bytes_read(self) -> int:
        return self._lines.bytes_read

    @property
    def line(self) -> int:
        """The last physical line read."""
        return self._lines.read

    @property
    def columns(self) -> list[str]:
        return self.mapping.headers if self.mapping else []

    @property
    def warnings(self) -> list[str]:
        return self._lines.warnings + self._warnings()

    def __iter__(self) -> _Reader:
        return self

    def __next__(self):
        return next(self._results)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._owned:
                self._stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- records --------------------------------------------------------------------------

    def _read_records(self) -> Iterator[_Record]:
        lines = self._lines
        reader = csv.reader(lines, self.dialect)
        while True:
            lines.record = []  # lines.start_record(), inlined: once per row
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, _TooLong) as exc:
                record = lines.record
                reader = csv.reader(lines, self.dialect)
                if len(record) > 1:
                    lines.push_back(record[1:])
                    yield _Record(record[0][0], record[:1], [], _unterminated(record))
                elif record:
                    yield _Record(record[0][0], record, [], _csv_reason(exc))
                continue
            record = lines.record
            if record:
                yield _Record(record[0][0], record, cells)

    def _find_header(self, overrides) -> None:
        index = _INDEX[self.kind]
        overridden = {normalize_header(c) for c, _ in _parse_overrides(overrides)}
        seen: list[_Record] = []
        header: _Record | None = None
        for record in self._records:
            if _blank(record.cells):
                continue
            seen.append(record)
            keys = {k for cell in record.cells for k in _header_keys(cell)}
            if any(index.get(k, ("",))[0] == "customer_id" for k in keys) or keys & overridden:
                header = record
                break
            if len(seen) >= HEADER_SCAN:
                break
        if header is None:
            if not seen:
                raise MappingError("the file is empty: no header row")
            header, self._pending = seen[0], seen[1:]
        skipped = [r.start for r in seen if r.start < header.start]
        self._skipped_lines = skipped
        self.header_line = header.start
        names = [c.strip().replace("\ufeff", "") for c in header.cells]
        while names and not names[-1]:  # trailing delimiters on the header line
            names.pop()
        self._header_cells = names
        try:
            self.mapping = map_headers(
                names, self.kind, overrides, branch_given=self.branch is not None
            )
        except MappingError as exc:
            if any(n in self._lines.bad for n, _ in header.lines):
                exc.args = (
                    exc.args[0] + f" (the header line is not valid {self.encoding}: "
                    "is the file in another encoding?)",
                )
            raise
        self._prepare()

    def _run(self) -> Iterator[Any]:
        if self.mapping is None:
            self.close()
            return
        try:
            records = self._records
            while True:
                if self._pending:
                    record = self._pending.pop(0)
                else:
                    record = next(records, None)
                    if record is None:
                        break
                cells = record.cells
                if record.error is None and not (cells and cells[0].strip()) and _blank(cells):
                    continue
                self.rows += 1
                result = self._check(record)
                if result.ok:
                    self.accepted += 1
                else:
                    self.rejected += 1
                if self.on_progress and self.rows % self.progress_every == 0:
                    self.on_progress(self)
                yield result
            self._finish()
            if self.on_progress:
                self.on_progress(self)
        finally:
            self.close()

    def _check(self, record: _Record):
        if record.error:
            return Rejection(record.start, None, _first_line(record), record.error)
        cells = record.cells
        n = len(self._header_cells)
        if len(record.lines) > 1 and self._fits(record.lines[1][1]) and self._malformed(record):
            # a quote opened on the first line swallowed the next rows: read them again
            self._lines.push_back(record.lines[1:])
            return Rejection(record.start, None, _first_line(record), _unterminated(record))
        if len(cells) != n:
            if len(cells) > n and not any(c.strip() for c in cells[n:]):
                cells = cells[:n]
            else:
                span = (
                    f" (the row spans lines {record.start}–{record.lines[-1][0]})"
                    if len(record.lines) > 1
                    else ""
                )
                return Rejection(
                    record.start,
                    None,
                    None,
                    f"wrong number of columns: {len(cells)}, the header has {n}{span}",
                )
        bad = self._lines.bad
        if bad:
            reasons = [bad.pop(number) for number, _ in record.lines if number in bad]
            if reasons:
                column = next(
                    (self._header_cells[i] for i, c in enumerate(cells) if "\ufffd" in c), None
                )
                return Rejection(record.start, column, None, reasons[0])
        return self._row(cells, record.start)

    def _malformed(self, record: _Record) -> bool:
        """Whether a record's quotes are broken: a quote that closes a field but is followed by
        something other than a delimiter (the opening quote of a later field, when an
        unterminated quote swallowed the rows after it), or no closing quote at all."""
        try:
            for _ in csv.reader([text for _, text in record.lines], self._strict):
                pass
        except csv.Error:
            return True
        return False

    def _fits(self, line: str) -> bool:
        try:
            cells = next(csv.reader([line], self.dialect), [])
        except csv.Error:
            return False
        n = len(self._header_cells)
        return len(cells) == n or (len(cells) > n and not any(c.strip() for c in cells[n:]))

    def _problem(self, line, problems):
        column, value, reason = problems[0]
        return Rejection(line, column, value, reason, tuple(problems))

    # -- per kind ---------------------------------------------------------------------------

    def _prepare(self) -> None:
        raise NotImplementedError

    def _row(self, cells: list[str], line: int):
        raise NotImplementedError

    def _finish(self) -> None:
        pass

    def _warnings(self) -> list[str]:
        out = []
        if getattr(self, "_skipped_lines", None):
            lines = self._skipped_lines
            out.append(
                f"line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines))} before the "
                f"header (line {self.header_line}) skipped"
            )
        return out


def _blank(cells: list[str]) -> bool:
    return not any(c.strip() for c in cells)


def _first_line(record: _Record) -> str:
    text = record.lines[0][1].rstrip("\r\n")
    return text if len(text) <= 80 else text[:79] + "…"


def _unterminated(record: list[tuple[int, str]] | _Record) -> str:
    lines = record.lines if isinstance(record, _Record) else record
    return (
        f'unterminated quote: a field opened with " on line {lines[0][0]} does not close '
        f"(the lines after it are read as rows of their own)"
    )


def _csv_reason(exc: BaseException) -> str:
    text = str(exc)
    if "new-line character" in text:
        return "a carriage return (CR) inside an unquoted field"
    if "field larger" in text:
        return "a field longer than 131,072 characters"
    return f"unreadable row: {text}"


def _clean(cell: str) -> str:
    s = cell.strip()
    if s.startswith('="'):
        m = _EXCEL_TEXT_RE.match(s)
        if m:
            s = m.group(1).strip()
    return s


def _code(cell: str) -> str:
    return _nfkc(_clean(cell))


def _fmt(d: Decimal) -> str:
    return format(d.normalize(), "f") if d else "0"


# Per-column caches of parsed cells (SalesReader): a file repeats its dates, amounts, branches
# and products; each cache is emptied when it reaches this size, so memory stays bounded.
CACHE_ENTRIES = 50_000
_MISSING = object()
_NO_NUMBER = (None, None, None, None, "")  # value, problem, formatted, formatted abs, text


def _code_cell(name: str, raw: str) -> str:
    return _code(raw)


def _text_cell(name: str, raw: str) -> str:
    return _nfkc(_clean(raw))


def _name_cell(name: str, raw: str) -> str:
    return _clean(raw)


_KINDS = {
    "sale": ("売上", "販売", "通常", "受注", "出荷", "購入", "sale", "sales", "order", "purchase", "s"),
    "return": ("返品", "返金", "返却", "赤伝", "マイナス", "return", "refund", "r"),
    "void": ("取消", "取り消し", "取消し", "キャンセル", "取消伝票", "void", "cancel", "cancelled",
             "canceled", "v"),
}  # fmt: skip
_KIND_MAP = {v: k for k, vs in _KINDS.items() for v in vs}


class SalesReader(_Reader):
    """Iterate for :class:`SaleRow` or :class:`Rejection`. Attributes for a progress display:
    ``bytes_read``, ``total_bytes`` (``None`` for a pipe), ``rows``, ``accepted``,
    ``rejected``, ``line``; ``warnings`` once read."""

    kind = "sales"

    def __init__(
        self,
        source: Source,
        *,
        tenant: str,
        branch: str | None = None,
        mapping_overrides: MappingABC[str, str] | Iterable[str] | None = None,
        default_zone: str = "Asia/Tokyo",
        channel: str | None = None,
        namespace: str = "",
        on_progress: Callable[[Any], None] | None = None,
        progress_every: int = 10_000,
        raise_mapping: bool = True,
    ):
        self.zone = ZoneInfo(default_zone)
        self.channel = channel
        self.namespace = namespace
        self._seen = _Occurrences()
        self._orders: dict[str, tuple[str, int]] = {}
        self._reused: list[str] = []
        self._reused_count = 0
        self._run_order: list[Any] = [None, 0, "", True, None, False]  # see _watch_order
        self._repeated_totals: list[str] = []
        super().__init__(
            source,
            tenant=tenant,
            branch=branch,
            mapping_overrides=mapping_overrides,
            on_progress=on_progress,
            progress_every=progress_every,
            raise_mapping=raise_mapping,
        )

    def _prepare(self) -> None:
        assert self.mapping is not None
        f = self.mapping.fields
        self._col = {name: self.mapping.headers[i] for name, i in f.items()}
        self._idx = dict(f)
        self._has_lines = bool({"sku", "name", "unit_price", "quantity"} & f.keys())
        self._watch_totals = "amount" in f and "unit_price" in f
        # What a cell gives depends on its text alone, and a file repeats its dates, amounts,
        # branches and products over and over: each distinct text is parsed once (per column)
        # and the result — value, formatted value or the problem — looked up afterwards.
        self._cells: dict[str, dict[str, Any]] = {name: {} for name in f}
        self._dates: dict[Any, tuple] = {}  # date text, or (date text, time text)
        self._columns = tuple(
            f.get(name)
            for name in (
                "date",
                "time",
                "branch",
                "kind",
                "unit_price",
                "quantity",
                "tax",
                "amount",
            )
        )

    def _cached(self, name: str, raw: str, parse: Callable[[str, str], Any]) -> Any:
        cache = self._cells[name]
        entry = cache.get(raw, _MISSING)
        if entry is _MISSING:
            if len(cache) >= CACHE_ENTRIES:
                cache.clear()
            entry = cache[raw] = parse(name, raw)
        return entry

    def _number_cell(self, name: str, raw: str) -> tuple:
        """(value, problem, formatted, formatted absolute value, cleaned text) of a number."""
        text = _clean(raw)
        if not text:
            return _NO_NUMBER
        what = _WHAT.get(name, name)
        try:
            value = parse_number(text, places=3 if name == "quantity" else 2, what=what)
        except ValueError as exc:
            return None, (self._col[name], text, str(exc)), None, None, text
        if abs(value) >= (MAX_QUANTITY if name == "quantity" else MAX_AMOUNT):
            return None, (self._col[name], text, f"{what} is too large"), None, None, text
        return value, None, _fmt(value), _fmt(abs(value)), text

    def _kind_cell(self, name: str, raw: str) -> tuple[str, tuple | None]:
        text = _clean(raw)
        word = _nfkc(text).lower()
        if not word:
            return "sale", None
        kind = _KIND_MAP.get(word, "")
        if kind:
            return kind, None
        return "", (
            self._col["kind"],
            text,
            "unknown kind: expected 売上, 返品 or 取消 (sale, return, void)",
        )

    def _currency_cell(self, name: str, raw: str) -> tuple[str, tuple | None]:
        text = _clean(raw)
        currency = _nfkc(text).upper() or "JPY"
        if not re.fullmatch(r"[A-Z]{3}", currency):
            return currency, (self._col["currency"], text, "currency must be a 3-letter code")
        return currency, None

    def _date_cell(self, text: str, clock: str) -> tuple:
        """(problems, occurred_at, the tenant's calendar date) of a date (and time) text."""
        col = self._col
        if not text:
            return ((col["date"], "", "missing date"),), "", ""
        problems = []
        at: datetime | None = None
        try:
            at = parse_datetime(text)
        except ValueError as exc:
            problems.append((col["date"], text, str(exc)))
        if at is not None and clock:
            try:
                t = parse_datetime(f"2000/1/1 {_nfkc(clock)}")
                at = at.replace(hour=t.hour, minute=t.minute, second=t.second)
            except ValueError:
                problems.append((col["time"], clock, f"not a time: {clock!r}; expected H:MM[:SS]"))
        if problems or at is None:
            return tuple(problems), "", ""
        if at.tzinfo is None:
            at = at.replace(tzinfo=self.zone)
        return (), at.isoformat(), at.astimezone(self.zone).date().isoformat()

    def _row(self, cells: list[str], line: int):
        idx, col, cached, known = self._idx, self._col, self._cached, self._cells
        i_date, i_time, i_branch, i_kind, i_price, i_qty, i_tax, i_amount = self._columns
        problems: list[tuple[str | None, str | None, str]] = []

        raw = cells[idx["customer_id"]]
        customer = raw.strip() if raw.isascii() else '="'
        if customer.startswith('="'):
            customer = _nfkc(_clean(raw))
        if not customer:
            problems.append((col["customer_id"], "", "missing customer code (顧客コード)"))
        elif len(customer) > 200:
            problems.append((col["customer_id"], customer, "customer code longer than 200"))

        key = cells[i_date] if i_time is None else (cells[i_date], cells[i_time])
        date_cell = self._dates.get(key)
        if date_cell is None:
            if len(self._dates) >= CACHE_ENTRIES:
                self._dates.clear()
            text, clock = (key, "") if i_time is None else key
            date_cell = self._dates[key] = self._date_cell(_clean(text), _clean(clock))
        if date_cell[0]:
            problems += date_cell[0]

        branch = ""
        if i_branch is not None:
            raw = cells[i_branch]
            branch = known["branch"].get(raw) or cached("branch", raw, _code_cell)
        if not branch:
            branch = self.branch or ""
        if not branch:
            problems.append((col.get("branch"), "", "missing branch (店舗) and no --branch given"))
        elif len(branch) > 100:
            problems.append((col["branch"], branch, "branch longer than 100"))

        kind = "sale"
        if i_kind is not None:
            raw = cells[i_kind]
            kind, problem = known["kind"].get(raw) or cached("kind", raw, self._kind_cell)
            if problem:
                problems.append(problem)

        # every cached number cell is a non-empty tuple: `or` falls back to parsing it
        number = self._number_cell
        price = qty = tax = given = _NO_NUMBER
        if i_price is not None:
            raw = cells[i_price]
            price = known["unit_price"].get(raw) or cached("unit_price", raw, number)
        if i_qty is not None:
            raw = cells[i_qty]
            qty = known["quantity"].get(raw) or cached("quantity", raw, number)
        if i_tax is not None:
            raw = cells[i_tax]
            tax = known["tax"].get(raw) or cached("tax", raw, number)
        if i_amount is not None:
            raw = cells[i_amount]
            given = known["amount"].get(raw) or cached("amount", raw, number)
        if price[1] or qty[1] or tax[1] or given[1]:
            problems += [entry[1] for entry in (price, qty, tax, given) if entry[1]]
        unit_price, quantity, amount = price[0], qty[0], given[0]
        computed = False
        if not given[4] and kind != "void":
            # no amount in the row: net amount + tax, else unit price × quantity (+ tax)
            i = idx.get("net_amount")
            net = cached("net_amount", cells[i], number) if i is not None else _NO_NUMBER
            if net[1]:
                problems.append(net[1])
            computed = True
            if net[0] is not None:
                amount = net[0] + (tax[0] or 0)
            elif unit_price is not None:
                amount = unit_price * (quantity if quantity is not None else 1) + (tax[0] or 0)
                if amount.as_tuple().exponent < -2:
                    amount = amount.quantize(Decimal("0.01"), ROUND_HALF_UP)
                if abs(amount) >= MAX_AMOUNT:
                    problems.append((col["unit_price"], price[4], "amount is too large"))
            elif not net[4] and not price[4]:
                source = next(f for f in ("amount", "net_amount", "unit_price") if f in idx)
                reason = f"missing {_WHAT[source]}"
                if source != "amount":
                    reason += ": cannot compute the amount"
                elif {"net_amount", "unit_price"} & idx.keys():
                    reason += " (and nothing to compute it from)"
                problems.append((col[source], "", reason))

        i = idx.get("order_id")
        order = ""
        if i is not None:  # mostly distinct: not cached, a fast path for plain codes instead
            raw = cells[i]
            order = raw.strip() if raw.isascii() else '="'
            if order.startswith('="'):
                order = _code(_clean(raw))
        if len(order) > 200:
            problems.append((col["order_id"], order, "order number longer than 200"))
        if kind == "void" and not order:
            problems.append(
                (
                    col.get("order_id"),
                    None,
                    "a void (取消) needs the order number of the sale it cancels",
                )
            )
        i = idx.get("currency")
        currency, problem = cached("currency", cells[i], self._currency_cell) if i is not None else ("JPY", None)  # fmt: skip
        if problem:
            problems.append(problem)
        if problems:
            return self._problem(line, problems)

        _, occurred_at, day = date_cell
        if amount is not None and amount < 0:
            if kind == "sale":
                kind = "return"
            amount = -amount
        elif amount is not None and kind == "sale" and quantity is not None and quantity < 0:
            kind = "return"  # 返品: quantity -1 with the amount written positive
        if amount is None:
            amount_s = None
        elif computed:
            amount_s = _fmt(amount)
        else:
            amount_s = given[3] if given[0] < 0 else given[2]
        if not order:
            who = (
                customer
                if len(customer) <= 180
                else hashlib.sha256(customer.encode()).hexdigest()[:32]
            )
            order_id = f"d:{who}:{day}"  # the tenant's calendar date
        else:
            order_id = order
        negative = kind != "sale"
        tax_s = None if tax[0] is None else tax[3] if negative else tax[2]
        item = None
        line_total = None
        if self._has_lines:
            sku = name = ""
            i = idx.get("sku")
            if i is not None:
                raw = cells[i]
                sku = known["sku"].get(raw) or cached("sku", raw, _text_cell)
            i = idx.get("name")
            if i is not None:
                raw = cells[i]
                name = known["name"].get(raw) or cached("name", raw, _name_cell)
            if sku or name or unit_price is not None or quantity is not None:
                item = {
                    "sku": sku[:200] or None,
                    "name": name[:500] or None,
                    "unit_price": None
                    if unit_price is None
                    else price[3]
                    if negative
                    else price[2],
                    "quantity": "1" if quantity is None else qty[3] if negative else qty[2],
                }
                if unit_price is not None:
                    line_total = (abs(unit_price) if negative else unit_price) * (
                        1 if quantity is None else abs(quantity) if negative else quantity
                    )
        i = idx.get("channel")
        channel = (cached("channel", cells[i], _text_cell)[:100] if i is not None else "") or (
            self.channel
        )
        lines = (
            f"{item['sku']}\x1e{item['name']}\x1e{item['unit_price']}\x1e{item['quantity']}"
            if item
            else ""
        )
        digest = hashlib.sha256(
            "\x1f".join(
                (
                    self.namespace,
                    branch,
                    customer,
                    occurred_at,
                    kind,
                    amount_s or "",
                    tax_s or "",
                    order_id,
                    currency,
                    channel or "",
                    lines,
                )
            ).encode()
        ).digest()
        nth = self._seen.add((int.from_bytes(digest[:8], "big") >> 1) or 1)
        event = {
            "schema_version": 1,
            "event_id": f"imp-{digest[:10].hex()}-{nth}",
            "tenant_id": self.tenant,
            "branch_id": branch,
            "customer_id": customer,
            "occurred_at": occurred_at,
            "amount": amount_s,
            "kind": kind,
            "order_id": order_id,
            "tax": tax_s,
            "currency": currency,
            "channel": channel,
            "lines": [item] if item else [],
        }
        if order:
            self._watch_order(order, customer, line, amount_s, item, line_total)
        return SaleRow(line, event)

    def _watch_order(self, order, customer, line, amount_s, item, line_total) -> None:
        """Two checks on the order numbers, cheap and bounded: the same number for two
        customers (numbers restart per day or per store: such rows would become one purchase),
        and an amount that is the same on every line of an order whose lines differ (an order
        total repeated on each line: it would be added once per line)."""
        first = self._orders.get(order)
        if first is None:
            if len(self._orders) < 100_000:
                self._orders[order] = (customer, line)
        elif first[0] != customer:
            self._reused_count += 1
            if len(self._reused) < 3:
                self._reused.append(
                    f"{order} (line {first[1]}: {first[0]}, line {line}: {customer})"
                )
        if self._watch_totals:
            # the run of rows with this order number: [order, rows, first amount, every amount
            # the same, first unit price × quantity, some line's differs]
            run = self._run_order
            if order != run[0]:
                self._close_run()
                run = self._run_order = [order, 0, amount_s or "", True, None, False]
            run[1] += 1
            if (amount_s or "") != run[2]:
                run[3] = False
            if item and line_total is not None:
                if run[4] is None:
                    run[4] = line_total
                elif line_total != run[4]:
                    run[5] = True

    def _close_run(self) -> None:
        # lines whose unit price × quantity differ, all with the same amount
        order, rows, _, same_amount, _, totals_differ = self._run_order
        if order is not None and rows >= 2 and same_amount and totals_differ:
            self._repeated_totals.append(order)

    def _finish(self) -> None:
        self._close_run()
        self._run_order = [None, 0, "", True, None, False]

    def _warnings(self) -> list[str]:
        out = super()._warnings()
        if self._reused_count:
            out.append(
                f"{self._reused_count} row(s) reuse an order number of another customer, e.g. "
                + "; ".join(self._reused)
                + ". Rows sharing an order number are one purchase: if numbers restart (per day "
                "or per store), map the order column to '-' and let a customer's rows on one "
                "date be one purchase."
            )
        if self._repeated_totals:
            n = len(self._repeated_totals)
            column = self._col.get("amount")
            out.append(
                f"{n} order(s) have the same {column} on every line while their lines differ "
                f"(e.g. {', '.join(self._repeated_totals[:3])}): if {column} is the order total "
                "repeated on each line, each line adds the whole total; map the line amount "
                "instead (--map)."
            )
        return out


_WHAT = {
    "amount": "amount",
    "net_amount": "net amount",
    "unit_price": "unit price",
    "quantity": "quantity",
    "tax": "tax",
}


class CustomerReader(_Reader):
    """Iterate for :class:`CustomerRow` or :class:`Rejection`; same progress attributes as
    :class:`SalesReader`."""

    kind = "customers"

    def __init__(
        self,
        source: Source,
        *,
        tenant: str,
        branch: str | None = None,
        mapping_overrides: MappingABC[str, str] | Iterable[str] | None = None,
        on_progress: Callable[[Any], None] | None = None,
        progress_every: int = 10_000,
        raise_mapping: bool = True,
    ):
        super().__init__(
            source,
            tenant=tenant,
            branch=branch,
            mapping_overrides=mapping_overrides,
            on_progress=on_progress,
            progress_every=progress_every,
            raise_mapping=raise_mapping,
        )

    def _prepare(self) -> None:
        assert self.mapping is not None
        self._idx = dict(self.mapping.fields)
        self._col = {name: self.mapping.headers[i] for name, i in self._idx.items()}

    def _row(self, cells: list[str], line: int):
        idx, col = self._idx, self._col
        problems: list[tuple[str | None, str | None, str]] = []

        def get(name: str) -> str | None:
            i = idx.get(name)
            if i is None:
                return None
            s = _nfkc(_clean(cells[i]))
            return " ".join(s.split()) or None  # NFKC'd ideographic spaces included

        customer = _code(cells[idx["customer_id"]])
        if not customer:
            problems.append((col["customer_id"], "", "missing customer code (顧客コード)"))
        elif len(customer) > 200:
            problems.append((col["customer_id"], customer, "customer code longer than 200"))
        consent = None
        if "mail_consent" in idx:
            raw = _clean(cells[idx["mail_consent"]])
            try:
                consent = parse_consent(raw)
            except ValueError as exc:
                problems.append((col["mail_consent"], raw, str(exc)))
        if problems:
            return self._problem(line, problems)
        name = get("name") or _join(get("family_name"), get("given_name"))
        kana = get("kana") or _join(get("family_kana"), get("given_kana"))
        address1 = _join(get("prefecture"), get("city"), get("address1"), sep="")
        pref = get("prefecture")
        if pref and get("address1") and get("address1").startswith(pref):  # 住所 already has it
            address1 = _join(get("city"), get("address1"), sep="")
        postal = get("postal_code")
        if postal:
            postal = postal.lstrip("〒").strip()
            digits = postal.replace("-", "")
            if len(digits) == 7 and digits.isdigit():
                postal = f"{digits[:3]}-{digits[3:]}"
        branch = (_code(cells[idx["branch"]]) if "branch" in idx else "") or self.branch
        return CustomerRow(
            line=line,
            tenant_id=self.tenant,
            customer_id=customer,
            branch_id=branch,
            name=name,
            kana=kana,
            company=get("company"),
            postal_code=postal,
            address1=address1,
            address2=_join(get("address2"), get("address3")),
            phone=get("phone"),
            fax=get("fax"),
            email=get("email"),
            mail_consent=consent,
        )


def _join(*parts: str | None, sep: str = " ") -> str | None:
    return sep.join(p for p in parts if p) or None


def read_sales(
    source: Source,
    *,
    tenant: str,
    branch: str | None = None,
    mapping_overrides: MappingABC[str, str] | Iterable[str] | None = None,
    default_zone: str = "Asia/Tokyo",
    channel: str | None = None,
    namespace: str = "",
    on_progress: Callable[[SalesReader], None] | None = None,
    progress_every: int = 10_000,
) -> SalesReader:
    """Open a sales file (a path or a binary stream) and map its header; iterate the result for
    :class:`SaleRow` (``event``: a JSON-ready ``kizuna.purchases.v1`` dict) or
    :class:`Rejection`, one per data row in file order.

    Raises :class:`MappingError` at once when a required column is missing (customer code,
    date, an amount or a unit price to compute it from, and a branch column unless ``branch``
    is given). Per row: amount from the amount column, else net amount + tax, else unit price ×
    quantity (+ tax); a negative amount (or quantity) is a return with a positive amount; order
    id is the file's order number, else ``d:<customer>:<date>`` (a customer's rows on one date
    are one purchase); dates without an offset are in ``default_zone``. ``channel`` is the
    default channel, ``namespace`` a salt for the event ids (two sources whose identical rows
    are really different purchases). ``on_progress(reader)`` is called every
    ``progress_every`` rows and at the end."""
    return SalesReader(
        source,
        tenant=tenant,
        branch=branch,
        mapping_overrides=mapping_overrides,
        default_zone=default_zone,
        channel=channel,
        namespace=namespace,
        on_progress=on_progress,
        progress_every=progress_every,
    )


def read_customers(
    source: Source,
    *,
    tenant: str,
    branch: str | None = None,
    mapping_overrides: MappingABC[str, str] | Iterable[str] | None = None,
    on_progress: Callable[[CustomerReader], None] | None = None,
    progress_every: int = 10_000,
) -> CustomerReader:
    """Open a customer file; iterate the result for :class:`CustomerRow` or :class:`Rejection`.
    Only the customer code is required. Text is NFKC-normalised (half-width kana become
    full-width), postal codes written ``123-4567``, 都道府県/市区町村 columns joined into
    address1, 姓/名 into name; a second ``氏名`` column is read as kana when there is no kana
    column (as in the common export where both are headed 氏名)."""
    return CustomerReader(
        source,
        tenant=tenant,
        branch=branch,
        mapping_overrides=mapping_overrides,
        on_progress=on_progress,
        progress_every=progress_every,
    )


@dataclass
class Preview:
    """What ``--dry-run`` shows: the detected dialect, the mapping and the first rows."""

    kind: str
    encoding: str
    delimiter: str
    header_line: int | None
    columns: list[dict[str, Any]]  # Mapping.describe()
    notes: list[str]
    rows: list[Any]  # SaleRow | CustomerRow | Rejection
    warnings: list[str]
    error: str | None
    total_bytes: int | None

    @property
    def mapping(self) -> dict[str, str]:
        """column header → field, for the mapped columns."""
        return {c["header"]: c["field"] for c in self.columns if c["field"]}


def preview(
    source: Source,
    n: int = 5,
    *,
    kind: Literal["sales", "customers"] = "sales",
    tenant: str = "preview",
    branch: str | None = None,
    mapping_overrides: MappingABC[str, str] | Iterable[str] | None = None,
    default_zone: str = "Asia/Tokyo",
) -> Preview:
    """Detect, map and parse the first ``n`` data rows. Does not raise on a mapping problem:
    ``error`` holds the message (with the closest header) and ``columns`` what was found.
    Event ids are the ones a real import gives (the tenant is not part of them)."""
    if kind == "sales":
        reader: _Reader = SalesReader(
            source,
            tenant=tenant,
            branch=branch,
            mapping_overrides=mapping_overrides,
            default_zone=default_zone,
            raise_mapping=False,
        )
    else:
        reader = CustomerReader(
            source,
            tenant=tenant,
            branch=branch,
            mapping_overrides=mapping_overrides,
            raise_mapping=False,
        )
    with reader:
        rows = []
        for result in reader:
            rows.append(result)
            if len(rows) >= n:
                break
        if reader.mapping is not None:
            columns, notes = reader.mapping.describe(), list(reader.mapping.notes)
        else:
            headers = getattr(reader, "_header_cells", [])
            columns = [
                {"column": i + 1, "header": h, "field": None, "note": ""}
                for i, h in enumerate(headers)
            ]
            notes = []
        return Preview(
            kind=kind,
            encoding=reader.encoding,
            delimiter=reader.dialect.delimiter_name,
            header_line=reader.header_line,
            columns=columns,
            notes=notes,
            rows=rows,
            warnings=reader.warnings,
            error=str(reader.mapping_error) if reader.mapping_error else None,
            total_bytes=reader.total_bytes,
        )
