"""The portfolio's history: periods of a day or month granularity and the counts at their ends."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal

from .calendar import add_months, month_end, month_start, month_text, months, parse_month
from .portfolio import ZERO

MAX_DAYS = 3700  # ten years of days in one response
MAX_MONTHS = 600


def parse_day(text: str, *, end: bool) -> date:
    """``YYYY-MM-DD``, or ``YYYY-MM`` meaning its first (``end`` false) or last day."""
    text = text.strip()
    if len(text) == 7:
        m = parse_month(text)
        return month_end(m) if end else m
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError("expected a date as YYYY-MM-DD (or a month as YYYY-MM)") from None


def periods(
    granularity: str, first: str | None, last: str | None, today: date
) -> tuple[list[str], list[date]]:
    """The labels and as-of days of a history request: each day, or each month with its last
    day as the as-of (today for the month under way). Defaults: the last 365 days or 36 months
    up to today; nothing after today. ``ValueError`` names what is wrong."""
    if granularity == "day":
        hi = min(parse_day(last, end=True), today) if last else today
        lo = parse_day(first, end=False) if first else hi - timedelta(days=364)
        if lo > hi:
            raise ValueError("from is after to (or after today)")
        if (hi - lo).days + 1 > MAX_DAYS:
            raise ValueError(f"at most {MAX_DAYS} days per request")
        days = [lo + timedelta(days=i) for i in range((hi - lo).days + 1)]
        return [d.isoformat() for d in days], days
    hi_month = min(parse_month(last), month_start(today)) if last else month_start(today)
    lo_month = parse_month(first) if first else add_months(hi_month, -35)
    if lo_month > hi_month:
        raise ValueError("from is after to (or after this month)")
    ms = months(lo_month, hi_month)
    if len(ms) > MAX_MONTHS:
        raise ValueError(f"at most {MAX_MONTHS} months per request")
    return [month_text(m) for m in ms], [min(month_end(m), today) for m in ms]


Counts = dict[str, tuple[int, Decimal]]


def accumulate(
    base: Mapping[str, tuple[int, Decimal]],
    deltas: Iterable[tuple[date, str, int, Decimal]],
    ends: Sequence[date],
) -> list[Counts]:
    """The portfolio at each of ``ends`` (ascending): ``base`` (the sums before the first period)
    plus every delta on or before that end. ``deltas`` must be sorted by day."""
    running: dict[str, list] = {s: [int(c), Decimal(v)] for s, (c, v) in base.items()}
    items = list(deltas)
    out, i = [], 0
    for end in ends:
        while i < len(items) and items[i][0] <= end:
            _, segment, c, v = items[i]
            acc = running.setdefault(segment, [0, ZERO])
            acc[0] += int(c)
            acc[1] += Decimal(v)
            i += 1
        out.append({s: (c, v) for s, (c, v) in running.items()})
    return out
