"""The dashboard's arithmetic: the day's news, causes of a change, histograms, suggested
borders and a preview of a change of borders."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal

from shared.cpm import (
    Figures,
    Rules,
    classify,
    is_lapsed,
    tier_part,
)

NEWS_KINDS = ("new_customers", "comebacks", "newly_lapsed")


def news_kind(before: str | None, after: str | None) -> str | None:
    """What a customer's day means for the news, from their segment on the eve and at the day's
    end: a first purchase (in no segment before), a comeback (lapsed to active) or a lapse
    (active to lapsed in the same tier); anything else (a tier step up, a return) is no news."""
    if after is None:
        return None
    if before is None:
        return "new_customers"
    if is_lapsed(before) and not is_lapsed(after):
        return "comebacks"
    if not is_lapsed(before) and is_lapsed(after) and tier_part(before) == tier_part(after):
        return "newly_lapsed"
    return None


def change_cause(previous: Mapping | None, entry: Mapping) -> str:
    """Why a timeline entry exists, from the figures beside it (the timeline keeps figures,
    not causes): more purchases is a purchase, fewer a void, a lower total with the same count
    a return; unchanged figures with a move to lapsed is the lapse clock, any other move with
    unchanged figures is a change of the borders."""
    if previous is None:
        return "purchase"
    if entry["purchase_count"] > previous["purchase_count"]:
        return "purchase"
    if entry["purchase_count"] < previous["purchase_count"]:
        return "void"
    if entry["total_amount"] < previous["total_amount"]:
        return "return"
    if entry["total_amount"] > previous["total_amount"]:
        return "purchase"
    if is_lapsed(entry["segment"]) and not is_lapsed(previous["segment"]):
        return "lapse"
    return "rules"


def timeline_changes(entries: Sequence[Mapping]) -> list[dict]:
    """A customer's timeline (oldest first) as the segment changes shown on their page, newest
    first: each entry whose segment differs from the one before, with its cause and figures
    (purchases that left the segment as it was are on the page's purchase list)."""
    out, previous = [], None
    for entry in entries:
        if previous is None or entry["segment"] != previous["segment"]:
            out.append(
                {
                    "effective_on": entry["effective_on"].isoformat(),
                    "from_segment": previous["segment"] if previous else None,
                    "to_segment": entry["segment"],
                    "cause": change_cause(previous, entry),
                    "purchase_count": entry["purchase_count"],
                    "total_amount": str(entry["total_amount"]),
                }
            )
        previous = entry
    return out[::-1]


def histogram(edges: Sequence[float], counts: Mapping[int, int]) -> list[dict]:
    """Buckets ``[edges[i], edges[i+1])`` (the last open above) from counts keyed by
    PostgreSQL's ``width_bucket(value, edges)`` index: ``i + 1`` for bucket ``i``, 0 below the
    first edge (left out)."""
    return [
        {
            "from": edges[i],
            "to": edges[i + 1] if i + 1 < len(edges) else None,
            "count": int(counts.get(i + 1, 0)),
        }
        for i in range(len(edges))
    ]


GAP_EDGES = [0, 30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 330, 365, 450, 540, 730]
TOTAL_EDGES = [0, 5000, 10000, 20000, 30000, 50000, 70000, 100000, 150000, 200000, 300000, 500000]


def round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def suggest_rules(
    current: Rules,
    *,
    gap_p90: float | None,
    second_purchase_p75: float | None,
    repeat_total_p80: Decimal | None,
    repeat_tenure_median: float | None,
) -> tuple[Rules, list[dict]]:
    """A set of borders read from the tenant's own data, with the reason for each; a border
    without enough data keeps its current value.

    - 離脱期間 (lapse): 90 % of repurchases come within this gap, so a customer silent longer
      is unlikely to return unprompted (rounded up to 30 days).
    - よちよち期間 (fledgling tenure): 75 % of second purchases come within it (30 days).
    - 金額の境界 (amount): the total above which the top 20 % of repeat customers sit
      (rounded to 10,000 yen).
    - 優良の在籍期間 (loyal tenure): the median tenure of repeat customers, kept above the
      fledgling border (30 days)."""
    reasons: list[dict] = []
    lapse = current.lapse_days
    if gap_p90:
        lapse = max(30, round_up(gap_p90, 30))
        reasons.append({"field": "lapse_days", "basis": "repurchase_gap_p90", "value": gap_p90})
    fledgling = current.fledgling_tenure_days
    if second_purchase_p75:
        fledgling = max(30, round_up(second_purchase_p75, 30))
        reasons.append(
            {
                "field": "fledgling_tenure_days",
                "basis": "second_purchase_gap_p75",
                "value": second_purchase_p75,
            }
        )
    amount = current.amount_border
    if repeat_total_p80:
        amount = Decimal(max(10000, round(float(repeat_total_p80) / 10000) * 10000))
        reasons.append(
            {"field": "amount_border", "basis": "repeat_total_p80", "value": str(repeat_total_p80)}
        )
    loyal = current.loyal_tenure_days
    if repeat_tenure_median:
        loyal = round_up(repeat_tenure_median, 30)
        reasons.append(
            {
                "field": "loyal_tenure_days",
                "basis": "repeat_tenure_median",
                "value": repeat_tenure_median,
            }
        )
    loyal = max(loyal, fledgling + 30)
    rules = Rules(
        amount_border=amount,
        fledgling_tenure_days=fledgling,
        loyal_tenure_days=loyal,
        lapse_days=lapse,
        lapse_days_by_tier={},
    )
    return rules, reasons


def preview_moves(
    rows: Iterable[Mapping], today: date, rules: Rules, moves: Counter | None = None
) -> Counter:
    """(current segment, segment under ``rules`` as of ``today``) → customers, for customer
    rows with their figures, added to ``moves``: what saving the borders would do, by the same
    function the classifier re-classifies with."""
    moves = Counter() if moves is None else moves
    for row in rows:
        if row["segment"] is None or row["first_purchase_on"] is None:
            continue
        figures = Figures(
            purchase_count=row["purchase_count"],
            total_amount=row["total_amount"],
            first_purchase_on=row["first_purchase_on"],
            last_purchase_on=row["last_purchase_on"],
        )
        moves[(row["segment"], classify(figures, today, rules))] += 1
    return moves
