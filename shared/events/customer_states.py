"""``kizuna.customer-states.v1``: a customer's figures after every change, with those before."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field

from shared.events.segment_changes import SegmentChange


class FiguresBefore(BaseModel):
    segment: str | None
    purchase_count: int
    total_amount: Decimal
    first_purchase_on: date | None
    last_purchase_on: date | None
    tenure_days: int | None
    lapse_days: int | None


class CustomerState(SegmentChange):
    """Same fields as ``SegmentChange`` (``from_segment`` may equal ``to_segment`` here), plus
    ``before``: the figures before the change (null for a new customer). Published after every
    change of figures or segment; a correction's first message has ``effective_on`` equal to
    ``corrects_from`` and ``before`` on the eve of that day in the corrected timeline."""

    before: FiguresBefore | None = Field(
        None,
        description="Segment and figures on the eve of `effective_on` (null: nothing counted).",
    )
