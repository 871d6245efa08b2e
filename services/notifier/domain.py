"""The notifier's decisions: what one segment change means for the staff's follow-up work,
which alerts go where, the tenant's notification settings and follow-up sequences, and when an
active customer's silence is already long for them.

Pure: no I/O and no clock (``today`` and ``now`` are arguments), so the rules are table-tested
in tests/notifier/. Only the chain-wide scope (``all``) makes work: a customer who stopped buying
at one branch but still buys at another has not left the company.
"""

from __future__ import annotations

import base64
import binascii
import json
import statistics
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.cpm import SEGMENTS
from shared.events import SegmentChange

from . import messages

CHAIN = "all"
LAPSED = "lapsed"
AT_RISK = "at_risk"
SEQUENCE = "sequence"

# CPM.md, "What people do with it": loyal_lapsed first, then the others by how much a
# comeback is worth to the company.
VALUE_ORDER = ("loyal_lapsed", "trendy_lapsed", "steady_lapsed", "fledgling_lapsed", "first_lapsed")


@dataclass(frozen=True, slots=True)
class OpenFollowup:
    """A newly lapsed customer: one task for this customer and this lapse."""

    tenant_id: str
    customer_id: str
    lapse_seq: int
    branch_id: str | None
    segment: str
    created_on: date
    due_on: date
    total_amount: Decimal
    reason: str = LAPSED
    last_purchase_on: date | None = None

    @property
    def dedupe_key(self) -> str:
        return lapse_key(self.customer_id, self.lapse_seq)

    @property
    def priority(self) -> int:
        return priority(self.segment)

    def task(self) -> NewTask:
        return NewTask(
            tenant_id=self.tenant_id,
            customer_id=self.customer_id,
            branch_id=self.branch_id,
            segment=self.segment,
            reason=self.reason,
            created_on=self.created_on,
            due_on=self.due_on,
            total_amount=self.total_amount,
            dedupe_key=self.dedupe_key,
            lapse_seq=self.lapse_seq,
            last_purchase_on=self.last_purchase_on,
        )


@dataclass(frozen=True, slots=True)
class Reactivated:
    """A lapsed customer is active again: their open lapse tasks from before ``seq`` close.

    ``comeback`` is true when the customer bought again (counted in ``comebacks``); false when
    only the tenant's borders moved them, which is no comeback but leaves nothing to follow up.
    """

    tenant_id: str
    customer_id: str
    seq: int
    segment: str
    on: date
    comeback: bool
    from_segment: str | None = None
    branch_id: str | None = None

    @property
    def outcome(self) -> str:
        return "comeback" if self.comeback else "reclassified"


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A correction of a customer's chain-wide timeline, opened by change ``seq``: what the
    changes with a lower seq (from ``since_seq`` on) dated on or after ``since_day`` made no
    longer holds. Their lapse tasks and sequence steps still open are cancelled (outcome
    ``withdrawn``), their alerts withdrawn (nothing unsent goes out), their comebacks no longer
    counted, and what they closed is open again. A lapse or segment entry the corrected
    timeline makes again (same segment, a later change of this correction) takes its withdrawn
    task back with the new dates instead of opening another (``store.open_tasks``)."""

    tenant_id: str
    customer_id: str
    seq: int
    since_day: date
    on: date  # the day the correction was noticed (done_on of what it cancels)
    since_seq: int = 0


Action = OpenFollowup | Reactivated


def withdrawal(change: SegmentChange, today: date) -> Withdrawal | None:
    """The withdrawal a chain-wide change opens, or ``None``: from ``corrects_from`` on; or, from
    a producer of schema 1, exactly the premature lapse its ``supersedes_seq`` names (one policy
    for both versions)."""
    if change.scope != CHAIN:
        return None
    if change.corrects_from is not None:
        return Withdrawal(
            change.tenant_id, change.customer_id, change.seq, change.corrects_from, today
        )
    if change.supersedes_seq is not None:
        return Withdrawal(
            change.tenant_id, change.customer_id, change.seq, date.min, today, change.supersedes_seq
        )
    return None


def in_force(
    changes: Iterable[SegmentChange], today: Mapping[str, date]
) -> tuple[list[SegmentChange], list[Withdrawal]]:
    """A batch's changes without those a later correction in the same batch withdraws (they
    never make work), and the batch's withdrawals. The store applies the withdrawals first:
    they concern only what earlier batches made, because whatever they withdraw in this
    batch is left out here."""
    ordered = sorted(changes, key=lambda c: (c.tenant_id, c.customer_id, c.scope, c.seq))
    withdrawals = [w for c in ordered if (w := withdrawal(c, today[c.tenant_id])) is not None]
    kept = []
    for c in ordered:
        if not any(
            w.tenant_id == c.tenant_id
            and w.customer_id == c.customer_id
            and c.scope == CHAIN
            and w.since_seq <= c.seq < w.seq
            and c.effective_on >= w.since_day
            for w in withdrawals
        ):
            kept.append(c)
    return kept, withdrawals


def lapse_key(customer_id: str, seq: int) -> str:
    """The task's idempotency key: ``seq`` is strictly increasing per customer and scope, so
    it names one lapse, however often the change is delivered."""
    return f"{LAPSED}:{customer_id}:{seq}"


def priority(segment: str) -> int:
    """Rank of a task's segment in the task list, 0 first (``loyal_lapsed``)."""
    try:
        return VALUE_ORDER.index(segment)
    except ValueError:
        return len(VALUE_ORDER)


