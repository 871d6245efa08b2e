"""Reports apply corrections (issue 11): whatever order a customer's events arrive in, the
portfolio, its daily and monthly history, the transition tables and the timelines reports keep
equal those of the same history delivered in date order, and those classified from scratch.

The producer here is the correction contract itself (shared/events, ``corrects_from``; PLAN.md):
after every arrival of events it derives each customer's timeline per scope from the events
known so far (``shared.cpm`` as of each day) and publishes what changed: the new entries, or,
when the timeline changed before its end, a correction from the first day it differs,
re-publishing the suffix from that day, whose first message is dated that day.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.reports.domain.calendar import add_months, month_end, months
from services.reports.domain.timeline import NEW, NONE
from services.reports.domain.transitions import transition_cells
from shared.cpm import DEFAULT_RULES, Purchase, classify, compute_figures, lapse_due_on
from shared.events import CustomerState, FiguresBefore
from tests.reports.fold import Folder, recomputed_moves

START = date(2024, 1, 1)
LAST_EVENT = START + timedelta(days=900)
TODAY = START + timedelta(days=1000)
SCOPES = ("all", "b1", "b2")


# --- from scratch: a customer's timeline per scope from their events ------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A customer's segment and figures on a day (segment None: no purchase counted)."""

    segment: str | None
    purchase_count: int = 0
    total_amount: Decimal = Decimal(0)
    first_purchase_on: date | None = None
    last_purchase_on: date | None = None


NOTHING = Snapshot(None)


def snapshot(purchases: list[Purchase], scope: str, day: date) -> Snapshot:
    figures = compute_figures(purchases, scope, as_of=day)
    if figures is None:
        return NOTHING
    return Snapshot(
        classify(figures, day, DEFAULT_RULES),
        figures.purchase_count,
        figures.total_amount,
        figures.first_purchase_on,
        figures.last_purchase_on,
    )


def true_timeline(purchases: list[Purchase], scope: str) -> list[tuple[date, Snapshot]]:
    """Each day up to ``TODAY`` on which the customer's snapshot differs from the day before's.
    It can only change on a day with events or on a lapse's due day after one."""
    days = {p.occurred_on for p in purchases}
    for day in list(days):
        figures = compute_figures(purchases, scope, as_of=day)
        if figures is not None:
            days.add(lapse_due_on(figures, DEFAULT_RULES))
    out, last = [], NOTHING
    for day in sorted(d for d in days if d <= TODAY):
        now = snapshot(purchases, scope, day)
        if now != last:
            out.append((day, now))
            last = now
    return out


def truth(events: dict[str, list[Purchase]], scope: str, day: date) -> dict[str, Snapshot]:
    """Every customer in a segment on ``day``, classified from the events."""
    out = {}
    for cid, purchases in events.items():
        s = snapshot(purchases, scope, day)
        if s.segment:
            out[cid] = s
    return out


# --- the producer side of the contract ------------------------------------------------------------


class Producer:
    """Publishes, per customer and scope, the changes of a timeline since what it published."""

    def __init__(self, tenant: str = "t") -> None:
        self.tenant = tenant
        self.published: dict[tuple[str, str], list[tuple[date, Snapshot]]] = {}
        self.seq: Counter = Counter()
        self.corrections = 0
        self.withdrawn: Counter = Counter()  # segments of withdrawn entries

    def publish(self, cid: str, scope: str, timeline: list) -> list[CustomerState]:
        key = (cid, scope)
        old = self.published.get(key, [])
        self.published[key] = timeline
        i = 0
        while i < len(old) and i < len(timeline) and old[i] == timeline[i]:
            i += 1
        if i == len(old):
            return self._states(cid, scope, timeline, timeline[i:], None)
        # The timeline changed before its end: correct it from the first day it differs.
        start = min(old[i][0], timeline[i][0]) if i < len(timeline) else old[i][0]
        suffix = [(d, s) for d, s in timeline if d >= start]
        if not suffix or suffix[0][0] != start:
            # Nothing changes on that day in the new timeline: the first message carries the
            # withdrawal and the state of the eve, dated that day.
            suffix.insert(0, (start, _eve(timeline, start)))
        self.corrections += 1
        self.withdrawn.update(s.segment for d, s in old if d >= start)
        return self._states(cid, scope, timeline, suffix, start)

    def _states(self, cid, scope, timeline, entries, corrects_from) -> list[CustomerState]:
        out = []
        for n, (day, s) in enumerate(entries):
            self.seq[(cid, scope)] += 1
            eve = _eve(timeline, day)
            out.append(
                CustomerState(
                    schema_version=2,
                    tenant_id=self.tenant,
                    scope=scope,
                    customer_id=cid,
                    seq=self.seq[(cid, scope)],
                    from_segment=eve.segment,
                    to_segment=s.segment,
                    effective_on=day,
                    cause="purchase",
                    purchase_count=s.purchase_count,
                    total_amount=s.total_amount,
                    first_purchase_on=s.first_purchase_on,
                    last_purchase_on=s.last_purchase_on,
                    tenure_days=None,
                    lapse_days=None,
                    corrects_from=corrects_from if n == 0 else None,
                    before=None
                    if eve == NOTHING
                    else FiguresBefore(
                        segment=eve.segment,
                        purchase_count=eve.purchase_count,
                        total_amount=eve.total_amount,
                        first_purchase_on=eve.first_purchase_on,
                        last_purchase_on=eve.last_purchase_on,
                        tenure_days=None,
                        lapse_days=None,
                    ),
                )
            )
        return out


