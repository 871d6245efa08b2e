"""Building the segment changes the notifier tests publish or decide on: one builder for every
test file (a file's own kind of change is a few defaults over it)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from shared.events import SegmentChange
from shared.settings import get_settings, today_in


def today() -> date:
    return today_in(get_settings().default_time_zone)


def change(
    tenant, customer, seq, from_segment, to_segment, cause, total="100000", **extra
) -> SegmentChange:
    """A chain-wide change dated yesterday, for a customer of shibuya with 4 purchases; any
    other field of ``SegmentChange`` may be given in ``extra``."""
    fields = dict(
        scope="all",
        effective_on=today() - timedelta(days=1),
        purchase_count=4,
        first_purchase_on=None,
        last_purchase_on=None,
        tenure_days=None,
        lapse_days=None,
        home_branch_id="shibuya",
    )
    return SegmentChange(
        tenant_id=tenant,
        customer_id=customer,
        seq=seq,
        from_segment=from_segment,
        to_segment=to_segment,
        cause=cause,
        total_amount=Decimal(total),
        **{**fields, **extra},
    )
