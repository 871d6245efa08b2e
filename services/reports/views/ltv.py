"""The body of an LTV projection and simulation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal

from shared.cpm import (
    SEGMENTS,
)

from ..domain.calendar import month_text
from ..domain.ltv import Matrix, RateChange, changed_matrix, project
from .portfolio import amount_text


def _horizon_rows(path, horizons: Sequence[int]) -> list[dict]:
    rows, cumulative = [], 0.0
    sums = []
    for _, sales in path:
        cumulative += sales
        sums.append(cumulative)
    for h in horizons:
        state, sales = path[h - 1]
        rows.append(
            {
                "months": h,
                "customers": {s: round(state[s], 1) for s in SEGMENTS},
                "total_customers": round(sum(state.values()), 1),
                "monthly_sales": str(round(Decimal(sales))),
                "cumulative_sales": str(round(Decimal(sums[h - 1]))),
            }
        )
    return rows


def simulation_body(
    *,
    scope: str,
    base_month: date,
    window: Sequence[date],
    start: Mapping[str, int],
    matrix: Matrix,
    inflow: Mapping[str, float],
    per_customer: Mapping[str, Decimal],
    horizons: Sequence[int],
    changes: Sequence[RateChange],
) -> dict:
    """``POST /v1/ltv/simulations``: the baseline projection with the measured rates and, with
    changes, the scenario and its difference from the baseline."""
    months_ahead = max(horizons)
    base_path = project(start, matrix, inflow, per_customer, months_ahead)
    body = {
        "scope": scope,
        "base_month": month_text(base_month),
        "window": {"from": month_text(window[0]), "to": month_text(window[-1])},
        "start": {s: int(start.get(s, 0)) for s in SEGMENTS},
        "rates": {s: {t: round(p, 4) for t, p in matrix[s].items()} for s in SEGMENTS},
        "new_customers_per_month": {s: round(inflow.get(s, 0.0), 2) for s in SEGMENTS},
        "monthly_sales_per_customer": {s: amount_text(per_customer[s]) for s in SEGMENTS},
        "baseline": _horizon_rows(base_path, horizons),
        "scenario": None,
        "difference": None,
    }
    if changes:
        changed = changed_matrix(matrix, changes)
        path = project(start, changed, inflow, per_customer, months_ahead)
        scenario = _horizon_rows(path, horizons)
        body["scenario"] = {
            "changes": [c.model_dump(by_alias=True, exclude_none=True) for c in changes],
            "rates": {s: {t: round(p, 4) for t, p in changed[s].items()} for s in SEGMENTS},
            "horizons": scenario,
        }
        body["difference"] = [
            {
                "months": b["months"],
                "customers": {s: round(c["customers"][s] - b["customers"][s], 1) for s in SEGMENTS},
                "total_customers": round(c["total_customers"] - b["total_customers"], 1),
                "cumulative_sales": str(
                    Decimal(c["cumulative_sales"]) - Decimal(b["cumulative_sales"])
                ),
            }
            for b, c in zip(body["baseline"], scenario, strict=True)
        ]
    return body
