"""CSV exports: headers in Japanese or English, inert cells (no formulas), UTF-8 or CP932."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence

from shared.cpm import (
    SEGMENT_NAMES_JA,
)

CSV_HEADERS = {
    "ja": (
        "顧客コード",
        "氏名",
        "フリガナ",
        "メールアドレス",
        "電話番号",
        "郵便番号",
        "住所",
        "DM可否",
        "売上累計",
        "購入回数",
        "初回購入日",
        "最終購入日",
        "在籍期間",
        "離脱期間",
        "顧客層",
    ),
    "en": (
        "customer_id",
        "name",
        "kana",
        "email",
        "phone",
        "postal_code",
        "address",
        "mail_consent",
        "total_amount",
        "purchase_count",
        "first_purchase_on",
        "last_purchase_on",
        "tenure_days",
        "lapse_days",
        "segment",
    ),
}


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def neutralise(cell: str) -> str:
    """Make a cell inert in spreadsheet software: text starting like a formula gets a leading
    apostrophe (CSV injection). Numbers this service writes itself (a negative total after
    returns) stay numbers."""
    if cell.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def csv_row(item: Mapping, language: str) -> list[str]:
    """One CSV row from a ``customer_body`` item; the segment as its Japanese name under the
    Japanese header, as its id under the English one."""
    segment = item["segment"]
    consent = item.get("mail_consent")
    cells = [
        item["customer_id"],
        item.get("customer_name"),
        item.get("kana"),
        item.get("email"),
        item.get("phone"),
        item.get("postal_code"),
        item.get("address"),
        None
        if consent is None
        else ("可" if consent else "不可")
        if language == "ja"
        else str(consent).lower(),
        item["total_amount"],
        item["purchase_count"],
        item["first_purchase_on"],
        item["last_purchase_on"],
        item["tenure_days"],
        item["lapse_days"],
        SEGMENT_NAMES_JA.get(segment, segment) if language == "ja" else segment,
    ]
    return [neutralise("" if c is None else str(c)) for c in cells]


def csv_text(rows: Iterable[Sequence[str]]) -> str:
    """Rows as CSV text with CRLF line ends (what Excel and label software expect)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue()


ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "cp932": "cp932",
    "shift_jis": "cp932",
    "sjis": "cp932",
    "windows-31j": "cp932",
}


def csv_encoding(name: str) -> str:
    """``utf-8`` or ``cp932`` (Excel's Shift_JIS) from a requested name; ``ValueError`` else."""
    try:
        return ENCODINGS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"encoding must be one of {sorted(set(ENCODINGS.values()))}") from None


def encode_csv(text: str, encoding: str) -> bytes:
    """CSV text as bytes. CP932 cannot spell every character; those become ``?`` rather than
    breaking a download already under way."""
    return text.encode(encoding, errors="replace" if encoding == "cp932" else "strict")
