"""Alerts and their deliveries: what to send to whom, digests, retries and back-off."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from .. import messages
from .followups import AT_RISK, LAPSED, lapse_key, priority
from .settings import NotificationSettings

DELIVERY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://kizuna.invalid/notifier/deliveries")
EVENT_TYPES = {LAPSED: "customer.lapsed", AT_RISK: "customer.at_risk"}


def delivery_id(*parts: str) -> str:
    """A deterministic id: the same alert and target always give the same one, which is the
    e-mail's Message-ID and the webhook's event id."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, "\x1f".join(parts)))


def at_risk_key(customer_id: str, last_purchase_on: date) -> str:
    """One at-risk warning per customer and silence episode: the episode is named by the last
    purchase before it (a new purchase ends it)."""
    return f"{AT_RISK}:{customer_id}:{last_purchase_on.isoformat()}"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    id: str
    channel: str
    target: str
    mode: str
    subject: str | None
    body: str
    digest_due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewAlert:
    tenant_id: str
    alert_key: str
    kind: str
    customer_id: str
    branch_id: str | None
    segment: str
    total_amount: Decimal
    last_purchase_on: date | None
    effective_on: date
    seq: int | None
    mode: str
    subject: str
    body: str
    raised_at: datetime
    details: dict = field(default_factory=dict)
    deliveries: tuple[NewDelivery, ...] = ()

    @property
    def priority(self) -> int:
        return priority(self.segment)


def next_digest_at(now: datetime, zone: str, hour: int) -> datetime:
    """The first morning digest after ``now``: ``hour`` o'clock in the tenant's zone."""
    local = now.astimezone(ZoneInfo(zone))
    at = datetime.combine(local.date(), time(hour), tzinfo=local.tzinfo)
    if at <= local:
        at = datetime.combine(local.date() + timedelta(days=1), time(hour), tzinfo=local.tzinfo)
    return at


def plan_alert(
    *,
    kind: str,
    tenant_id: str,
    customer_id: str,
    name: str | None,
    branch_id: str | None,
    segment: str,
    total_amount: Decimal,
    last_purchase_on: date | None,
    effective_on: date,
    seq: int | None,
    settings: NotificationSettings,
    today: date,
    now: datetime,
    zone: str,
    details: dict | None = None,
) -> NewAlert:
    """One alert, rendered, with a delivery per channel target its routing gives: one e-mail to
    every address of the home branch and the chain-wide staff, one POST per webhook URL.
    E-mail in digest mode waits for the branch's morning digest; webhooks always go at once
    (a machine has no morning; a receiver batches as it likes)."""
    details = dict(details or {})
    if kind == LAPSED:
        key = lapse_key(customer_id, seq or 0)
    else:
        assert last_purchase_on is not None, "an at-risk alert names its silence episode"
        key = at_risk_key(customer_id, last_purchase_on)
    fields = messages.customer_fields(
        customer_id=customer_id,
        name=name,
        segment=segment,
        last_purchase_on=last_purchase_on,
        branch_id=branch_id,
        total_amount=total_amount,
        today=today,
        effective_on=effective_on,
        **details,
    )
    subject_template, body_template = settings.template(kind)
    subject = messages.render(subject_template, fields).replace("\n", " ")
    body = messages.render(body_template, fields)
    mode = settings.mode_for(segment)
    emails, hooks = settings.route(branch_id)
    deliveries: list[NewDelivery] = []
    if emails:
        target = ",".join(emails)
        deliveries.append(
            NewDelivery(
                id=delivery_id(tenant_id, key, "email", target),
                channel="email",
                target=target,
                mode=mode,
                subject=subject,
                body=body,
                digest_due_at=next_digest_at(now, zone, settings.digest_hour)
                if mode == "digest"
                else None,
            )
        )
    payload = {
        "kind": kind,
        "customer_id": customer_id,
        "name": fields["name"],
        "branch_id": branch_id,
        "segment": segment,
        "segment_ja": fields["segment_ja"],
        "total_amount": str(total_amount),
        "last_purchase_on": last_purchase_on.isoformat() if last_purchase_on else None,
        "effective_on": effective_on.isoformat(),
        "raised_at": now.isoformat(),
        "subject": subject,
        "text": body,
        **details,
    }
    for url in hooks:
        ident = delivery_id(tenant_id, key, "webhook", url)
        deliveries.append(
            NewDelivery(
                id=ident,
                channel="webhook",
                target=url,
                mode="immediate",
                subject=None,
                body=messages.webhook_body(ident, EVENT_TYPES[kind], tenant_id, payload),
            )
        )
    return NewAlert(
        tenant_id=tenant_id,
        alert_key=key,
        kind=kind,
        customer_id=customer_id,
        branch_id=branch_id,
        segment=segment,
        total_amount=total_amount,
        last_purchase_on=last_purchase_on,
        effective_on=effective_on,
        seq=seq,
        mode=mode,
        subject=subject,
        body=body,
        raised_at=now,
        details=details,
        deliveries=tuple(deliveries),
    )


def digest_id(member_ids: Iterable[str]) -> str:
    """A digest's id, from the ids of the alerts it carries: deterministic, and distinct for
    every set of members (a late member makes its own digest, never a changed old one)."""
    return delivery_id("digest", *sorted(member_ids))


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Wait after the ``attempts``-th failed try: base, 2×base, 4×base, … up to ``cap``."""
    return min(cap, base * 2 ** max(0, attempts - 1))


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a channel reported: ``ok``; or an error, ``permanent`` when trying again cannot
    help (an SMTP 5xx), so the delivery is dead at once."""

    ok: bool
    error: str | None = None
    permanent: bool = False


def after_attempt(result: SendResult, attempts: int, max_attempts: int) -> str:
    """The delivery's status after its ``attempts``-th try."""
    if result.ok:
        return "sent"
    if result.permanent or attempts >= max_attempts:
        return "dead"
    return "pending"
