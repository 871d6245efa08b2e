"""The notifier under corrections (issue 11) against the real PostgreSQL: segment changes applied
as the consumer applies them (``apply``: ``Notifier.apply``, one transaction per batch), in
different batch splits; tasks, alerts with their deliveries, comebacks and sequence steps read
back. Through the real broker: tests/notifier/test_consumer.py."""

from __future__ import annotations

import pytest

from services.notifier import store
from services.notifier.domain.sequences import FollowupSequence
from services.notifier.domain.settings import NotificationSettings
from shared.settings import get_settings
from tests.notifier import changes
from tests.notifier.changes import ago, today

pytestmark = pytest.mark.integration

MAX_AGE = get_settings().followup_max_age_days


def change(tenant, seq, frm, to, days_ago, cause="purchase", customer="C", **extra):
    """Customer C's change ``days_ago`` days ago, in the contract that carries corrections."""
    return changes.change(
        tenant, customer, seq, frm, to, cause, schema_version=2, effective_on=ago(days_ago), **extra
    )


def lapse(tenant, seq, days_ago, tier="loyal", customer="C", **extra):
    return changes.lapse(
        tenant, customer, seq, tier, schema_version=2, effective_on=ago(days_ago), **extra
    )


def comeback(tenant, seq, days_ago, tier="loyal", customer="C", **extra):
    return changes.back(
        tenant, customer, seq, tier, schema_version=2, effective_on=ago(days_ago), **extra
    )


def withdrawal_only(tenant, seq, days_ago, segment="loyal_active", **extra):
    """A correction's first message on segment-changes that moves nobody."""
    return change(tenant, seq, segment, segment, days_ago, corrects_from=ago(days_ago), **extra)


@pytest.fixture
async def webhook(pool, tenant):
    """Every lapse alert of the tenant gets a webhook delivery (immediate)."""
    settings = NotificationSettings.model_validate(
        {"recipients": [{"channel": "webhook", "address": "https://hooks.example.jp/kizuna"}]}
    )
    async with pool.acquire() as conn:
        await store.save_settings(conn, tenant, settings, "a-secret-of-sixteen-chars")


async def state(pool, tenant, customer="C"):
    """The customer's tasks, alerts with their deliveries' statuses, and comebacks."""
    async with pool.acquire() as conn:
        tasks = await store.customer_followups(conn, tenant, customer)
        comebacks = await store.customer_comebacks(conn, tenant, customer)
        alerts = await conn.fetch(
            "SELECT a.alert_key, a.seq, a.effective_on, a.status,"
            " array(SELECT d.status FROM alert_deliveries d WHERE d.alert_id = a.id) AS deliveries"
            " FROM alerts a WHERE a.tenant_id = $1 AND a.customer_id = $2 ORDER BY a.id",
            tenant,
            customer,
        )
    return tasks, [dict(a) for a in alerts], comebacks


async def test_a_withdrawn_lapse_cancels_its_task_and_alert(apply, pool, tenant, webhook):
    await apply(lapse(tenant, 3, days_ago=2))
    # A purchase dated before the lapse arrives late: the lapse no longer holds.
    result = await apply(withdrawal_only(tenant, 4, days_ago=5))
    tasks, alerts, comebacks = await state(pool, tenant)
    assert [(t.status, t.outcome, t.done_on) for t in tasks] == [
        ("cancelled", "withdrawn", today())
    ]
    assert alerts == [
        {
            "alert_key": "lapsed:C:3",
            "seq": 3,
            "effective_on": ago(2),
            "status": "withdrawn",
            "deliveries": ["cancelled"],
        }
    ]
    assert comebacks == [] and result.cancelled == 1
    # Redelivered (with the lapse it withdrew): nothing changes, nothing is counted again.
    again = await apply(lapse(tenant, 3, days_ago=2), withdrawal_only(tenant, 4, days_ago=5))
    assert (again.opened, again.cancelled, again.alerts) == (0, 0, 0)
    assert await state(pool, tenant) == (tasks, alerts, comebacks)


