"""Folding customer states into per-customer rows and the portfolio's daily deltas (the
consumer's arithmetic)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from shared.cpm import (
    SEGMENTS,
)
from shared.events import CustomerState

ZERO = Decimal(0)
KNOWN_SEGMENTS = frozenset(SEGMENTS)


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
    Versions 1 and 2 of the contract are read alike; a newer version or a segment id outside
    the contract's does not validate (``CustomerState``, shared.events), so it never gets here."""
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
