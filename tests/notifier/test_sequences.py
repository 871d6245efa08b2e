"""Follow-up sequences, table-driven: which changes schedule steps, when they fall due, what
they say, and which changes stop them."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.notifier.domain.sequences import (
    FollowupSequence,
    StopSequence,
    plan_sequence,
    sequence_key,
    stop_sequence,
)
from shared.events import SegmentChange
from tests.notifier import changes

TODAY = date(2026, 11, 23)
MAX_AGE = 30

# The after-follow of seeds/003 (お礼状 the next day, a call 8 days later, …), as offsets from
# the day the customer entered the segment.
AFTER_FOLLOW = FollowupSequence.model_validate(
    {
        "name": "アフターフォロー",
        "steps": [
            {"offset_days": 1, "channel": "post", "template": "{name} 様へお礼状を郵送"},
            {"offset_days": 9, "channel": "phone", "template": "{name} 様へお電話（{segment_ja}）"},
            {"offset_days": 20, "channel": "phone", "template": "飲み始めて3週間のお電話"},
            {"offset_days": 50, "channel": "e-mail", "template": "ニュースレター（{branch}）"},
        ],
    }
)


ENTERED = TODAY - timedelta(days=2)
# Tenant demo's customer C1 entering first_active by a first purchase two days ago.
FIRST_PURCHASE = dict(
    tenant="demo",
    customer="C1",
    seq=1,
    from_segment=None,
    to_segment="first_active",
    cause="purchase",
    total="5400",
    effective_on=ENTERED,
    purchase_count=1,
    first_purchase_on=ENTERED,
    last_purchase_on=ENTERED,
    tenure_days=0,
    lapse_days=0,
)


def change(**overrides) -> SegmentChange:
    """``FIRST_PURCHASE`` with any of its fields, or another field of ``SegmentChange``, changed."""
    return changes.change(**{**FIRST_PURCHASE, **overrides})


def test_entering_schedules_every_step_from_the_entry_day():
    tasks = plan_sequence(change(), AFTER_FOLLOW, TODAY, MAX_AGE)
    assert [(t.step, t.due_on, t.channel) for t in tasks] == [
        (0, ENTERED + timedelta(days=1), "post"),
        (1, ENTERED + timedelta(days=9), "phone"),
        (2, ENTERED + timedelta(days=20), "phone"),
        (3, ENTERED + timedelta(days=50), "email"),
    ]
    assert [t.note for t in tasks] == [
        "C1 様へお礼状を郵送",
        "C1 様へお電話（初回客）",
        "飲み始めて3週間のお電話",
        "ニュースレター（shibuya）",
    ]
    first = tasks[0]
    assert (first.reason, first.segment, first.entry_seq, first.created_on) == (
        "sequence",
        "first_active",
        1,
        ENTERED,
    )
    assert first.dedupe_key == sequence_key("C1", 1, 0) == "sequence:C1:1:0"
    assert first.branch_id == "shibuya" and first.total_amount == Decimal("5400")


def test_names_come_from_the_lookup_when_known():
    [first, *_] = plan_sequence(change(), AFTER_FOLLOW, TODAY, MAX_AGE, name="山田花子")
    assert first.note == "山田花子 様へお礼状を郵送"


# (name, change overrides, schedules?)
CASES = [
    ("a new customer enters first_active", {}, True),
    ("a move into the segment", {"from_segment": "first_lapsed", "seq": 4}, True),
    ("branch scope: nothing", {"scope": "shibuya"}, False),
    ("entry older than the max age: history", {"effective_on": TODAY - timedelta(days=31)}, False),
    ("entry exactly max age old", {"effective_on": TODAY - timedelta(days=30)}, True),
    ("schema 1: an undone premature lapse", {"supersedes_seq": 3, "seq": 4}, False),
    (
        "a correction's first message that moves nobody",
        {"from_segment": "first_active", "corrects_from": TODAY, "seq": 4},
        False,
    ),
    ("a correction entering the segment", {"corrects_from": TODAY, "seq": 4}, True),
    ("no segment change", {"from_segment": "first_active"}, False),
    ("customer left", {"to_segment": None, "from_segment": "first_active"}, False),
]


@pytest.mark.parametrize(("name", "overrides", "schedules"), CASES, ids=[c[0] for c in CASES])
def test_which_changes_schedule(name, overrides, schedules):
    assert bool(plan_sequence(change(**overrides), AFTER_FOLLOW, TODAY, MAX_AGE)) is schedules


def test_no_sequence_no_steps():
    assert plan_sequence(change(), None, TODAY, MAX_AGE) == []


def test_every_chain_wide_move_stops():
    moved = change(
        seq=2, from_segment="first_active", to_segment="fledgling_active", effective_on=TODAY
    )
    assert stop_sequence(moved) == StopSequence("demo", "C1", 2, "fledgling_active", TODAY)
    assert stop_sequence(change(scope="shibuya")) is None


@pytest.mark.parametrize(
    "payload",
    [
        {"steps": []},
        {"steps": [{"offset_days": -1, "channel": "post", "template": "x"}]},
        {"steps": [{"offset_days": 1, "channel": "pigeon", "template": "x"}]},
        {"steps": [{"offset_days": 1, "channel": "post", "template": ""}]},
        {"steps": [{"offset_days": 1, "channel": "post", "template": "{nmae} 様"}]},
        {"steps": [{"offset_days": 1, "channel": "post", "template": "x", "extra": 1}]},
        {"steps": [{"offset_days": 1, "channel": "post", "template": "x"}] * 51},
    ],
)
def test_invalid_sequences_are_refused(payload):
    with pytest.raises(ValidationError):
        FollowupSequence.model_validate(payload)
