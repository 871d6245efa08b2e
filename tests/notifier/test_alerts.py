"""The notifier's alerting rules, table-driven: templates, routing, deterministic deliveries,
retries, the morning digest's time, the settings' validation and the at-risk rule."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes, policy

import pytest
from pydantic import ValidationError

from services.notifier import messages
from services.notifier.domain.alerts import (
    SendResult,
    after_attempt,
    at_risk_key,
    backoff_seconds,
    digest_id,
    next_digest_at,
    plan_alert,
)
from services.notifier.domain.at_risk import AtRiskCandidate, assess_at_risk, usual_gap_days
from services.notifier.domain.settings import AtRiskPolicy, NotificationSettings, Recipient

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)  # 10:30 in Tokyo

SETTINGS = NotificationSettings(
    recipients=(
        Recipient(channel="email", address="hq@example.jp"),
        Recipient(channel="email", address="shibuya@example.jp", branch_id="shibuya"),
        Recipient(channel="email", address="umeda@example.jp", branch_id="umeda"),
        Recipient(channel="webhook", address="https://hooks.example.jp/all"),
        Recipient(channel="webhook", address="https://hooks.example.jp/umeda", branch_id="umeda"),
    ),
    modes={"first_lapsed": "digest"},
)


def lapse_alert(settings=SETTINGS, **overrides):
    fields = dict(
        kind="lapsed",
        tenant_id="demo",
        customer_id="C001",
        name=None,
        branch_id="shibuya",
        segment="loyal_lapsed",
        total_amount=Decimal("154000"),
        last_purchase_on=TODAY - timedelta(days=241),
        effective_on=TODAY - timedelta(days=1),
        seq=7,
        settings=settings,
        today=TODAY,
        now=NOW,
        zone="Asia/Tokyo",
    )
    fields.update(overrides)
    return plan_alert(**fields)


# --- templates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "fields", "expected"),
    [
        ("{name} 様", {"name": "山田"}, "山田 様"),
        ("{name}様 {segment_ja}", {"name": "C1", "segment_ja": "優良客"}, "C1様 優良客"),
        ("{unknown} stays", {}, "{unknown} stays"),
        ("{name.__class__}", {"name": "x"}, "{name.__class__}"),  # nothing is evaluated
        ("{name!r} {0}", {"name": "x"}, "{name!r} {0}"),
        ("no fields", {"name": "x"}, "no fields"),
    ],
)
def test_render(template, fields, expected):
    assert messages.render(template, fields) == expected


def test_customer_fields_use_the_id_until_names_exist_and_japanese_segment_names():
    fields = messages.customer_fields(
        customer_id="C001",
        name=None,
        segment="loyal_lapsed",
        last_purchase_on=date(2026, 3, 27),
        branch_id=None,
        total_amount=Decimal("1234567.00"),
        today=TODAY,
    )
    assert fields["name"] == "C001"
    assert fields["segment_ja"] == "優良離脱客"
    assert fields["branch"] == "全社"
    assert fields["total_amount"] == "1,234,567"
    assert fields["silence_days"] == str((TODAY - date(2026, 3, 27)).days)
    assert fields["last_purchase_on"] == "2026-03-27"


def test_unknown_fields_are_named():
    assert messages.unknown_fields("{name} {nmae} {segment_ja} {x}") == ["nmae", "x"]


# --- routing and the alert ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("branch", "emails", "hooks"),
    [
        ("shibuya", ["hq@example.jp", "shibuya@example.jp"], ["https://hooks.example.jp/all"]),
        (
            "umeda",
            ["hq@example.jp", "umeda@example.jp"],
            ["https://hooks.example.jp/all", "https://hooks.example.jp/umeda"],
        ),
        ("kyoto", ["hq@example.jp"], ["https://hooks.example.jp/all"]),
        (None, ["hq@example.jp"], ["https://hooks.example.jp/all"]),
    ],
)
def test_routing_home_branch_plus_chain_wide(branch, emails, hooks):
    assert SETTINGS.route(branch) == (emails, hooks)


def test_lapse_alert_is_rendered_in_japanese_with_one_delivery_per_channel_target():
    alert = lapse_alert()
    assert alert.alert_key == "lapsed:C001:7"
    assert alert.subject == "【離脱】優良離脱客 C001 様（shibuya）"
    assert "C001 様（顧客番号 C001）が優良離脱客になりました。" in alert.body
    assert "154,000円" in alert.body and "2026-03-27" in alert.body
    assert alert.mode == "immediate" and alert.priority == 0
    [email, hook] = alert.deliveries
    assert (email.channel, email.target) == ("email", "hq@example.jp,shibuya@example.jp")
    assert email.subject == alert.subject and email.body == alert.body
    assert email.digest_due_at is None
    body = json.loads(hook.body)
    assert body["id"] == hook.id and body["type"] == "customer.lapsed"
    assert body["alert"]["customer_id"] == "C001" and body["alert"]["segment_ja"] == "優良離脱客"


def test_delivery_ids_are_deterministic_and_distinct():
    first, again = lapse_alert(), lapse_alert(now=NOW + timedelta(hours=5))
    assert [d.id for d in first.deliveries] == [d.id for d in again.deliveries]
    other_lapse = lapse_alert(seq=9)
    assert not {d.id for d in first.deliveries} & {d.id for d in other_lapse.deliveries}
    assert len({d.id for d in first.deliveries}) == len(first.deliveries)


def test_no_recipients_no_deliveries_but_still_an_alert():
    alert = lapse_alert(settings=NotificationSettings())
    assert alert.deliveries == () and alert.alert_key == "lapsed:C001:7"


def test_digest_mode_applies_to_email_webhooks_go_at_once():
    alert = lapse_alert(segment="first_lapsed", branch_id="umeda")
    assert alert.mode == "digest"
    email = next(d for d in alert.deliveries if d.channel == "email")
    assert email.mode == "digest"
    assert email.digest_due_at == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # 8:00 next morning
    assert {d.mode for d in alert.deliveries if d.channel == "webhook"} == {"immediate"}


def test_custom_templates():
    settings = NotificationSettings.model_validate(
        SETTINGS.model_dump()
        | {
            "templates": {
                "lapsed": {"subject": "{name}: {segment}", "body": "{branch} {total_amount}"}
            }
        }
    )
    alert = lapse_alert(settings=settings)
    assert (alert.subject, alert.body) == ("C001: loyal_lapsed", "shibuya 154,000")


def test_email_message_carries_the_delivery_id_as_message_id():
    fields = dict(
        delivery_id="abc-123",
        sender="Kizuna <kizuna@localhost>",
        recipients=["a@example.jp", "b@example.jp"],
        subject="【離脱】優良離脱客 C001 様",
        body="本文です。\n",
        created_at=NOW,
    )
    msg = messages.email_message(**fields)
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed["Message-ID"] == "<abc-123@kizuna.notifier>" == messages.message_id("abc-123")
    assert parsed["Subject"] == "【離脱】優良離脱客 C001 様"
    assert parsed["To"] == "a@example.jp, b@example.jp"
    assert parsed.get_content() == "本文です。\n"
    assert msg.as_bytes() == messages.email_message(**fields).as_bytes()  # the same bytes again


def test_webhook_signature_is_hmac_sha256_of_the_body():
    body = b'{"id":"x","type":"customer.lapsed"}'
    expected = "sha256=" + hmac.new(b"s3cret-s3cret-s3cret", body, hashlib.sha256).hexdigest()
    assert messages.sign("s3cret-s3cret-s3cret", body) == expected
    headers = messages.webhook_headers("x", body, "s3cret-s3cret-s3cret")
    assert headers["X-Kizuna-Event-Id"] == "x" and headers["X-Kizuna-Signature"] == expected
    assert messages.verify("s3cret-s3cret-s3cret", body, expected)
    assert not messages.verify("other-secret-other", body, expected)
    assert not messages.verify("s3cret-s3cret-s3cret", body + b" ", expected)


def test_digest_text_lists_most_valuable_first_as_given():
    subject, body = messages.digest_text(
        "shibuya",
        TODAY,
        [
            ("【離脱】優良離脱客 A 様", Decimal(300000), None),
            ("【離脱】初回離脱客 B 様", Decimal(5000), TODAY),
        ],
    )
    assert subject == "【フォロー一覧】shibuya 2026-11-23 — 2件"
    assert body.index("A 様") < body.index("B 様")
    assert digest_id(["b", "a"]) == digest_id(["a", "b"]) != digest_id(["a"])


# --- retries and the morning ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "expected"), [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (10, 100.0)]
)
def test_backoff_doubles_up_to_the_cap(attempts, expected):
    assert backoff_seconds(attempts, 5.0, 100.0) == expected


@pytest.mark.parametrize(
    ("result", "attempts", "status"),
    [
        (SendResult(True), 1, "sent"),
        (SendResult(True), 6, "sent"),
        (SendResult(False, "HTTP 500"), 1, "pending"),
        (SendResult(False, "HTTP 500"), 5, "pending"),
        (SendResult(False, "HTTP 500"), 6, "dead"),
        (SendResult(False, "SMTP 550", permanent=True), 1, "dead"),
    ],
)
def test_status_after_a_try(result, attempts, status):
    assert after_attempt(result, attempts, 6) == status


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 22, 22, 59, tzinfo=UTC), datetime(2026, 11, 22, 23, 0, tzinfo=UTC)),
        (datetime(2026, 11, 22, 23, 0, tzinfo=UTC), datetime(2026, 11, 23, 23, 0, tzinfo=UTC)),
        (NOW, datetime(2026, 11, 23, 23, 0, tzinfo=UTC)),
    ],
)
def test_next_digest_is_the_next_local_morning(now, expected):
    assert next_digest_at(now, "Asia/Tokyo", 8) == expected


# --- settings validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"recipients": [{"channel": "email", "address": "not-an-address"}]},
        {"recipients": [{"channel": "email", "address": "a@b.jp, c@d.jp"}]},
        {"recipients": [{"channel": "webhook", "address": "ftp://example.jp/x"}]},
        {"recipients": [{"channel": "sms", "address": "0312345678"}]},
        {"modes": {"vip_lapsed": "digest"}},
        {"modes": {"loyal_lapsed": "weekly"}},
        {"digest_hour": 24},
        {"at_risk": {"factor": 0.5}},
        {"at_risk": {"segments": ["loyal_lapsed"]}},
        {"templates": {"lapsed": {"subject": "{nmae}", "body": "x"}}},
        {"surprise": 1},
    ],
)
def test_invalid_settings_are_refused(payload):
    with pytest.raises(ValidationError):
        NotificationSettings.model_validate(payload)


def test_settings_defaults():
    settings = NotificationSettings()
    assert settings.mode_for("loyal_lapsed") == "immediate"
    assert settings.at_risk.factor == 2.0 and settings.at_risk.min_days == 30
    assert settings.at_risk.segments == ("loyal_active", "trendy_active")
    assert settings.template("at_risk") == messages.DEFAULT_TEMPLATES["at_risk"]


# --- at risk -----------------------------------------------------------------------------------------


def every(days: int, count: int, last: date) -> tuple[date, ...]:
    return tuple(last - timedelta(days=days * n) for n in reversed(range(count)))


def candidate(last_days_ago: int, dates: tuple[date, ...], **overrides) -> AtRiskCandidate:
    last = TODAY - timedelta(days=last_days_ago)
    fields = dict(
        tenant_id="demo",
        customer_id="C1",
        segment="loyal_active",
        branch_id="shibuya",
        total_amount=Decimal(200000),
        last_purchase_on=last,
        lapse_due_on=last + timedelta(days=240),
        order_dates=dates,
    )
    fields.update(overrides)
    return AtRiskCandidate(**fields)


POLICY = AtRiskPolicy()  # factor 2.0, at least 30 days


def last(days_ago: int) -> date:
    return TODAY - timedelta(days=days_ago)


# (name, candidate, at risk?)
AT_RISK_CASES = [
    (
        "buys on rhythm: every 30 days, 20 days silent",
        candidate(20, every(30, 10, last(20))),
        False,
    ),
    (
        "rhythm 30, silence 60: exactly 2x is not beyond",
        candidate(60, every(30, 10, last(60))),
        False,
    ),
    ("rhythm 30, silence 61: beyond 2x", candidate(61, every(30, 10, last(61))), True),
    (
        "rhythm 10, silence 25: beyond 2x but under min_days",
        candidate(25, every(10, 12, last(25))),
        False,
    ),
    ("rhythm 10, silence 30: min_days reached", candidate(30, every(10, 12, last(30))), True),
    (
        "past the lapse border: the lapse alert speaks",
        candidate(100, every(20, 12, last(100)), lapse_due_on=TODAY),
        False,
    ),
    ("trendy counts too", candidate(70, every(20, 6, last(70)), segment="trendy_active"), True),
    (
        "steady is not watched by default",
        candidate(70, every(20, 6, last(70)), segment="steady_active"),
        False,
    ),
    ("one purchase day: no rhythm", candidate(70, (last(70),)), False),
]


@pytest.mark.parametrize(
    ("name", "c", "expected"), AT_RISK_CASES, ids=[c[0] for c in AT_RISK_CASES]
)
def test_at_risk(name, c, expected):
    assert (assess_at_risk(c, TODAY, POLICY) is not None) is expected


def test_at_risk_fields_and_key():
    c = candidate(61, every(30, 10, last(61)))
    found = assess_at_risk(c, TODAY, POLICY)
    assert (found.silence_days, found.usual_gap_days) == (61, 30.0)
    assert found.dedupe_key == at_risk_key("C1", last(61)) == f"at_risk:C1:{last(61).isoformat()}"
    assert assess_at_risk(c, TODAY, AtRiskPolicy(factor=3.0)) is None
    assert assess_at_risk(c, TODAY, AtRiskPolicy(enabled=False)) is None


@pytest.mark.parametrize(
    ("dates", "gap"),
    [
        ((), None),
        ((date(2026, 1, 1),), None),
        ((date(2026, 1, 1), date(2026, 1, 1)), None),  # two orders on one day: one purchase day
        ((date(2026, 1, 1), date(2026, 1, 11)), 10.0),
        ((date(2026, 1, 21), date(2026, 1, 1), date(2026, 1, 11), date(2026, 3, 1)), 10.0),
        ((date(2026, 1, 1), date(2026, 1, 11), date(2026, 1, 31), date(2026, 3, 2)), 20.0),
        ((date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 5), date(2026, 1, 10)), 3.0),
    ],
)
def test_usual_gap_is_the_median_between_purchase_days(dates, gap):
    assert usual_gap_days(dates) == gap
