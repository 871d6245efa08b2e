"""RFM: a tenant's borders, a customer's ranks, and the customer-row conditions of rank ranges."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class RfmThresholds(BaseModel):
    """A tenant's RFM borders, four per measure, for ranks 5..2 (recency) or 2..5 (others).

    Defaults follow the seed's published example (seeds/003, an average order of 5,000 yen:
    ordered 10 days ago → R5, a year ago → R2; 5 orders → F4; "4 or more orders" = F ≥ 4) with
    the money borders doubled for Kizuna's default average order of about 10,000 yen.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    recency_days: tuple[int, int, int, int] = Field(
        (30, 180, 270, 365),
        description="Days since the last purchase at most: R5, R4, R3, R2 (else R1).",
    )
    frequency: tuple[int, int, int, int] = Field(
        (2, 3, 4, 10), description="Purchases at least: F2, F3, F4, F5 (else F1)."
    )
    monetary: tuple[Decimal, Decimal, Decimal, Decimal] = Field(
        (Decimal(20000), Decimal(30000), Decimal(50000), Decimal(100000)),
        description="Cumulative sales at least: M2, M3, M4, M5 (else M1).",
    )

    @field_validator("recency_days", "frequency", "monetary")
    @classmethod
    def _increasing(cls, value):
        if any(v < 0 for v in value):
            raise ValueError("borders must not be negative")
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError("borders must be strictly increasing")
        return value

    @model_validator(mode="after")
    def _positive_frequency(self) -> RfmThresholds:
        if self.frequency[0] < 1:
            raise ValueError("frequency: borders start at 1 purchase or more")
        return self


DEFAULT_RFM = RfmThresholds()


def r_rank(lapse_days: int, t: RfmThresholds) -> int:
    for rank, border in zip((5, 4, 3, 2), t.recency_days, strict=True):
        if lapse_days <= border:
            return rank
    return 1


def f_rank(count: int, t: RfmThresholds) -> int:
    rank = 1
    for r, border in zip((2, 3, 4, 5), t.frequency, strict=True):
        if count >= border:
            rank = r
    return rank


def m_rank(total: Decimal, t: RfmThresholds) -> int:
    rank = 1
    for r, border in zip((2, 3, 4, 5), t.monetary, strict=True):
        if total >= border:
            rank = r
    return rank


def rfm_filter(
    t: RfmThresholds, today: date, r: tuple[int, int], f: tuple[int, int], m: tuple[int, int]
) -> dict:
    """The customer-row conditions of rank ranges (each ``(low, high)``, 1..5), for SQL:
    ``last_from``/``last_to`` (last purchase day, inclusive), ``count_from``/``count_below``
    and ``total_from``/``total_below`` (``None``: unbounded)."""
    # (fewest, most) days since the last purchase per recency rank.
    rec: dict[int, tuple[int, int | None]] = {5: (0, t.recency_days[0])}
    for k, i in ((4, 1), (3, 2), (2, 3)):
        rec[k] = (t.recency_days[i - 1] + 1, t.recency_days[i])
    rec[1] = (t.recency_days[3] + 1, None)
    lapse_low = rec[r[1]][0]  # the highest rank wanted has the smallest lapse
    lapse_high = rec[r[0]][1]
    freq = {1: (None, t.frequency[0])}
    money = {1: (None, t.monetary[0])}
    for k in (2, 3, 4):
        freq[k] = (t.frequency[k - 2], t.frequency[k - 1])
        money[k] = (t.monetary[k - 2], t.monetary[k - 1])
    freq[5] = (t.frequency[3], None)
    money[5] = (t.monetary[3], None)
    return {
        "last_from": today - timedelta(days=lapse_high) if lapse_high is not None else None,
        "last_to": today - timedelta(days=lapse_low) if lapse_low else None,
        "count_from": freq[f[0]][0],
        "count_below": freq[f[1]][1],
        "total_from": money[m[0]][0],
        "total_below": money[m[1]][1],
    }
