"""The dashboard's pure arithmetic: what counts as news, why a segment changed, distributions,
the suggested borders and the preview of new borders (against shared/cpm.py's classification)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.reports import domain, views
from shared.cpm import DEFAULT_RULES, Figures, Rules, classify


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (None, "first_active", "new_customers"),
        ("loyal_lapsed", "loyal_active", "comebacks"),
        ("first_lapsed", "fledgling_active", "comebacks"),
        ("loyal_active", "loyal_lapsed", "newly_lapsed"),
        ("first_active", "fledgling_active", None),  # a step up is no news
        ("steady_active", "trendy_active", None),
        ("loyal_active", None, None),  # all purchases voided
        ("loyal_active", "steady_lapsed", None),  # new borders, not a lapse
    ],
)
def test_news_kind(before, after, kind):
    assert domain.news_kind(before, after) == kind


def entry(segment, count, total, on="2026-01-01"):
    return {
        "segment": segment,
        "purchase_count": count,
        "total_amount": Decimal(total),
        "effective_on": date.fromisoformat(on),
    }


@pytest.mark.parametrize(
    ("previous", "now", "cause"),
    [
        (None, entry("first_active", 1, 5000), "purchase"),
        (entry("first_active", 1, 5000), entry("fledgling_active", 2, 9000), "purchase"),
        (entry("fledgling_active", 2, 9000), entry("first_active", 1, 5000), "void"),
        (entry("steady_active", 3, 30000), entry("steady_active", 3, 25000), "return"),
        (entry("loyal_active", 9, 90000), entry("loyal_lapsed", 9, 90000), "lapse"),
        (entry("loyal_active", 9, 90000), entry("steady_active", 9, 90000), "rules"),
    ],
)
def test_change_cause(previous, now, cause):
    assert domain.change_cause(previous, now) == cause


def test_timeline_changes_are_the_moves_newest_first_with_the_segment_before():
    changes = domain.timeline_changes(
        [
            entry("first_active", 1, 5000, "2025-01-05"),
            entry("fledgling_active", 2, 9000, "2025-02-01"),
            entry("fledgling_active", 3, 12000, "2025-03-01"),  # bought, stayed: no change
            entry("fledgling_lapsed", 3, 12000, "2025-10-27"),
        ]
    )
    assert [
        (c["effective_on"], c["from_segment"], c["to_segment"], c["cause"]) for c in changes
    ] == [
        ("2025-10-27", "fledgling_active", "fledgling_lapsed", "lapse"),
        ("2025-02-01", "first_active", "fledgling_active", "purchase"),
        ("2025-01-05", None, "first_active", "purchase"),
    ]


def test_histogram_reads_postgresql_width_bucket_indexes():
    # width_bucket(v, ARRAY[0, 30, 60]): 0 below 0, 1 for [0, 30), 2 for [30, 60), 3 for ≥ 60
    buckets = domain.histogram([0, 30, 60], {0: 5, 1: 2, 3: 7})
    assert buckets == [
        {"from": 0, "to": 30, "count": 2},
        {"from": 30, "to": 60, "count": 0},
        {"from": 60, "to": None, "count": 7},
    ]


def test_suggested_borders_round_the_data_and_keep_loyal_above_fledgling():
    rules, basis = domain.suggest_rules(
        DEFAULT_RULES,
        gap_p90=68,
        second_purchase_p75=100,
        repeat_total_p80=Decimal("246284"),
        repeat_tenure_median=80,
    )
    assert (rules.lapse_days, rules.fledgling_tenure_days) == (90, 120)
    assert rules.amount_border == Decimal(250000)
    assert rules.loyal_tenure_days == 150  # the median (90) is below fledgling + 30
    assert {b["field"] for b in basis} == {
        "lapse_days",
        "fledgling_tenure_days",
        "amount_border",
        "loyal_tenure_days",
    }


def test_without_data_the_suggestion_is_the_current_borders():
    rules, basis = domain.suggest_rules(
        DEFAULT_RULES,
        gap_p90=None,
        second_purchase_p75=None,
        repeat_total_p80=None,
        repeat_tenure_median=None,
    )
    assert rules == DEFAULT_RULES and basis == []


figures = st.builds(
    lambda count, total, first, tenure, gap: {
        "purchase_count": count,
        "total_amount": Decimal(total),
        "first_purchase_on": first,
        "last_purchase_on": first + timedelta(days=tenure if count > 1 else 0),
        "gap": gap,
    },
    st.integers(1, 30),
    st.integers(1000, 500_000),
    st.dates(date(2022, 1, 1), date(2025, 1, 1)),
    st.integers(0, 700),
    st.integers(0, 1),
)


@given(st.lists(figures, max_size=40), st.integers(30, 400), st.integers(10_000, 200_000))
def test_the_preview_counts_each_customer_by_the_one_classification(rows, lapse, border):
    today = date(2026, 11, 23)
    rules = Rules(lapse_days=lapse, amount_border=Decimal(border))
    for r in rows:
        fig = Figures(
            r["purchase_count"], r["total_amount"], r["first_purchase_on"], r["last_purchase_on"]
        )
        r["segment"] = classify(fig, today, DEFAULT_RULES)
    moves = domain.preview_moves(rows, today, rules)
    assert sum(moves.values()) == len(rows)
    body = views.preview_body("all", today, rules, moves)
    for r in rows:
        fig = Figures(
            r["purchase_count"], r["total_amount"], r["first_purchase_on"], r["last_purchase_on"]
        )
        assert moves[(r["segment"], classify(fig, today, rules))] >= 1
    assert body["moving"] == sum(c["customers"] for c in body["moves"])
    assert all(c["from"] != c["to"] for c in body["moves"])
