"""The reports service's history logic: timelines, monthly moves, history and transition views.

The central property: customer states as the real classifier emits them (its pure domain run
over a random in-order stream of sales, returns and voids, with a lapse sweep that sometimes runs
far ahead, so premature lapses get superseded) folded the way the consumer folds them give
the same monthly moves and portfolio history as classifying the event store from scratch at
every month's eve and end.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.classifier.domain import ScopeState, advance, on_new_events
from services.classifier.store import outbox_rows
from services.reports.domain.calendar import add_months, month_end, months, parse_month
from services.reports.domain.history import accumulate, periods
from services.reports.domain.portfolio import Entry
from services.reports.domain.timeline import NEW, NONE, entry_at, month_moves, moves_delta
from services.reports.domain.transitions import (
    headline,
    six_month_view,
    transition_cells,
    transition_months,
)
from services.reports.views.history import history_body, transitions_body
from shared.cpm import DEFAULT_RULES, SEGMENTS, Purchase, classify, compute_figures, tier_part
from shared.events import CUSTOMER_STATES, CustomerState
from shared.timeline import Borders
from tests.reports.fold import Folder, recomputed_moves

# --- a realistic stream of customer states: the classifier's own domain over random events ------


@dataclass
class Stream:
    purchases: dict[str, list[Purchase]]  # the event store, per customer
    states: list[CustomerState]  # in the order the classifier emitted them
    start: date
    today: date
    scopes: tuple[str, ...] = ("all", "b1", "b2")
    stats: Counter = field(default_factory=Counter)


def random_events(rng: random.Random, customers: int, start: date, days: int) -> list:
    """(customer, Purchase) pairs: regulars, one-timers and bursty buyers at two branches, with
    returns and voids of earlier orders."""
    events = []
    for c in range(customers):
        cid = f"c{c:03d}"
        day = start + timedelta(days=rng.randrange(days))
        home = rng.choice(("b1", "b2"))
        gaps = rng.choice(((400,), (3, 20), (30, 60), (100, 250), (5, 300)))
        for k in range(rng.choice((1, 1, 2, 3, 5, 8))):
            if day >= start + timedelta(days=days):
                break
            branch = home if rng.random() < 0.8 else ("b2" if home == "b1" else "b1")
            amount = Decimal(rng.choice((3000, 8000, 12000, 25000, 40000, 65000)))
            order = f"{cid}-o{k}"
            events.append((cid, Purchase(f"{order}-s", "sale", branch, day, amount, order)))
            if rng.random() < 0.15:
                when = day + timedelta(days=rng.randrange(0, 40))
                events.append(
                    (cid, Purchase(f"{order}-r", "return", branch, when, amount / 2, order))
                )
            elif rng.random() < 0.08:
                when = day + timedelta(days=rng.randrange(0, 20))
                events.append(
                    (cid, Purchase(f"{order}-v", "void", branch, when, Decimal(0), order))
                )
            day += timedelta(days=rng.randint(*gaps) if len(gaps) == 2 else gaps[0])
    return events


def classifier_stream(
    seed: int, tenant: str = "t", customers: int = 40, start: date = date(2023, 1, 1)
) -> Stream:
    """Replay random events day by day through the classifier's domain (``on_new_events`` per
    customer, ``advance`` for the clock), with the lapse sweep running now and then at a
    "today" up to two years ahead of the history being loaded (as when years of CSV are
    imported)."""
    rng = random.Random(seed)
    days = 640
    today = start + timedelta(days=days + 120)
    by_day: dict[date, list] = defaultdict(list)
    for cid, p in random_events(rng, customers, start, days):
        by_day[p.occurred_on].append((cid, p))
    store: dict[str, list[Purchase]] = defaultdict(list)
    states: dict[str, dict[str, ScopeState]] = defaultdict(dict)
    out: list[CustomerState] = []
    stats: Counter = Counter()
    borders = Borders()

    def emit(cid, done):
        for scope, (state, changes) in done.items():
            if state is not None:
                states[cid][scope] = state
            for change in changes:
                for topic, _, payload in outbox_rows(tenant, cid, change):
                    if topic == CUSTOMER_STATES:
                        out.append(CustomerState.model_validate_json(payload))
                stats[change.cause] += 1
                stats["corrections"] += change.corrects_from is not None

    def sweep(until: date):
        for cid in sorted(states):
            due = {
                scope: state
                for scope, state in states[cid].items()
                if state.lapse_due_on and state.lapse_due_on <= until
            }
            emit(
                cid,
                {
                    scope: advance(state, scope, None, None, borders, until, clock=True)
                    for scope, state in due.items()
                },
            )

    for day in sorted(by_day):
        if rng.random() < 0.1:
            sweep(min(today, day + timedelta(days=rng.choice((0, 30, 700)))))
        new_by_customer: dict[str, list[Purchase]] = defaultdict(list)
        for cid, p in by_day[day]:
            new_by_customer[cid].append(p)
        for cid, new in sorted(new_by_customer.items()):
            store[cid] += new
            new_ids = {p.event_id for p in new}
            emit(cid, on_new_events(dict(states[cid]), store[cid], new_ids, borders, today))
    sweep(today)
    return Stream(dict(store), out, start, today, stats=stats)


def truth(stream: Stream, scope: str, day: date) -> dict[str, tuple[str, Decimal]]:
    """Every customer's segment and total on ``day``, classified from the event store."""
    out = {}
    for cid, purchases in stream.purchases.items():
        figures = compute_figures(purchases, scope, as_of=day)
        segment = classify(figures, day, DEFAULT_RULES)
        if segment:
            out[cid] = (segment, figures.total_amount)
    return out


