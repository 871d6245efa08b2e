"""The fast path's fold against the definition: figures folded from the stored ones equal
``compute_figures`` of every event, whenever ``foldable`` lets a customer through."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.classifier.fold import figures_after, fold_of, foldable
from shared.cpm import Purchase, compute_figures

START = date(2024, 1, 1)
BRANCHES = ("a", "b", "c")


@st.composite
def histories(draw):
    """Stored events (any kinds, order ids from a small pool so lines share orders and voids
    hit), then new events dated on or after the last stored one."""
    n = draw(st.integers(1, 12))
    stored = []
    for i in range(n):
        kind = draw(st.sampled_from(["sale"] * 6 + ["return", "void"]))
        stored.append(
            Purchase(
                f"s{i}",
                kind,
                draw(st.sampled_from(BRANCHES)),
                START + timedelta(days=draw(st.integers(0, 30))),
                Decimal(0) if kind == "void" else Decimal(draw(st.integers(1, 5000))) / 100,
                draw(st.sampled_from([None, "o1", "o2", "o3", "o4"])),
            )
        )
    last = max(p.occurred_on for p in stored)
    new = []
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["sale"] * 8 + ["return", "void"]))
        new.append(
            Purchase(
                f"n{i}",
                kind,
                draw(st.sampled_from(BRANCHES)),
                last + timedelta(days=draw(st.integers(0, 5))),
                Decimal(draw(st.integers(0, 5000))) / 100,
                draw(st.sampled_from([None, "o1", "o5", "o6", "o7"])),
            )
        )
    return stored, new


@settings(max_examples=400, deadline=None)
@given(histories())
def test_folded_figures_are_the_figures_of_every_event(history):
    stored, new = history
    fold = fold_of(stored)
    named = {p.order_id for p in stored if p.order_id}
    # (these few order ids never collide in the filter: it answers exactly here)
    last = max(p.occurred_on for p in stored)
    voids = [p.occurred_on for p in stored if p.kind == "void"]
    in_order = min(p.occurred_on for p in new) > max(voids, default=date.min)
    assert foldable(fold, new) == (
        in_order and all(p.kind == "sale" and p.order_id not in named for p in new)
    )
    assert last == fold.last_on
    if not foldable(fold, new):
        return
    everything = stored + new
    assert fold.with_sales(new) == fold_of(everything)
    for scope in ("all", *BRANCHES):
        start = compute_figures(stored, scope)
        if start is None:
            continue
        for day in sorted({p.occurred_on for p in new}):
            assert figures_after(start, new, scope, fold.spend, day) == compute_figures(
                everything, scope, as_of=day
            )


def test_a_second_line_of_a_stored_order_is_not_folded():
    day = date(2024, 5, 1)
    stored = [Purchase("1", "sale", "a", day, Decimal(100), "o1")]
    line2 = Purchase("2", "sale", "a", day, Decimal(50), "o1")
    fresh = Purchase("3", "sale", "a", day, Decimal(50), "o2")
    assert not foldable(fold_of(stored), [line2])
    assert foldable(fold_of(stored), [fresh])
    # two lines of one new order, folded: one purchase
    lines = [fresh, Purchase("4", "sale", "b", day, Decimal(20), "o2")]
    after = figures_after(compute_figures(stored), lines, "all", fold_of(stored).spend, day)
    assert after == compute_figures(stored + lines)
    assert after.purchase_count == 2


def test_a_sale_of_a_voided_order_is_not_folded():
    day = date(2024, 5, 1)
    stored = [
        Purchase("1", "sale", "a", day, Decimal(100), "o1"),
        Purchase("2", "void", "a", day, Decimal(0), "o9"),
    ]
    assert not foldable(fold_of(stored), [Purchase("3", "sale", "a", day, Decimal(5), "o9")])
    assert not foldable(fold_of(stored), [Purchase("3", "return", "a", day, Decimal(5), "o7")])