@pytest.mark.parametrize("split", ["one batch", "two batches", "three batches"])
async def test_a_re_dated_lapse_keeps_its_one_task_and_sends_nothing_again(
    apply, pool, tenant, webhook, split
):
    first, correction, redone = (
        lapse(tenant, 3, days_ago=10),
        withdrawal_only(tenant, 4, days_ago=20),
        lapse(tenant, 5, days_ago=4),  # the same tier lapses again, later: a late purchase
    )
    if split == "one batch":
        await apply(first)
        sent = await _send_all(pool, tenant)
        await apply(correction, redone)
    elif split == "two batches":
        await apply(first)
        sent = await _send_all(pool, tenant)
        await apply(correction)
        await apply(redone)
    else:  # the lapse and its correction in one batch: never shown, then made on its day
        await apply(first, correction)
        sent = 0
        await apply(redone)
    await apply(redone)  # redelivered
    tasks, alerts, comebacks = await state(pool, tenant)
    [task] = tasks
    assert (task.status, task.outcome, task.created_on, task.segment) == (
        "open",
        None,
        ago(4),
        "loyal_lapsed",
    )
    [alert] = alerts
    assert (alert["alert_key"], alert["seq"], alert["effective_on"], alert["status"]) == (
        "lapsed:C:5",
        5,
        ago(4),
        "raised",
    )
    # One delivery, ever: sent before the correction stays sent and is not queued again; never
    # sent (withdrawn in its own batch) it goes out now, once.
    assert alert["deliveries"] == (["sent"] if sent else ["pending"])
    assert comebacks == []


async def _send_all(pool, tenant) -> int:
    """What a delivery worker would record after sending every pending delivery."""
    result = await pool.execute(
        "UPDATE alert_deliveries SET status = 'sent', sent_at = now()"
        " WHERE tenant_id = $1 AND status = 'pending'",
        tenant,
    )
    return int(result.split()[-1])


async def test_a_clock_lapse_restated_by_a_void_on_its_day_keeps_its_one_task(
    apply, pool, tenant, webhook
):
    """Issue 13: the sweep lapses the customer; a void of someone else's order dated that day
    arrives later. The classifier restates the day (a correction) with the events' cause: the
    same lapse, so its one task stays open and its alert is not sent again."""
    await apply(lapse(tenant, 3, days_ago=2, tier="fledgling"))
    assert await _send_all(pool, tenant) == 1
    restated = change(
        tenant, 4, "fledgling_active", "fledgling_lapsed", 2, "void", corrects_from=ago(2)
    )
    await apply(restated)
    await apply(restated)  # redelivered
    tasks, alerts, comebacks = await state(pool, tenant)
    assert [(t.status, t.outcome, t.created_on, t.segment) for t in tasks] == [
        ("open", None, ago(2), "fledgling_lapsed")
    ]
    assert [(a["alert_key"], a["status"], a["deliveries"]) for a in alerts] == [
        ("lapsed:C:4", "raised", ["sent"])
    ]
    assert comebacks == []


async def test_a_lapse_re_dated_to_another_tier_is_a_new_lapse(apply, pool, tenant, webhook):
    await apply(lapse(tenant, 3, days_ago=10, tier="steady"))
    await apply(withdrawal_only(tenant, 4, days_ago=20, segment="steady_active"))
    await apply(lapse(tenant, 5, days_ago=4, tier="loyal"))
    tasks, alerts, _ = await state(pool, tenant)
    assert [(t.segment, t.status, t.outcome) for t in tasks] == [
        ("steady_lapsed", "cancelled", "withdrawn"),
        ("loyal_lapsed", "open", None),
    ]
    assert [(a["alert_key"], a["status"]) for a in alerts] == [
        ("lapsed:C:3", "withdrawn"),
        ("lapsed:C:5", "raised"),
    ]


async def test_a_lapse_re_dated_beyond_the_max_age_makes_no_task(apply, pool, tenant):
    await apply(lapse(tenant, 3, days_ago=2))
    # A late void of the last purchase: the customer really lapsed long ago.
    await apply(withdrawal_only(tenant, 4, days_ago=MAX_AGE + 40), lapse(tenant, 5, MAX_AGE + 5))
    tasks, alerts, _ = await state(pool, tenant)
    assert [(t.status, t.outcome) for t in tasks] == [("cancelled", "withdrawn")]
    assert [a["status"] for a in alerts] == ["withdrawn"]
    async with pool.acquire() as conn:
        assert (
            await store.list_followups(
                conn, tenant, status="open", branch_id=None, due_by=None, after=None, limit=10
            )
            == []
        )


async def test_a_comeback_after_a_withdrawn_lapse_is_not_counted(apply, pool, tenant):
    await apply(lapse(tenant, 3, days_ago=9))
    await apply(comeback(tenant, 4, days_ago=3))
    tasks, _, comebacks = await state(pool, tenant)
    assert [(t.status, t.outcome) for t in tasks] == [("done", "comeback")] and len(comebacks) == 1
    # Late history shows the customer bought before the lapse date: they never left.
    await apply(withdrawal_only(tenant, 5, days_ago=12))
    tasks, _, comebacks = await state(pool, tenant)
    assert [(t.status, t.outcome) for t in tasks] == [("cancelled", "withdrawn")]
    assert comebacks == []
    async with pool.acquire() as conn:
        counts = await store.comeback_counts(conn, tenant, None, ago(30), today())
    assert counts["comebacks"] == 0


