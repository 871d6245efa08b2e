"""The notifier's decisions, table-driven: which segment changes open, close or cancel work."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from services.notifier.domain.followups import (
    VALUE_ORDER,
    CancelFollowup,
    OpenFollowup,
    Reactivated,
    SortKey,
    decide,
    decode_cursor,
    encode_cursor,
    lapse_key,
    priority,
)
from shared.cpm import SEGMENTS
from shared.events import SegmentChange

TODAY = date(2026, 11, 23)
MAX_AGE = 30


def change(**overrides) -> SegmentChange:
    fields = dict(
        tenant_id="demo",
        scope="all",
        customer_id="C1",
        seq=7,
        from_segment="loyal_active",
        to_segment="loyal_lapsed",
        effective_on=TODAY - timedelta(days=1),
        cause="lapse",
        purchase_count=12,
        total_amount=Decimal("154000"),
        first_purchase_on=date(2024, 1, 5),
        last_purchase_on=TODAY - timedelta(days=241),
        tenure_days=300,
        lapse_days=240,
        home_branch_id="shibuya",
    )
    fields.update(overrides)
    return SegmentChange(**fields)


# (name, change overrides, expected action type or None)
CASES = [
    ("lapse opens a task", {}, OpenFollowup),
    (
        "every tier's lapse opens",
        {"from_segment": "first_active", "to_segment": "first_lapsed"},
        OpenFollowup,
    ),
    ("branch-scope lapse: still buys elsewhere", {"scope": "shibuya"}, None),
    (
        "lapse exactly max age old still opens",
        {"effective_on": TODAY - timedelta(days=MAX_AGE)},
        OpenFollowup,
    ),
    (
        "lapse older than max age: history",
        {"effective_on": TODAY - timedelta(days=MAX_AGE + 1)},
        None,
    ),
    ("lapsed segment reached by a purchase is no lapse", {"cause": "purchase"}, None),
    ("lapsed segment reached by new borders is no lapse", {"cause": "rules"}, None),
    ("lapse into another tier is not the clock", {"to_segment": "steady_lapsed"}, None),
    (
        "already lapsed, moved tier",
        {"from_segment": "loyal_lapsed", "to_segment": "steady_lapsed", "cause": "return"},
        None,
    ),
    (
        "new customer",
        {"from_segment": None, "to_segment": "first_active", "cause": "purchase"},
        None,
    ),
    (
        "active to active",
        {"from_segment": "steady_active", "to_segment": "loyal_active", "cause": "purchase"},
        None,
    ),
    (
        "customer left (all voided)",
        {"from_segment": "first_active", "to_segment": None, "cause": "void"},
        None,
    ),
    (
        "comeback closes",
        {"from_segment": "loyal_lapsed", "to_segment": "loyal_active", "cause": "purchase"},
        Reactivated,
    ),
    (
        "comeback into another tier",
        {"from_segment": "steady_lapsed", "to_segment": "loyal_active", "cause": "purchase"},
        Reactivated,
    ),
    (
        "branch-scope comeback: nothing",
        {
            "scope": "shibuya",
            "from_segment": "loyal_lapsed",
            "to_segment": "loyal_active",
            "cause": "purchase",
        },
        None,
    ),
    (
        "supersedes cancels",
        {
            "from_segment": "loyal_active",
            "to_segment": "loyal_active",
            "cause": "purchase",
            "supersedes_seq": 6,
        },
        CancelFollowup,
    ),
    (
        "supersedes looking like a comeback still cancels",
        {
            "from_segment": "loyal_lapsed",
            "to_segment": "loyal_active",
            "cause": "purchase",
            "supersedes_seq": 6,
        },
        CancelFollowup,
    ),
    (
        "branch-scope supersedes: nothing (seq is per scope)",
        {"scope": "shibuya", "supersedes_seq": 6, "cause": "purchase"},
        None,
    ),
]


@pytest.mark.parametrize(("name", "overrides", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decide(name, overrides, expected):
    action = decide(change(**overrides), TODAY, MAX_AGE)
    if expected is None:
        assert action is None
    else:
        assert isinstance(action, expected)


def test_lapse_task_fields():
    lapsed_on = TODAY - timedelta(days=3)
    action = decide(change(effective_on=lapsed_on), TODAY, MAX_AGE)
    assert action == OpenFollowup(
        tenant_id="demo",
        customer_id="C1",
        lapse_seq=7,
        branch_id="shibuya",
        segment="loyal_lapsed",
        created_on=lapsed_on,
        due_on=TODAY,
        total_amount=Decimal("154000"),
        last_purchase_on=TODAY - timedelta(days=241),
    )
    assert action.reason == "lapsed"
    assert action.dedupe_key == "lapsed:C1:7" == lapse_key("C1", 7)
    assert action.priority == 0


def test_comeback_and_rules_reactivation():
    back = decide(
        change(from_segment="loyal_lapsed", to_segment="loyal_active", cause="purchase", seq=9),
        TODAY,
        MAX_AGE,
    )
    assert back == Reactivated(
        "demo",
        "C1",
        9,
        "loyal_active",
        TODAY - timedelta(days=1),
        comeback=True,
        from_segment="loyal_lapsed",
        branch_id="shibuya",
    )
    assert back.outcome == "comeback"
    # New borders make the customer active without a purchase: the task closes, no comeback.
    moved = decide(
        change(from_segment="loyal_lapsed", to_segment="loyal_active", cause="rules"),
        TODAY,
        MAX_AGE,
    )
    assert moved.comeback is False and moved.outcome == "reclassified"


def test_cancel_names_the_superseded_lapse():
    action = decide(
        change(
            seq=8,
            supersedes_seq=7,
            cause="purchase",
            from_segment="loyal_active",
            to_segment="loyal_active",
        ),
        TODAY,
        MAX_AGE,
    )
    assert action == CancelFollowup("demo", "C1", 7, TODAY)
    assert action.dedupe_key == "lapsed:C1:7"


def test_priority_puts_loyal_lapsed_first():
    ranked = sorted(SEGMENTS, key=priority)
    assert ranked[: len(VALUE_ORDER)] == list(VALUE_ORDER)
    assert ranked[0] == "loyal_lapsed"
    assert priority("loyal_active") == priority("anything else") == len(VALUE_ORDER)


@pytest.mark.parametrize(
    "key",
    [
        SortKey(0, Decimal("154000.00"), 1),
        SortKey(4, Decimal("0"), 2**40),
        SortKey(2, Decimal("-10.5"), 3),
    ],
)
def test_cursor_round_trip(key):
    cursor = encode_cursor(key)
    assert "=" not in cursor and "/" not in cursor  # safe in a query string as it is
    assert decode_cursor(cursor) == key


@pytest.mark.parametrize(
    "bad",
    ["", "x", "!!!", encode_cursor(SortKey(0, Decimal(1), 1))[:-3], "WzEsMl0", "WzEsIk5hTiIsMV0"],
)
def test_cursor_rejects_what_it_did_not_make(bad):
    with pytest.raises(ValueError):
        decode_cursor(bad)
