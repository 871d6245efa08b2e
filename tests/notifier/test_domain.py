"""The notifier's decisions, table-driven: which segment changes open, close or cancel work."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import orjson
import pytest

from services.classifier.domain import advance
from services.classifier.store import outbox_rows
from services.notifier.consumer import SERVICE
from services.notifier.domain.followups import (
    VALUE_ORDER,
    OpenFollowup,
    Reactivated,
    SortKey,
    Withdrawal,
    decide,
    decode_cursor,
    encode_cursor,
    in_force,
    lapse_key,
    priority,
    withdrawal,
)
from shared.cpm import SEGMENTS, Purchase
from shared.deadletters import decode_records
from shared.events import SEGMENT_CHANGES, DeadLetter, SegmentChange
from shared.timeline import Borders
from tests.helpers import consumed
from tests.notifier import changes

TODAY = date(2026, 11, 23)
MAX_AGE = 30


# Tenant demo's loyal customer C1 lapsing yesterday (seq 7, last purchase 241 days ago).
LAPSE = dict(
    tenant="demo",
    customer="C1",
    seq=7,
    from_segment="loyal_active",
    to_segment="loyal_lapsed",
    cause="lapse",
    total="154000",
    effective_on=TODAY - timedelta(days=1),
    purchase_count=12,
    first_purchase_on=date(2024, 1, 5),
    last_purchase_on=TODAY - timedelta(days=241),
    tenure_days=300,
    lapse_days=240,
)


def change(**overrides) -> SegmentChange:
    """``LAPSE`` with any of its fields, or another field of ``SegmentChange``, changed."""
    return changes.change(**{**LAPSE, **overrides})


# What a comeback changes of ``change()``'s lapse: back to active by a purchase.
COMEBACK = {"from_segment": "loyal_lapsed", "to_segment": "loyal_active", "cause": "purchase"}


def lapse(seq: int, on: date, **overrides) -> SegmentChange:
    return change(seq=seq, effective_on=on, **overrides)


def comeback(seq: int, on: date, **overrides) -> SegmentChange:
    return change(seq=seq, effective_on=on, **{**COMEBACK, **overrides})


def correction(seq: int, on: date, from_segment: str = "loyal_active") -> SegmentChange:
    """The first message of a corrected timeline from ``on``: the customer is loyal_active
    that day (bought again), on the eve ``from_segment``."""
    return change(
        seq=seq,
        effective_on=on,
        from_segment=from_segment,
        to_segment="loyal_active",
        cause="purchase",
        corrects_from=on,
    )


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
        "lapsed on a day whose only event was a void (of someone else's order) opens",
        {"cause": "void"},
        OpenFollowup,
    ),
    ("lapsed on a day whose only event was a return opens", {"cause": "return"}, OpenFollowup),
    (
        "a return on the due day that also lowered the tier opens",
        {"cause": "return", "to_segment": "steady_lapsed"},
        OpenFollowup,
    ),
    (
        "a void-caused lapse older than max age: history",
        {"cause": "void", "effective_on": TODAY - timedelta(days=MAX_AGE + 1)},
        None,
    ),
    (
        "branch-scope void-caused lapse: nothing",
        {"cause": "void", "scope": "shibuya"},
        None,
    ),
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
    ("comeback closes", COMEBACK, Reactivated),
    (
        "comeback into another tier",
        {"from_segment": "steady_lapsed", "to_segment": "loyal_active", "cause": "purchase"},
        Reactivated,
    ),
    ("branch-scope comeback: nothing", {**COMEBACK, "scope": "shibuya"}, None),
    (
        "a correction's first message that moves nobody: only its withdrawal",
        {
            "from_segment": "loyal_active",
            "to_segment": "loyal_active",
            "cause": "purchase",
            "corrects_from": TODAY - timedelta(days=20),
        },
        None,
    ),
    (
        "a correction whose first message is a lapse opens a task",
        {"corrects_from": TODAY - timedelta(days=1)},
        OpenFollowup,
    ),
    (
        "a comeback in a corrected timeline is a comeback (its eve was lapsed)",
        {**COMEBACK, "corrects_from": TODAY - timedelta(days=1)},
        Reactivated,
    ),
    (
        "a lapse whose true date is older than the max age: nothing",
        {"effective_on": TODAY - timedelta(days=MAX_AGE + 1)},
        None,
    ),
    (
        "a lapse exactly the max age old opens",
        {"effective_on": TODAY - timedelta(days=MAX_AGE)},
        OpenFollowup,
    ),
    (
        "schema 1 supersedes looking like a comeback: no comeback (the customer never left)",
        {**COMEBACK, "supersedes_seq": 6},
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


# Issue 13: customer F0000532 of `kizuna bench faults` (200,000 events, seed 13): three sales,
# the last on 2026-02-28 (fledgling: 66 days of tenure), then on 2026-10-26, the day the lapse
# came due (240 days on), a void of another customer's order. The day's entry carries the
# events' cause (``void``), whether the void came in order or after the sweep had lapsed them.
BENCH_TODAY = date(2026, 11, 20)
F532_SALES = [
    Purchase("faults-42438", "sale", "b0", date(2025, 12, 24), Decimal(35872), "o42438"),
    Purchase("faults-65332", "sale", "b2", date(2026, 2, 20), Decimal(16561), "o65332"),
    Purchase("faults-74622", "sale", "b2", date(2026, 2, 28), Decimal(25204), "o74622"),
]
F532_VOID = Purchase("faults-190387", "void", "b1", date(2026, 10, 26), Decimal(0), "o190386")


def _published(state, events, since, *, clock=False):
    """What the classifier publishes on segment-changes for F0000532 (its own domain and
    serialisation), and its state after."""
    state, changes = advance(state, "all", events, since, Borders(), BENCH_TODAY, clock=clock)
    return state, [
        SegmentChange.model_validate_json(body)
        for c in changes
        for topic, _, body in outbox_rows("faults", "F0000532", c)
        if topic == SEGMENT_CHANGES
    ]


@pytest.mark.parametrize("sweep_first", [False, True], ids=["void in order", "sweep first"])
def test_a_lapse_on_the_day_of_someone_elses_void_opens_its_task(sweep_first):
    state, _ = _published(None, F532_SALES, F532_SALES[0].occurred_on)
    if sweep_first:
        state, swept = _published(state, None, None, clock=True)
        assert [(m.cause, m.effective_on) for m in swept] == [("lapse", date(2026, 10, 26))]
    _, late = _published(state, [*F532_SALES, F532_VOID], F532_VOID.occurred_on)
    assert [(m.from_segment, m.to_segment, m.cause, m.effective_on) for m in late] == [
        ("fledgling_active", "fledgling_lapsed", "void", date(2026, 10, 26))
    ]
    # (after the sweep it is a correction: it withdraws the clock's lapse, and its task comes
    # back to this change: tests/notifier/test_corrections.py)
    assert (late[0].corrects_from is not None) == sweep_first
    kept, _ = in_force(late, {"faults": BENCH_TODAY})
    [action] = [decide(m, BENCH_TODAY, MAX_AGE) for m in kept]
    assert action == OpenFollowup(
        tenant_id="faults",
        customer_id="F0000532",
        lapse_seq=late[0].seq,
        branch_id="b2",
        segment="fledgling_lapsed",
        created_on=date(2026, 10, 26),
        due_on=BENCH_TODAY,
        total_amount=Decimal(77637),
        last_purchase_on=date(2026, 2, 28),
    )


def test_comeback_and_rules_reactivation():
    back = decide(comeback(9, TODAY - timedelta(days=1)), TODAY, MAX_AGE)
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
    moved = decide(change(**{**COMEBACK, "cause": "rules"}), TODAY, MAX_AGE)
    assert moved.comeback is False and moved.outcome == "reclassified"


# (name, change overrides, expected withdrawal: (since_day, since_seq) or None)
WITHDRAWALS = [
    ("a plain change withdraws nothing", {}, None),
    (
        "corrects_from withdraws from that day",
        {"corrects_from": date(2026, 5, 1)},
        (date(2026, 5, 1), 0),
    ),
    ("schema 1 supersedes_seq withdraws exactly that change", {"supersedes_seq": 6}, (date.min, 6)),
    ("branch scope makes no work to withdraw", {"scope": "shibuya", "corrects_from": TODAY}, None),
]


@pytest.mark.parametrize(
    ("name", "overrides", "expected"), WITHDRAWALS, ids=[c[0] for c in WITHDRAWALS]
)
def test_withdrawal(name, overrides, expected):
    got = withdrawal(change(seq=8, **overrides), TODAY)
    if expected is None:
        assert got is None
    else:
        assert got == Withdrawal("demo", "C1", 8, expected[0], TODAY, expected[1])


D1, D2, D3 = TODAY - timedelta(days=9), TODAY - timedelta(days=6), TODAY - timedelta(days=3)

# (name, one batch's changes, seqs left to decide, withdrawals (seq, since_day))
IN_FORCE = [
    ("no correction: everything", [lapse(3, D1), comeback(4, D2)], [3, 4], []),
    (
        "a lapse withdrawn in its own batch never makes work",
        [lapse(3, D2), correction(4, D1)],
        [4],
        [(4, D1)],
    ),
    (
        "a re-dated lapse: the old one left out, the re-made one decided",
        [lapse(3, D1), correction(4, D1), lapse(5, D3)],
        [4, 5],
        [(4, D1)],
    ),
    (
        "a comeback withdrawn with its lapse: no comeback counted",
        [lapse(3, D1), comeback(4, D2), correction(5, D1)],
        [5],
        [(5, D1)],
    ),
    (
        "changes before the correction's day stay",
        [lapse(3, D1), comeback(4, D3), correction(5, D2, from_segment="loyal_lapsed")],
        [3, 5],
        [(5, D2)],
    ),
    (
        "changes after the correction (higher seq) are its new timeline",
        [correction(5, D1), lapse(6, D2), comeback(7, D3)],
        [5, 6, 7],
        [(5, D1)],
    ),
    (
        "another customer is not touched",
        [lapse(3, D2, customer="C2"), correction(4, D1)],
        [3, 4],
        [(4, D1)],
    ),
]


@pytest.mark.parametrize(
    ("name", "changes", "kept", "withdrawals"), IN_FORCE, ids=[c[0] for c in IN_FORCE]
)
def test_in_force(name, changes, kept, withdrawals):
    got, ws = in_force(list(reversed(changes)), {"demo": TODAY})
    assert sorted(c.seq for c in got) == kept
    assert [(w.seq, w.since_day) for w in ws] == withdrawals


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


@pytest.mark.parametrize("field", ["from_segment", "to_segment"])
def test_a_segment_outside_the_contract_is_dead_lettered_with_its_reason(field):
    record = consumed(
        SEGMENT_CHANGES, orjson.dumps({**change().model_dump(mode="json"), field: "vip"})
    )
    decoded, dead = decode_records([record], SegmentChange, SERVICE)
    assert decoded == [] and len(dead) == 1
    reason = DeadLetter.model_validate_json(dead[0][2]).reason
    assert reason.startswith(f"{field}: ") and "'vip'" in reason
