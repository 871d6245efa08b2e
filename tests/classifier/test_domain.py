"""The classifier's pure logic: order-independence, history replay and the lapse clock."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.classifier.domain import apply_events, from_scratch, lapse
from shared.cpm import DEFAULT_RULES, Purchase, classify, compute_figures, in_scope

D0 = date(2023, 1, 1)
TODAY = date(2025, 12, 31)


class Simulated:
    """The classifier's batch loop without I/O: an event store deduplicated by event_id,
    states per scope, changes emitted in order."""

    def __init__(self):
        self.store: dict[str, Purchase] = {}
        self.states: dict[str, object] = {}
        self.changes = []

    def batch(self, events: list[Purchase]) -> None:
        new = {}
        for e in events:
            if e.event_id not in self.store and e.event_id not in new:
                new[e.event_id] = e
        if not new:
            return
        known = list(self.store.values())
        self.store.update(new)
        scopes = {"all"} | {p.branch_id for p in self.store.values()}
        for scope in sorted(scopes):
            state, changes = apply_events(
                self.states.get(scope), scope, known, list(new.values()), DEFAULT_RULES, 0
            )
            if state is not None:
                self.states[scope] = state
            self.changes += changes

    def sweep(self, today: date) -> None:
        for scope, state in list(self.states.items()):
            state, change = lapse(state, scope, today, DEFAULT_RULES)
            self.states[scope] = state
            if change:
                self.changes.append(change)


def sale(eid, day, amount=10_000, order=None, branch="b1"):
    return Purchase(eid, "sale", branch, D0 + timedelta(days=day), Decimal(amount), order)


def test_first_purchase_then_lapse_then_comeback():
    sim = Simulated()
    sim.batch([sale("e1", 0)])
    assert [(c.scope, c.before_segment, c.segment, c.cause) for c in sim.changes] == [
        ("all", None, "first_active", "purchase"),
        ("b1", None, "first_active", "purchase"),
    ]
    sim.changes.clear()
    sim.sweep(D0 + timedelta(days=239))
    assert sim.changes == []
    sim.sweep(D0 + timedelta(days=240))
    lapses = [(c.scope, c.segment, c.effective_on, c.cause) for c in sim.changes]
    assert lapses == [
        ("all", "first_lapsed", D0 + timedelta(days=240), "lapse"),
        ("b1", "first_lapsed", D0 + timedelta(days=240), "lapse"),
    ]
    sim.changes.clear()
    sim.batch([sale("e2", 300)])
    assert {(c.before_segment, c.segment, c.supersedes_seq) for c in sim.changes} == {
        ("first_lapsed", "steady_active", None)
    }
    assert [c.seq for c in sim.changes if c.scope == "all"] == [3]


def test_history_replay_catches_up_the_lapse_clock():
    """Events of years ago arriving in order give the lapse that live operation would have."""
    sim = Simulated()
    sim.batch([sale("e1", 0), sale("e2", 500)])
    segments = [(c.effective_on - D0).days for c in sim.changes if c.scope == "all"]
    assert segments == [0, 240, 500]
    assert [c.segment for c in sim.changes if c.scope == "all"] == [
        "first_active",
        "first_lapsed",
        "steady_active",
    ]


def test_premature_lapse_is_superseded():
    sim = Simulated()
    sim.batch([sale("e1", 0)])
    sim.sweep(TODAY)  # the clock ran ahead of history still arriving
    sim.batch([sale("e2", 30)])
    last = [c for c in sim.changes if c.scope == "all"][-1]
    assert last.supersedes_seq == 2
    assert (last.before_segment, last.segment, last.effective_on) == (
        "first_active",
        "fledgling_active",
        D0 + timedelta(days=30),
    )


def test_duplicate_and_void_and_return():
    sim = Simulated()
    sim.batch([sale("e1", 0, 50_000, "o1"), sale("e1", 0, 50_000, "o1")])
    sim.batch([sale("e1", 0, 50_000, "o1")])  # redelivered
    assert sim.states["all"].figures.total_amount == Decimal(50_000)
    sim.batch([Purchase("r1", "return", "b1", D0 + timedelta(days=2), Decimal(20_000), "o1")])
    assert sim.states["all"].figures.total_amount == Decimal(30_000)
    sim.batch([Purchase("v1", "void", "b2", D0 + timedelta(days=3), Decimal(0), "o1")])
    assert sim.states["all"].segment is None and sim.states["b1"].segment is None
    assert sim.changes[-1].segment is None


# -- property: live equals a from-scratch recompute ------------------------------------------


@st.composite
def streams(draw):
    n = draw(st.integers(1, 25))
    events = []
    orders = []
    for i in range(n):
        kind = draw(st.sampled_from(["sale", "sale", "sale", "return", "void"]))
        day = draw(st.integers(0, 1000))
        branch = draw(st.sampled_from(["b1", "b2", "b3"]))
        if kind == "sale":
            order = draw(st.one_of(st.none(), st.sampled_from(["o1", "o2", "o3", "o4"])))
            if order:
                orders.append(order)
            events.append(
                Purchase(
                    f"e{i}",
                    "sale",
                    branch,
                    D0 + timedelta(days=day),
                    Decimal(draw(st.integers(1, 60_000))),
                    order,
                )
            )
        elif kind == "return":
            events.append(
                Purchase(
                    f"e{i}",
                    "return",
                    branch,
                    D0 + timedelta(days=day),
                    Decimal(draw(st.integers(1, 5_000))),
                    draw(st.sampled_from(orders or [None])),
                )
            )
        elif orders:
            events.append(
                Purchase(
                    f"e{i}",
                    "void",
                    branch,
                    D0 + timedelta(days=day),
                    Decimal(0),
                    draw(st.sampled_from(orders)),
                )
            )
    return events


@settings(max_examples=300, deadline=None)
@given(streams(), st.randoms(use_true_random=False), st.integers(1, 6))
def test_live_equals_from_scratch_for_shuffled_duplicated_late_streams(
    events, rnd: random.Random, batches
):
    delivered = events + rnd.sample(events, k=len(events) // 3)  # redelivery
    rnd.shuffle(delivered)  # late and out of order
    sim = Simulated()
    cuts = sorted(rnd.randint(0, len(delivered)) for _ in range(batches))
    for lo, hi in zip([0, *cuts], [*cuts, len(delivered)], strict=True):
        sim.batch(delivered[lo:hi])
        if rnd.random() < 0.5:
            sim.sweep(TODAY)
    sim.sweep(TODAY)
    for scope in {"all"} | {e.branch_id for e in events}:
        figures, segment = from_scratch(events, scope, TODAY, DEFAULT_RULES)
        state = sim.states.get(scope)
        if figures is None:
            assert state is None or state.segment is None
            continue
        assert state.figures == figures
        assert state.segment == segment
    for scope in {c.scope for c in sim.changes}:
        seqs = [c.seq for c in sim.changes if c.scope == scope]
        assert seqs == list(range(1, len(seqs) + 1))  # strictly increasing, no gaps


@settings(max_examples=200, deadline=None)
@given(streams(), st.randoms(use_true_random=False), st.integers(1, 6))
def test_in_order_history_gives_the_as_of_segment_on_every_day(events, rnd: random.Random, batches):
    """Replaying history in date order (with the lapse sweep running ahead at 'today') leaves a
    timeline whose segment on any day equals classifying the events up to that day."""
    ordered = sorted(events, key=lambda e: e.occurred_on)
    sim = Simulated()
    cuts = sorted(rnd.randint(0, len(ordered)) for _ in range(batches))
    for lo, hi in zip([0, *cuts], [*cuts, len(ordered)], strict=True):
        sim.batch(ordered[lo:hi])
        if rnd.random() < 0.5:
            sim.sweep(TODAY)
    sim.sweep(TODAY)
    for scope in {"all"} | {e.branch_id for e in events}:
        timeline = [c for c in sim.changes if c.scope == scope]
        superseded = {c.supersedes_seq for c in timeline if c.supersedes_seq}
        timeline = [c for c in timeline if c.seq not in superseded]
        scoped = [e for e in events if in_scope(e, scope)]
        for day in sorted({e.occurred_on for e in scoped} | {c.effective_on for c in timeline}):
            for probe in (day, day + timedelta(days=1)):
                if probe > TODAY:
                    continue
                expected = classify(
                    compute_figures(scoped, scope, as_of=probe), probe, DEFAULT_RULES
                )
                live = [c for c in timeline if c.effective_on <= probe]
                got = max(live, key=lambda c: (c.effective_on, c.seq)).segment if live else None
                assert got == expected, (scope, probe)
