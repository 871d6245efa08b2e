"""The owner's questions: quarters and the dormant window."""

from __future__ import annotations

from datetime import date, timedelta

from .calendar import add_months

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
