"""Building the segment changes the notifier tests publish or decide on: one builder for every
test file (a file's own kind of change is a few defaults over it)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from shared.events import SegmentChange
from shared.settings import get_settings, today_in


def today() -> date:
    return today_in(get_settings().default_time_zone)


def ago(days: int) -> date:
    return today() - timedelta(days=days)


def change(
    tenant, customer, seq, from_segment, to_segment, cause, total="100000", **extra
) -> SegmentChange:
    """A chain-wide change dated yesterday, for a customer of shibuya with 4 purchases; any
    other field of ``SegmentChange`` may be given in ``extra``."""
    fields = dict(
        scope="all",
        effective_on=ago(1),
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


def lapse(tenant, customer, seq, tier="loyal", total="100000", **extra) -> SegmentChange:
    """``customer`` lapsing out of ``tier`` (yesterday unless ``effective_on`` is given), 240
    days after their last purchase."""
    on = extra.setdefault("effective_on", ago(1))
    extra = {"last_purchase_on": on - timedelta(days=240), "lapse_days": 240, **extra}
    return change(
        tenant, customer, seq, f"{tier}_active", f"{tier}_lapsed", "lapse", total, **extra
    )


def back(tenant, customer, seq, tier="loyal", cause="purchase", **extra) -> SegmentChange:
    """``customer`` back from ``tier``'s lapse by a purchase (today unless ``effective_on`` is
    given); another ``cause`` moves them without a purchase."""
    on = extra.setdefault("effective_on", today())
    extra = {"last_purchase_on": on, "lapse_days": 0, **extra}
    return change(tenant, customer, seq, f"{tier}_lapsed", f"{tier}_active", cause, **extra)
