"""The notifier's store and HTTP API against the real PostgreSQL: changes applied as the
consumer applies them (``Notifier.apply``, no broker), tasks read and closed over HTTP."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from services.notifier import store
from services.notifier.app import app
from services.notifier.consumer import Notifier
from shared.events import SegmentChange
from shared.settings import get_settings, today_in, utcnow
from tests.helpers import api_key

pytestmark = pytest.mark.integration


def today():
    return today_in(get_settings().default_time_zone)


def lapse(
    tenant,
    customer,
    seq,
    segment="loyal_lapsed",
    total="100000",
    branch="shibuya",
    days_ago=1,
    scope="all",
):
    tier = segment.rsplit("_", 1)[0]
    return SegmentChange(
        tenant_id=tenant,
        scope=scope,
        customer_id=customer,
        seq=seq,
        from_segment=f"{tier}_active",
        to_segment=segment,
        effective_on=today() - timedelta(days=days_ago),
        cause="lapse",
        purchase_count=5,
        total_amount=Decimal(total),
        first_purchase_on=None,
        last_purchase_on=None,
        tenure_days=None,
        lapse_days=240,
        home_branch_id=branch,
    )


def back(
    tenant,
    customer,
    seq,
    segment="loyal_active",
    cause="purchase",
    supersedes=None,
    from_segment=None,
):
    tier = segment.rsplit("_", 1)[0]
    return SegmentChange(
        tenant_id=tenant,
        scope="all",
        customer_id=customer,
        seq=seq,
        from_segment=from_segment or f"{tier}_lapsed",
        to_segment=segment,
        effective_on=today(),
        cause=cause,
        purchase_count=6,
        total_amount=Decimal("110000"),
        first_purchase_on=None,
        last_purchase_on=None,
        tenure_days=None,
        lapse_days=0,
        home_branch_id="shibuya",
        supersedes_seq=supersedes,
    )


async def test_list_is_most_valuable_first_and_pages(apply, client, tenant):
    await apply(
        lapse(tenant, "first", 1, "first_lapsed", "900000"),
        lapse(tenant, "steady", 1, "steady_lapsed", "60000"),
        lapse(tenant, "loyal-small", 1, "loyal_lapsed", "80000"),
        lapse(tenant, "trendy", 1, "trendy_lapsed", "200000"),
        lapse(tenant, "loyal-big", 1, "loyal_lapsed", "500000"),
        lapse(tenant, "fledgling", 1, "fledgling_lapsed", "30000"),
        lapse(tenant, "loyal-tie", 1, "loyal_lapsed", "80000"),
    )
    expected = ["loyal-big", "loyal-small", "loyal-tie", "trendy", "steady", "fledgling", "first"]

    whole = (await client.get("/v1/followups")).json()
    assert [i["customer_id"] for i in whole["items"]] == expected
    assert whole["next"] is None
    first = whole["items"][0]
    assert (
        first["segment"] == "loyal_lapsed"
        and first["reason"] == "lapsed"
        and first["status"] == "open"
    )
    assert first["branch_id"] == "shibuya" and Decimal(first["total_amount"]) == 500000
    assert first["created_on"] == (today() - timedelta(days=1)).isoformat()
    assert first["due_on"] == today().isoformat()

    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/followups", params=params)).json()
        assert len(page["items"]) <= 2
        seen += [i["customer_id"] for i in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == expected


async def test_scope_filters_by_branch_and_tenants_are_apart(apply, client, tenant):
    await apply(
        lapse(tenant, "A", 1, branch="shibuya"),
        lapse(tenant, "B", 1, branch="umeda"),
        lapse(tenant, "C", 1, branch=None),
        lapse(tenant + "-other", "D", 1, branch="shibuya"),
    )
    ids = lambda r: sorted(i["customer_id"] for i in r.json()["items"])  # noqa: E731
    assert ids(await client.get("/v1/followups", params={"scope": "shibuya"})) == ["A"]
    assert ids(await client.get("/v1/followups", params={"scope": "umeda"})) == ["B"]
    assert ids(await client.get("/v1/followups", params={"scope": "all"})) == ["A", "B", "C"]


async def test_branch_and_old_lapses_open_nothing(apply, pool, tenant):
    max_age = get_settings().followup_max_age_days
    applied = await apply(
        lapse(tenant, "branch-only", 1, scope="shibuya"),
        lapse(tenant, "history", 1, days_ago=max_age + 1),
        lapse(tenant, "recent", 1, days_ago=max_age),
    )
    assert applied.opened == 1
    async with pool.acquire() as conn:
        assert await store.customer_followups(conn, tenant, "branch-only") == []
        assert await store.customer_followups(conn, tenant, "history") == []
        assert len(await store.customer_followups(conn, tenant, "recent")) == 1


async def test_due_today_carries_undone_tasks_over(apply, client, tenant):
    # Noticed three days ago (the clock pinned back then, as KIZUNA_NOW would), still undone.
    then = get_settings().model_copy(update={"now": utcnow() - timedelta(days=3)})
    await apply(lapse(tenant, "carried", 1, days_ago=4), notifier=Notifier(then))
    await apply(lapse(tenant, "fresh", 1))
    items = (await client.get("/v1/followups", params={"due": "today"})).json()["items"]
    by_customer = {i["customer_id"]: i for i in items}
    assert set(by_customer) == {"carried", "fresh"}
    assert by_customer["carried"]["due_on"] == (today() - timedelta(days=3)).isoformat()


async def test_mark_done_is_idempotent_and_tenant_bound(apply, client, service_pool, tenant):
    await apply(lapse(tenant, "A", 1))
    [item] = (await client.get("/v1/followups")).json()["items"]

    wrong = await client.post(f"/v1/followups/{item['id']}/done", json={"outcome": "maybe"})
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "invalid_request"
    assert [p["field"] for p in wrong.json()["error"]["problems"]] == ["outcome"]
    assert [i["id"] for i in (await client.get("/v1/followups")).json()["items"]] == [item["id"]]
    done = await client.post(f"/v1/followups/{item['id']}/done")
    assert done.status_code == 200
    assert done.json()["status"] == "done" and done.json()["outcome"] == "done"
    assert done.json()["done_on"] == today().isoformat()
    again = await client.post(f"/v1/followups/{item['id']}/done")
    assert again.status_code == 200 and again.json() == done.json()

    assert (await client.get("/v1/followups")).json()["items"] == []
    listed = (await client.get("/v1/followups", params={"status": "done"})).json()["items"]
    assert [i["id"] for i in listed] == [item["id"]]

    other = await client.post(
        f"/v1/followups/{item['id']}/done", headers=await api_key(service_pool, tenant + "-x")
    )
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    missing = await client.post("/v1/followups/999999999/done")
    assert missing.status_code == 404


async def test_staff_say_what_came_of_a_followup(apply, client, service_pool, tenant):
    await apply(lapse(tenant, "A", 1))
    [item] = (await client.get("/v1/followups")).json()["items"]
    body = {"outcome": "reached", "note": "お話しできた"}
    done = await client.post(f"/v1/followups/{item['id']}/done", json=body)
    assert done.status_code == 200 and done.json()["status"] == "done"
    stored = await service_pool.fetchrow(
        "SELECT staff_outcome, staff_note FROM followups WHERE id = $1", item["id"]
    )
    assert tuple(stored) == ("reached", "お話しできた")


async def test_bad_requests_say_what_is_wrong(client):
    bad_cursor = await client.get("/v1/followups", params={"cursor": "nonsense"})
    assert bad_cursor.status_code == 422 and bad_cursor.json()["error"]["code"] == "invalid_cursor"
    bad_status = await client.get("/v1/followups", params={"status": "maybe"})
    assert bad_status.status_code == 422
    assert bad_status.json()["error"]["problems"][0]["field"].endswith("status")
    assert (await client.get("/v1/followups", params={"limit": 0})).status_code == 422
    assert (await client.get("/v1/followups", params={"due": "tomorrow"})).status_code == 422


async def test_comeback_closes_and_counts_once(apply, pool, tenant):
    await apply(lapse(tenant, "A", 3))
    first = await apply(back(tenant, "A", 4))
    again = await apply(back(tenant, "A", 4), lapse(tenant, "A", 3))  # redelivered, out of order
    assert (first.comebacks, again.comebacks, again.opened) == (1, 0, 0)
    async with pool.acquire() as conn:
        [task] = await store.customer_followups(conn, tenant, "A")
        comebacks = await store.customer_comebacks(conn, tenant, "A")
    assert (task.status, task.outcome, task.done_on) == ("done", "comeback", today())
    assert comebacks == [
        {"seq": 4, "segment": "loyal_active", "came_back_on": today(), "followup_id": task.id}
    ]


async def test_one_batch_with_lapse_comeback_and_second_lapse(apply, pool, tenant):
    # Closing is keyed by seq, not by arrival: the second lapse's task stays open.
    await apply(lapse(tenant, "A", 1), back(tenant, "A", 2), lapse(tenant, "A", 3))
    async with pool.acquire() as conn:
        tasks = await store.customer_followups(conn, tenant, "A")
        comebacks = await store.customer_comebacks(conn, tenant, "A")
    assert [(t.status, t.outcome) for t in tasks] == [("done", "comeback"), ("open", None)]
    assert [c["followup_id"] for c in comebacks] == [tasks[0].id]


async def test_supersedes_cancels_without_a_comeback(apply, client, pool, tenant):
    await apply(lapse(tenant, "A", 5), lapse(tenant, "B", 2))
    await apply(back(tenant, "A", 6, supersedes=5, from_segment="loyal_active"))
    # Even shaped like a comeback, a superseding change is none.
    await apply(back(tenant, "B", 3, supersedes=2))
    async with pool.acquire() as conn:
        for customer in ("A", "B"):
            [task] = await store.customer_followups(conn, tenant, customer)
            assert (task.status, task.outcome) == ("cancelled", "withdrawn")
            assert await store.customer_comebacks(conn, tenant, customer) == []
    assert (await client.get("/v1/followups")).json()["items"] == []
    refused = await client.post(f"/v1/followups/{task.id}/done")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "cancelled"


async def test_new_borders_close_without_counting_a_comeback(apply, pool, tenant):
    await apply(lapse(tenant, "A", 1))
    await apply(back(tenant, "A", 2, cause="rules"))
    async with pool.acquire() as conn:
        [task] = await store.customer_followups(conn, tenant, "A")
        assert (task.status, task.outcome) == ("done", "reclassified")
        assert await store.customer_comebacks(conn, tenant, "A") == []


async def test_staff_done_task_is_credited_by_a_later_comeback(apply, client, pool, tenant):
    await apply(lapse(tenant, "A", 1))
    [item] = (await client.get("/v1/followups")).json()["items"]
    await client.post(f"/v1/followups/{item['id']}/done")
    await apply(back(tenant, "A", 2))
    async with pool.acquire() as conn:
        [task] = await store.customer_followups(conn, tenant, "A")
        [comeback] = await store.customer_comebacks(conn, tenant, "A")
    assert task.outcome == "done"  # the staff's outcome stays
    assert comeback["followup_id"] == task.id


@pytest.mark.parametrize(
    ("method", "path", "model"),
    [
        ("put", "/v1/notifications/settings", "SettingsBody"),
        ("put", "/v1/sequences/{segment}", "FollowupSequence"),
        ("post", "/v1/followups/{followup_id}/done", "DoneBody"),
    ],
)
def test_bodies_are_documented_from_their_models(method, path, model):
    body = app.openapi()["paths"][path][method]["requestBody"]["content"]["application/json"]
    assert f"#/components/schemas/{model}" in json.dumps(body)
