"""The classifier's pure logic: whatever the arrival order, batch splits and clock ticks, what it
publishes — read the way the README's "Corrections" tells consumers to — is the timeline of
``shared.timeline``, and so the portfolio and transitions a from-scratch computation gives."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.classifier.domain import (
    Change,
    ScopeState,
    advance,
    on_new_events,
    on_new_sales,
)
from services.classifier.fold import Fold, fold_of
from shared.cpm import Purchase, Rules, classify, compute_figures
from shared.timeline import Border, Borders, Entry, timeline

D0 = date(2023, 1, 1)
TODAY = date(2025, 12, 31)
BORDERS = Borders()


class Simulated:
    """The classifier without I/O, calling what services/classifier calls: a batch stores new
    events once (by event_id) and runs ``on_new_events`` per customer; the clock's sweep runs
    ``advance`` for the states whose lapse has come; new borders run it from their day."""

    def __init__(self, borders: Borders = BORDERS, today: date = TODAY, fast: bool = True):
        self.borders = borders
        self.today = today
        self.fast = fast  # the fast path (on_new_sales) first, as the consumer with the setting on
        self.folds: dict[str, Fold] = {}  # customer → what the fast path keeps beside the states
        self.fast_taken = 0  # customers classified by the fast path
        self.store: dict[str, dict[str, Purchase]] = {}  # customer → event_id → event
        self.states: dict[str, dict[str, ScopeState]] = {}  # customer → scope → state
        self.published: list[tuple[str, Change]] = []  # (customer, change), in publish order

    def batch(self, events: list[tuple[str, Purchase]]) -> None:
        new: dict[str, set[str]] = {}
        for customer, e in events:
            mine = self.store.setdefault(customer, {})
            if e.event_id not in mine:
                mine[e.event_id] = e
                new.setdefault(customer, set()).add(e.event_id)
        for customer in sorted(new):
            states = self.states.setdefault(customer, {})
            fresh = [self.store[customer][e] for e in sorted(new[customer])]
            done = None
            if self.fast:
                fold = self.folds.get(customer)
                done = on_new_sales(dict(states), fold, fresh, self.borders, self.today)
            if done is not None:
                self.fast_taken += 1
                self.folds[customer] = fold.with_sales(fresh)
            else:
                events = list(self.store[customer].values())
                done = on_new_events(dict(states), events, new[customer], self.borders, self.today)
                self.folds[customer] = fold_of(events)
            self._keep(customer, done)

    def sweep(self, today: date) -> None:
        for customer, states in self.states.items():
            due = {
                s: st for s, st in states.items() if st.lapse_due_on and st.lapse_due_on <= today
            }
            self._keep(
                customer,
                {
                    s: advance(st, s, None, None, self.borders, today, clock=True)
                    for s, st in due.items()
                },
            )

    def new_borders(self, borders: Borders, version: int, today: date) -> None:
        """The clock applying borders ``version`` (in ``borders``, from its day on)."""
        self.borders = borders
        since = borders.first_after(version - 1)
        for customer, states in self.states.items():
            events = list(self.store[customer].values())
            self._keep(
                customer,
                {
                    s: advance(st, s, events, since, borders, today, clock=True)
                    for s, st in states.items()
                },
            )

    def _keep(self, customer, done) -> None:
        for scope, (after, changes) in done.items():
            if after is not None:
                self.states[customer][scope] = after
            self.published += [(customer, c) for c in changes]


def received(published: list[tuple[str, Change]]) -> dict[tuple[str, str], list[Change]]:
    """A reference consumer of the contract: per customer and scope, in seq order; a message
    with ``corrects_from`` withdraws what was received with an effective_on on or after it."""
    kept: dict[tuple[str, str], list[Change]] = {}
    last_seq: dict[tuple[str, str], int] = {}
    for customer, change in published:
        key = (customer, change.scope)
        assert change.seq > last_seq.get(key, 0), "seq strictly increasing per customer and scope"
        last_seq[key] = change.seq
        changes = kept.setdefault(key, [])
        if change.corrects_from is not None:
            assert change.effective_on == change.corrects_from
            changes[:] = [c for c in changes if c.effective_on < change.corrects_from]
        changes.append(change)
    return kept


def as_entries(changes: list[Change]) -> list[Entry]:
    """The timeline a consumer holds: what still holds, in seq order (one day may have several
    entries: events of that day that arrived in several batches)."""
    out: list[Entry] = []
    for c in changes:
        entry = Entry(
            c.effective_on,
            c.cause,
            c.before_segment,
            c.before,
            c.segment,
            c.figures,
            c.rules_version,
        )
        if out:
            assert entry.before_segment == out[-1].segment and entry.before == out[-1].figures
            assert entry.effective_on >= out[-1].effective_on
        out.append(entry)
    return out


def by_day(entries: list[Entry]) -> list[tuple]:
    """What holds at the end of each day it changed: day, segment, figures, borders version, and
    the cause when it was the clock's (a lapse or new borders: never split, never on a day with
    events). Compares a consumer's timeline with ``timeline``'s one entry per day."""
    days: dict[date, tuple] = {}
    causes: dict[date, set[str]] = {}
    for e in entries:
        days[e.effective_on] = (e.segment, e.figures, e.rules_version)
        causes.setdefault(e.effective_on, set()).add(e.cause)
    out, last = [], (None, None, None)
    for day in sorted(days):
        if days[day][:2] == last[:2]:
            continue  # (a restatement that changed nothing, or a day undone the same day)
        clock = causes[day] & {"lapse", "rules"}
        if clock:
            assert causes[day] == clock and len(clock) == 1, (day, causes[day])
        out.append((day, *days[day], next(iter(clock), None)))
        last = days[day]
    return out


def sale(eid, day, amount=10_000, order=None, branch="b1"):
    return Purchase(eid, "sale", branch, D0 + timedelta(days=day), Decimal(amount), order)


def on(day: int) -> date:
    return D0 + timedelta(days=day)


def chain(sim: Simulated, customer="C1") -> list[tuple]:
    return [
        (c.seq, c.effective_on, c.cause, c.before_segment, c.segment, c.corrects_from)
        for who, c in sim.published
        if who == customer and c.scope == "all"
    ]


def test_first_purchase_then_lapse_then_comeback():
    sim = Simulated()
    sim.batch([("C1", sale("e1", 0))])
    assert [(c.scope, c.before_segment, c.segment, c.cause) for _, c in sim.published] == [
        ("all", None, "first_active", "purchase"),
        ("b1", None, "first_active", "purchase"),
    ]
    sim.sweep(on(239))
    assert len(sim.published) == 2
    sim.sweep(on(240))
    assert chain(sim)[1:] == [(2, on(240), "lapse", "first_active", "first_lapsed", None)]
    sim.batch([("C1", sale("e2", 300))])
    assert chain(sim)[2:] == [(3, on(300), "purchase", "first_lapsed", "steady_active", None)]


def test_history_in_date_order_publishes_the_lapse_on_its_day_without_corrections():
    sim = Simulated()
    sim.batch([("C1", sale("e1", 0)), ("C1", sale("e2", 500))])
    assert chain(sim) == [
        (1, on(0), "purchase", None, "first_active", None),
        (2, on(240), "lapse", "first_active", "first_lapsed", None),
        (3, on(500), "purchase", "first_lapsed", "steady_active", None),
    ]


def test_a_lapse_the_clock_made_before_history_arrived_is_corrected():
    sim = Simulated()
    sim.batch([("C1", sale("e1", 0))])
    sim.sweep(TODAY)  # the clock ran ahead of history still arriving
    sim.batch([("C1", sale("e2", 30))])
    assert chain(sim) == [
        (1, on(0), "purchase", None, "first_active", None),
        (2, on(240), "lapse", "first_active", "first_lapsed", None),
        # the correction: from day 30 on, the timeline is this
        (3, on(30), "purchase", "first_active", "fledgling_active", on(30)),
        (4, on(270), "lapse", "fledgling_active", "fledgling_lapsed", None),
    ]


def test_a_late_event_before_published_purchases_restates_them_from_its_day():
    sim = Simulated(today=on(120))
    sim.batch([("C1", sale("e1", 0, 40_000)), ("C1", sale("e2", 100, 40_000))])
    sim.batch([("C1", sale("e3", 50, 1_000))])
    assert chain(sim)[2:] == [
        (3, on(50), "purchase", "first_active", "fledgling_active", on(50)),
        (4, on(100), "purchase", "fledgling_active", "trendy_active", None),
    ]
    assert by_day(as_entries(received(sim.published)[("C1", "all")])) == by_day(
        timeline(sim.store["C1"].values(), "all", BORDERS, on(120))
    )


def test_a_second_batch_on_the_same_day_follows_the_first_without_a_correction():
    sim = Simulated(today=on(10))
    sim.batch([("C1", sale("e1", 0))])
    sim.batch([("C1", sale("e2", 0))])  # the same day, a later batch
    assert chain(sim) == [
        (1, on(0), "purchase", None, "first_active", None),
        (2, on(0), "purchase", "first_active", "fledgling_active", None),
    ]


def test_a_purchase_on_the_day_the_clock_lapsed_the_customer_withdraws_the_lapse():
    sim = Simulated(today=on(250))
    sim.batch([("C1", sale("e1", 0))])
    sim.sweep(on(240))
    sim.batch([("C1", sale("e2", 240))])
    assert chain(sim)[1:] == [
        (2, on(240), "lapse", "first_active", "first_lapsed", None),
        (3, on(240), "purchase", "first_active", "steady_active", on(240)),
    ]


def test_a_correction_that_changes_nothing_on_its_day_is_still_sent_to_segment_changes():
    sim = Simulated()
    sim.batch([("C1", sale("e1", 0, 50_000, "o1")), ("C1", sale("e2", 100))])
    sim.batch([("C1", Purchase("v1", "void", "b1", on(50), Decimal(0), "o9"))])  # unknown order
    first = next(c for _, c in sim.published if c.scope == "all" and c.corrects_from)
    assert (first.corrects_from, first.before_segment, first.segment) == (
        on(50),
        "first_active",
        "first_active",
    )
    assert first.segment_changed


def test_duplicate_and_void_and_return():
    sim = Simulated()
    sim.batch([("C1", sale("e1", 0, 50_000, "o1")), ("C1", sale("e1", 0, 50_000, "o1"))])
    sim.batch([("C1", sale("e1", 0, 50_000, "o1"))])  # redelivered
    assert sim.states["C1"]["all"].figures.total_amount == Decimal(50_000)
    sim.batch([("C1", Purchase("r1", "return", "b1", on(2), Decimal(20_000), "o1"))])
    assert sim.states["C1"]["all"].figures.total_amount == Decimal(30_000)
    sim.batch([("C1", Purchase("v1", "void", "b2", on(3), Decimal(0), "o1"))])
    assert sim.states["C1"]["all"].segment is None and sim.states["C1"]["b1"].segment is None
    assert sim.published[-1][1].segment is None


def test_new_borders_take_effect_on_their_day_and_a_late_event_before_it_keeps_them():
    sim = Simulated(today=on(200))
    sim.batch([("C1", sale("e1", 0, 40_000)), ("C1", sale("e2", 150, 40_000))])
    assert sim.states["C1"]["all"].segment == "trendy_active"
    stricter = Rules(amount_border=Decimal(100_000))
    borders = Borders([Border(on(200), 1, stricter)])
    sim.new_borders(borders, 1, on(200))
    assert chain(sim)[-1] == (3, on(200), "rules", "trendy_active", "steady_active", None)
    sim.batch([("C1", sale("e3", 100, 1_000))])  # late: before the new borders' day
    assert by_day(as_entries(received(sim.published)[("C1", "all")])) == by_day(
        timeline(sim.store["C1"].values(), "all", borders, on(200))
    )
    assert sim.states["C1"]["all"].rules_version == 1


# -- property: any arrival order ends with the from-scratch timeline ---------------------------

CUSTOMERS = ("C1", "C2", "C3", "C4")
BRANCHES = ("b1", "b2", "b3")


@st.composite
def histories(draw):
    """Events of a handful of customers over three branches and three years: sales (some
    sharing orders), returns, voids, and gaps long enough to lapse."""
    events: list[tuple[str, Purchase]] = []
    for customer in draw(st.lists(st.sampled_from(CUSTOMERS), min_size=1, max_size=4, unique=True)):
        orders: list[str] = []
        day = draw(st.integers(0, 400))
        for i in range(draw(st.integers(1, 10))):
            day += draw(st.sampled_from([0, 1, 20, 60, 120, 250, 300]))
            if day > 1090:
                break
            kind = draw(st.sampled_from(["sale", "sale", "sale", "return", "void"]))
            branch = draw(st.sampled_from(BRANCHES))
            eid = f"{customer}-e{i}"
            if kind == "sale":
                order = draw(st.one_of(st.none(), st.sampled_from(["o1", "o2", "o3"])))
                orders += [order] if order else []
                amount = Decimal(draw(st.integers(1, 60_000)))
                events.append((customer, Purchase(eid, "sale", branch, on(day), amount, order)))
            elif kind == "return":
                amount = Decimal(draw(st.integers(1, 5_000)))
                order = draw(st.sampled_from(orders or [None]))
                events.append((customer, Purchase(eid, "return", branch, on(day), amount, order)))
            elif orders:
                order = draw(st.sampled_from(orders))
                events.append((customer, Purchase(eid, "void", branch, on(day), Decimal(0), order)))
    return events


def month_ends(first: date, last: date) -> list[date]:
    ends, month = [], date(first.year, first.month, 1)
    while month <= last:
        following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        ends.append(following - timedelta(days=1))
        month = following
    return ends


def segment_on(entries: list[Entry], day: date) -> str | None:
    held = [e for e in entries if e.effective_on <= day]
    return held[-1].segment if held else None


def check_against_scratch(sim: Simulated, events: list[tuple[str, Purchase]], borders: Borders):
    kept = received(sim.published)
    by_customer: dict[str, list[Purchase]] = {}
    for customer, e in events:
        by_customer.setdefault(customer, []).append(e)
    published: dict[tuple[str, str], list[Entry]] = {}
    for customer, mine in by_customer.items():
        for scope in {"all"} | {e.branch_id for e in mine}:
            got = as_entries(kept.get((customer, scope), []))
            want = timeline(mine, scope, borders, TODAY)
            assert by_day(got) == by_day(want), (customer, scope)
            published[(customer, scope)] = got
            last = kept.get((customer, scope))
            if last:  # the highest seq carries the current state
                assert last[-1].segment == sim.states[customer][scope].segment
    # The portfolio at every month-end and every month's transitions, from the events alone.
    for scope in ("all", *BRANCHES):
        for eve, end in zip(month_ends(D0, TODAY), month_ends(D0, TODAY)[1:], strict=False):
            portfolio, moves = Counter(), Counter()
            scratch_portfolio, scratch_moves = Counter(), Counter()
            for customer, mine in by_customer.items():
                entries = published.get((customer, scope), [])
                a, b = segment_on(entries, eve), segment_on(entries, end)
                portfolio[b] += b is not None
                moves[(a, b)] += a != b
                rules_eve, rules_end = borders.on(eve).rules, borders.on(end).rules
                sa = classify(compute_figures(mine, scope, as_of=eve), eve, rules_eve)
                sb = classify(compute_figures(mine, scope, as_of=end), end, rules_end)
                if scope != "all" and not any(e.branch_id == scope for e in mine):
                    sa = sb = None  # (a void alone puts nobody in a branch)
                scratch_portfolio[sb] += sb is not None
                scratch_moves[(sa, sb)] += sa != sb
            assert +portfolio == +scratch_portfolio, (scope, end)
            assert +moves == +scratch_moves, (scope, end)


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "no fast path"])
@settings(max_examples=250, deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.integers(1, 8))
def test_any_arrival_order_publishes_the_from_scratch_timeline(
    fast, events, rnd: random.Random, cuts
):
    delivered = events + rnd.sample(events, k=len(events) // 3)  # redelivery
    rnd.shuffle(delivered)  # late and out of order
    sim = Simulated(fast=fast)
    bounds = sorted(rnd.randint(0, len(delivered)) for _ in range(cuts))
    for lo, hi in zip([0, *bounds], [*bounds, len(delivered)], strict=True):
        sim.batch(delivered[lo:hi])
        if rnd.random() < 0.5:
            sim.sweep(TODAY)  # the clock running ahead of history still arriving
    sim.sweep(TODAY)
    check_against_scratch(sim, events, BORDERS)


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "no fast path"])
@settings(max_examples=100, deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.integers(1, 6))
def test_branch_by_branch_and_date_order_publish_the_same_timeline(fast, events, rnd, cuts):
    """A chain connecting its branches one at a time, each sending its years in date order."""
    delivered = sorted(events, key=lambda ce: (ce[1].branch_id, ce[1].occurred_on))
    sim = Simulated(fast=fast)
    bounds = sorted(rnd.randint(0, len(delivered)) for _ in range(cuts))
    for lo, hi in zip([0, *bounds], [*bounds, len(delivered)], strict=True):
        sim.batch(delivered[lo:hi])
        sim.sweep(TODAY)
    check_against_scratch(sim, events, BORDERS)


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "no fast path"])
@settings(max_examples=100, deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.integers(200, 1000))
def test_new_borders_then_late_events_publish_the_from_scratch_timeline(
    fast, events, rnd, border_day
):
    """Borders that change on a day (re-classification), then history from before that day."""
    rnd.shuffle(events)
    half = len(events) // 2
    sim = Simulated(fast=fast)
    sim.batch(events[:half])
    sim.sweep(on(border_day))
    stricter = Rules(
        amount_border=Decimal(30_000), lapse_days=120, lapse_days_by_tier={"first": 90}
    )
    borders = Borders([Border(on(border_day), 1, stricter)])
    sim.new_borders(borders, 1, on(border_day))
    sim.batch(events[half:])
    sim.sweep(TODAY)
    check_against_scratch(sim, events, borders)


def test_borders_from_the_day_of_the_latest_entry_restate_that_day_even_if_nobody_moves():
    """The case hypothesis found: the day's entry was published under the old borders; the new
    ones from that day move nobody, yet the timeline says that day is classified under them."""
    first, late = sale("e1", 200, 1, branch="b1"), sale("e2", 200, 1, branch="b2")
    sim = Simulated()
    sim.batch([("C1", first)])
    stricter = Rules(
        amount_border=Decimal(30_000), lapse_days=120, lapse_days_by_tier={"first": 90}
    )
    borders = Borders([Border(on(200), 1, stricter)])
    sim.new_borders(borders, 1, on(200))
    assert [
        (c.effective_on, c.segment, c.rules_version, c.corrects_from)
        for _, c in sim.published
        if c.scope == "all"
    ] == [
        (on(200), "first_active", 0, None),
        (on(200), "first_active", 1, on(200)),  # restated under the new borders
    ]
    sim.batch([("C1", late)])
    sim.sweep(TODAY)
    check_against_scratch(sim, [("C1", first), ("C1", late)], borders)


def test_in_order_sales_take_the_fast_path_and_publish_what_the_slow_path_does():
    """A chain's history in date order, a day per batch: after each customer's first
    purchase, their sales of new orders are folded into the stored state (the fast path is
    taken), and what is published is what the slow path publishes, message for message."""
    days = [
        # first purchases: nothing stored to fold into (slow)
        [("C1", sale("1", 0, order="o1")), ("C2", sale("2", 0, order="o2", branch="b2"))],
        # two lines of a new order (fast: one purchase)
        [("C1", sale("3", 40, order="o3")), ("C1", sale("4", 40, order="o3", amount=500))],
        [("C1", sale("5", 41, order="o3", amount=100))],  # a line of a stored order (slow)
        # C2 at their branch (fast); C1's first purchase at another branch (slow: no state there)
        [
            ("C2", sale("6", 90, order="o6", branch="b2")),
            ("C1", sale("7", 90, order="o7", branch="b2")),
        ],
        [("C1", Purchase("8", "return", "b1", on(95), Decimal(2_000), "o7"))],  # a return (slow)
        # after the clock lapsed them: a new order, and a sale without an order number (fast)
        [("C1", sale("9", 400, order="o9")), ("C2", sale("10", 400, branch="b2"))],
    ]
    runs = {}
    for fast in (True, False):
        sim = Simulated(fast=fast)
        for day in days:
            sim.batch(day)
            sim.sweep(day[0][1].occurred_on)
        sim.sweep(TODAY)
        runs[fast] = sim
    assert runs[True].fast_taken == 4 and runs[False].fast_taken == 0
    assert runs[True].published == runs[False].published
    assert runs[True].states == runs[False].states
    check_against_scratch(runs[True], [e for day in days for e in day], BORDERS)
