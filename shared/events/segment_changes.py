"""``kizuna.segment-changes.v1``: a customer moved to another segment (only then)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Cause = Literal["purchase", "return", "void", "lapse", "rules"]

# Versions of this contract (and of ``CustomerState``) a consumer reads. 2 added corrections
# (``corrects_from``); 1 is 2 without them, so both are read with one policy.
READABLE_VERSIONS = (1, 2)


def version_problem(version: int) -> str | None:
    """Why a consumer cannot read a segment change or customer state of this ``schema_version``,
    or ``None``. A newer version may mean something else: dead-lettered rather than guessed at."""
    if version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        return f"schema_version: {version} is not supported (this service reads {readable})"
    return None


class SegmentChange(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schema_version: int = 1
    tenant_id: str
    scope: str = Field(description="A branch_id, or 'all' for the whole chain.")
    customer_id: str
    seq: int = Field(description="Per customer and scope, strictly increasing.")
    from_segment: str | None = Field(description="null when the customer is new")
    to_segment: str | None = Field(description="null when the customer left (all purchases voided)")
    effective_on: date
    cause: Cause
    purchase_count: int
    total_amount: Decimal
    first_purchase_on: date | None
    last_purchase_on: date | None
    tenure_days: int | None
    lapse_days: int | None
    home_branch_id: str | None = Field(
        None, description="Branch with most of the customer's spending (extension)."
    )
    rules_version: int = Field(0, description="Version of the tenant's borders used (extension).")
    supersedes_seq: int | None = Field(
        None,
        description="Set when this change replaces a lapse the clock applied before history that "
        "was still arriving showed a purchase before the lapse date: undo change `supersedes_seq`.",
    )
    corrects_from: date | None = Field(
        None,
        description="Opens a correction (schema_version 2): every change of this customer and "
        "scope received before (lower seq) whose effective_on is on or after this date no longer "
        "holds; this message and those that follow are the timeline from that date on.",
    )
