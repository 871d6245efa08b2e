"""The reports service's pure logic for analyses built on the portfolio: the owner's questions,
RFM ranks, the LTV projection and DM response tracking. No I/O; table-tested in tests/reports/.

Where the figures come from (all per tenant and scope):

- **Questions** (``seeds/004``): a month's sales split and buyers come from the monthly moves
  (``history.py``); the dormant customers and last quarter's newcomers from bounded ranges of
  the timeline (90 days, at most six months); VIPs from the current customer rows, most valuable
  first (an index). Product preferences come from the purchases' line items (the event store).
- **RFM**: ranks 1–5 from the tenant's thresholds over the current customer rows (recency is
  days since the last purchase as of today).
- **LTV**: a Markov projection with the measured monthly transition matrix (pooled over a
  window of months), the measured monthly inflow of new customers and the measured monthly
  sales per customer by segment.
- **DM response tracking**: named tables of mails sent and responses per month and segment;
  the segment's size on the mailing day comes from the portfolio history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.cpm import SEGMENT_NAMES_JA, SEGMENTS

from .domain import ZERO, amount_text, csv_text, customer_body, neutralise, share
from .history import NEW, NONE, add_months, month_text, transition_cells

# --- the owner's questions -------------------------------------------------------------------------

DORMANT_FROM_DAYS, DORMANT_TO_DAYS = 60, 90


def previous_quarter(month: date) -> tuple[date, date]:
    """First and last day of the calendar quarter before the one ``month`` is in."""
    q_start = date(month.year, (month.month - 1) // 3 * 3 + 1, 1)
    first = add_months(q_start, -3)
    return first, add_months(first, 3) - timedelta(days=1)


def quarter_label(first: date) -> str:
    return f"{first.year}-Q{(first.month - 1) // 3 + 1}"


def dormant_window(as_of: date) -> tuple[date, date]:
    """Last-purchase days of customers who have not bought for 60–90 days on ``as_of``."""
    return as_of - timedelta(days=DORMANT_TO_DAYS), as_of - timedelta(days=DORMANT_FROM_DAYS)


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


# --- RFM -------------------------------------------------------------------------------------------------


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


def rfm_cells_body(scope: str, today: date, t: RfmThresholds, rows: Iterable[Mapping]) -> dict:
    """``GET /v1/rfm``: customers and sales per (R, F, M) cell (non-zero cells), the R×F table
    and per-rank totals of each measure."""
    cells = []
    rf = [[0] * 5 for _ in range(5)]
    per = {k: [0] * 5 for k in ("r", "f", "m")}
    total = 0
    for row in sorted(rows, key=lambda x: (-x["r"], -x["f"], -x["m"])):
        n = int(row["customers"])
        cells.append(
            {
                "r": row["r"],
                "f": row["f"],
                "m": row["m"],
                "customers": n,
                "sales": amount_text(Decimal(row["sales"])),
            }
        )
        rf[5 - row["r"]][5 - row["f"]] += n
        for k in ("r", "f", "m"):
            per[k][5 - row[k]] += n
        total += n
    return {
        "scope": scope,
        "as_of": today.isoformat(),
        "thresholds": t.model_dump(mode="json"),
        "customers": total,
        "cells": cells,
        "rf_table": {"rows": "R 5..1", "columns": "F 5..1", "customers": rf},
        "by_rank": {
            k: dict(zip(("5", "4", "3", "2", "1"), v, strict=True)) for k, v in per.items()
        },
    }


RFM_CSV_EXTRA = {"ja": ("R", "F", "M"), "en": ("r", "f", "m")}


def rfm_item(row: Mapping, scope: str, today: date, t: RfmThresholds) -> dict:
    body = customer_body(row, scope, today)
    body["r"] = r_rank(body["lapse_days"] or 0, t)
    body["f"] = f_rank(row["purchase_count"], t)
    body["m"] = m_rank(row["total_amount"], t)
    return body


# --- LTV projection -------------------------------------------------------------------------------------

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


# --- DM response tracking -----------------------------------------------------------------------------


class DmTable(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200, examples=["2025 季節DM"])
    scope: str = Field("all", min_length=1, max_length=100)


class DmCell(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segment: str
    mailed: int = Field(ge=0, le=10_000_000)
    responses: int = Field(ge=0, le=10_000_000)

    @model_validator(mode="after")
    def _valid(self) -> DmCell:
        if self.segment not in SEGMENTS:
            raise ValueError(f"segment: unknown segment {self.segment!r}")
        if self.responses > self.mailed:
            raise ValueError("responses: more responses than mails sent")
        return self


class DmMonth(BaseModel):
    """One month's mailing: mails sent and responses per segment. ``sent_on`` (default: the
    month's first day; within the month) is the day whose segment sizes are recorded."""

    model_config = ConfigDict(extra="forbid")

    sent_on: date | None = None
    segments: list[DmCell] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> DmMonth:
        names = [c.segment for c in self.segments]
        if len(names) != len(set(names)):
            raise ValueError("segments: each segment once per month")
        return self


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def dm_body(table: Mapping, entries: Sequence[Mapping]) -> dict:
    """A DM response table: per month and segment the segment's size on the mailing day, mails
    sent, responses, response rate (responses / mailed) and reach (mailed / size); per segment
    the totals over all months (レスポンス推移表)."""
    by_month: dict[date, list] = {}
    totals = {s: [0, 0] for s in SEGMENTS}
    order = {s: i for i, s in enumerate(SEGMENTS)}
    for e in sorted(entries, key=lambda x: (x["month"], order[x["segment"]])):
        by_month.setdefault(e["month"], []).append(e)
        totals[e["segment"]][0] += int(e["mailed"])
        totals[e["segment"]][1] += int(e["responses"])
    return {
        "id": table["table_id"],
        "name": table["name"],
        "scope": table["scope"],
        "created_at": table["created_at"].isoformat(),
        "months": [
            {
                "month": month_text(m),
                "sent_on": rows[0]["sent_on"].isoformat(),
                "segments": [
                    {
                        "segment": r["segment"],
                        "name_ja": SEGMENT_NAMES_JA[r["segment"]],
                        "segment_size": int(r["segment_size"]),
                        "mailed": int(r["mailed"]),
                        "responses": int(r["responses"]),
                        "response_rate": _rate(int(r["responses"]), int(r["mailed"])),
                        "reach": _rate(int(r["mailed"]), int(r["segment_size"])),
                    }
                    for r in rows
                ],
            }
            for m, rows in by_month.items()
        ],
        "by_segment": [
            {
                "segment": s,
                "name_ja": SEGMENT_NAMES_JA[s],
                "mailed": mailed,
                "responses": responses,
                "response_rate": _rate(responses, mailed),
            }
            for s, (mailed, responses) in totals.items()
            if mailed
        ],
    }


DM_CSV_HEADERS = {
    "ja": ("表", "月", "発送日", "顧客層", "顧客数", "発送数", "反応数", "反応率"),
    "en": (
        "table",
        "month",
        "sent_on",
        "segment",
        "segment_size",
        "mailed",
        "responses",
        "response_rate",
    ),
}


def dm_csv(body: Mapping, language: str) -> str:
    """The DM table as CSV text: one row per month and segment, cells made inert."""
    lines = [list(DM_CSV_HEADERS[language])]
    for month in body["months"]:
        for c in month["segments"]:
            segment = c["name_ja"] if language == "ja" else c["segment"]
            rate = c["response_rate"]
            cells = [
                body["name"],
                month["month"],
                month["sent_on"],
                segment,
                c["segment_size"],
                c["mailed"],
                c["responses"],
                "" if rate is None else f"{rate:.4f}",
            ]
            lines.append([neutralise(str(x)) for x in cells])
    return csv_text(lines)