def _eve(timeline: list, day: date) -> Snapshot:
    before = [s for d, s in timeline if d < day]
    return before[-1] if before else NOTHING


def scopes_of(purchases: list[Purchase]) -> list[str]:
    return ["all", *sorted({p.branch_id for p in purchases if p.kind != "void"})]


# --- random histories --------------------------------------------------------------------------


@st.composite
def histories(draw):
    """A few customers' sales, returns, voids and duplicates at two branches, with gaps around
    the lapse border; delivered in a random order, in random batches."""
    events: list[tuple[str, Purchase]] = []
    for c in range(draw(st.integers(1, 3))):
        cid = f"c{c}"
        day = START + timedelta(days=draw(st.integers(0, 200)))
        for k in range(draw(st.integers(1, 6))):
            if day > LAST_EVENT:
                break
            branch = draw(st.sampled_from(("b1", "b2")))
            amount = Decimal(draw(st.sampled_from((3000, 12000, 40000, 65000))))
            order = f"{cid}-o{k}"
            events.append((cid, Purchase(f"{order}-s", "sale", branch, day, amount, order)))
            extra = draw(st.sampled_from(("none", "none", "return", "void", "line")))
            later = min(LAST_EVENT, day + timedelta(days=draw(st.integers(0, 60))))
            if extra == "return":
                events.append(
                    (cid, Purchase(f"{order}-r", "return", branch, later, amount / 2, order))
                )
            elif extra == "void":
                events.append(
                    (cid, Purchase(f"{order}-v", "void", branch, later, Decimal(0), order))
                )
            elif extra == "line":  # a second line of the same order: one purchase
                events.append(
                    (cid, Purchase(f"{order}-l", "sale", branch, day, Decimal(500), order))
                )
            day += timedelta(days=draw(st.sampled_from((0, 7, 60, 200, 239, 240, 241, 400))))
    arrival = list(draw(st.permutations(events)))
    for i in draw(st.lists(st.integers(0, len(events) - 1), max_size=3)):  # duplicates
        arrival.insert(draw(st.integers(0, len(arrival))), events[i])
    cuts = sorted(set(draw(st.lists(st.integers(1, len(arrival)), max_size=6))))
    return events, arrival, cuts, draw(st.randoms(use_true_random=False))


def random_events(rng: random.Random, customers: int) -> list[tuple[str, Purchase]]:
    """Like ``histories`` without hypothesis, for larger histories (integration tests)."""
    events = []
    for c in range(customers):
        cid = f"c{c:03d}"
        day = START + timedelta(days=rng.randrange(300))
        for k in range(rng.choice((1, 2, 3, 5, 8))):
            if day > LAST_EVENT:
                break
            branch = rng.choice(("b1", "b2"))
            amount = Decimal(rng.choice((3000, 12000, 40000, 65000)))
            order = f"{cid}-o{k}"
            events.append((cid, Purchase(f"{order}-s", "sale", branch, day, amount, order)))
            later = min(LAST_EVENT, day + timedelta(days=rng.randrange(60)))
            extra = rng.random()
            if extra < 0.12:
                events.append(
                    (cid, Purchase(f"{order}-r", "return", branch, later, amount / 2, order))
                )
            elif extra < 0.2:
                events.append(
                    (cid, Purchase(f"{order}-v", "void", branch, later, Decimal(0), order))
                )
            day += timedelta(days=rng.choice((0, 7, 30, 60, 200, 239, 240, 241, 400)))
    return events


def deliver(states: list[CustomerState], rng: random.Random) -> Folder:
    """The states into a consumer in random batches, some delivered twice."""
    folder = Folder()
    i = 0
    while i < len(states):
        k = rng.randint(1, 8)
        folder.batch(states[i : i + k])
        if rng.random() < 0.3:
            folder.batch(states[max(0, i - 3) : i + k])
        i += k
    return folder


def published_in_arrival_order(
    arrival, cuts, tenant: str = "t"
) -> tuple[list[CustomerState], Producer]:
    """What the producer publishes while the events arrive batch by batch (duplicates kept
    once, as the event store keeps them by event id)."""
    producer = Producer(tenant)
    known: dict[str, dict[str, Purchase]] = defaultdict(dict)
    out: list[CustomerState] = []
    last = 0
    for cut in [*cuts, len(arrival)]:
        touched = set()
        for cid, p in arrival[last:cut]:
            known[cid][p.event_id] = p
            touched.add(cid)
        last = cut
        for cid in sorted(touched):
            purchases = list(known[cid].values())
            for scope in scopes_of(purchases):
                out += producer.publish(cid, scope, true_timeline(purchases, scope))
    return out, producer


