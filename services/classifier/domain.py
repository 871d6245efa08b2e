"""The classifier's pure logic: from a customer's stored state and events to the changes to
publish. No I/O; table-tested in tests/unit.

What it publishes per customer and scope is their timeline (``shared.timeline``), numbered by
``seq`` in publish order. The stored state is where the published timeline ends: its latest
entry's day (``clock_on``), figures and segment. New events dated after that day extend the
timeline from the state; the common, in-order case costs what the new days cost. An event
dated on or before that day is late: the timeline is derived again from its date and published
as a correction (``corrects_from``, README "Corrections"), which costs the customer's events,
never anyone else's. The clock extends timelines without events: lapses on their due day, new
borders on the day they take effect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import partial

from shared.cpm import Figures, Purchase, in_scope, is_lapsed, lapse_due_on
from shared.timeline import Borders, Entry, Mark, eve, lapse_due, walk

from .fold import Fold, figures_after, foldable


# A value, never changed once made; not frozen for speed (shared/cpm.py says why).
@dataclass(slots=True)
class ScopeState:
    seq: int
    segment: str | None
    figures: Figures | None
    clock_on: date  # the day of the latest published change
    lapse_due_on: date | None
    rules_version: int = 0


# A value, never changed once made; not frozen for speed (shared/cpm.py says why).
@dataclass(slots=True)
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
    corrects_from: date | None = None

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
            self.corrects_from,
        )

    @property
    def segment_changed(self) -> bool:
        # A correction's first message goes to segment-changes even when it moves nobody: it
        # carries the withdrawal of what that topic was told from its date on.
        return self.before_segment != self.segment or self.corrects_from is not None


def published_until(state: ScopeState, borders: Borders) -> date:
    """The day of the latest change published for this state. (A state written before
    corrections existed kept the day of its latest event even after the clock lapsed it.)"""
    if is_lapsed(state.segment) and state.figures is not None:
        rules = borders.on(state.clock_on).rules
        return max(state.clock_on, lapse_due_on(state.figures, rules))
    return state.clock_on


def is_late(state: ScopeState, since: date, borders: Borders) -> bool:
    """Whether what holds from ``since`` changes changes already published: a day before the
    latest one, or that day when it lapsed the customer (a customer who bought on a day did not
    lapse on it) or when newer borders took effect on it (its entry was classified under the
    old ones: the day is restated, even if nobody moves, so that its ``rules_version`` is the
    timeline's). More events on the latest day otherwise just follow it, in seq order."""
    until = published_until(state, borders)
    if since != until:
        return since < until
    return is_lapsed(state.segment) or state.rules_version < borders.on(until).version


def advance(
    state: ScopeState | None,
    scope: str,
    events: list[Purchase] | None,
    since: date | None,
    borders: Borders,
    today: date,
    *,
    clock: bool = False,
    figures_on: Callable[[date], Figures | None] | None = None,
) -> tuple[ScopeState | None, list[Change]]:
    """Bring a customer's published timeline in one scope up to date.

    ``events`` are all of the customer's stored events, new ones included (None when nothing
    new needs them: the clock's lapses and borders after the state); ``since`` is the earliest
    day something new holds from (a new event's day, new borders' first day). Lapses after the
    newest event are the clock's (``clock``): a batch of history in date order leaves them to
    it, so the next batch does not correct them. A correction includes them up to ``today``:
    it restates everything from its day, and a lapse it only moves to another day must arrive
    with the withdrawal (notifier: one task, nothing sent again).
    """
    corrects_from = None
    if state is None:
        start = None
    elif since is not None and is_late(state, since, borders):
        if events is None:
            raise ValueError("a correction needs the customer's events")
        corrects_from = since
        start = eve(events, scope, since, borders)
    else:
        start = Mark(state.clock_on, state.figures, state.segment, state.rules_version)
    until = today if clock or corrects_from is not None else None
    entries, end = walk(
        start,
        events or (),
        scope,
        since,
        borders,
        until,
        borders_until=today,
        restate_first=corrects_from is not None,
        figures_on=figures_on,
    )
    if end is None:
        return None, []
    seq = state.seq if state is not None else 0
    changes = []
    for entry in entries:
        seq += 1
        changes.append(_change(scope, seq, entry, corrects_from))
        corrects_from = None
    rules = borders.rules_of(end.rules_version, end.on)
    after = ScopeState(
        seq, end.segment, end.figures, end.on, lapse_due(end, rules), end.rules_version
    )
    return after, changes


def _change(scope: str, seq: int, entry: Entry, corrects_from: date | None) -> Change:
    return Change(
        scope,
        seq,
        entry.effective_on,
        entry.cause,
        entry.before_segment,
        entry.before,
        entry.segment,
        entry.figures,
        entry.rules_version,
        corrects_from,
    )


def new_events_since(new: list[Purchase], scope: str) -> date | None:
    """The earliest day of the new events that count in a scope (None when none does)."""
    return min((p.occurred_on for p in new if in_scope(p, scope)), default=None)


def on_new_events(
    states: dict[str, ScopeState],
    events: list[Purchase],
    new_ids: set[str],
    borders: Borders,
    today: date,
) -> dict[str, tuple[ScopeState | None, list[Change]]]:
    """A customer's new events in every scope they count in: per scope, the state after and
    the changes to publish. ``states`` by scope; ``events`` all their stored events."""
    new = [p for p in events if p.event_id in new_ids]
    scopes = sorted({"all"} | {p.branch_id for p in events})
    if len(scopes) == 2 and states.get(scopes[0]) == states.get(scopes[1]):
        # Most customers buy at one branch: there, the branch and the chain see the same
        # events, so from the same state they make the same changes. Classify once.
        since = new_events_since(new, "all")
        after, changes = advance(states.get("all"), "all", events, since, borders, today)
        branch = scopes[0] if scopes[1] == "all" else scopes[1]
        return {"all": (after, changes), branch: (after, [c.in_scope(branch) for c in changes])}
    out = {}
    for scope in scopes:
        since = new_events_since(new, scope)
        if since is not None:
            out[scope] = advance(states.get(scope), scope, events, since, borders, today)
    return out


def on_new_sales(
    states: dict[str, ScopeState],
    fold: Fold | None,
    new: list[Purchase],
    borders: Borders,
    today: date,
) -> dict[str, tuple[ScopeState | None, list[Change]]] | None:
    """The fast path of :func:`on_new_events`: the same result from the stored states and
    fold, without the customer's stored events — or ``None`` when it cannot be had that way
    (fold.py: only in-order sales of new orders, in scopes whose figures are stored; a late
    event is a correction, which reads the events)."""
    if not foldable(fold, new):
        return None
    assert fold is not None
    branches = {p.branch_id for p in new}
    (branch, *others) = sorted(branches)
    # A one-branch customer buying there again: the branch and the chain see the same events
    # from the same state (as in on_new_events), so they are classified once.
    once = not others and set(fold.spend) == branches and states.get("all") == states.get(branch)
    plan = []
    for scope in ["all"] if once else sorted({"all"} | branches):
        state = states.get(scope)
        since = new_events_since(new, scope)
        if state is None or state.figures is None or since is None:
            return None
        if is_late(state, since, borders):
            return None
        plan.append((scope, state, since))
    done = {
        scope: advance(
            state,
            scope,
            new,
            since,
            borders,
            today,
            figures_on=partial(figures_after, state.figures, new, scope, fold.spend),
        )
        for scope, state, since in plan
    }
    if once:
        after, changes = done["all"]
        done[branch] = (after, [c.in_scope(branch) for c in changes])
    return done
