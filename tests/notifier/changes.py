"""Building the segment changes the notifier tests publish: one builder for every test file."""

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
    return SegmentChange(
        tenant_id=tenant,
        scope=extra.pop("scope", "all"),
        customer_id=customer,
        seq=seq,
        from_segment=from_segment,
        to_segment=to_segment,
        effective_on=extra.pop("effective_on", today() - timedelta(days=1)),
        cause=cause,
        purchase_count=extra.pop("purchase_count", 4),
        total_amount=Decimal(total),
        first_purchase_on=None,
        last_purchase_on=extra.pop("last_purchase_on", None),
        tenure_days=None,
        lapse_days=None,
        home_branch_id=extra.pop("home_branch_id", "shibuya"),
        **extra,
    )
