"""The notifier end to end on the real broker and PostgreSQL: segment changes published with
aiokafka, consumed by the service's own consumer (``build_consumer``) running in-process, read
back over HTTP. One consumer serves the module: a group join on the embedded broker is slow."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from services.notifier import store
from services.notifier.app import GROUP
from services.notifier.consumer import Notifier
from shared.events import DEADLETTER, SEGMENT_CHANGES, DeadLetter
from shared.outbox import pending_outbox
from shared.settings import get_settings
from tests.notifier.changes import change, today

pytestmark = pytest.mark.integration


async def tasks_of(pool, tenant, customer):
    async with pool.acquire() as conn:
        return await store.customer_followups(conn, tenant, customer)


def opened_total() -> float:
    return REGISTRY.get_sample_value("kizuna_followups_opened_total", {"reason": "lapsed"}) or 0.0


async def test_lapse_opens_exactly_one_task_under_redelivery(publish, client, service_pool, tenant):
    await publish(drain=True)  # the counter is process-wide: nothing else may be under way
    before = opened_total()
    lapsed = change(tenant, "C1", 7, "loyal_active", "loyal_lapsed", "lapse", "154000")
    await publish(lapsed, lapsed)
    await publish(lapsed)
    assert opened_total() == before + 1

    items = (await client.get("/v1/followups")).json()["items"]
    assert [(i["customer_id"], i["segment"], i["reason"], i["status"]) for i in items] == [
        ("C1", "loyal_lapsed", "lapsed", "open")
    ]
    assert items[0]["branch_id"] == "shibuya" and items[0]["due_on"] == today().isoformat()
    assert len(await tasks_of(service_pool, tenant, "C1")) == 1


async def test_loyal_lapsed_first(publish, client, tenant):
    await publish(
        change(tenant, "steady", 3, "steady_active", "steady_lapsed", "lapse", "65000"),
        change(tenant, "first", 1, "first_active", "first_lapsed", "lapse", "300000"),
        change(tenant, "loyal", 9, "loyal_active", "loyal_lapsed", "lapse", "90000"),
        change(tenant, "trendy", 4, "trendy_active", "trendy_lapsed", "lapse", "120000"),
        change(tenant, "loyal-more", 5, "loyal_active", "loyal_lapsed", "lapse", "250000"),
    )
    items = (await client.get("/v1/followups", params={"due": "today"})).json()["items"]
    assert [i["customer_id"] for i in items] == ["loyal-more", "loyal", "trendy", "steady", "first"]


async def test_branch_old_and_other_changes_open_nothing(publish, client, tenant):
    old = today() - timedelta(days=get_settings().followup_max_age_days + 1)
    await publish(
        change(tenant, "branch", 2, "loyal_active", "loyal_lapsed", "lapse", scope="shibuya"),
        change(tenant, "history", 2, "loyal_active", "loyal_lapsed", "lapse", effective_on=old),
        change(tenant, "buyer", 2, "first_active", "fledgling_active", "purchase"),
    )
    assert (await client.get("/v1/followups")).json()["items"] == []


async def test_comeback_closes_the_task(publish, client, service_pool, tenant):
    await publish(change(tenant, "C2", 3, "steady_active", "steady_lapsed", "lapse"))
    [opened] = (await client.get("/v1/followups")).json()["items"]
    comeback = change(
        tenant, "C2", 4, "steady_lapsed", "steady_active", "purchase", effective_on=today()
    )
    await publish(comeback, comeback)

    assert (await client.get("/v1/followups")).json()["items"] == []
    [closed] = (await client.get("/v1/followups", params={"status": "done"})).json()["items"]
    assert closed["id"] == opened["id"] and closed["outcome"] == "comeback"
    async with service_pool.acquire() as conn:
        comebacks = await store.customer_comebacks(conn, tenant, "C2")
    assert [(c["seq"], c["followup_id"]) for c in comebacks] == [(4, opened["id"])]


@pytest.mark.parametrize("contract", ["corrects_from", "schema 1 supersedes_seq"])
async def test_a_withdrawn_lapse_is_cancelled(publish, client, service_pool, tenant, contract):
    lapsed_on = today() - timedelta(days=2)
    await publish(change(tenant, "C3", 5, "loyal_active", "loyal_lapsed", "lapse"))
    # Late history: a purchase before the lapse date; the customer never left.
    if contract == "corrects_from":
        fix = dict(corrects_from=lapsed_on - timedelta(days=3), schema_version=2)
    else:
        fix = dict(supersedes_seq=5)
    correction = change(
        tenant, "C3", 6, "loyal_active", "loyal_active", "purchase",
        effective_on=lapsed_on - timedelta(days=3), **fix,
    )  # fmt: skip
    await publish(correction, correction)
    [task] = await tasks_of(service_pool, tenant, "C3")
    assert (task.status, task.outcome) == ("cancelled", "withdrawn")
    async with service_pool.acquire() as conn:
        assert await store.customer_comebacks(conn, tenant, "C3") == []
        assert (
            await conn.fetchval(
                "SELECT status FROM alerts WHERE tenant_id = $1 AND customer_id = 'C3'", tenant
            )
            == "withdrawn"
        )
    assert (await client.get("/v1/followups")).json()["items"] == []


async def test_a_re_dated_lapse_keeps_its_one_task(publish, client, service_pool, tenant):
    await publish(
        change(tenant, "C4", 5, "loyal_active", "loyal_lapsed", "lapse", effective_on=today() - timedelta(days=9))
    )  # fmt: skip
    [before] = (await client.get("/v1/followups")).json()["items"]
    # A purchase dated before the lapse arrives: the lapse comes 6 days later than thought.
    correction = change(
        tenant, "C4", 6, "loyal_active", "loyal_active", "purchase",
        effective_on=today() - timedelta(days=20), corrects_from=today() - timedelta(days=20),
        schema_version=2,
    )  # fmt: skip
    redone = change(
        tenant, "C4", 7, "loyal_active", "loyal_lapsed", "lapse",
        effective_on=today() - timedelta(days=3), schema_version=2,
    )  # fmt: skip
    await publish(correction, redone, redone)
    [after] = (await client.get("/v1/followups")).json()["items"]
    assert after["id"] == before["id"] and after["status"] == "open"
    assert after["created_on"] == (today() - timedelta(days=3)).isoformat()
    assert after["due_on"] == before["due_on"]
    async with service_pool.acquire() as conn:
        alerts = await conn.fetch(
            "SELECT alert_key, status FROM alerts WHERE tenant_id = $1 AND customer_id = 'C4'",
            tenant,
        )
    assert [tuple(a) for a in alerts] == [("lapsed:C4:7", "raised")]


async def test_undecodable_goes_to_the_dead_letter_outbox(publish, client, service_pool, tenant):
    key = f"{tenant}:bad".encode()
    wrong = change(tenant, "bad", 1, "loyal_active", "loyal_lapsed", "lapse").model_dump(
        mode="json"
    )
    wrong_segment = json.dumps({**wrong, "to_segment": "vip_lapsed"}).encode()
    await publish((key, b"{not json"), (key, wrong_segment))
    # Processing went on past them: a good change behind them is handled.
    await publish(change(tenant, "good", 1, "first_active", "first_lapsed", "lapse"))

    async with service_pool.acquire() as conn:
        pending = await pending_outbox(conn)
    letters = [
        DeadLetter.model_validate_json(payload)
        for topic, k, payload in pending
        if topic == DEADLETTER and k == key.decode()
    ]
    assert [(d.service, d.source_topic) for d in letters] == [("notifier", SEGMENT_CHANGES)] * 2
    assert letters[0].value == "{not json" and "json" in letters[0].reason.lower()
    assert "vip_lapsed" in letters[1].reason
    assert [i["customer_id"] for i in (await client.get("/v1/followups")).json()["items"]] == [
        "good"
    ]


async def test_restart_replays_without_duplicates(publish, service, service_pool, client, tenant):
    lapsed = change(tenant, "C4", 2, "trendy_active", "trendy_lapsed", "lapse")
    await publish(lapsed)
    await service.stop()
    # The worst restart: offsets lost (as if every batch crashed before its commit), so the
    # whole topic is delivered again, and the same change is published once more.
    await service_pool.execute("DELETE FROM consumer_offsets WHERE group_id = $1", GROUP)
    await service.start()
    await publish(lapsed)

    assert len(await tasks_of(service_pool, tenant, "C4")) == 1
    assert [i["customer_id"] for i in (await client.get("/v1/followups")).json()["items"]] == ["C4"]


async def test_unexpected_failure_is_retried_and_loses_nothing(
    publish, service, service_pool, monkeypatch, tenant
):
    real_apply = Notifier.apply
    failures = []

    async def apply_failing_once(self, conn, changes):
        if not failures and any(c.tenant_id == tenant for c in changes):
            failures.append(1)
            raise RuntimeError("a bug the consumer does not retry by itself")
        return await real_apply(self, conn, changes)

    monkeypatch.setattr(Notifier, "apply", apply_failing_once)
    await publish(change(tenant, "C5", 3, "fledgling_active", "fledgling_lapsed", "lapse"))

    # the batch failed once and was retried from its offsets (shared.consumer.PgOffsetConsumer)
    assert failures
    assert len(await tasks_of(service_pool, tenant, "C5")) == 1
    assert service.healthy