async def test_a_re_dated_comeback_reopens_and_closes_the_lapse_on_its_new_day(apply, pool, tenant):
    await apply(lapse(tenant, 3, days_ago=9), comeback(tenant, 4, days_ago=2))
    # A purchase between the lapse and the comeback arrives late: back earlier than thought.
    await apply(comeback(tenant, 5, days_ago=6, corrects_from=ago(6)))
    tasks, _, comebacks = await state(pool, tenant)
    [task] = tasks
    assert (task.status, task.outcome, task.done_on) == ("done", "comeback", ago(6))
    assert [(c["seq"], c["came_back_on"], c["followup_id"]) for c in comebacks] == [
        (5, ago(6), task.id)
    ]


async def test_corrections_of_another_customer_or_scope_touch_nothing(apply, pool, tenant):
    await apply(lapse(tenant, 3, days_ago=2), lapse(tenant, 7, days_ago=2, customer="D"))
    await apply(
        withdrawal_only(tenant, 8, days_ago=5, customer="D"),
        withdrawal_only(tenant, 9, days_ago=5, scope="shibuya"),
    )
    tasks, _, _ = await state(pool, tenant)
    assert [(t.status, t.outcome) for t in tasks] == [("open", None)]
    others, _, _ = await state(pool, tenant, "D")
    assert [(t.status, t.outcome) for t in others] == [("cancelled", "withdrawn")]


STEPS = {
    "name": "アフターフォロー",
    "steps": [
        {"offset_days": 1, "channel": "post", "template": "{name} 様へお礼状を郵送"},
        {"offset_days": 20, "channel": "phone", "template": "{name} 様へお電話"},
    ],
}


async def sequence_steps(pool, tenant, customer="C"):
    async with pool.acquire() as conn:
        tasks = await store.customer_followups(conn, tenant, customer)
    return [(t.step, t.status, t.outcome, t.created_on, t.due_on) for t in tasks]


async def test_sequences_follow_the_corrected_timeline(apply, pool, tenant):
    async with pool.acquire() as conn:
        await store.save_sequence(
            conn, tenant, "first_active", FollowupSequence.model_validate(STEPS)
        )
    await apply(change(tenant, 1, None, "first_active", days_ago=10))
    # The first purchase was earlier than known: the same entry, re-dated; steps move with it.
    await apply(change(tenant, 2, None, "first_active", days_ago=15, corrects_from=ago(15)))
    assert await sequence_steps(pool, tenant) == [
        (0, "open", None, ago(15), ago(14)),
        (1, "open", None, ago(15), ago(-5)),
    ]
    # A move out of the segment stops the step not yet due; withdrawn, the step is back.
    await apply(change(tenant, 3, "first_active", "fledgling_active", days_ago=2))
    assert [s[:3] for s in await sequence_steps(pool, tenant)] == [
        (0, "open", None),
        (1, "cancelled", "left_segment"),
    ]
    await apply(withdrawal_only(tenant, 4, days_ago=2, segment="first_active"))
    assert [s[:3] for s in await sequence_steps(pool, tenant)] == [
        (0, "open", None),
        (1, "open", None),
    ]
    # The entry itself withdrawn (every purchase voided as of its day): its steps go.
    await apply(change(tenant, 5, None, None, days_ago=15, corrects_from=ago(15)))
    assert [s[:3] for s in await sequence_steps(pool, tenant)] == [
        (0, "cancelled", "withdrawn"),
        (1, "cancelled", "withdrawn"),
    ]


async def test_a_task_staff_did_stays_done_through_a_correction_and_is_not_made_twice(
    apply, pool, tenant
):
    await apply(lapse(tenant, 3, days_ago=10))
    async with pool.acquire() as conn:
        [task] = await store.customer_followups(conn, tenant, "C")
        await store.mark_done(conn, tenant, task.id, today())
    # Re-dated by a correction: staff already phoned about this lapse; nothing new to do.
    await apply(withdrawal_only(tenant, 4, days_ago=20), lapse(tenant, 5, days_ago=4))
    tasks, alerts, _ = await state(pool, tenant)
    assert [(t.id, t.status, t.outcome, t.created_on) for t in tasks] == [
        (task.id, "done", "done", ago(4))
    ]
    assert [(a["alert_key"], a["status"]) for a in alerts] == [("lapsed:C:5", "raised")]
    # Withdrawn and not made again: what staff did stays on record.
    await apply(withdrawal_only(tenant, 6, days_ago=8))
    tasks, alerts, _ = await state(pool, tenant)
    assert [(t.status, t.outcome) for t in tasks] == [("done", "done")]
    assert [a["status"] for a in alerts] == ["withdrawn"]
