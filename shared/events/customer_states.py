"""``kizuna.customer-states.v1``: a customer's figures after every change, with those before."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel

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
    ``before``: the figures before the change (null for a new customer)."""

    before: FiguresBefore | None = None
