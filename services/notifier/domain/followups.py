"""Follow-up tasks: what a segment change opens, reactivates or cancels, their priority, and
the cursor of the task list."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from shared.cpm import SEGMENTS
from shared.events import SegmentChange

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
class CancelFollowup:
    """The lapse ``lapse_seq`` was premature (the clock ran ahead of history still arriving):
    its task, if still open, is cancelled; the customer never left, so no comeback."""

    tenant_id: str
    customer_id: str
    lapse_seq: int
    on: date

    @property
    def dedupe_key(self) -> str:
        return lapse_key(self.customer_id, self.lapse_seq)


Action = OpenFollowup | Reactivated | CancelFollowup


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
      the lapse is older than ``max_age_days`` on ``today`` (history being loaded: nobody
      should phone about a lapse from years ago). The task is due the day it is noticed.
    - Chain-wide change that supersedes an earlier one: cancel that lapse's task.
    - Chain-wide ``*_lapsed`` → ``*_active``: close the open lapse tasks; a comeback unless
      only new borders (cause ``rules``) moved the customer.
    - Anything else, and every branch-scope change: nothing.
    """
    if change.scope != CHAIN:
        return None
    if change.supersedes_seq is not None:
        # Checked first: the superseding change may look like lapsed → active, but the
        # customer never really left, so it must not count as a comeback.
        return CancelFollowup(change.tenant_id, change.customer_id, change.supersedes_seq, today)
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
