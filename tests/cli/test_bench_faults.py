"""The fault bench's from-scratch expectation of follow-ups: the day a customer lapsed is the
day their timeline moved them from active to lapsed, the date the notifier keeps
(``effective_on``)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from services.cli.bench.faults import lapsed_on
from shared.cpm import Purchase
from shared.timeline import Borders, timeline

TODAY = date(2026, 11, 20)


def sale(n: int, on: date, amount: int = 30000, branch: str = "b0") -> Purchase:
    return Purchase(f"e{n}", "sale", branch, on, Decimal(amount), f"o{n}")


def lapse_day(events: list[Purchase]) -> date | None:
    return lapsed_on(timeline(events, "all", Borders(), TODAY))


def test_a_clock_lapse_is_dated_by_the_clock():
    events = [sale(1, date(2025, 12, 24)), sale(2, date(2026, 2, 28))]
    assert lapse_day(events) == date(2026, 2, 28) + timedelta(days=240)


def test_an_active_customer_has_no_lapse():
    assert lapse_day([sale(1, TODAY - timedelta(days=239))]) is None


def test_the_bench_customer_of_issue_13_lapsed_on_the_day_of_someone_elses_void():
    events = [
        sale(1, date(2025, 12, 24), 35872),
        sale(2, date(2026, 2, 20), 16561, "b2"),
        sale(3, date(2026, 2, 28), 25204, "b2"),
        Purchase("e4", "void", "b1", date(2026, 10, 26), Decimal(0), "o-of-someone-else"),
    ]
    assert lapse_day(events) == date(2026, 10, 26)


def test_a_void_of_the_purchase_that_kept_them_active_dates_the_lapse_by_the_void():
    # Last purchase a year ago; the order of 100 days ago is voided 10 days ago: active until
    # then, lapsed as of the void's day (the clock's day, 125 days ago, is history).
    void_on = TODAY - timedelta(days=10)
    events = [
        sale(1, TODAY - timedelta(days=400)),
        sale(2, TODAY - timedelta(days=365)),
        sale(3, TODAY - timedelta(days=100)),
        Purchase("e4", "void", "b0", void_on, Decimal(0), "o3"),
    ]
    assert lapse_day(events) == void_on


def test_a_return_after_the_lapse_keeps_its_day():
    events = [
        sale(1, date(2025, 12, 24)),
        sale(2, date(2026, 2, 28)),
        Purchase("e3", "return", "b0", date(2026, 11, 1), Decimal(500), "o2"),
    ]
    assert lapse_day(events) == date(2026, 10, 26)
