"""A customer's timeline (every applied state) and the monthly moves computed from it."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from functools import lru_cache, partial

from .calendar import add_months, month_end, month_start
from .portfolio import ZERO, Entry

NEW = "new"  # in no segment at the eve: a new customer (or one who had left and came back)
NONE = "none"  # in no segment at the end: every purchase voided
SPANS = (1, 6)
SIX = 6


def entry_at(entries: Iterable[Entry], day: date) -> Entry | None:
    """The entry in force on ``day``: the highest seq among those effective on or before it."""
    best = None
    for e in entries:
        if e.effective_on <= day and (best is None or e.seq > best.seq):
            best = e
    return best


def segment_at(entries: Iterable[Entry], day: date) -> str | None:
    e = entry_at(entries, day)
    return e.segment if e else None


def load_since(lowest_change: date) -> date:
    """From which day a customer's timeline must be read to recompute their cells after a change
    effective on ``lowest_change`` or later: the six-month view looks back six month-ends (the
    entry in force before that day is read as well)."""
    return add_months(month_start(lowest_change), -SIX)


MoveKey = tuple[int, date, str, str]  # span, month, from, to
MoveValue = tuple[int, Decimal, int]  # customers, sales, buyers


@lru_cache(maxsize=4096)
def _bounds(month: date, span: int) -> tuple[date, date]:
    """(eve, end) of a month for a span: the month-end ``span`` months before, and its own."""
    return month_end(add_months(month, -span)), month_end(month)


@lru_cache(maxsize=4096)
def _window(month: date) -> tuple[date, ...]:
    """The months whose span-6 window contains a day of ``month``: it and the five after."""
    return tuple(add_months(month, k) for k in range(SIX))


def month_moves(
    entries: Sequence[Entry], first: date, last: date | None = None
) -> dict[MoveKey, MoveValue]:
    """One customer's cells for the months from ``first`` (to ``last``, first days).

    Span 1: a month where the customer has an entry counts them once under (segment at the eve,
    segment at the end), with the change of their cumulative sales and whether their last
    purchase at the end lies in the month. Span 6: a month where they have an entry in the six
    months before its end and whose segment at the end differs from the one six month-ends before
    (both in the portfolio) counts them under that pair. Only months with an entry in their
    window can have a cell, so only those are looked at.
    """
    out: dict[MoveKey, MoveValue] = {}
    if not entries:
        return out
    ordered = sorted(entries, key=lambda e: e.seq)
    days = [e.effective_on for e in ordered]
    if any(b < a for a, b in zip(days, days[1:], strict=False)):
        at = partial(entry_at, ordered)  # out of date order: the general rule
    else:

        def at(day: date) -> Entry | None:
            i = bisect_right(days, day)
            return ordered[i - 1] if i else None

    # A month has an entry when something changed in it: the first message of a correction
    # restates its day even when that day changes nothing (a sale and its void on one day,
    # delivered apart), and in date order that day has no entry at all.
    starts = {
        e.effective_on.replace(day=1)
        for prev, e in zip([None, *ordered], ordered, strict=False)
        if prev is None or _differs(prev, e)
    }
    candidates = [(1, m) for m in starts]
    candidates += [(SIX, m) for m in {w for s in starts for w in _window(s)}]
    for span, m in candidates:
        if m < first or (last is not None and m > last):
            continue
        eve, end = _bounds(m, span)
        a, b = at(eve), at(end)
        frm = a.segment if a and a.segment else None
        to = b.segment if b and b.segment else None
        if span == 1:
            if frm is None and to is None:
                continue
            sales = (b.total_amount if to else ZERO) - (a.total_amount if frm else ZERO)
            bought = bool(to and b.last_purchase_on and m <= b.last_purchase_on <= end)
            out[(1, m, frm or NEW, to or NONE)] = (1, sales, int(bought))
        elif frm and to and frm != to:
            out[(span, m, frm, to)] = (1, ZERO, 0)
    return out


def _differs(a: Entry, b: Entry) -> bool:
    return (
        a.segment,
        a.total_amount,
        a.purchase_count,
        a.first_purchase_on,
        a.last_purchase_on,
    ) != (
        b.segment,
        b.total_amount,
        b.purchase_count,
        b.first_purchase_on,
        b.last_purchase_on,
    )


def moves_delta(
    old: Sequence[Entry], new: Sequence[Entry], lowest_change: date
) -> dict[MoveKey, MoveValue]:
    """What a change of one customer's timeline adds to ``report_moves``: their cells after minus
    before, in the months from the change's month on (earlier months cannot differ)."""
    first = month_start(lowest_change)
    before, after = month_moves(old, first), month_moves(new, first)
    delta: dict[MoveKey, MoveValue] = {}
    for key in before.keys() | after.keys():
        c0, s0, b0 = before.get(key, (0, ZERO, 0))
        c1, s1, b1 = after.get(key, (0, ZERO, 0))
        if (c1 - c0, s1 - s0, b1 - b0) != (0, ZERO, 0):
            delta[key] = (c1 - c0, s1 - s0, b1 - b0)
    return delta


def add_moves(target: dict, key_prefix: tuple, delta: Mapping[MoveKey, MoveValue]) -> None:
    """Accumulate ``delta`` into ``target`` under ``key_prefix`` (tenant, scope)."""
    for key, (c, s, b) in delta.items():
        acc = target.setdefault((*key_prefix, *key), [0, ZERO, 0])
        acc[0] += c
        acc[1] += s
        acc[2] += b
