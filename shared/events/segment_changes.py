"""``kizuna.segment-changes.v1``: a customer moved to another segment (only then)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.segments import Segment

Cause = Literal["purchase", "return", "void", "lapse", "rules"]


# The one ``schema_version`` policy of every consumer: a contract model reads the versions up to
# its own (``le=SCHEMA_VERSION``); a message of a newer version may mean something else, so it does
# not validate and is dead-lettered with pydantic's reason (``schema_version: ...``) rather than
# guessed at. Absent means 1. Readers bump this where they learn a new version.
SCHEMA_VERSION = 2


class SegmentChange(BaseModel):
    """A dated change of a customer's segment in one scope. Read per customer and scope in
    ``seq`` order; a message with ``corrects_from`` withdraws earlier ones (README,
    "Corrections")."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = Field(
        1,
        ge=1,
        le=SCHEMA_VERSION,
        description="Contract version; absent means 1. The classifier writes 2: version 2 adds "
        "`corrects_from`, and a reader of version 1 that ignores it would keep changes a "
        "correction withdrew.",
    )
    tenant_id: str = Field(description="The retail chain or mail-order company.", examples=["demo"])
    scope: str = Field(description="A branch_id, or 'all' for the whole chain.", examples=["all"])
    customer_id: str = Field(
        description="The member or customer number, as in the purchases.", examples=["C000123"]
    )
    seq: int = Field(
        description="Per customer and scope, strictly increasing in publish order; the message "
        "with the highest seq carries the customer's current figures and segment.",
        examples=[7],
    )
    from_segment: Segment | None = Field(
        description="The segment on the eve of `effective_on` (null: in no segment, e.g. new).",
        examples=["loyal_active"],
    )
    to_segment: Segment | None = Field(
        description="The segment from `effective_on` on (null: in no segment, e.g. every "
        "purchase voided).",
        examples=["loyal_lapsed"],
    )
    effective_on: date = Field(
        description="The day the change holds from: the day of the events, of the lapse, or of "
        "the new borders. After a correction it may be earlier than that of lower seqs.",
        examples=["2026-11-20"],
    )
    cause: Cause = Field(
        description="What made the change: a purchase, return or void that day, the lapse "
        "clock, or new borders (`rules`).",
        examples=["lapse"],
    )
    purchase_count: int = Field(
        description="Purchases (orders) counted, after the change.", examples=[12]
    )
    total_amount: Decimal = Field(
        description="Sales after returns and voids, tax included.", examples=["186400"]
    )
    first_purchase_on: date | None = Field(
        description="Day of the first counted purchase (tenant's zone; null: none counted).",
        examples=["2024-03-09"],
    )
    last_purchase_on: date | None = Field(
        description="Day of the last counted purchase (tenant's zone; null: none counted).",
        examples=["2026-04-04"],
    )
    tenure_days: int | None = Field(
        description="Days from the first to the last purchase.", examples=[756]
    )
    lapse_days: int | None = Field(
        description="Days from the last purchase to `effective_on`.", examples=[230]
    )
    home_branch_id: str | None = Field(
        None, description="Branch with most of the customer's spending (extension)."
    )
    rules_version: int = Field(
        0, description="Version of the tenant's borders in force on `effective_on` (extension)."
    )
    corrects_from: date | None = Field(
        None,
        description="Set on the first message of a correction: every change of this customer "
        "and scope received before (lower seq) whose `effective_on` is on or after this date "
        "no longer holds. This message (`effective_on` equal to this date) and those after it "
        "are the timeline from that date on. Sent on segment-changes even when `from_segment` "
        "equals `to_segment`.",
        examples=["2026-10-02"],
    )
    supersedes_seq: int | None = Field(
        None,
        description="Deprecated, always null since schema_version 2: a premature lapse is "
        "withdrawn by a correction (`corrects_from`).",
    )
