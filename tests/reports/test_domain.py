"""The reports service's pure logic: folding customer states into rows and portfolio deltas,
and the shapes of what the API returns."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.reports.domain.portfolio import CustomerRow, Delta, fold, problem_with, sum_deltas
from services.reports.views.csv import csv_encoding, csv_row, csv_text, neutralise
from services.reports.views.cursors import decode_cursor, encode_cursor
from services.reports.views.portfolio import amount_text, portfolio_body, share
from shared.cpm import SEGMENTS, Rules
from shared.events import CustomerState
from shared.http import problems as body_problems

D = date(2025, 1, 1)


def day(n: int) -> date:
    return D + timedelta(days=n)


def state(
    seq, to, total, on, frm=None, supersedes=None, count=1, cause="purchase"
) -> CustomerState:
    return CustomerState(
        tenant_id="t",
        scope="all",
        customer_id="c1",
        seq=seq,
        from_segment=frm,
        to_segment=to,
        effective_on=day(on),
        cause=cause,
        purchase_count=count,
        total_amount=Decimal(total),
        first_purchase_on=day(0) if to else None,
        last_purchase_on=day(on) if to else None,
        tenure_days=on if to else None,
        lapse_days=0 if to else None,
        supersedes_seq=supersedes,
    )


def row(seq, segment, total, on, prev=None, prev_total=0) -> CustomerRow:
    return CustomerRow(
        seq=seq,
        segment=segment,
        purchase_count=1,
        total_amount=Decimal(total),
        first_purchase_on=day(0),
        last_purchase_on=day(0),
        home_branch_id=None,
        effective_on=day(on),
        prev_segment=prev,
        prev_total_amount=Decimal(prev_total),
    )


def deltas(*items) -> tuple[Delta, ...]:
    return tuple(Delta(day(on), seg, n, Decimal(amount)) for on, seg, n, amount in items)


# (name, stored row, states in arrival order, expected deltas, expected (seq, segment, total,
#  prev_segment, prev_total) of the row after, applied, skipped)
FOLDS = [
    (
        "new customer",
        None,
        [state(1, "first_active", 10000, 0)],
        deltas((0, "first_active", 1, 10000)),
        (1, "first_active", 10000, None, 0),
        1,
        0,
    ),
    (
        "two states of one customer in one batch, applied in seq order",
        None,
        [
            state(2, "fledgling_active", 25000, 30, "first_active", count=2),
            state(1, "first_active", 10000, 0),
        ],
        deltas(
            (0, "first_active", 1, 10000),
            (30, "first_active", -1, -10000),
            (30, "fledgling_active", 1, 25000),
        ),
        (2, "fledgling_active", 25000, "first_active", 10000),
        2,
        0,
    ),
    (
        "redelivery of applied states changes nothing",
        row(2, "fledgling_active", 25000, 30, "first_active", 10000),
        [
            state(1, "first_active", 10000, 0),
            state(2, "fledgling_active", 25000, 30, "first_active"),
        ],
        (),
        (2, "fledgling_active", 25000, "first_active", 10000),
        0,
        2,
    ),
    (
        "a duplicate inside the batch counts once",
        None,
        [state(1, "first_active", 10000, 0), state(1, "first_active", 10000, 0)],
        deltas((0, "first_active", 1, 10000)),
        (1, "first_active", 10000, None, 0),
        1,
        1,
    ),
    (
        "a return keeps the segment and lowers its sales",
        row(5, "steady_active", 80000, 100, "steady_active", 70000),
        [state(6, "steady_active", 75000, 120, "steady_active", cause="return")],
        deltas((120, "steady_active", -1, -80000), (120, "steady_active", 1, 75000)),
        (6, "steady_active", 75000, "steady_active", 80000),
        1,
        0,
    ),
    (
        "all purchases voided: the customer leaves the portfolio",
        row(1, "first_active", 10000, 0),
        [state(2, None, 0, 3, "first_active", count=0, cause="void")],
        deltas((3, "first_active", -1, -10000)),
        (2, None, 0, "first_active", 10000),
        1,
        0,
    ),
    (
        "a voided customer who buys again comes back from nowhere",
        row(2, None, 0, 3, "first_active", 10000),
        [state(3, "first_active", 5000, 10)],
        deltas((10, "first_active", 1, 5000)),
        (3, "first_active", 5000, None, 0),
        1,
        0,
    ),
    (
        "supersedes: undo the premature lapse on its day, then move from the pre-lapse segment",
        row(3, "first_lapsed", 10000, 240, "first_active", 10000),
        [state(4, "fledgling_active", 20000, 50, "first_active", supersedes=3, count=2)],
        deltas(
            (240, "first_lapsed", -1, -10000),
            (240, "first_active", 1, 10000),
            (50, "first_active", -1, -10000),
            (50, "fledgling_active", 1, 20000),
        ),
        (4, "fledgling_active", 20000, "first_active", 10000),
        1,
        0,
    ),
    (
        "supersedes a lapse applied in the same batch",
        row(1, "first_active", 10000, 0),
        [
            state(2, "first_lapsed", 10000, 240, "first_active", cause="lapse"),
            state(3, "fledgling_active", 20000, 50, "first_active", supersedes=2, count=2),
        ],
        deltas(
            (240, "first_active", -1, -10000),
            (240, "first_lapsed", 1, 10000),
            (240, "first_lapsed", -1, -10000),
            (240, "first_active", 1, 10000),
            (50, "first_active", -1, -10000),
            (50, "fledgling_active", 1, 20000),
        ),
        (3, "fledgling_active", 20000, "first_active", 10000),
        2,
        0,
    ),
    (
        "supersedes a lapse never applied here: nothing to undo",
        row(1, "first_active", 10000, 0),
        [state(3, "fledgling_active", 20000, 50, "first_active", supersedes=2, count=2)],
        deltas((50, "first_active", -1, -10000), (50, "fledgling_active", 1, 20000)),
        (3, "fledgling_active", 20000, "first_active", 10000),
        1,
        0,
    ),
    (
        "a redelivered superseding state is not undone twice",
        row(4, "fledgling_active", 20000, 50, "first_active", 10000),
        [state(4, "fledgling_active", 20000, 50, "first_active", supersedes=3, count=2)],
        (),
        (4, "fledgling_active", 20000, "first_active", 10000),
        0,
        1,
    ),
]


def test_a_state_dated_before_the_change_it_builds_on_counts_from_that_day():
    # Lapsed on day 240 (the sweep); a late return folded in at the classifier's clock, day 100.
    stored = row(2, "first_lapsed", 10000, 240, "first_active", 10000)
    folded = fold(stored, [state(3, "first_lapsed", 8000, 100, "first_lapsed", cause="return")])
    assert folded.deltas == deltas(
        (240, "first_lapsed", -1, -10000), (240, "first_lapsed", 1, 8000)
    )
    assert folded.row.effective_on == day(240) and folded.row.prev_effective_on == day(240)
    assert [(e.seq, e.effective_on) for e in folded.added] == [(3, day(240))]
    assert folded.removed == ()


def test_an_undo_is_never_dated_before_the_change_it_returns_to():
    # A lapse (seq 3, day 300) after a change on day 120 (seq 2); the superseding purchase is
    # dated day 100 (the classifier's day loop cannot do that, a rules change in between could).
    stored = CustomerRow(
        seq=3,
        segment="first_lapsed",
        purchase_count=1,
        total_amount=Decimal(10000),
        first_purchase_on=day(0),
        last_purchase_on=day(0),
        home_branch_id=None,
        effective_on=day(300),
        prev_segment="first_active",
        prev_total_amount=Decimal(10000),
        prev_effective_on=day(120),
    )
    folded = fold(stored, [state(4, "fledgling_active", 20000, 100, supersedes=3, count=2)])
    assert folded.removed == (3,)
    assert [(e.seq, e.effective_on) for e in folded.added] == [(4, day(120))]
    assert folded.deltas[-2:] == deltas(
        (120, "first_active", -1, -10000), (120, "fledgling_active", 1, 20000)
    )


@pytest.mark.parametrize(
    ("stored", "states", "expected", "after", "applied", "skipped"),
    [case[1:] for case in FOLDS],
    ids=[case[0] for case in FOLDS],
)
def test_fold(stored, states, expected, after, applied, skipped):
    folded = fold(stored, states)
    assert folded.deltas == expected
    r = folded.row
    assert (r.seq, r.segment, r.total_amount, r.prev_segment, r.prev_total_amount) == (
        after[0],
        after[1],
        Decimal(after[2]),
        after[3],
        Decimal(after[4]),
    )
    assert (folded.applied, folded.skipped) == (applied, skipped)


def test_fold_of_nothing_keeps_the_row():
    stored = row(1, "first_active", 10000, 0)
    assert fold(stored, []).row is stored
    assert fold(None, []).row is None


def test_sum_deltas_adds_per_day_and_segment_and_drops_zeros():
    items = [
        ("t", "all", Delta(day(0), "first_active", 1, Decimal(100))),
        ("t", "all", Delta(day(0), "first_active", 1, Decimal(50))),
        ("t", "all", Delta(day(1), "first_active", -1, Decimal(-100))),
        ("t", "b1", Delta(day(1), "steady_active", -1, Decimal(-10))),
        ("t", "b1", Delta(day(1), "steady_active", 1, Decimal(10))),
    ]
    sums = sum_deltas(items)
    assert sums.daily == {
        ("t", "all", day(0), "first_active"): (2, Decimal(150)),
        ("t", "all", day(1), "first_active"): (-1, Decimal(-100)),
    }
    assert sums.monthly == {("t", "all", day(0), "first_active"): (1, Decimal(50))}
    assert sums.current == {("t", "all", "first_active"): (1, Decimal(50))}


# --- property: however a customer's states arrive, the deltas add up to the customer ------------

segment_or_none = st.sampled_from((*SEGMENTS, None))


@st.composite
def histories(draw):
    """A customer's states as the classifier emits them (seq 1..n, lapses sometimes superseded),
    delivered in batches with redeliveries."""
    n = draw(st.integers(1, 8))
    states, on = [], 0
    for seq in range(1, n + 1):
        on += draw(st.integers(0, 40))
        segment = draw(segment_or_none)
        total = draw(st.integers(0, 200_000)) if segment else 0
        supersedes = seq - 1 if seq > 1 and draw(st.booleans()) else None
        states.append(state(seq, segment, total, on, supersedes=supersedes))
    deliveries = draw(st.lists(st.integers(1, n), min_size=1, max_size=12))
    batches = [states[:k] if i % 2 else states[k - 1 : k + 1] for i, k in enumerate(deliveries)]
    return states, [*batches, states]


@given(histories())
def test_deltas_always_add_up_to_the_stored_row(history):
    states, batches = history
    stored, total = None, Counter()
    for batch in batches:
        folded = fold(stored, batch)
        stored = folded.row
        for d in folded.deltas:
            total[(d.segment, "customers")] += d.customers
            total[(d.segment, "sales")] += d.sales
    expected = Counter()
    if stored.segment is not None:
        expected[(stored.segment, "customers")] = 1
        expected[(stored.segment, "sales")] = stored.total_amount
    assert {k: v for k, v in total.items() if v} == {k: v for k, v in expected.items() if v}
    assert stored.seq == states[-1].seq


# --- validation of consumed states ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"to_segment": "vip_active"}, "to_segment: unknown segment 'vip_active'"),
        ({"from_segment": "loyal"}, "from_segment: unknown segment 'loyal'"),
        ({"schema_version": 2}, "schema_version 2 is newer than this service reads"),
        ({"seq": 0}, "seq: must be positive"),
        ({"customer_id": ""}, "tenant_id, scope and customer_id must not be empty"),
    ],
)
def test_problem_with(change, reason):
    assert problem_with(state(1, "first_active", 100, 0).model_copy(update=change)) == reason


# --- response shapes -----------------------------------------------------------------------------


def test_portfolio_lists_all_ten_segments_with_zeros_and_shares():
    body = portfolio_body(
        "all",
        day(0),
        {"first_active": (3, Decimal("30000.00")), "loyal_lapsed": (1, Decimal("90000"))},
    )
    assert [s["segment"] for s in body["segments"]] == list(SEGMENTS)
    assert body["total_customers"] == 4 and body["total_sales"] == "120000"
    first = body["segments"][0]
    assert first == {
        "segment": "first_active",
        "name_ja": "初回客",
        "customers": 3,
        "sales": "30000",
        "customer_share": 0.75,
        "sales_share": 0.25,
    }
    assert body["segments"][2]["customers"] == 0 and body["segments"][2]["sales_share"] == 0


def test_empty_portfolio_has_zero_shares():
    body = portfolio_body("b1", day(0), {})
    assert body["total_customers"] == 0 and body["total_sales"] == "0"
    assert all(s["customer_share"] == 0 and s["sales_share"] == 0 for s in body["segments"])


@pytest.mark.parametrize(
    ("part", "whole", "expected"),
    [(1, 3, 0.3333), (2, 3, 0.6667), (0, 0, 0.0), (5, 0, 0.0), (1, 1, 1.0)],
)
def test_share(part, whole, expected):
    assert share(part, whole) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("105607.00"), "105607"),
        (Decimal("1234.50"), "1234.5"),
        (Decimal("1E+5"), "100000"),
        (Decimal("-500.00"), "-500"),
        (Decimal("0.00"), "0"),
        (None, None),
    ],
)
def test_amount_text(value, text):
    assert amount_text(value) == text


@pytest.mark.parametrize(
    ("cell", "inert"),
    [
        ("=cmd()", "'=cmd()"),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-500", "-500"),
        ("A-0104", "A-0104"),
        ("優良客", "優良客"),
        ("", ""),
    ],
)
def test_neutralise(cell, inert):
    assert neutralise(cell) == inert


def test_csv_row_in_japanese_and_english():
    item = {
        "customer_id": "=cmd()",
        "total_amount": "105607",
        "purchase_count": 4,
        "first_purchase_on": "2003-03-30",
        "last_purchase_on": "2003-10-28",
        "tenure_days": 212,
        "lapse_days": 1219,
        "segment": "loyal_lapsed",
    }
    assert csv_row(item, "ja") == [
        "'=cmd()",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        "105607",
        "4",
        "2003-03-30",
        "2003-10-28",
        "212",
        "1219",
        "優良離脱客",
    ]
    assert csv_row(item, "en")[-1] == "loyal_lapsed"
    named = {**item, "customer_name": "@山田", "email": "a@example.jp", "mail_consent": True}
    assert csv_row(named, "ja")[1:4] == ["'@山田", "", "a@example.jp"]
    assert csv_row(named, "ja")[7] == "可" and csv_row(named, "en")[7] == "true"
    assert csv_text([["a,b", 'say "hi"']]) == '"a,b","say ""hi"""\r\n'


