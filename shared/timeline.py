"""A customer's timeline in one scope: the dated changes of their figures and segment. Pure: no
I/O, no clock (``today`` is an argument).

The timeline is one function of the customer's stored events, the tenant's borders and today.
A customer's state on a day D is their figures from every event on or before D, classified as
of D with the borders in force on D (DESIGN.md, "as of"). The timeline has one entry for each
day on which that state differs from the day before's: a day with events (cause from the
events), the day a lapse comes due (cause ``lapse``), the day new borders take effect (cause
``rules``). So arrival order cannot matter: the live classifier, late events, CSV imports and
re-classification all publish this timeline, and a late event is a correction of its suffix.
(Events of one day that arrive in several batches are published as that day's entries in seq
order, the last holding for the day, as they happened: a second purchase on a day is not a
correction. A day never holds a lapse and a purchase: the lapse is corrected away.)

``walk`` is the one implementation. The classifier calls it on a suffix: from its stored state
(the end of what it has published) for events from that day on, or from the eve of a late
event's date for a correction; ``timeline`` calls it from nothing.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from shared.cpm import (
    DEFAULT_RULES,
    Figures,
    Purchase,
    Rules,
    classify,
    compute_figures,
    in_scope,
    is_lapsed,
    lapse_due_on,
)

DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Border:
    """A version of a tenant's borders and the day it took effect."""

    effective_on: date
    version: int
    rules: Rules


class Borders:
    """A tenant's borders over time: on a day, the newest version in effect by then. Version 0
    (the published defaults) is in effect from the beginning unless a version replaces it."""

    __slots__ = ("_borders", "_days")

    def __init__(self, borders: Iterable[Border] = ()):
        ordered = sorted(
            [Border(date.min, 0, DEFAULT_RULES), *borders],
            key=lambda b: (b.effective_on, b.version),
        )
        self._borders = tuple(ordered)
        self._days = [b.effective_on for b in ordered]

    @classmethod
    def always(cls, rules: Rules, version: int = 0) -> Borders:
        """One set of borders for all time."""
        return cls([Border(date.min, version, rules)])

    def on(self, day: date) -> Border:
        return self._borders[bisect_right(self._days, day) - 1]

    def rules_of(self, version: int, day: date) -> Rules:
        """The rules of a version (those in force on ``day`` if that version is unknown)."""
        for border in self._borders:
            if border.version == version:
                return border.rules
        return self.on(day).rules

    def first_after(self, version: int) -> date:
        """The first day borders newer than ``version`` took effect (``date.max``: none)."""
        return min((b.effective_on for b in self._borders if b.version > version), default=date.max)

    def days_between(self, after: date, until: date) -> list[date]:
        """The days in (after, until] on which other borders took effect."""
        return [d for d in self._days if after < d <= until]

    def __repr__(self) -> str:
        return f"Borders({list(self._borders)!r})"


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a timeline stands: the state after the entry of day ``on``, classified with borders
    ``rules_version`` (as of the last day looked at, which may be later than ``on``)."""

    on: date
    figures: Figures | None
    segment: str | None
    rules_version: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One dated change of a customer's figures or segment in a scope."""

    effective_on: date
    cause: str
    before_segment: str | None
    before: Figures | None
    segment: str | None
    figures: Figures | None
    rules_version: int


def _cause(events: list[Purchase]) -> str:
    kinds = {p.kind for p in events}
    if "void" in kinds:
        return "void"
    if "sale" in kinds:
        return "purchase"
    return "return"


def _same(a: Figures | None, b: Figures | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.purchase_count, a.total_amount, a.first_purchase_on, a.last_purchase_on) == (
        b.purchase_count,
        b.total_amount,
        b.first_purchase_on,
        b.last_purchase_on,
    )


def lapse_due(mark: Mark | None, rules: Rules) -> date | None:
    """The day an active customer lapses if nothing else happens (None when not active)."""
    if mark is None or mark.figures is None or not mark.segment or is_lapsed(mark.segment):
        return None
    return lapse_due_on(mark.figures, rules)


