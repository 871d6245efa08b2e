"""The reports service's pure logic: folding customer states into per-customer rows and portfolio
deltas, and shaping what the HTTP API returns. No I/O; table-tested in tests/reports/.

How a customer state becomes portfolio numbers: reports keep, per (tenant, scope, customer), the
segment and total they have counted. A newer state (higher ``seq``) moves the customer from what
is counted to the state's ``to_segment`` and ``total_amount`` on its ``effective_on`` day: minus
one customer and the old total in the old segment, plus one and the new total in the new one.
Moving from what *reports* counted (rather than trusting the event's ``from_segment``) keeps the
aggregates equal to the sum over customers even if a state was ever missed. A state whose
``supersedes_seq`` names the last applied change first undoes that change on its own day (the
classifier lapsed the customer before late history showed a purchase before the lapse date), so
the daily history shows the customer as they really were.

Every applied state is also an ``Entry`` of the customer's timeline (``history.py``), and an undone
change's entry is removed, so the timeline and the daily deltas always describe the same history.
A state dated before the change it builds on (the classifier folds late events in at its own
clock, which a lapse may have passed; or undoes a lapse back to a change made later than the new
purchase) is counted from that change's day on: the timeline stays in date order and the history
never moves a customer twice out of the same segment.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from shared.cpm import SEGMENT_NAMES_JA, SEGMENTS
from shared.events import CustomerState

ZERO = Decimal(0)
KNOWN_SEGMENTS = frozenset(SEGMENTS)
SUPPORTED_SCHEMA_VERSION = 1


# --- folding customer states -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """What reports keep per (tenant, scope, customer): the figures of the last applied state and
    what its change moved the customer from (to undo it)."""

    seq: int
    segment: str | None
    purchase_count: int
    total_amount: Decimal
    first_purchase_on: date | None
    last_purchase_on: date | None
    home_branch_id: str | None
    effective_on: date
    prev_segment: str | None = None
    prev_total_amount: Decimal = ZERO
    # Day of the change before the last one (the entry an undo returns to); null when unknown.
    prev_effective_on: date | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One applied customer state in a customer's timeline (``report_timeline``)."""

    seq: int
    effective_on: date
    segment: str | None
    total_amount: Decimal
    purchase_count: int
    first_purchase_on: date | None
    last_purchase_on: date | None


@dataclass(frozen=True, slots=True)
class Delta:
    """A change of one segment's customers and sales on one day."""

    day: date
    segment: str
    customers: int
    sales: Decimal


@dataclass(frozen=True, slots=True)
class Folded:
    row: CustomerRow | None
    deltas: tuple[Delta, ...]
    applied: int
    skipped: int
    added: tuple[Entry, ...] = ()  # timeline entries of the applied states
    removed: tuple[int, ...] = ()  # seqs of undone (superseded) changes


def problem_with(state: CustomerState) -> str | None:
    """Why a decoded state cannot be applied (it goes to the dead-letter topic), or ``None``."""
    if state.schema_version > SUPPORTED_SCHEMA_VERSION:
        return f"schema_version {state.schema_version} is newer than this service reads"
    for name in ("from_segment", "to_segment"):
        value = getattr(state, name)
        if value is not None and value not in KNOWN_SEGMENTS:
            return f"{name}: unknown segment {value!r}"
    if state.seq < 1:
        return "seq: must be positive"
    if not state.tenant_id or not state.scope or not state.customer_id:
        return "tenant_id, scope and customer_id must not be empty"
    return None


def move(
    day: date,
    from_segment: str | None,
    from_total: Decimal,
    to_segment: str | None,
    to_total: Decimal,
) -> list[Delta]:
    """The deltas of moving one customer between segments on a day. A null segment (a customer
    in no segment) contributes nothing."""
    deltas = []
    if from_segment is not None:
        deltas.append(Delta(day, from_segment, -1, -from_total))
    if to_segment is not None:
        deltas.append(Delta(day, to_segment, 1, to_total))
    return deltas


def fold(row: CustomerRow | None, states: Iterable[CustomerState]) -> Folded:
    """Apply one customer's states (one tenant and scope) to their stored row, in ``seq`` order.

    A state whose ``seq`` is not above the row's is a duplicate or stale: skipped, so redelivery
    never counts twice. Returns the new row, the portfolio deltas to add and the timeline's
    changes.
    """
    deltas: list[Delta] = []
    added: list[Entry] = []
    removed: list[int] = []
    applied = skipped = 0
    for state in sorted(states, key=lambda s: s.seq):
        if row is not None and state.seq <= row.seq:
            skipped += 1
            continue
        day = state.effective_on
        if row is None:
            base_segment, base_total, base_day = None, ZERO, None
        elif state.supersedes_seq is not None and state.supersedes_seq == row.seq:
            # Reverse exactly what the superseded change added, on the day it added it.
            deltas += move(
                row.effective_on,
                row.segment,
                row.total_amount,
                row.prev_segment,
                row.prev_total_amount,
            )
            base_segment, base_total = row.prev_segment, row.prev_total_amount
            base_day = row.prev_effective_on
            removed.append(row.seq)
            if base_day is not None:
                day = max(day, base_day)
        else:
            # Includes a supersedes_seq we never applied (nothing to undo).
            base_segment, base_total = row.segment, row.total_amount
            base_day = row.effective_on
            day = max(day, base_day)
        deltas += move(day, base_segment, base_total, state.to_segment, state.total_amount)
        added.append(
            Entry(
                seq=state.seq,
                effective_on=day,
                segment=state.to_segment,
                total_amount=state.total_amount,
                purchase_count=state.purchase_count,
                first_purchase_on=state.first_purchase_on,
                last_purchase_on=state.last_purchase_on,
            )
        )
        row = CustomerRow(
            seq=state.seq,
            segment=state.to_segment,
            purchase_count=state.purchase_count,
            total_amount=state.total_amount,
            first_purchase_on=state.first_purchase_on,
            last_purchase_on=state.last_purchase_on,
            home_branch_id=state.home_branch_id,
            effective_on=day,
            prev_segment=base_segment,
            prev_total_amount=base_total,
            prev_effective_on=base_day,
        )
        applied += 1
    return Folded(row, tuple(deltas), applied, skipped, tuple(added), tuple(removed))