def true_cells(
    stream: Stream, scope: str, month: date, span: int = 1, today: date | None = None
) -> Counter:
    """A month's cells from the event store; the month under way ends ``today``."""
    eve, end = month_end(add_months(month, -span)), min(month_end(month), today or date.max)
    a, b = truth(stream, scope, eve), truth(stream, scope, end)
    cells: Counter = Counter()
    for cid in a.keys() | b.keys():
        frm = a[cid][0] if cid in a else NEW
        to = b[cid][0] if cid in b else NONE
        cells[(frm, to)] += 1
    return cells


SEEDS = (1, 2, 3, 4, 5, 6)


@pytest.fixture(scope="module", params=SEEDS)
def stream(request) -> Stream:
    return classifier_stream(request.param)


def test_the_random_streams_exercise_lapses_corrections_returns_and_voids():
    total = Counter()
    for seed in SEEDS:
        total += classifier_stream(seed).stats
    assert total["lapse"] > 20 and total["corrections"] > 5, total
    assert total["return"] > 0 and total["void"] > 0, total


def test_fold_builds_a_timeline_whose_moves_equal_a_recompute(stream):
    folder = Folder()
    rng = random.Random(7)
    states = stream.states
    i = 0
    while i < len(states):  # batches of random size, some redelivered
        k = rng.randint(1, 60)
        folder.batch(states[i : i + k])
        if rng.random() < 0.2:
            folder.batch(states[max(0, i - 5) : i + k])
        i += k
    first, last = stream.start, add_months(stream.today, 7)
    assert folder.nonzero_moves() == recomputed_moves(folder.timelines, first, last)
    # The timelines are monotone in time and agree with the daily deltas on every day.
    for entries in folder.timelines.values():
        days = [e.effective_on for e in entries]
        assert days == sorted(days)


