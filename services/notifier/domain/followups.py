"""Follow-up tasks: what a segment change opens, reactivates or cancels, their priority, and
the cursor of the task list."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
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


def newly_lapsed(cause: str, before: tuple[str, str], after: tuple[str, str]) -> bool:
    """Whether a chain-wide move from ``before`` to ``after`` (tier, state) is a lapse to follow
    up: by the lapse clock (cause ``lapse``: no figure changes, so the tier stays); or on a day
    whose only events are returns or voids (cause ``return`` or ``void``, in any tier): a
    timeline entry is named by its day's events, but the customer lapsed that day all the same,
    whether the lapse came due on it (a void of someone else's order on the due day, issue 13)
    or a void took back the purchase that kept them active. Not new borders (``rules``), and
    never a purchase (a customer who buys on a day is active on it)."""
    if before[1] != "active" or after[1] != "lapsed":
        return False
    if cause == "lapse":
        return before[0] == after[0]
    return cause in ("return", "void")


def decide(change: SegmentChange, today: date, max_age_days: int) -> Action | None:
    """What a segment change asks of the staff, or ``None`` for nothing.

    - Chain-wide, active → lapsed (``newly_lapsed``): open a follow-up task, unless the
      lapse's true date is more than ``max_age_days`` before ``today`` (history being loaded:
      nobody should phone about a lapse from years ago). The task is due the day it is
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
    if newly_lapsed(change.cause, before, after):
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