def walk(
    start: Mark | None,
    events: Iterable[Purchase],
    scope: str,
    since: date | None,
    borders: Borders,
    until: date | None = None,
    *,
    borders_until: date | None = None,
    restate_first: bool = False,
    figures_on: Callable[[date], Figures | None] | None = None,
) -> tuple[list[Entry], Mark | None]:
    """The timeline's entries after ``start`` and the mark where they end.

    ``events`` are the customer's stored events (any scope, any date: only those in ``scope``
    count); the days looked at are those of events on or after ``since`` and the days borders
    changed after ``start``, up to the last of those days or ``until`` when given. A lapse
    between two such days is an entry on its due day; after the last day, only up to ``until``
    (the clock's today): without ``until`` a lapse after the newest event is left to the clock.
    Borders that took effect by ``borders_until`` count even after the newest event (the clock
    applied them to the states it had; this one may be new since).
    ``start`` must be the state on the day before the first day looked at, and no event before
    ``since`` may be missing from it. With ``restate_first`` the first day gives an entry even
    when nothing changed on it (the first message of a correction).
    ``figures_on(day)``, when given, are the figures as of a day instead of
    ``compute_figures`` of ``events`` (the classifier's fast path: ``events`` are then only the
    new ones, and the figures are folded from the stored state's).
    """
    scoped = [p for p in events if in_scope(p, scope)]
    by_day: dict[date, list[Purchase]] = {}
    if since is not None:
        for p in scoped:
            if p.occurred_on >= since:
                by_day.setdefault(p.occurred_on, []).append(p)
    horizon = max([d for d in (max(by_day, default=None), until, borders_until) if d], default=None)
    if horizon is None or (start is None and not by_day):
        return [], start
    after = start.on if start is not None else date.min
    # (borders from ``since`` on too: new borders dated on the state's own day)
    first = after if since is None else min(after, since - DAY)
    days = sorted(set(by_day).union(borders.days_between(first, horizon)))
    entries: list[Entry] = []
    mark = start
    looked_at = after  # the last day the mark was classified on
    for day in days:
        mark = _lapse_before(mark, day, borders.on(looked_at), entries)
        border = borders.on(day)
        today_events = by_day.get(day)
        if today_events:
            if figures_on is not None:
                figures = figures_on(day)
            else:
                figures = compute_figures(scoped, scope, as_of=day)
            cause = _cause(today_events)
        else:
            figures = mark.figures if mark is not None else None
            cause = "rules"
        segment = classify(figures, day, border.rules)
        looked_at = day
        if mark is None and figures is None:
            continue
        before = mark.figures if mark is not None else None
        before_segment = mark.segment if mark is not None else None
        if restate_first or not (_same(before, figures) and before_segment == segment):
            entries.append(
                Entry(day, cause, before_segment, before, segment, figures, border.version)
            )
            mark = Mark(day, figures, segment, border.version)
        elif mark.rules_version != border.version:
            mark = Mark(mark.on, figures, segment, border.version)
        restate_first = False
    if until is not None and mark is not None:
        mark = _lapse_before(mark, until + DAY, borders.on(looked_at), entries)
    return entries, mark


def _lapse_before(mark: Mark | None, day: date, border: Border, entries: list[Entry]):
    """The lapse entry when an active customer's lapse came due before ``day``."""
    due = lapse_due(mark, border.rules)
    if due is None or due >= day:
        return mark
    due = max(due, mark.on + DAY)  # (a state classified under other borders: never backwards)
    segment = classify(mark.figures, due, border.rules)
    entries.append(
        Entry(due, "lapse", mark.segment, mark.figures, segment, mark.figures, border.version)
    )
    return Mark(due, mark.figures, segment, border.version)


def eve(events: Iterable[Purchase], scope: str, day: date, borders: Borders) -> Mark:
    """The state on the day before ``day`` (the start of a timeline re-derived from ``day``)."""
    on = day - DAY
    border = borders.on(on)
    figures = compute_figures([p for p in events if in_scope(p, scope)], scope, as_of=on)
    return Mark(on, figures, classify(figures, on, border.rules), border.version)


def timeline(events: Iterable[Purchase], scope: str, borders: Borders, today: date) -> list[Entry]:
    """A customer's whole timeline in a scope, up to today, from nothing but their events."""
    events = list(events)
    first = min((p.occurred_on for p in events if in_scope(p, scope)), default=None)
    if first is None:
        return []
    entries, _ = walk(None, events, scope, first, borders, today)
    return entries