def test_timeline_and_daily_history_equal_classifying_the_event_store(stream):
    folder = Folder()
    folder.batch(stream.states)
    for scope in stream.scopes:
        running: Counter = Counter()
        deltas = sorted(
            (day, seg, kind, v) for (s, day, seg, kind), v in folder.daily.items() if s == scope
        )
        i = 0
        for m in months(stream.start, stream.today):
            for day in (m + timedelta(days=9), min(month_end(m), stream.today)):
                while i < len(deltas) and deltas[i][0] <= day:
                    _, seg, kind, v = deltas[i]
                    running[(seg, kind)] += v
                    i += 1
                expected = truth(stream, scope, day)
                by_segment: Counter = Counter()
                for seg, total in expected.values():
                    by_segment[(seg, "c")] += 1
                    by_segment[(seg, "s")] += total
                assert {k: v for k, v in running.items() if v} == {
                    k: v for k, v in by_segment.items() if v
                }, (scope, day)
                timeline = {
                    cid: entry_at(entries, day)
                    for (s, cid), entries in folder.timelines.items()
                    if s == scope
                }
                assert {
                    cid: (e.segment, e.total_amount)
                    for cid, e in timeline.items()
                    if e is not None and e.segment
                } == expected, (scope, day)


def test_transition_tables_equal_classifying_the_event_store(stream):
    folder = Folder()
    folder.batch(stream.states)
    moves = folder.nonzero_moves()
    for scope in stream.scopes:
        for m in months(add_months(stream.start, 1), stream.today):
            for span in (1, 6):
                eve = month_end(add_months(m, -span))
                sizes = Counter(seg for seg, _ in truth(stream, scope, eve).values())
                moved = {
                    (f, t): v[0]
                    for (s, sp, month, f, t), v in moves.items()
                    if s == scope and sp == span and month == m
                }
                expected = true_cells(stream, scope, m, span)
                if span == 1:
                    cells = transition_cells(sizes, moved)
                    got = {(c["from"], c["to"] or NONE): c["customers"] for c in cells}
                    assert got == {k: v for k, v in expected.items() if k != (NEW, NONE)}
                    for c in cells:
                        if c["from"] != NEW:
                            assert c["rate"] == round(c["customers"] / sizes[c["from"]], 4)
                else:
                    changed = {k: v for k, v in expected.items() if NEW not in k and NONE not in k}
                    assert moved == {k: v for k, v in changed.items() if k[0] != k[1]}


# --- hand-made tables --------------------------------------------------------------------------


def entry(seq, day, segment, total=10000, count=1, first=None, last=None) -> Entry:
    return Entry(seq, day, segment, Decimal(total), count, first or day, last or day)


def test_entry_in_force_is_the_highest_seq_effective_by_then():
    entries = [
        entry(1, date(2025, 1, 5), "first_active"),
        entry(2, date(2025, 9, 2), "first_lapsed"),
        entry(3, date(2025, 3, 1), "fledgling_active"),  # dated before seq 2 (late history)
    ]
    assert entry_at(entries, date(2025, 1, 4)) is None
    assert entry_at(entries, date(2025, 2, 1)).seq == 1
    assert entry_at(entries, date(2025, 3, 1)).seq == 3
    assert entry_at(entries, date(2025, 12, 1)).seq == 3


def test_month_moves_of_one_customer():
    jan5, mar10, mar20 = date(2025, 1, 5), date(2025, 3, 10), date(2025, 3, 20)
    entries = [
        entry(1, jan5, "first_active", 10000),
        entry(2, mar10, "fledgling_active", 25000, 2, jan5, mar10),
        entry(3, mar20, "fledgling_active", 21000, 2, jan5, mar10),  # a return
    ]
    got = month_moves(entries, date(2025, 1, 1), date(2025, 9, 1))
    assert got == {
        (1, date(2025, 1, 1), NEW, "first_active"): (1, Decimal(10000), 1),
        (1, date(2025, 3, 1), "first_active", "fledgling_active"): (1, Decimal(11000), 1),
        # six months on from January's and February's ends (before: not a customer yet)
        (6, date(2025, 7, 1), "first_active", "fledgling_active"): (1, Decimal(0), 0),
        (6, date(2025, 8, 1), "first_active", "fledgling_active"): (1, Decimal(0), 0),
    }


