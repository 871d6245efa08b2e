"""The notifier's at-risk scan, morning digest, comeback counts and settings APIs against the
real PostgreSQL (and, for the digest, a real SMTP server): changes applied as the consumer
applies them (``Notifier.apply``), the classifier's tables written as the classifier would."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from decimal import Decimal
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller

from services.notifier import store
from services.notifier.consumer import Notifier
from services.notifier.domain import NotificationSettings
from services.notifier.workers import AtRiskScanner, DeliveryWorker
from shared.events import SegmentChange
from shared.settings import get_settings, today_in
from tests.helpers import free_port

pytestmark = pytest.mark.integration

TOKYO = ZoneInfo("Asia/Tokyo")


def today():
    return today_in(get_settings().default_time_zone)


def change(tenant, customer, seq, from_segment, to_segment, cause, **extra) -> SegmentChange:
    return SegmentChange(
        tenant_id=tenant,
        scope="all",
        customer_id=customer,
        seq=seq,
        from_segment=from_segment,
        to_segment=to_segment,
        effective_on=extra.pop("effective_on", today() - timedelta(days=1)),
        cause=cause,
        purchase_count=5,
        total_amount=Decimal(extra.pop("total", "100000")),
        first_purchase_on=None,
        last_purchase_on=today() - timedelta(days=241),
        tenure_days=None,
        lapse_days=None,
        home_branch_id=extra.pop("branch", "shibuya"),
        **extra,
    )


def lapse(tenant, customer, seq, tier, total="100000", branch="shibuya", **extra):
    return change(
        tenant, customer, seq, f"{tier}_active", f"{tier}_lapsed", "lapse", total=total,
        branch=branch, **extra,
    )  # fmt: skip


def back(tenant, customer, seq, tier, branch="shibuya"):
    return change(
        tenant, customer, seq, f"{tier}_lapsed", f"{tier}_active", "purchase",
        effective_on=today(), branch=branch,
    )  # fmt: skip


async def configure(pool, tenant, **settings) -> None:
    async with pool.acquire() as conn:
        await store.save_settings(conn, tenant, NotificationSettings.model_validate(settings), None)


# --- at risk -----------------------------------------------------------------------------------------


async def customer(pool, tenant, customer_id, *, segment, every, count, last_days_ago, voided=(),
                   lapse_due_in=None, branch="shibuya"):  # fmt: skip
    """A customer as the classifier leaves them: purchases (one order per ``every`` days, the
    last ``last_days_ago`` days ago, plus voided orders ``voided`` days ago) and the chain-wide
    state."""
    last = today() - timedelta(days=last_days_ago)
    days = [last - timedelta(days=every * n) for n in range(count)]
    rows = []
    for n, day in enumerate(days):
        at = datetime.combine(day, time(12), tzinfo=TOKYO)
        # Two lines of one order: one purchase.
        for line in (1, 2):
            rows.append((f"{customer_id}-{n}-{line}", "sale", at, day, Decimal(10000), f"O{n}"))
    for n, ago in enumerate(voided):
        day = today() - timedelta(days=ago)
        at = datetime.combine(day, time(12), tzinfo=TOKYO)
        rows.append((f"{customer_id}-v{n}", "sale", at, day, Decimal(10000), f"V{n}"))
        rows.append((f"{customer_id}-v{n}-void", "void", at, day, Decimal(0), f"V{n}"))
    await pool.executemany(
        "INSERT INTO purchases (tenant_id, event_id, branch_id, customer_id, kind, occurred_at,"
        " occurred_on, amount, order_id, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '{}')",
        [(tenant, e, branch, customer_id, k, at, on, amt, o) for e, k, at, on, amt, o in rows],
    )
    due = last + timedelta(days=240) if lapse_due_in is None else today() + timedelta(lapse_due_in)
    await pool.execute(
        "INSERT INTO customer_states (tenant_id, scope, customer_id, seq, segment, purchase_count,"
        " total_amount, first_purchase_on, last_purchase_on, home_branch_id, clock_on, lapse_due_on)"
        " VALUES ($1, 'all', $2, 1, $3, $4, $5, $6, $7, $8, $9, $10)",
        tenant,
        customer_id,
        segment,
        count,
        Decimal(20000 * count),
        min(days),
        last,
        branch,
        today(),
        due if segment.endswith("_active") else None,
    )


async def test_at_risk_raised_before_the_lapse_border_not_for_a_customer_on_rhythm(
    pool, client, tenant
):
    await pool.execute("INSERT INTO tenants (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", tenant)
    await configure(pool, tenant, recipients=[{"channel": "email", "address": f"hq@{tenant}.jp"}])
    # Buys every 20 days and has been silent 60: three times their rhythm, 180 days before the
    # lapse border.
    await customer(pool, tenant, "silent", segment="loyal_active", every=20, count=8,
                   last_days_ago=60)  # fmt: skip
    # Buys every 30 days, last 20 days ago: on rhythm.
    await customer(pool, tenant, "rhythm", segment="loyal_active", every=30, count=10,
                   last_days_ago=20)  # fmt: skip
    # Every 40 days, 70 silent: not yet 2x. Its voided orders (every 10 days) must not count.
    await customer(pool, tenant, "voids", segment="trendy_active", every=40, count=4,
                   last_days_ago=70, voided=(90, 100, 110, 120))  # fmt: skip
    # Past the border already (the lapse clock is about to move them): the lapse alert's job.
    await customer(pool, tenant, "border", segment="loyal_active", every=20, count=8,
                   last_days_ago=240, lapse_due_in=0)  # fmt: skip
    await customer(pool, tenant, "gone", segment="loyal_lapsed", every=20, count=8,
                   last_days_ago=300)  # fmt: skip
    await customer(pool, tenant, "steady", segment="steady_active", every=10, count=8,
                   last_days_ago=60)  # fmt: skip

    scanner = AtRiskScanner(pool, get_settings(), page_size=2)  # small pages: paging is used
    assert await scanner.scan({tenant}) == 1
    assert await scanner.scan({tenant}) == 0  # once per silence episode

    tasks = (await client.get("/v1/followups", params={"reason": "at_risk"})).json()["items"]
    assert [(t["customer_id"], t["segment"], t["due_on"]) for t in tasks] == [
        ("silent", "loyal_active", today().isoformat())
    ]
    assert tasks[0]["note"] == "【離脱予兆】優良客 silent 様 — 最終購入から60日（shibuya）"
    assert tasks[0]["last_purchase_on"] == (today() - timedelta(days=60)).isoformat()
    alerts = (await client.get("/v1/alerts", params={"kind": "at_risk"})).json()["items"]
    assert [(a["customer_id"], a["kind"]) for a in alerts] == [("silent", "at_risk")]
    assert [d["channel"] for d in alerts[0]["deliveries"]] == ["email"]
    [delivery] = await pool.fetch("SELECT body FROM alert_deliveries WHERE tenant_id = $1", tenant)
    assert "いつもの購入間隔はおよそ 20 日です" in delivery["body"]
    state = await pool.fetchrow(
        "SELECT segment, lapse_due_on FROM customer_states WHERE tenant_id = $1"
        " AND customer_id = 'silent'",
        tenant,
    )
    assert state["segment"] == "loyal_active" and state["lapse_due_on"] > today()

    # They buy again: the warning is closed, and no new one is raised for the new silence.
    await pool.execute(
        "UPDATE customer_states SET last_purchase_on = $2 WHERE tenant_id = $1"
        " AND customer_id = 'silent'",
        tenant,
        today(),
    )
    assert await scanner.scan({tenant}) == 0
    done = (await client.get("/v1/followups", params={"status": "done"})).json()["items"]
    assert [(t["customer_id"], t["outcome"]) for t in done] == [("silent", "bought")]


async def test_at_risk_policy_is_the_tenants(pool, tenant):
    await pool.execute("INSERT INTO tenants (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING", tenant)
    await customer(pool, tenant, "silent", segment="loyal_active", every=20, count=8,
                   last_days_ago=60)  # fmt: skip
    scanner = AtRiskScanner(pool, get_settings())
    await configure(pool, tenant, at_risk={"factor": 3.5})
    assert await scanner.scan({tenant}) == 0
    await configure(pool, tenant, at_risk={"enabled": False})
    assert await scanner.scan({tenant}) == 0
    await configure(pool, tenant, at_risk={"factor": 2.5, "min_days": 45})
    assert await scanner.scan({tenant}) == 1


# --- the morning digest --------------------------------------------------------------------------


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            (list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default))
        )
        return "250 OK"


@pytest.fixture(scope="module")
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


async def test_digest_is_one_email_per_branch_in_the_morning(pool, smtp, apply, tenant):
    controller, inbox = smtp
    hq, shibuya = f"hq@{tenant}.jp", f"shibuya@{tenant}.jp"
    await configure(
        pool,
        tenant,
        recipients=[
            {"channel": "email", "address": hq},
            {"channel": "email", "address": shibuya, "branch_id": "shibuya"},
        ],
        modes={"steady_lapsed": "digest", "first_lapsed": "digest"},
        digest_hour=8,
    )
    morning = datetime.combine(today(), time(8), tzinfo=TOKYO)
    at = lambda t: get_settings().model_copy(  # noqa: E731
        update={"now": t, "smtp_port": controller.port, "smtp_host": "127.0.0.1"}
    )
    night = Notifier(at(morning - timedelta(hours=2)))
    await apply(
        lapse(tenant, "D-steady", 1, "steady", "60000"),
        lapse(tenant, "D-first", 1, "first", "9000"),
        lapse(tenant, "D-back", 1, "first", "50000"),
        lapse(tenant, "I-loyal", 1, "loyal", "400000"),  # immediate
        notifier=night,
    )
    await apply(back(tenant, "D-back", 2, "first"), notifier=night)  # back before the morning

    def mails():
        return [m for rcpt, m in inbox.messages if shibuya in rcpt]

    await DeliveryWorker(pool, at(morning - timedelta(minutes=30))).run_once()
    assert [m["Subject"] for m in mails()] == ["【離脱】優良離脱客 I-loyal 様（shibuya）"]

    await DeliveryWorker(pool, at(morning + timedelta(minutes=1))).run_once()
    [_, digest] = mails()
    assert digest["Subject"] == f"【フォロー一覧】shibuya {today().isoformat()} — 2件"
    text = digest.get_content()
    assert text.index("D-steady") < text.index("D-first") and "D-back" not in text
    members = await pool.fetch(
        "SELECT a.customer_id, d.status, d.digest_id FROM alert_deliveries d"
        " JOIN alerts a ON a.id = d.alert_id WHERE d.tenant_id = $1 AND d.mode = 'digest'"
        " ORDER BY a.customer_id",
        tenant,
    )
    digest_row = await pool.fetchrow(
        "SELECT id, status FROM alert_deliveries WHERE tenant_id = $1 AND kind = 'digest'", tenant
    )
    assert [(m["customer_id"], m["status"]) for m in members] == [
        ("D-back", "cancelled"),
        ("D-first", "digested"),
        ("D-steady", "digested"),
    ]
    assert {m["digest_id"] for m in members if m["status"] == "digested"} == {digest_row["id"]}
    assert digest_row["status"] == "sent"
    assert digest["Message-ID"] == f"<{digest_row['id']}@kizuna.notifier>"

    await DeliveryWorker(pool, at(morning + timedelta(minutes=2))).run_once()
    assert len(mails()) == 2  # nothing twice


# --- comebacks ---------------------------------------------------------------------------------------


async def test_comeback_counts_show_follow_up_work_as_results(apply, client, tenant):
    await apply(
        lapse(tenant, "A", 1, "loyal", branch="shibuya"),
        lapse(tenant, "B", 1, "steady", branch="umeda"),
        lapse(tenant, "C", 1, "first", branch="shibuya"),
    )
    [a_task] = [
        t for t in (await client.get("/v1/followups")).json()["items"] if t["customer_id"] == "A"
    ]
    assert (await client.post(f"/v1/followups/{a_task['id']}/done")).status_code == 200
    await apply(back(tenant, "A", 2, "loyal"), back(tenant, "B", 2, "steady", branch="umeda"))
    await apply(back(tenant, "A", 2, "loyal"))  # redelivered: counted once

    day = today().isoformat()
    counts = (await client.get("/v1/comebacks", params={"from": day, "to": day})).json()
    assert counts["scope"] == "all" and (counts["from"], counts["to"]) == (day, day)
    assert (counts["comebacks"], counts["after_followup"], counts["after_contact"]) == (2, 2, 1)
    assert counts["by_segment"] == [
        {"segment": "loyal_lapsed", "comebacks": 1},
        {"segment": "steady_lapsed", "comebacks": 1},
    ]
    assert counts["by_day"] == [{"date": day, "comebacks": 2}]
    shibuya = (await client.get("/v1/comebacks", params={"scope": "shibuya"})).json()
    assert (shibuya["comebacks"], shibuya["after_contact"]) == (1, 1)
    yesterday = (today() - timedelta(days=1)).isoformat()
    before = (await client.get("/v1/comebacks", params={"to": yesterday})).json()
    assert before["comebacks"] == 0 and before["by_day"] == []
    wrong = await client.get("/v1/comebacks", params={"from": day, "to": yesterday})
    assert wrong.status_code == 422 and wrong.json()["error"]["problems"][0]["field"] == "from"


# --- settings and sequences over HTTP ----------------------------------------------------------------


async def test_notification_settings_api(client):
    initial = (await client.get("/v1/notifications/settings")).json()
    assert initial["version"] == 0 and initial["webhook_secret_set"] is False
    assert initial["settings"]["default_mode"] == "immediate"
    assert initial["settings"]["at_risk"] == {
        "enabled": True,
        "factor": 2.0,
        "min_days": 30,
        "segments": ["loyal_active", "trendy_active"],
    }
    assert "name" in initial["template_fields"] and "lapsed" in initial["default_templates"]

    bad = await client.put(
        "/v1/notifications/settings",
        json={"recipients": [{"channel": "email", "address": "nobody"}], "digest_hour": 25},
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    fields = {p["field"] for p in bad.json()["error"]["problems"]}
    assert fields == {"recipients.0", "digest_hour"}
    template = {"templates": {"lapsed": {"subject": "{name}", "body": ""}}}
    empty = await client.put("/v1/notifications/settings", json=template)
    assert [p["field"] for p in empty.json()["error"]["problems"]] == ["templates.lapsed.body"]

    hook = {"channel": "webhook", "address": "https://hooks.example.jp/k", "branch_id": "umeda"}
    refused = await client.put("/v1/notifications/settings", json={"recipients": [hook]})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "webhook_secret_required"

    secret = "a-long-enough-secret-1234"
    saved = await client.put(
        "/v1/notifications/settings",
        json={"recipients": [hook], "webhook_secret": secret, "modes": {"loyal_lapsed": "digest"}},
    )
    assert saved.status_code == 200 and saved.json()["version"] == 1
    again = await client.put("/v1/notifications/settings", json={"recipients": [hook]})
    assert again.status_code == 200  # the stored secret is kept
    shown = await client.get("/v1/notifications/settings")
    assert shown.json()["webhook_secret_set"] is True and shown.json()["version"] == 2
    assert secret not in shown.text and secret not in saved.text
    assert shown.json()["settings"]["recipients"] == [hook]
    assert shown.json()["settings"]["modes"] == {}  # a PUT replaces the whole settings


async def test_sequence_api(client):
    assert (await client.get("/v1/sequences/first_active")).status_code == 404
    unknown = await client.put("/v1/sequences/vip_active", json={"steps": []})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_segment"
    typo = await client.put(
        "/v1/sequences/first_active",
        json={"steps": [{"offset_days": 1, "channel": "post", "template": "{nmae} 様"}]},
    )
    assert typo.status_code == 422 and typo.json()["error"]["code"] == "invalid_request"
    assert "nmae" in json.dumps(typo.json())
    assert (await client.put("/v1/sequences/first_active")).status_code == 422  # no body
    assert (await client.delete("/v1/sequences/vip_active")).status_code == 404

    steps = [
        {"offset_days": 0, "channel": "post", "template": "{name} 様へお礼状"},
        {"offset_days": 8, "channel": "e-mail", "template": "{name} 様へQ&A集"},
    ]
    saved = await client.put("/v1/sequences/first_active", json={"name": "初回", "steps": steps})
    assert saved.status_code == 200 and saved.json()["version"] == 1
    got = (await client.get("/v1/sequences/first_active")).json()
    assert got["name"] == "初回"
    assert [(s["offset_days"], s["channel"]) for s in got["steps"]] == [(0, "post"), (8, "email")]
    listed = (await client.get("/v1/sequences")).json()["items"]
    assert [s["segment"] for s in listed] == ["first_active"]
    assert (await client.delete("/v1/sequences/first_active")).status_code == 204
    assert (await client.get("/v1/sequences/first_active")).status_code == 404
    assert (await client.delete("/v1/sequences/first_active")).status_code == 404