def _split(segment: str | None) -> tuple[str, str] | None:
    if segment not in SEGMENTS:
        return None
    tier, _, state = segment.rpartition("_")
    return tier, state


def decide(change: SegmentChange, today: date, max_age_days: int) -> Action | None:
    """What a segment change asks of the staff, or ``None`` for nothing.

    - ``X_active`` → ``X_lapsed`` by the lapse clock, chain-wide: open a follow-up task, unless
      the lapse's true date is more than ``max_age_days`` before ``today`` (history being
      loaded: nobody should phone about a lapse from years ago). The task is due the day it is
      noticed.
    - Chain-wide ``*_lapsed`` → ``*_active``: close the open lapse tasks; a comeback unless
      only new borders (cause ``rules``) moved the customer.
    - Anything else, and every branch-scope change: nothing. A correction's first message may
      move nobody (``from_segment == to_segment``): its withdrawal is all it carries
      (``withdrawal``).
    """
    if change.scope != CHAIN or change.supersedes_seq is not None:
        # Schema 1: a change superseding a premature lapse names the lapsed segment as its
        # from_segment, but the customer never left; its withdrawal is all it means.
        return None
    before, after = _split(change.from_segment), _split(change.to_segment)
    if before is None or after is None:
        return None
    if change.cause == "lapse" and before == (after[0], "active") and after[1] == "lapsed":
        if (today - change.effective_on).days > max_age_days:
            return None
        return OpenFollowup(
            tenant_id=change.tenant_id,
            customer_id=change.customer_id,
            lapse_seq=change.seq,
            branch_id=change.home_branch_id,
            segment=change.to_segment,
            created_on=change.effective_on,
            due_on=today,
            total_amount=change.total_amount,
            last_purchase_on=change.last_purchase_on,
        )
    if before[1] == "lapsed" and after[1] == "active":
        return Reactivated(
            tenant_id=change.tenant_id,
            customer_id=change.customer_id,
            seq=change.seq,
            segment=change.to_segment,
            on=change.effective_on,
            comeback=change.cause != "rules",
            from_segment=change.from_segment,
            branch_id=change.home_branch_id,
        )
    return None


# --- Paging through the task list ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SortKey:
    """Position of a task in the list: priority ascending, total descending, id ascending."""

    priority: int
    total_amount: Decimal
    id: int