def test_a_correction_that_restates_a_day_without_change_is_no_move_of_its_month():
    """A sale and its void on one day, delivered apart: the correction's first message restates
    March 10 as it was (in date order that day has no entry): March is no month of activity."""
    jan5, mar10 = date(2025, 1, 5), date(2025, 3, 10)
    fledgling = entry(2, date(2025, 2, 1), "fledgling_active", 20000, 2, jan5, date(2025, 2, 1))
    restated = replace(fledgling, seq=4, effective_on=mar10)  # (seq 3, the sale, withdrawn)
    in_order = month_moves([entry(1, jan5, "first_active"), fledgling], date(2025, 3, 1))
    corrected = month_moves([entry(1, jan5, "first_active"), fledgling, restated], date(2025, 3, 1))
    assert corrected == in_order
    assert not [k for k in corrected if k[:2] == (1, date(2025, 3, 1))]


def test_moves_delta_of_a_withdrawn_lapse():
    jan5 = date(2025, 1, 5)
    lapse_on = jan5 + timedelta(days=240)
    old = [
        entry(1, jan5, "first_active"),
        entry(2, lapse_on, "first_lapsed", first=jan5, last=jan5),
    ]
    # a correction from March 1st: the lapse withdrawn, a second purchase that day
    new = [old[0], entry(3, date(2025, 3, 1), "fledgling_active", 20000, 2, jan5, date(2025, 3, 1))]
    delta = moves_delta(old, new, date(2025, 3, 1))
    span1 = {k: v for k, v in delta.items() if k[0] == 1}
    assert span1 == {
        (1, date(2025, 3, 1), "first_active", "fledgling_active"): (1, Decimal(10000), 1),
        (1, date(2025, 9, 1), "first_active", "first_lapsed"): (-1, Decimal(0), 0),
    }


def test_transition_cells_headline_and_six_month_view_by_hand():
    sizes = {"first_active": 4, "first_lapsed": 1, "steady_active": 2, "loyal_lapsed": 1}
    moved = {
        (NEW, "first_active"): 1,
        (NEW, "fledgling_active"): 1,
        ("first_active", "fledgling_active"): 1,
        ("first_active", "steady_active"): 1,
        ("first_active", NONE): 1,
        ("first_lapsed", "steady_active"): 1,
        ("steady_active", "steady_active"): 1,
        ("steady_active", "steady_lapsed"): 1,
        ("loyal_lapsed", "loyal_active"): 1,
    }
    cells = transition_cells(sizes, moved)
    assert [(c["from"], c["to"], c["customers"], c["rate"]) for c in cells] == [
        ("new", "first_active", 1, None),
        ("new", "fledgling_active", 1, None),
        ("first_active", "first_active", 1, 0.25),
        ("first_active", "fledgling_active", 1, 0.25),
        ("first_active", "steady_active", 1, 0.25),
        ("first_active", None, 1, 0.25),
        ("first_lapsed", "steady_active", 1, 1.0),
        ("steady_active", "steady_active", 1, 0.5),
        ("steady_active", "steady_lapsed", 1, 0.5),
        ("loyal_lapsed", "loyal_active", 1, 1.0),
    ]
    head = headline(sizes, cells)
    assert head["first_to_fledgling"] == {"customers": 1, "base": 5, "rate": 0.2}
    assert head["active_to_lapsed"]["steady"] == {"customers": 1, "base": 2, "rate": 0.5}
    assert head["active_to_lapsed"]["loyal"] == {"customers": 0, "base": 0, "rate": None}
    assert head["comebacks"]["first"] == {"customers": 1, "base": 1, "rate": 1.0}
    assert head["comebacks"]["total"] == {"customers": 2, "base": 2, "rate": 1.0}
    assert head["new"] == 2

    six = six_month_view(
        date(2024, 9, 30),
        {"first_active": 6, "first_lapsed": 4, "steady_active": 5},
        {
            ("first_active", "fledgling_active"): 2,
            ("first_lapsed", "steady_active"): 1,
            ("first_active", "first_lapsed"): 3,  # same tier: not reached
            ("steady_active", "loyal_active"): 1,
            ("steady_active", "fledgling_active"): 1,  # lower tier (after a void)
        },
    )
    assert six["snapshot"] == "2024-09-30"
    assert six["tiers"][0] == {"tier": "first", "base": 10, "reached": 3, "rate": 0.3}
    assert six["tiers"][2] == {"tier": "steady", "base": 5, "reached": 1, "rate": 0.2}
    assert [t["tier"] for t in six["tiers"]] == ["first", "fledgling", "steady", "trendy"]


