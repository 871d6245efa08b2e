"""``kizuna.customer-states.v1``: a customer's figures after every change, with those before."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field

from shared.events.segment_changes import SegmentChange
from shared.events.segments import Segment


class FiguresBefore(BaseModel):
    """The customer's figures in this scope on the eve of the change (in a correction: on the
    eve of its ``effective_on`` in the corrected timeline)."""

    segment: Segment | None = Field(
        description="Segment before the change (null when the customer was in none).",
        examples=["first_active"],
    )
    purchase_count: int = Field(description="Purchases counted (an order is one).", examples=[1])
    total_amount: Decimal = Field(
        description="Spending, tax included, returns subtracted.", examples=["10800"]
    )
    first_purchase_on: date | None = Field(
        description="Day of the first counted purchase (tenant's zone).", examples=["2026-05-02"]
    )
    last_purchase_on: date | None = Field(
        description="Day of the last counted purchase (tenant's zone).", examples=["2026-05-02"]
    )
    tenure_days: int | None = Field(
        description="Days from the first to the last purchase.", examples=[0]
    )
    lapse_days: int | None = Field(
        description="Days since the last purchase, as of the change.", examples=[201]
    )


class CustomerState(SegmentChange):
    """Same fields as ``SegmentChange`` (``from_segment`` may equal ``to_segment`` here), plus
    ``before``: the figures before the change (null for a new customer). Published after every
    change of figures or segment; a correction's first message has ``effective_on`` equal to
    ``corrects_from`` and ``before`` on the eve of that day in the corrected timeline."""

    before: FiguresBefore | None = Field(
        None,
        description="Segment and figures on the eve of `effective_on` (null: nothing counted).",
    )
