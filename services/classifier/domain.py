"""The classifier's pure logic: from a customer's stored state and events to the changes to
publish. No I/O; table-tested in tests/unit.

Per customer and scope, new events are applied day by day in date order. Before a day's events,
the lapse clock is caught up to that day, so a stream of history replays the same changes that
live operation would have produced. Events older than the state's clock (late arrivals) are
folded in at the clock's date. The lapse sweep (``lapse``) moves customers to lapsed as time
passes; if it ran ahead of history that was still arriving (the customer bought again before
the lapse date), the next change ``supersedes`` the premature lapse so reports can undo it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, timedelta

from shared.cpm import (
    Figures,
    Purchase,
    Rules,
    classify,
    compute_figures,
    in_scope,
    is_lapsed,
    lapse_due_on,
)


@dataclass(frozen=True, slots=True)
class ScopeState:
    seq: int
    segment: str | None
    figures: Figures | None
    clock_on: date
    lapse_due_on: date | None
    rules_version: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a customer's state in one scope (a ``CustomerState`` to publish)."""

    scope: str
    seq: int
    effective_on: date
    cause: str
    before_segment: str | None
    before: Figures | None
    segment: str | None
    figures: Figures | None
    rules_version: int
    supersedes_seq: int | None = None

    def in_scope(self, scope: str) -> Change:
        """The same change in another scope (a one-branch customer's branch and chain)."""
        return Change(
            scope,
            self.seq,
            self.effective_on,
            self.cause,
            self.before_segment,
            self.before,
            self.segment,
            self.figures,
            self.rules_version,
            self.supersedes_seq,
        )

    @property
    def segment_changed(self) -> bool:
        # Undoing a premature lapse moves the published chain (lapsed → …) even when the
        # segment before and after the purchase is the same.
        return self.before_segment != self.segment or self.supersedes_seq is not None


def _same(a: Figures | None, b: Figures | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.purchase_count, a.total_amount, a.first_purchase_on, a.last_purchase_on) == (
        b.purchase_count,
        b.total_amount,
        b.first_purchase_on,
        b.last_purchase_on,
    )


def step(
    state: ScopeState | None,
    scope: str,
    figures: Figures | None,
    as_of: date,
    cause: str,
    rules: Rules,
    rules_version: int,
    supersedes: bool = False,
) -> tuple[ScopeState | None, Change | None]:
    """Classify new figures as of a date; a change when figures or segment moved."""
    segment = classify(figures, as_of, rules)
    due = lapse_due_on(figures, rules) if segment and not is_lapsed(segment) else None
    clock = max(as_of, state.clock_on) if state else as_of
    if state is None and figures is None:
        return None, None
    before_segment = state.segment if state else None
    superseded = None
    if supersedes and state is not None:
        # The sweep lapsed this customer before history that was still arriving: what they
        # really were on this day is the pre-lapse segment.
        before_segment = classify(state.figures, as_of, rules)
        superseded = state.seq
    if (
        state is not None
        and _same(state.figures, figures)
        and before_segment == segment
        and not superseded
    ):
        # (constructors, not dataclasses.replace: this runs for every customer and scope of a batch)
        same = ScopeState(state.seq, state.segment, state.figures, clock, due, rules_version)
        return same, None
    seq = (state.seq if state else 0) + 1
    change = Change(
        scope=scope,
        seq=seq,
        effective_on=as_of,
        cause=cause,
        before_segment=before_segment,
        before=state.figures if state else None,
        segment=segment,
        figures=figures,
        rules_version=rules_version,
        supersedes_seq=superseded,
    )
    return ScopeState(seq, segment, figures, clock, due, rules_version), change


def lapse(
    state: ScopeState | None, scope: str, until: date, rules: Rules
) -> tuple[ScopeState | None, Change | None]:
    """Move an active customer to lapsed when the lapse date has come by ``until``."""
    if state is None or state.lapse_due_on is None or state.lapse_due_on > until:
        return state, None
    new_state, change = step(
        state, scope, state.figures, state.lapse_due_on, "lapse", rules, state.rules_version
    )
    if new_state is not None:
        new_state = replace(new_state, clock_on=state.clock_on)  # the clock of events is unchanged
    return new_state, change


def _cause(events: list[Purchase]) -> str:
    kinds = {p.kind for p in events}
    if "void" in kinds:
        return "void"
    if "sale" in kinds:
        return "purchase"
    return "return"


def apply_events(
    state: ScopeState | None,
    scope: str,
    known: list[Purchase],
    new: list[Purchase],
    rules: Rules,
    rules_version: int,
) -> tuple[ScopeState | None, list[Change]]:
    """Apply a customer's new events in one scope. ``known`` are the events stored before."""
    new = [p for p in new if in_scope(p, scope)]
    if not new:
        return state, []
    events = [p for p in known if in_scope(p, scope)]
    changes: list[Change] = []
    by_day: dict[date, list[Purchase]] = defaultdict(list)
    for p in new:
        by_day[p.occurred_on].append(p)
    cursor = state.clock_on if state else None
    late = [p for d in sorted(by_day) if cursor is not None and d < cursor for p in by_day[d]]
    if late:
        events += late
        state, change = step(
            state, scope, compute_figures(events, scope), cursor, _cause(late), rules, rules_version
        )
        changes += [change] if change else []
    for day in sorted(d for d in by_day if cursor is None or d >= cursor):
        state, change = lapse(state, scope, day - timedelta(days=1), rules)
        changes += [change] if change else []
        premature = (
            state is not None
            and is_lapsed(state.segment)
            and state.figures is not None
            and lapse_due_on(state.figures, rules) > day
        )
        events += by_day[day]
        state, change = step(
            state,
            scope,
            compute_figures(events, scope),
            day,
            _cause(by_day[day]),
            rules,
            rules_version,
            supersedes=premature,
        )
        changes += [change] if change else []
    return state, changes


def reclassify(state: ScopeState, scope: str, today: date, rules: Rules, rules_version: int):
    """New borders: classify the same figures again as of today (cause ``rules``)."""
    new_state, change = step(
        state, scope, state.figures, max(today, state.clock_on), "rules", rules, rules_version
    )
    if new_state is not None:
        new_state = replace(new_state, clock_on=state.clock_on)
    return new_state, change


def from_scratch(
    purchases: list[Purchase], scope: str, today: date, rules: Rules
) -> tuple[Figures | None, str | None]:
    """What a customer's figures and segment are, computed from nothing but the event store."""
    scoped = [p for p in purchases if in_scope(p, scope)]
    figures = compute_figures(scoped, scope)
    last_event = max((p.occurred_on for p in scoped), default=today)
    return figures, classify(figures, max(today, last_event), rules)
