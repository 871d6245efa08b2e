"""Months in the tenant's calendar: first and last days, stepping, parsing ``YYYY-MM``."""

from __future__ import annotations

from datetime import date, timedelta


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(month: date, n: int) -> date:
    """The first day of the month ``n`` months after (or before) ``month``'s."""
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def month_end(month: date) -> date:
    return add_months(month, 1) - timedelta(days=1)


def months(first: date, last: date) -> list[date]:
    """First days of the months from ``first``'s to ``last``'s, inclusive."""
    out, m = [], month_start(first)
    while m <= last:
        out.append(m)
        m = add_months(m, 1)
    return out


def parse_month(text: str) -> date:
    """``YYYY-MM`` (or a full date) as the first day of that month; ``ValueError`` otherwise."""
    text = text.strip()
    try:
        if len(text) == 7:
            year, month = text.split("-")
            return date(int(year), int(month), 1)
        return month_start(date.fromisoformat(text))
    except (ValueError, TypeError):
        raise ValueError("expected a month as YYYY-MM") from None


def month_text(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"
