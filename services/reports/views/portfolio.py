"""Bodies of the portfolio and of a customer; amounts and shares as text."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal

from shared.cpm import (
    SEGMENT_NAMES_JA,
    SEGMENTS,
)

from ..domain.portfolio import ZERO


def amount_text(value: Decimal | None) -> str | None:
    """An amount as a plain decimal string: ``105607`` or ``1234.5``, never an exponent."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    return format(value.normalize(), "f")


def share(part, whole) -> float:
    """``part / whole`` rounded to 4 places; 0 when the whole is 0."""
    if not whole:
        return 0.0
    return float(round(Decimal(part) / Decimal(whole), 4))


def portfolio_body(scope: str, as_of: date, counts: Mapping[str, tuple[int, Decimal]]) -> dict:
    """The portfolio response: all ten segments in ``SEGMENTS`` order, zeros included."""
    total_customers = sum(int(counts.get(s, (0, ZERO))[0]) for s in SEGMENTS)
    total_sales = sum((Decimal(counts.get(s, (0, ZERO))[1]) for s in SEGMENTS), ZERO)
    segments = []
    for segment in SEGMENTS:
        customers, sales = counts.get(segment, (0, ZERO))
        segments.append(
            {
                "segment": segment,
                "name_ja": SEGMENT_NAMES_JA[segment],
                "customers": int(customers),
                "sales": amount_text(Decimal(sales)),
                "customer_share": share(customers, total_customers),
                "sales_share": share(sales, total_sales),
            }
        )
    return {
        "scope": scope,
        "as_of": as_of.isoformat(),
        "total_customers": total_customers,
        "total_sales": amount_text(total_sales),
        "segments": segments,
    }


def customer_body(row: Mapping, scope: str, today: date) -> dict:
    """One customer's figures; tenure from first to last purchase, lapse from last purchase to
    ``today`` (never negative: a clock pinned before the last purchase shows 0)."""
    first, last = row["first_purchase_on"], row["last_purchase_on"]
    segment = row["segment"]
    return {
        "customer_id": row["customer_id"],
        "scope": scope,
        "segment": segment,
        "name_ja": SEGMENT_NAMES_JA.get(segment) if segment else None,
        "purchase_count": row["purchase_count"],
        "total_amount": amount_text(row["total_amount"]),
        "first_purchase_on": first.isoformat() if first else None,
        "last_purchase_on": last.isoformat() if last else None,
        "tenure_days": (last - first).days if first and last else None,
        "lapse_days": max(0, (today - last).days) if last else None,
        "home_branch_id": row["home_branch_id"],
        **{field: _text(row.get(field)) for field in CONTACT_FIELDS if field in row.keys()},
    }


# Customer master data joined into segment lists, when a customers file was imported.
CONTACT_FIELDS = (
    "customer_name",
    "kana",
    "email",
    "phone",
    "postal_code",
    "address",
    "mail_consent",
)


def _text(value):
    if isinstance(value, bool) or value is None:
        return value
    return str(value) or None
