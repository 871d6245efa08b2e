"""The body of the owner's questions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal

from shared.cpm import (
    SEGMENTS,
)

from ..domain.calendar import month_text
from ..domain.portfolio import ZERO
from ..domain.questions import dormant_window, quarter_label
from ..domain.timeline import NEW
from .portfolio import amount_text, customer_body, share


def sales_split(moves: Iterable[Mapping]) -> dict:
    """①② A month's sales (change of cumulative net sales, so returns count against it) from
    first-time customers (in no segment at the month's eve) and from repeat customers."""
    new_c = rep_c = 0
    new_s = rep_s = ZERO
    for r in moves:
        if r["from_segment"] == NEW:
            new_c += int(r["customers"])
            new_s += Decimal(r["sales"])
        else:
            if Decimal(r["sales"]) != 0:
                rep_c += int(r["customers"])
            rep_s += Decimal(r["sales"])
    total = new_s + rep_s
    return {
        "total_sales": amount_text(total),
        "first_time": {
            "customers": new_c,
            "sales": amount_text(new_s),
            "share": share(new_s, total),
        },
        "repeat": {"customers": rep_c, "sales": amount_text(rep_s), "share": share(rep_s, total)},
    }


def vip_item(row: Mapping, scope: str, today: date) -> dict:
    """⑥⑦ A VIP with how often they buy: the average interval between purchases over their
    tenure, and purchases per year of tenure (at least a month of tenure counted)."""
    body = customer_body(row, scope, today)
    count, tenure = row["purchase_count"], body["tenure_days"] or 0
    body["average_interval_days"] = round(tenure / (count - 1), 1) if count > 1 else None
    body["purchases_per_year"] = round(count * 365 / max(tenure, 30), 1) if count > 1 else None
    return body


def questions_body(
    *,
    scope: str,
    month: date,
    as_of: date,
    today: date,
    moves: Sequence[Mapping],
    at_end: Mapping[str, tuple[int, Decimal]],
    dormant: Sequence[Mapping],
    dormant_count: int,
    quarter: tuple[date, date],
    newcomers: tuple[int, int],
    vips: Sequence[Mapping],
    products: Mapping[str, list[dict]] | None = None,
) -> dict:
    """``GET /v1/questions``: the owner's questions (seeds/004) for one month."""
    products = products or {}
    customers = sum(int(at_end.get(s, (0, 0))[0]) for s in SEGMENTS)
    active = sum(int(at_end.get(s, (0, 0))[0]) for s in SEGMENTS if s.endswith("_active"))
    buyers = sum(int(r["buyers"]) for r in moves)
    low, high = dormant_window(as_of)
    new_customers, came_back = newcomers
    return {
        "scope": scope,
        "month": month_text(month),
        "as_of": as_of.isoformat(),
        "sales_split": sales_split(moves),
        "dormant_60_90_days": {
            "last_purchase_from": low.isoformat(),
            "last_purchase_to": high.isoformat(),
            "customers": dormant_count,
            "items": [customer_body(r, scope, as_of) for r in dormant],
        },
        "bought_this_month": {
            "buyers": buyers,
            "customers": customers,
            "share": share(buyers, customers),
            "active_customers": active,
            "share_of_active": share(buyers, active),
        },
        "new_customers_came_back": {
            "quarter": quarter_label(quarter[0]),
            "first_purchase_from": quarter[0].isoformat(),
            "first_purchase_to": quarter[1].isoformat(),
            "new_customers": new_customers,
            "came_back": came_back,
            "rate": share(came_back, new_customers),
        },
        "vips": {
            "as_of": today.isoformat(),
            "items": [
                {**vip_item(r, scope, today), "top_products": products.get(r["customer_id"], [])}
                for r in vips
            ],
        },
        "preferences": {
            "available": True,
            "source": "line items of the VIPs' sales (voided orders left out): vips[].top_products",
        },
    }