def test_cursor_round_trip_and_rejects_foreign_cursors():
    cursor = encode_cursor(Decimal("105607.00"), "顧客-1")
    assert decode_cursor(cursor) == (Decimal("105607.00"), "顧客-1")
    for bad in ("x", "!!!", encode_cursor(Decimal(1), "a")[:-3], "WzEsMl0"):
        with pytest.raises(ValueError):
            decode_cursor(bad)


@pytest.mark.parametrize(
    ("name", "codec"),
    [("utf-8", "utf-8"), ("UTF8", "utf-8"), ("cp932", "cp932"), ("Shift_JIS", "cp932")],
)
def test_csv_encoding(name, codec):
    assert csv_encoding(name) == codec


def test_csv_encoding_rejects_others():
    with pytest.raises(ValueError):
        csv_encoding("latin-1")


ANY_REASON = object()


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        ({"lapse_days": 0}, [{"field": "lapse_days", "reason": "Input should be greater than 0"}]),
        (
            {"loyal_tenure_days": 60},
            [
                {
                    "field": "loyal_tenure_days",
                    "reason": "loyal_tenure_days must be greater than fledgling_tenure_days",
                }
            ],
        ),
        (
            {"lapse_days_by_tier": {"vip": 10}},
            [{"field": "lapse_days_by_tier", "reason": ANY_REASON}],
        ),
        ({"colour": "red"}, [{"field": "colour", "reason": "Extra inputs are not permitted"}]),
        ([], [{"field": "body", "reason": ANY_REASON}]),
    ],
)
def test_rule_problems_name_field_and_reason(body, problems):
    with pytest.raises(ValidationError) as caught:
        Rules.model_validate(body)
    found = body_problems(caught.value.errors(), Rules.model_fields)
    assert [p["field"] for p in found] == [p["field"] for p in problems]
    for got, want in zip(found, problems, strict=True):
        if want["reason"] is not ANY_REASON:
            assert got["reason"] == want["reason"]
        assert got["reason"]
