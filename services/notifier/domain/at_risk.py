"""At risk: a silence already long for this customer (their usual gap between purchases)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from .alerts import at_risk_key
from .settings import AtRiskPolicy


@dataclass(frozen=True, slots=True)
class AtRiskCandidate:
    """An active customer's state (scope ``all``) and their purchase days (orders, net of
    voids), as the classifier stored them."""

    tenant_id: str
    customer_id: str
    segment: str
    branch_id: str | None
    total_amount: Decimal
    last_purchase_on: date
    lapse_due_on: date | None
    order_dates: tuple[date, ...]


@dataclass(frozen=True, slots=True)
class AtRisk:
    customer: AtRiskCandidate
    silence_days: int
    usual_gap_days: float

    @property
    def dedupe_key(self) -> str:
        return at_risk_key(self.customer.customer_id, self.customer.last_purchase_on)


def usual_gap_days(order_dates: Iterable[date]) -> float | None:
    """The customer's own rhythm: the median of the days between consecutive purchase days
    (several orders on one day are one purchase day). ``None`` with fewer than two days."""
    days = sorted(set(order_dates))
    gaps = [(b - a).days for a, b in zip(days, days[1:], strict=False)]
    return float(statistics.median(gaps)) if gaps else None


def assess_at_risk(c: AtRiskCandidate, today: date, policy: AtRiskPolicy) -> AtRisk | None:
    """At risk when the silence is beyond ``factor`` × the usual gap and at least ``min_days``,
    while the customer is still before the lapse border (after it, the lapse alert speaks).
    A customer buying on rhythm is never at risk."""
    if not policy.enabled or c.segment not in policy.segments:
        return None
    gap = usual_gap_days(c.order_dates)
    if gap is None:
        return None
    silence = (today - c.last_purchase_on).days
    if silence < policy.min_days or silence <= gap * policy.factor:
        return None
    if c.lapse_due_on is not None and today >= c.lapse_due_on:
        return None
    return AtRisk(c, silence, gap)