def test_accumulate_and_history_body():
    d1, d2, d3 = date(2025, 1, 31), date(2025, 2, 28), date(2025, 3, 31)
    points = accumulate(
        {"first_active": (2, Decimal(100))},
        [
            (date(2025, 2, 3), "first_active", 1, Decimal(50)),
            (date(2025, 3, 1), "first_active", -1, Decimal(-100)),
            (date(2025, 3, 1), "fledgling_active", 1, Decimal(300)),
        ],
        [d1, d2, d3],
    )
    assert points == [
        {"first_active": (2, Decimal(100))},
        {"first_active": (3, Decimal(150))},
        {"first_active": (2, Decimal(50)), "fledgling_active": (1, Decimal(300))},
    ]
    body = history_body("all", "month", ["2025-01", "2025-02", "2025-03"], [d1, d2, d3], points)
    assert body["periods"] == ["2025-01", "2025-02", "2025-03"]
    assert body["as_of"] == ["2025-01-31", "2025-02-28", "2025-03-31"]
    assert body["total_customers"] == [2, 3, 3]
    assert body["total_sales"] == ["100", "150", "350"]
    assert [s["segment"] for s in body["segments"]] == list(SEGMENTS)
    assert body["segments"][2] == {
        "segment": "fledgling_active",
        "customers": [0, 0, 1],
        "sales": ["0", "0", "300"],
    }


TODAY = date(2025, 6, 15)


@pytest.mark.parametrize(
    ("granularity", "first", "last", "labels", "ends"),
    [
        ("month", "2025-04", None, ["2025-04", "2025-05", "2025-06"], ["04-30", "05-31", "06-15"]),
        ("month", "2025-04-20", "2025-05", ["2025-04", "2025-05"], ["04-30", "05-31"]),
        ("month", "2025-05", "2030-01", ["2025-05", "2025-06"], ["05-31", "06-15"]),
        ("day", "2025-06-13", None, ["2025-06-13", "2025-06-14", "2025-06-15"], None),
        ("day", "2025-05", "2025-05-02", ["2025-05-01", "2025-05-02"], None),
    ],
)
def test_periods(granularity, first, last, labels, ends):
    got_labels, got_ends = periods(granularity, first, last, TODAY)
    assert got_labels == labels
    if ends:
        assert [e.isoformat()[5:] for e in got_ends] == ends
    else:
        assert [e.isoformat() for e in got_ends] == labels


def test_period_defaults_and_errors():
    labels, ends = periods("month", None, None, TODAY)
    assert len(labels) == 36 and labels[-1] == "2025-06" and labels[0] == "2022-07"
    labels, _ = periods("day", None, None, TODAY)
    assert len(labels) == 365 and labels[-1] == "2025-06-15"
    for granularity, first, last in (
        ("month", "2025-07", None),
        ("month", "2025-13", None),
        ("day", "2025-06-16", None),
        ("day", "1990-01-01", None),
        ("month", "banana", None),
    ):
        with pytest.raises(ValueError):
            periods(granularity, first, last, TODAY)
    assert transition_months(None, None, TODAY)[0] == date(2024, 7, 1)
    with pytest.raises(ValueError):
        transition_months("2015-01", "2025-06", TODAY)
    assert parse_month("2025-02") == date(2025, 2, 1)