def encode_cursor(key: SortKey) -> str:
    """An opaque cursor for the task after which the next page starts."""
    raw = json.dumps([key.priority, str(key.total_amount), key.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> SortKey:
    """The sort key inside a cursor; ``ValueError`` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        rank, total, ident = json.loads(raw)
        key = SortKey(int(rank), Decimal(total), int(ident))
    except (
        binascii.Error,
        UnicodeDecodeError,
        json.JSONDecodeError,
        InvalidOperation,
        TypeError,
        ValueError,
    ) as exc:
        raise ValueError("not a cursor from this list") from exc
    if not key.total_amount.is_finite():
        raise ValueError("not a cursor from this list")
    return key


# --- Tasks of every kind ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewTask:
    """A row for the task list: a lapse, an at-risk warning or a sequence step. ``dedupe_key``
    names it once per cause, so writing it again changes nothing."""

    tenant_id: str
    customer_id: str
    branch_id: str | None
    segment: str
    reason: str
    created_on: date
    due_on: date
    total_amount: Decimal
    dedupe_key: str
    lapse_seq: int | None = None
    entry_seq: int | None = None
    step: int | None = None
    channel: str | None = None
    note: str | None = None
    last_purchase_on: date | None = None

    @property
    def priority(self) -> int:
        return priority(self.segment)


# --- Notification settings (per tenant) ------------------------------------------------------------

Mode = Literal["immediate", "digest"]
AlertKind = Literal["lapsed", "at_risk"]
ACTIVE_SEGMENTS = tuple(s for s in SEGMENTS if s.endswith("_active"))


class Recipient(BaseModel):
    """Where alerts go. A branch recipient gets the alerts of customers whose home branch it
    is; a chain-wide one (``branch_id`` null) gets every alert."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Literal["email", "webhook"]
    address: str = Field(
        min_length=3,
        max_length=2000,
        description="An e-mail address, or the webhook's http(s) URL.",
        examples=["shibuya@example.jp", "https://hooks.example.jp/kizuna"],
    )
    branch_id: str | None = Field(
        None, max_length=100, description="null: chain-wide staff, who see every alert."
    )

    @model_validator(mode="after")
    def _address_fits_channel(self) -> Recipient:
        if self.channel == "email":
            local, _, domain = self.address.partition("@")
            if not local or not domain or any(c.isspace() or c in ",<>" for c in self.address):
                raise ValueError(f"not an e-mail address: {self.address!r}")
        else:
            parts = urlsplit(self.address)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"a webhook needs an http(s) URL, not {self.address!r}")
        return self


class AtRiskPolicy(BaseModel):
    """The early warning: an active customer of ``segments`` whose days since the last purchase
    are beyond ``factor`` times their own usual gap between purchases, and at least
    ``min_days``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    factor: float = Field(2.0, ge=1.0, le=20.0, description="× the customer's median gap")
    min_days: int = Field(30, ge=1, le=3650, description="never earlier than this silence")
    segments: tuple[str, ...] = Field(("loyal_active", "trendy_active"), max_length=5)

    @field_validator("segments")
    @classmethod
    def _active_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        wrong = [s for s in value if s not in ACTIVE_SEGMENTS]
        if wrong:
            raise ValueError(f"at-risk applies to active segments {ACTIVE_SEGMENTS}, not {wrong}")
        return tuple(dict.fromkeys(value))


class AlertTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=5000)

    @field_validator("subject", "body")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        return _check_placeholders(value)


def _check_placeholders(template: str) -> str:
    unknown = messages.unknown_fields(template)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; known: {sorted(messages.FIELDS)}")
    return template


class NotificationSettings(BaseModel):
    """A tenant's alerting: recipients, immediate or morning digest per segment, the at-risk
    policy and optional templates (Japanese defaults in ``messages.DEFAULT_TEMPLATES``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipients: tuple[Recipient, ...] = Field((), max_length=500)
    default_mode: Mode = "immediate"
    modes: dict[str, Mode] = Field(
        default_factory=dict,
        description="Per segment the alert is about (e.g. loyal_lapsed, or loyal_active for "
        "at-risk): 'immediate' or 'digest' (one e-mail per branch each morning).",
        examples=[{"loyal_lapsed": "immediate", "first_lapsed": "digest"}],
    )
    digest_hour: int = Field(8, ge=0, le=23, description="Local hour of the morning digest.")
    at_risk: AtRiskPolicy = Field(default_factory=AtRiskPolicy)
    templates: dict[AlertKind, AlertTemplate] = Field(default_factory=dict)

    @field_validator("modes")
    @classmethod
    def _known_segments(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(SEGMENTS))
        if unknown:
            raise ValueError(f"unknown segment(s) {unknown}")
        return value

    def mode_for(self, segment: str) -> Mode:
        return self.modes.get(segment, self.default_mode)

    def route(self, branch_id: str | None) -> tuple[list[str], list[str]]:
        """E-mail addresses and webhook URLs for an alert about a customer of ``branch_id``:
        chain-wide recipients plus that branch's, each once, in a stable order."""
        emails: dict[str, None] = {}
        hooks: dict[str, None] = {}
        for r in self.recipients:
            if r.branch_id is None or (branch_id is not None and r.branch_id == branch_id):
                (emails if r.channel == "email" else hooks)[r.address] = None
        return sorted(emails), sorted(hooks)

    @property
    def has_webhooks(self) -> bool:
        return any(r.channel == "webhook" for r in self.recipients)

    def template(self, kind: str) -> tuple[str, str]:
        custom = self.templates.get(kind)
        return (custom.subject, custom.body) if custom else messages.DEFAULT_TEMPLATES[kind]


DEFAULT_NOTIFICATION_SETTINGS = NotificationSettings()


# --- Alerts and their deliveries -------------------------------------------------------------------

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


# --- Follow-up sequences ---------------------------------------------------------------------------

StepChannel = Literal["post", "email", "phone", "fax"]


class SequenceStep(BaseModel):
    """One step: on ``offset_days`` after the customer entered the segment, do ``template``
    by ``channel`` (郵便 / メール / 電話 / FAX)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    offset_days: int = Field(
        ge=0, le=3650, description="Days after entering the segment (not after the last step)."
    )
    channel: StepChannel
    template: str = Field(
        min_length=1,
        max_length=2000,
        examples=["{name} 様へお礼状（サンキューレター）を郵送"],
    )

    @field_validator("channel", mode="before")
    @classmethod
    def _spelling(cls, value: object) -> object:
        return "email" if value in ("e-mail", "mail") else value

    @field_validator("template")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        return _check_placeholders(value)


class FollowupSequence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("", max_length=200, examples=["アフターフォロー"])
    steps: tuple[SequenceStep, ...] = Field(min_length=1, max_length=50)


def sequence_key(customer_id: str, entry_seq: int, step: int) -> str:
    return f"{SEQUENCE}:{customer_id}:{entry_seq}:{step}"


def plan_sequence(
    change: SegmentChange,
    sequence: FollowupSequence | None,
    today: date,
    max_age_days: int,
    name: str | None = None,
) -> list[NewTask]:
    """The tasks a chain-wide change into a segment with a sequence schedules: each step due
    ``effective_on + offset_days``. Nothing for branch scope, a change that moves nobody (a
    correction's first message may only withdraw), a schema-1 change that only undoes a
    premature lapse (the customer never left), or an entry older than ``max_age_days`` (history
    being loaded)."""
    if (
        sequence is None
        or change.scope != CHAIN
        or change.supersedes_seq is not None
        or change.to_segment is None
        or change.to_segment == change.from_segment
        or (today - change.effective_on).days > max_age_days
    ):
        return []
    tasks = []
    for n, step in enumerate(sequence.steps):
        due = change.effective_on + timedelta(days=step.offset_days)
        fields = messages.customer_fields(
            customer_id=change.customer_id,
            name=name,
            segment=change.to_segment,
            last_purchase_on=change.last_purchase_on,
            branch_id=change.home_branch_id,
            total_amount=change.total_amount,
            today=due,
            effective_on=change.effective_on,
            due_on=due,
        )
        tasks.append(
            NewTask(
                tenant_id=change.tenant_id,
                customer_id=change.customer_id,
                branch_id=change.home_branch_id,
                segment=change.to_segment,
                reason=SEQUENCE,
                created_on=change.effective_on,
                due_on=due,
                total_amount=change.total_amount,
                dedupe_key=sequence_key(change.customer_id, change.seq, n),
                entry_seq=change.seq,
                step=n,
                channel=step.channel,
                note=messages.render(step.template, fields),
                last_purchase_on=change.last_purchase_on,
            )
        )
    return tasks


@dataclass(frozen=True, slots=True)
class StopSequence:
    """The customer moved (change ``seq``, into ``segment``): open steps of sequences entered
    before, for another segment, due after ``on`` are cancelled; steps already due stay on the
    list (carried over). Steps of an entry a correction withdrew go by ``Withdrawal``."""

    tenant_id: str
    customer_id: str
    seq: int
    segment: str | None
    on: date


def stop_sequence(change: SegmentChange) -> StopSequence | None:
    if change.scope != CHAIN:
        return None
    return StopSequence(
        change.tenant_id,
        change.customer_id,
        change.seq,
        change.to_segment,
        change.effective_on,
    )


# --- At risk: a silence already long for this customer ---------------------------------------------


@dataclass(frozen=True, slots=True)
class AtRiskCandidate:
    """An active customer's state (scope ``all``) and their purchase days (orders, net of
    voids), as the classifier stored them."""

    tenant_id: str
    customer_id: str
    segment: str
    branch_id: str | None
    total_amount: Decimal
    last_purchase_on: date
    lapse_due_on: date | None
    order_dates: tuple[date, ...]


@dataclass(frozen=True, slots=True)
class AtRisk:
    customer: AtRiskCandidate
    silence_days: int
    usual_gap_days: float

    @property
    def dedupe_key(self) -> str:
        return at_risk_key(self.customer.customer_id, self.customer.last_purchase_on)


def usual_gap_days(order_dates: Iterable[date]) -> float | None:
    """The customer's own rhythm: the median of the days between consecutive purchase days
    (several orders on one day are one purchase day). ``None`` with fewer than two days."""
    days = sorted(set(order_dates))
    gaps = [(b - a).days for a, b in zip(days, days[1:], strict=False)]
    return float(statistics.median(gaps)) if gaps else None


def assess_at_risk(c: AtRiskCandidate, today: date, policy: AtRiskPolicy) -> AtRisk | None:
    """At risk when the silence is beyond ``factor`` × the usual gap and at least ``min_days``,
    while the customer is still before the lapse border (after it, the lapse alert speaks).
    A customer buying on rhythm is never at risk."""
    if not policy.enabled or c.segment not in policy.segments:
        return None
    gap = usual_gap_days(c.order_dates)
    if gap is None:
        return None
    silence = (today - c.last_purchase_on).days
    if silence < policy.min_days or silence <= gap * policy.factor:
        return None
    if c.lapse_due_on is not None and today >= c.lapse_due_on:
        return None
    return AtRisk(c, silence, gap)