DailyKey = tuple[str, str, date, str]  # tenant, scope, day (or month's first day), segment
CurrentKey = tuple[str, str, str]  # tenant, scope, segment


@dataclass(frozen=True, slots=True)
class Sums:
    daily: dict[DailyKey, tuple[int, Decimal]]
    monthly: dict[DailyKey, tuple[int, Decimal]]
    current: dict[CurrentKey, tuple[int, Decimal]]


def sum_deltas(items: Iterable[tuple[str, str, Delta]]) -> Sums:
    """Add up (tenant, scope, delta) items into per-day, per-month and per-segment current rows,
    each key once (one upsert statement cannot touch a row twice); rows that net to zero are
    left out."""
    daily: dict[DailyKey, list] = defaultdict(lambda: [0, ZERO])
    monthly: dict[DailyKey, list] = defaultdict(lambda: [0, ZERO])
    current: dict[CurrentKey, list] = defaultdict(lambda: [0, ZERO])
    for tenant, scope, d in items:
        for acc in (
            daily[(tenant, scope, d.day, d.segment)],
            monthly[(tenant, scope, d.day.replace(day=1), d.segment)],
            current[(tenant, scope, d.segment)],
        ):
            acc[0] += d.customers
            acc[1] += d.sales

    def nonzero(acc: dict) -> dict:
        return {k: (c, s) for k, (c, s) in sorted(acc.items()) if c or s}

    return Sums(nonzero(daily), nonzero(monthly), nonzero(current))


# --- shaping responses ---------------------------------------------------------------------------


def amount_text(value: Decimal | None) -> str | None:
    """An amount as a plain decimal string: ``105607`` or ``1234.5``, never an exponent."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    return format(value.normalize(), "f")


def share(part, whole) -> float:
    """``part / whole`` rounded to 4 places; 0 when the whole is 0."""
    if not whole:
        return 0.0
    return float(round(Decimal(part) / Decimal(whole), 4))


def portfolio_body(scope: str, as_of: date, counts: Mapping[str, tuple[int, Decimal]]) -> dict:
    """The portfolio response: all ten segments in ``SEGMENTS`` order, zeros included."""
    total_customers = sum(int(counts.get(s, (0, ZERO))[0]) for s in SEGMENTS)
    total_sales = sum((Decimal(counts.get(s, (0, ZERO))[1]) for s in SEGMENTS), ZERO)
    segments = []
    for segment in SEGMENTS:
        customers, sales = counts.get(segment, (0, ZERO))
        segments.append(
            {
                "segment": segment,
                "name_ja": SEGMENT_NAMES_JA[segment],
                "customers": int(customers),
                "sales": amount_text(Decimal(sales)),
                "customer_share": share(customers, total_customers),
                "sales_share": share(sales, total_sales),
            }
        )
    return {
        "scope": scope,
        "as_of": as_of.isoformat(),
        "total_customers": total_customers,
        "total_sales": amount_text(total_sales),
        "segments": segments,
    }


def customer_body(row: Mapping, scope: str, today: date) -> dict:
    """One customer's figures; tenure from first to last purchase, lapse from last purchase to
    ``today`` (never negative: a clock pinned before the last purchase shows 0)."""
    first, last = row["first_purchase_on"], row["last_purchase_on"]
    segment = row["segment"]
    return {
        "customer_id": row["customer_id"],
        "scope": scope,
        "segment": segment,
        "name_ja": SEGMENT_NAMES_JA.get(segment) if segment else None,
        "purchase_count": row["purchase_count"],
        "total_amount": amount_text(row["total_amount"]),
        "first_purchase_on": first.isoformat() if first else None,
        "last_purchase_on": last.isoformat() if last else None,
        "tenure_days": (last - first).days if first and last else None,
        "lapse_days": max(0, (today - last).days) if last else None,
        "home_branch_id": row["home_branch_id"],
        **{field: _text(row.get(field)) for field in CONTACT_FIELDS if field in row.keys()},
    }


# Customer master data joined into segment lists, when a customers file was imported.
CONTACT_FIELDS = (
    "customer_name",
    "kana",
    "email",
    "phone",
    "postal_code",
    "address",
    "mail_consent",
)


def _text(value):
    if isinstance(value, bool) or value is None:
        return value
    return str(value) or None


# --- segment list pagination ---------------------------------------------------------------------


def encode_cursor(total_amount: Decimal, customer_id: str) -> str:
    """An opaque keyset cursor: the last item's (total, customer_id)."""
    raw = json.dumps([str(total_amount), customer_id], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Decimal, str]:
    """The (total, customer_id) of a cursor; ``ValueError`` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        total, customer_id = json.loads(raw)
        if not isinstance(customer_id, str):
            raise ValueError("bad customer id")
        return Decimal(total), customer_id
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, InvalidOperation) as exc:
        raise ValueError("not a cursor returned by this API") from exc


# --- CSV export ----------------------------------------------------------------------------------

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