def published_in_date_order(events, tenant: str = "t") -> list[CustomerState]:
    """Every customer's final timeline per scope, in order, with no correction."""
    producer = Producer(tenant)
    by_customer: dict[str, list[Purchase]] = defaultdict(list)
    for cid, p in events:
        by_customer[cid].append(p)
    out = []
    for cid, purchases in sorted(by_customer.items()):
        for scope in scopes_of(purchases):
            out += producer.publish(cid, scope, true_timeline(purchases, scope))
    assert producer.corrections == 0
    return out


@settings(max_examples=80, deadline=None)
@given(histories())
def test_corrected_delivery_equals_in_order_delivery_and_a_recompute(history):
    events, arrival, cuts, rng = history
    corrected, producer = published_in_arrival_order(arrival, cuts)
    got = deliver(corrected, rng)
    in_order = deliver(published_in_date_order(events), rng)

    # The same aggregates, day by day and month by month, and the same transitions.
    assert got.nonzero_daily() == in_order.nonzero_daily()
    assert got.nonzero_monthly() == in_order.nonzero_monthly()
    assert got.nonzero_moves() == in_order.nonzero_moves()
    last_month = add_months(TODAY, 7)
    assert got.nonzero_moves() == recomputed_moves(got.timelines, START, last_month)
    # The same customers' rows in a segment (a customer whose only sale was voided on its day
    # has a row in no segment when the sale arrived first, and none in date order).
    assert {k: (r.segment, r.total_amount) for k, r in got.rows.items() if r.segment} == {
        k: (r.segment, r.total_amount) for k, r in in_order.rows.items() if r.segment
    }

    # And both equal classifying the events from scratch.
    by_customer: dict[str, list[Purchase]] = defaultdict(list)
    for cid, p in events:
        by_customer[cid].append(p)
    ends = [month_end(m) for m in months(START, TODAY) if month_end(m) < TODAY] + [TODAY]
    for scope in SCOPES:
        for day in ends:
            expected = truth(by_customer, scope, day)
            sizes: Counter = Counter()
            sales: Counter = Counter()
            for s in expected.values():
                sizes[s.segment] += 1
                sales[s.segment] += s.total_amount
            assert got.portfolio(scope, day) == {seg: (sizes[seg], sales[seg]) for seg in sizes}
            assert got.segments_on(scope, day) == {
                cid: (s.segment, s.total_amount) for cid, s in expected.items()
            }
        moves = got.nonzero_moves()
        for m in months(add_months(START, 1), TODAY):
            for span in (1, 6):
                eve, end = month_end(add_months(m, -span)), min(month_end(m), TODAY)
                a, b = truth(by_customer, scope, eve), truth(by_customer, scope, end)
                expected_cells = Counter()
                for cid in a.keys() | b.keys():
                    frm = a[cid].segment if cid in a else NEW
                    to = b[cid].segment if cid in b else NONE
                    expected_cells[(frm, to)] += 1
                cells = {
                    (f, t): v[0]
                    for (s, sp, month, f, t), v in moves.items()
                    if s == scope and sp == span and month == m and v[0]
                }
                if span == 1:
                    sizes = Counter(x.segment for x in a.values())
                    table = {
                        (c["from"], c["to"] or NONE): c["customers"]
                        for c in transition_cells(sizes, cells)
                    }
                    assert table == {k: v for k, v in expected_cells.items() if k != (NEW, NONE)}
                else:  # only changed segments, both in the portfolio
                    assert cells == {
                        k: v
                        for k, v in expected_cells.items()
                        if k[0] != k[1] and NEW not in k and NONE not in k
                    }


def test_the_random_histories_make_corrections():
    """The property above is about corrections: its kind of history, shuffled, makes many, and
    many of them withdraw lapses."""
    rng = random.Random(5)
    corrections, withdrawn = 0, Counter()
    for _ in range(40):
        events = []
        for c in range(3):
            day = START + timedelta(days=rng.randrange(100))
            for k in range(4):
                order = f"c{c}-o{k}"
                sale = Purchase(
                    f"{order}-s", "sale", rng.choice(("b1", "b2")), day, Decimal(12000), order
                )
                events.append((f"c{c}", sale))
                day += timedelta(days=rng.choice((30, 241, 300)))
        rng.shuffle(events)
        _, producer = published_in_arrival_order(events, [1, 3, 6])
        corrections += producer.corrections
        withdrawn += producer.withdrawn
    assert corrections > 20, corrections
    assert sum(n for segment, n in withdrawn.items() if segment and "lapsed" in segment) > 5