# --- property: any batching of any states keeps the maintained moves equal to a recompute ---------


@st.composite
def customer_states(draw):
    """One customer's states with arbitrary segments, dates moving forward (sometimes backward:
    late history), some opening a correction from their day, some undoing the change before
    (the old contract's ``supersedes_seq``)."""
    n = draw(st.integers(1, 7))
    states, on = [], date(2024, 1, 1)
    for seq in range(1, n + 1):
        step = draw(st.integers(-40, 120))
        on = on + timedelta(days=step)
        segment = draw(st.sampled_from((*SEGMENTS, None)))
        total = draw(st.integers(0, 200_000)) if segment else 0
        kind = draw(st.sampled_from(("plain", "correction", "supersedes")))
        supersedes = seq - 1 if seq > 1 and kind == "supersedes" else None
        states.append(
            CustomerState(
                tenant_id="t",
                scope="all",
                customer_id="c",
                seq=seq,
                from_segment=None,
                to_segment=segment,
                effective_on=on,
                cause="purchase",
                purchase_count=1 if segment else 0,
                total_amount=Decimal(total),
                first_purchase_on=date(2024, 1, 1) if segment else None,
                last_purchase_on=on if segment else None,
                tenure_days=None,
                lapse_days=None,
                supersedes_seq=supersedes,
                corrects_from=on if kind == "correction" else None,
            )
        )
    cuts = draw(st.lists(st.integers(1, n), max_size=4))
    return states, sorted(set(cuts))


@settings(max_examples=150, deadline=None)
@given(customer_states())
def test_any_batching_keeps_moves_equal_to_a_recompute(history):
    states, cuts = history
    folder = Folder()
    last = 0
    for cut in [*cuts, len(states)]:
        folder.batch(states[last:cut])
        last = cut
    timelines = folder.timelines
    assert folder.nonzero_moves() == recomputed_moves(
        timelines, date(2023, 1, 1), date(2027, 12, 1)
    )
    # The daily deltas add up, day by day, to the timeline's segment on that day.
    entries = timelines[("all", "c")]
    running: Counter = Counter()
    for day in sorted({k[1] for k in folder.daily} | {e.effective_on for e in entries}):
        for (_, d, seg, kind), v in folder.daily.items():
            if d == day and kind == "c":
                running[seg] += v
        e = entry_at(entries, day)
        expected = {e.segment: 1} if e and e.segment else {}
        assert {k: v for k, v in running.items() if v} == expected, day
    assert tier_part(None) is None


def test_transitions_body_marks_months_before_the_timeline_began():
    ms = [date(2025, 3, 1), date(2025, 4, 1)]
    today = date(2025, 4, 20)
    ends = months(add_months(ms[0], -6), ms[-1])
    at = {m: {"first_active": (2, Decimal(100))} for m in ends}
    stored = [
        {
            "span": 1,
            "month": date(2025, 4, 1),
            "from_segment": "first_active",
            "to_segment": "fledgling_active",
            "customers": 1,
        },
    ]
    body = transitions_body("b1", ms, at, stored, date(2025, 4, 1), today)
    mar, apr = body["months"]
    assert (mar["complete"], apr["complete"]) == (False, True)
    assert not apr["six_month"]["complete"]
    assert (apr["eve"], apr["end"]) == ("2025-03-31", "2025-04-20")
    assert [(c["from"], c["to"], c["customers"]) for c in apr["cells"]] == [
        ("first_active", "first_active", 1),
        ("first_active", "fledgling_active", 1),
    ]
    assert transitions_body("b1", ms, at, [], None, today)["months"][0]["complete"]
