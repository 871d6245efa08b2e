"""Folding customer states into per-customer rows and the portfolio's daily deltas (the
consumer's arithmetic)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from shared.cpm import (
    SEGMENTS,
)
from shared.events import CustomerState

ZERO = Decimal(0)
KNOWN_SEGMENTS = frozenset(SEGMENTS)
SUPPORTED_SCHEMA_VERSION = 1


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
