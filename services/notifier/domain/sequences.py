"""Follow-up sequences: the steps a segment entry schedules, and when they stop."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.events import SegmentChange

from .. import messages
from .followups import CHAIN, SEQUENCE, NewTask
from .settings import _check_placeholders

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
