"""The LTV projection: the measured monthly transition model, changed rates, the projection."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.cpm import (
    SEGMENTS,
)

from .calendar import add_months
from .portfolio import ZERO
from .timeline import NEW, NONE
from .transitions import transition_cells

HORIZONS = (12, 24, 36)


class RateChange(BaseModel):
    """A changed monthly rate for the scenario: either a new ``rate`` or a ``factor`` on the
    measured one. ``from``/``to`` are segments; ``first_to_fledgling`` as ``from`` = both first
    segments, as ``to`` = both fledgling segments is not accepted: name segments."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_segment: str = Field(alias="from")
    to_segment: str = Field(alias="to")
    rate: float | None = Field(None, ge=0, le=1)
    factor: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one(self) -> RateChange:
        for name in ("from_segment", "to_segment"):
            if getattr(self, name) not in SEGMENTS:
                raise ValueError(f"{name.split('_')[0]}: unknown segment {getattr(self, name)!r}")
        if (self.rate is None) == (self.factor is None):
            raise ValueError("give either rate or factor")
        return self


class Simulation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_month: str | None = Field(
        None, description="YYYY-MM: project from this month's end (default: last month)"
    )
    window_months: int = Field(12, ge=1, le=60, description="Months the rates are measured over")
    horizons: list[int] = Field(default_factory=lambda: list(HORIZONS))
    changes: list[RateChange] = Field(default_factory=list)

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, value: list[int]) -> list[int]:
        if not value or any(h < 1 or h > 120 for h in value):
            raise ValueError("horizons are 1 to 120 months")
        return sorted(set(value))


Matrix = dict[str, dict[str, float]]


def measured_model(
    window: Sequence[date],
    sizes_at: Mapping[date, Mapping[str, int]],
    stored_moves: Iterable[Mapping],
) -> tuple[Matrix, dict[str, float], dict[str, Decimal]]:
    """The measured model over the window's months: the monthly transition matrix (customers
    moved over customers at the eve, pooled over the months), the average monthly inflow of new
    customers per segment, and monthly sales per customer by segment (sales of the customers
    ending a month in it over its size at the end). ``sizes_at`` maps each month (first day),
    and the one before the window, to the sizes at its end; ``stored_moves`` are the window's
    rows of ``report_moves``."""
    moved: dict[date, dict[tuple[str, str], int]] = {}
    sales: dict[date, dict[str, Decimal]] = {}
    for r in stored_moves:
        if r["span"] != 1:
            continue
        moved.setdefault(r["month"], {})[(r["from_segment"], r["to_segment"])] = int(r["customers"])
        if r["to_segment"] != NONE:
            month_sales = sales.setdefault(r["month"], {})
            month_sales[r["to_segment"]] = month_sales.get(r["to_segment"], ZERO) + Decimal(
                r["sales"]
            )
    flows: dict[str, dict[str, int]] = {s: {} for s in SEGMENTS}
    base = dict.fromkeys(SEGMENTS, 0)
    inflow = dict.fromkeys(SEGMENTS, 0.0)
    sales_sum = dict.fromkeys(SEGMENTS, ZERO)
    size_sum = dict.fromkeys(SEGMENTS, 0)
    for m in window:
        eve = sizes_at[add_months(m, -1)]
        for cell in transition_cells(eve, moved.get(m, {})):
            frm, to = cell["from"], cell["to"]
            if frm == NEW:
                if to:
                    inflow[to] += cell["customers"] / len(window)
                continue
            flows[frm][to or NONE] = flows[frm].get(to or NONE, 0) + cell["customers"]
        for s in SEGMENTS:
            base[s] += int(eve.get(s, 0))
            size_sum[s] += int(sizes_at[m].get(s, 0))
            sales_sum[s] += sales.get(m, {}).get(s, ZERO)
    matrix: Matrix = {}
    for s in SEGMENTS:
        if base[s]:
            matrix[s] = {t: n / base[s] for t, n in flows[s].items() if n}
        else:
            matrix[s] = {s: 1.0}  # never seen: assume customers stay
    per_customer = {
        s: (sales_sum[s] / size_sum[s]).quantize(Decimal("0.01")) if size_sum[s] else ZERO
        for s in SEGMENTS
    }
    return matrix, inflow, per_customer


def changed_matrix(matrix: Matrix, changes: Sequence[RateChange]) -> Matrix:
    """The matrix with changed rates. A changed cell takes its new rate from (or gives it back
    to) the row's other cells within the portfolio, staying included, in proportion; customers
    who leave the portfolio (every purchase voided) stay as many. ``ValueError`` when the rate
    does not fit in its row."""
    out = {s: dict(row) for s, row in matrix.items()}
    for ch in changes:
        row = out[ch.from_segment]
        old = row.get(ch.to_segment, 0.0)
        new = ch.rate if ch.rate is not None else old * (ch.factor or 0.0)
        available = sum(p for t, p in row.items() if t != NONE)
        others = available - old
        if new > available + 1e-9:
            raise ValueError(
                f"{ch.from_segment} → {ch.to_segment}: {new:.4f} exceeds {available:.4f}, the "
                "share of the row's customers who stay in the portfolio"
            )
        if others > 0:
            scale = (available - new) / others
            for t in row:
                if t not in (ch.to_segment, NONE):
                    row[t] *= scale
        elif ch.to_segment != ch.from_segment:
            row[ch.from_segment] = available - new  # nobody else to take it from: those who stay
        elif new < available:
            raise ValueError(f"{ch.from_segment}: nobody was measured leaving it")
        row[ch.to_segment] = new
    return out


def project(
    start: Mapping[str, float],
    matrix: Matrix,
    inflow: Mapping[str, float],
    per_customer: Mapping[str, Decimal],
    months_ahead: int,
) -> list[tuple[dict[str, float], float]]:
    """Customers per segment and sales at each of the next ``months_ahead`` month-ends: each
    month, everyone moves by the matrix, the new customers arrive, and each segment's customers
    buy its measured monthly sales per customer."""
    state = {s: float(start.get(s, 0)) for s in SEGMENTS}
    out = []
    for _ in range(months_ahead):
        nxt = dict.fromkeys(SEGMENTS, 0.0)
        for s, n in state.items():
            for t, p in matrix.get(s, {s: 1.0}).items():
                if t in nxt:
                    nxt[t] += n * p
        for s in SEGMENTS:
            nxt[s] += float(inflow.get(s, 0.0))
        state = nxt
        sales = sum(state[s] * float(per_customer.get(s, ZERO)) for s in SEGMENTS)
        out.append((dict(state), sales))
    return out
