"""The CPM rules table at every border (CPM.md): tiers, states, order of rules, figures."""

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.cpm import (
    Figures,
    Purchase,
    Rules,
    classify,
    compute_figures,
    in_scope,
    lapse_due_on,
    tier_of,
)

D0 = date(2025, 1, 1)


def fig(count: int, total: int, tenure: int, last: date | None = None) -> Figures:
    last = last or D0 + timedelta(days=tenure)
    return Figures(count, Decimal(total), last - timedelta(days=tenure), last)


@pytest.mark.parametrize(
    ("count", "total", "tenure", "tier"),
    [
        (1, 500_000, 0, "first"),  # one purchase is first whatever the amount
        (2, 10_000, 0, "fledgling"),  # two orders the same day: count 2, tenure 0
        (2, 10_000, 89, "fledgling"),
        (2, 10_000, 90, "steady"),
        (5, 69_999, 90, "steady"),
        (5, 70_000, 90, "trendy"),  # 70,000 is "≥ 70,000"
        (5, 70_000, 209, "trendy"),
        (5, 70_000, 210, "loyal"),
        (5, 69_999, 210, "steady"),
        (9, 1_000_000, 89, "fledgling"),  # tenure < 90 wins before amount
    ],
)
def test_tier_borders(count, total, tenure, tier):
    assert tier_of(fig(count, total, tenure)) == tier


@pytest.mark.parametrize(
    ("lapse", "state"), [(0, "active"), (239, "active"), (240, "lapsed"), (1000, "lapsed")]
)
def test_lapse_border(lapse, state):
    f = fig(3, 80_000, 300)
    assert classify(f, f.last_purchase_on + timedelta(days=lapse)) == f"loyal_{state}"


def test_lapse_due_on_is_first_lapsed_day():
    f = fig(1, 5_000, 0)
    due = lapse_due_on(f)
    assert classify(f, due - timedelta(days=1)) == "first_active"
    assert classify(f, due) == "first_lapsed"


def test_tenant_borders_and_per_tier_lapse():
    rules = Rules(amount_border=Decimal(30_000), lapse_days=365, lapse_days_by_tier={"first": 120})
    assert tier_of(fig(3, 30_000, 250), rules) == "loyal"
    first = fig(1, 1_000, 0)
    assert classify(first, first.last_purchase_on + timedelta(days=119), rules) == "first_active"
    assert classify(first, first.last_purchase_on + timedelta(days=120), rules) == "first_lapsed"
    loyal = fig(3, 30_000, 250)
    assert classify(loyal, loyal.last_purchase_on + timedelta(days=364), rules) == "loyal_active"


def test_rules_reject_nonsense():
    with pytest.raises(ValueError, match="loyal_tenure_days"):
        Rules(fledgling_tenure_days=200, loyal_tenure_days=100)
    with pytest.raises(ValueError, match="unknown tier"):
        Rules(lapse_days_by_tier={"vip": 10})


def sale(eid, day, amount, order=None, branch="b1"):
    return Purchase(eid, "sale", branch, D0 + timedelta(days=day), Decimal(amount), order)


def test_figures_orders_returns_voids():
    events = [
        sale("e1", 0, 1000, "o1"),
        sale("e2", 1, 500, "o1"),  # same order: one purchase, dated by the earliest line
        sale("e3", 10, 2000, "o2", branch="b2"),
        Purchase("e4", "return", "b2", D0 + timedelta(days=12), Decimal(300), "o2"),
        sale("e5", 20, 4000, "o3"),
        Purchase("e6", "void", "b1", D0 + timedelta(days=20), Decimal(0), "o3"),
        sale("e7", 30, 700),  # no order id: a purchase of its own
        sale("e8", 30, 700),
    ]
    f = compute_figures(events)
    assert (f.purchase_count, f.total_amount) == (4, Decimal(1000 + 500 + 2000 - 300 + 700 + 700))
    assert (f.first_purchase_on, f.last_purchase_on) == (D0, D0 + timedelta(days=30))
    assert f.home_branch_id == "b1"
    b2 = compute_figures(events, scope="b2")
    assert (b2.purchase_count, b2.total_amount) == (1, Decimal(1700))
    as_of = compute_figures(events, as_of=D0 + timedelta(days=11))
    assert (as_of.purchase_count, as_of.total_amount) == (2, Decimal(3500))


def test_void_everything_leaves_portfolio():
    events = [sale("e1", 0, 1000, "o1"), Purchase("e2", "void", "b9", D0, Decimal(0), "o1")]
    assert compute_figures(events) is None
    assert compute_figures(events, scope="b1") is None
    assert classify(None, D0) is None


# The definition, written plainly: the classifier's compute_figures must agree with it.
def reference_figures(
    purchases: Iterable[Purchase], scope: str = "all", as_of: date | None = None
) -> Figures | None:
    """``compute_figures`` as it was first written: each rule of its docstring in turn."""
    rows = [
        p for p in purchases if in_scope(p, scope) and (as_of is None or p.occurred_on <= as_of)
    ]
    voided = {p.order_id for p in rows if p.kind == "void" and p.order_id}
    orders: dict[str, list] = {}
    spend: dict[str, Decimal] = {}
    returned = Decimal(0)
    for p in rows:
        if p.kind == "void" or (p.order_id and p.order_id in voided):
            continue
        if p.kind == "sale":
            key = f"o:{p.order_id}" if p.order_id else f"e:{p.event_id}"
            order = orders.get(key)
            if order is None:
                orders[key] = [p.amount, p.occurred_on]
            else:
                order[0] += p.amount
                order[1] = min(order[1], p.occurred_on)
            spend[p.branch_id] = spend.get(p.branch_id, Decimal(0)) + p.amount
        elif p.kind == "return":
            returned += p.amount
            spend[p.branch_id] = spend.get(p.branch_id, Decimal(0)) - p.amount
    if not orders:
        return None
    dates = [o[1] for o in orders.values()]
    home = max(sorted(spend), key=lambda b: spend[b]) if spend else None
    return Figures(
        purchase_count=len(orders),
        total_amount=sum((o[0] for o in orders.values()), Decimal(0)) - returned,
        first_purchase_on=min(dates),
        last_purchase_on=max(dates),
        home_branch_id=home,
    )


@st.composite
def histories(draw):
    events = []
    for i in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["sale", "sale", "sale", "return", "void"]))
        order = draw(st.one_of(st.none(), st.sampled_from(["o1", "o2", "o3", "e1"])))
        if kind == "void" and order is None:
            order = "o1"
        events.append(
            Purchase(
                f"e{i}",
                kind,
                draw(st.sampled_from(["b1", "b2", "b3"])),
                D0 + timedelta(days=draw(st.integers(0, 400))),
                Decimal(draw(st.integers(0, 40_000))) / draw(st.sampled_from([1, 100])),
                order,
            )
        )
    return events


@settings(max_examples=400)
@given(
    histories(),
    st.sampled_from(["all", "b1", "b2", "b3"]),
    st.one_of(st.none(), st.integers(0, 400)),
)
def test_compute_figures_agrees_with_the_plain_definition(events, scope, as_of_day):
    as_of = None if as_of_day is None else D0 + timedelta(days=as_of_day)
    assert compute_figures(events, scope, as_of) == reference_figures(events, scope, as_of)
