"""The reports service's pure logic: folding customer states into per-customer rows, timelines and
portfolio deltas, and shaping what the HTTP API returns. No I/O; table-tested in tests/reports/.

How a customer state becomes portfolio numbers: reports keep, per (tenant, scope, customer), the
last applied state (``CustomerRow``) and the customer's timeline: every applied state as an
``Entry`` on its day (``history.py``). A newer state (higher ``seq``) is appended to the timeline
on its ``effective_on`` day, and the portfolio's daily deltas are the day-by-day changes of the
timeline: on each entry's day, minus one customer and the previous entry's total in its segment,
plus one and the entry's total in the new one. Moving from what *reports* counted (rather than
trusting the event's ``from_segment``) keeps the aggregates equal to the sum over customers even
if a state was ever missed.

**Corrections** (the contract in shared/events, ``corrects_from``): a state with
``corrects_from`` = D withdraws every entry of the customer's timeline dated on or after D, each
undone on its own day, and is then applied like any state; those that follow build the timeline
from D on, each on its true day. A state of the old contract whose ``supersedes_seq`` names the
last applied change is read as a correction from that change's day (one policy for both
versions). The deltas of a fold are the new timeline's day-by-day changes minus the old one's,
from the earliest day it touched, so the history and the timeline always describe the same
customer, and the cost is that of the entries from that day on.

A state dated before the last remaining entry (a producer of the old contract folded late events
in at its own clock) is counted from that entry's day on: the timeline stays in date order.
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

from pydantic import ValidationError

from shared.cpm import SEGMENT_NAMES_JA, SEGMENTS, Rules
from shared.events import CustomerState

ZERO = Decimal(0)
KNOWN_SEGMENTS = frozenset(SEGMENTS)
SUPPORTED_SCHEMA_VERSION = 2  # 2: corrections (corrects_from); applied on branch histc


# --- folding customer states -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """What reports keep per (tenant, scope, customer): the figures of the last applied state and
    the entry before it (``prev_*``, for readers of the table: folds read the timeline)."""

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
    # Day of the change before the last one; null when unknown.
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
    """What folding one customer's states changed: the row, the portfolio deltas (netted per day
    and segment), the timeline entries added and the stored ones withdrawn, the loaded part of
    the timeline after the fold, and the earliest day whose history changed."""

    row: CustomerRow | None
    deltas: tuple[Delta, ...]
    applied: int
    skipped: int
    added: tuple[Entry, ...] = ()  # new timeline entries (not withdrawn within the fold)
    removed: tuple[Entry, ...] = ()  # stored entries withdrawn by a correction
    timeline: tuple[Entry, ...] = ()  # the loaded part of the timeline after the fold
    lowest: date | None = None  # earliest day of an added or withdrawn entry


def problem_with(state: CustomerState) -> str | None:
    """Why a decoded state cannot be applied (it goes to the dead-letter topic), or ``None``.
    Versions 1 and 2 of the contract are read alike."""
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


def withdraws_from(state: CustomerState, row: CustomerRow | None) -> date | None:
    """The day from which ``state`` withdraws the customer's applied entries, or ``None``.

    ``corrects_from`` (schema 2); or, from a producer of schema 1, ``supersedes_seq`` naming the
    last applied change: that change is withdrawn (its day on). A ``supersedes_seq`` never
    applied here has nothing to withdraw."""
    if state.corrects_from is not None:
        return state.corrects_from
    if state.supersedes_seq is not None and row is not None and state.supersedes_seq == row.seq:
        return row.effective_on
    return None


def touches_from(row: CustomerRow | None, states: Iterable[CustomerState]) -> date:
    """The earliest day folding ``states`` onto ``row`` can change the customer's timeline: the
    timeline must be loaded from there (plus the entry in force before it)."""
    return min(
        min(state.effective_on, withdraws_from(state, row) or state.effective_on)
        for state in states
    )


def timeline_deltas(entries: Sequence[Entry], since: date) -> list[Delta]:
    """The day-by-day changes a timeline (seq order, which is date order) makes on the days from
    ``since``: each entry moves the customer from the entry before it. ``entries`` must hold the
    entry in force before ``since``, if any."""
    out: list[Delta] = []
    before: Entry | None = None
    for e in entries:
        if e.effective_on >= since:
            out += move(
                e.effective_on,
                before.segment if before else None,
                before.total_amount if before else ZERO,
                e.segment,
                e.total_amount,
            )
        before = e
    return out


def _net(plus: Iterable[Delta], minus: Iterable[Delta]) -> tuple[Delta, ...]:
    """``plus`` minus ``minus``, one delta per day and segment, zeros left out."""
    acc: dict[tuple[date, str], list] = {}
    for sign, deltas in ((1, plus), (-1, minus)):
        for d in deltas:
            cell = acc.setdefault((d.day, d.segment), [0, ZERO])
            cell[0] += sign * d.customers
            cell[1] += sign * d.sales
    return tuple(Delta(day, seg, c, s) for (day, seg), (c, s) in sorted(acc.items()) if c or s)


def fold(
    row: CustomerRow | None, timeline: Sequence[Entry], states: Iterable[CustomerState]
) -> Folded:
    """Apply one customer's states (one tenant and scope) to their stored row and timeline, in
    ``seq`` order.

    ``timeline`` is the stored timeline in seq order from ``touches_from(row, states)`` on, with
    the entry in force before that day (all of it for a customer without a row: none). A state
    whose ``seq`` is not above the row's is a duplicate or stale: skipped, so redelivery never
    counts twice. A correction first withdraws the entries from its day on; every applied state
    then becomes an entry on its ``effective_on`` day (never before the last remaining entry).
    Returns the new row, the deltas to add (the new timeline's changes minus the old one's) and
    the timeline's changes.
    """
    old = tuple(timeline)
    entries = list(old)
    applied = skipped = 0
    for state in sorted(states, key=lambda s: s.seq):
        if row is not None and state.seq <= row.seq:
            skipped += 1
            continue
        start = withdraws_from(state, row)
        if start is not None:
            entries = [e for e in entries if e.effective_on < start]
        base = entries[-1] if entries else None
        day = state.effective_on if base is None else max(state.effective_on, base.effective_on)
        entries.append(
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
            prev_segment=base.segment if base else None,
            prev_total_amount=base.total_amount if base else ZERO,
            prev_effective_on=base.effective_on if base else None,
        )
        applied += 1
    if not applied:
        return Folded(row, (), 0, skipped, timeline=old)
    kept = {e.seq for e in entries}
    stored = {e.seq for e in old}
    removed = tuple(e for e in old if e.seq not in kept)
    added = tuple(e for e in entries if e.seq not in stored)
    lowest = min(e.effective_on for e in (*removed, *added))
    deltas = _net(timeline_deltas(entries, lowest), timeline_deltas(old, lowest))
    return Folded(row, deltas, applied, skipped, added, removed, tuple(entries), lowest)


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


# --- rules -----------------------------------------------------------------------------------------

_RULE_FIELDS = tuple(Rules.model_fields)


def problems(exc: ValidationError) -> list[dict]:
    """Validation errors of any request body as ``{"field", "reason"}`` (``rule_problems``)."""
    return rule_problems(exc)


def rule_problems(exc: ValidationError) -> list[dict]:
    """Validation errors of a ``Rules`` body as ``{"field", "reason"}``. Errors of the whole
    model (borders that contradict each other) are attributed to the field their message names."""
    problems = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        reason = error["msg"].removeprefix("Value error, ")
        if not loc:
            named = [(reason.find(f), f) for f in _RULE_FIELDS if f in reason]
            # Earliest mention wins; on a tie the longer name (lapse_days_by_tier, not lapse_days).
            loc = [min(named, key=lambda n: (n[0], -len(n[1])))[1]] if named else []
        problems.append({"field": ".".join(loc) or "body", "reason": reason})
    return problems
