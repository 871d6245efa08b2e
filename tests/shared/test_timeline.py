"""``shared.timeline.timeline`` against its definition, day by day: the state on a day is the
figures of the events up to that day, classified as of that day with the borders then in force;
the timeline has an entry for each day that state differs from the day before's."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.cpm import Purchase, Rules, classify, compute_figures, in_scope
from shared.timeline import Border, Borders, Entry, timeline

D0 = date(2024, 1, 1)
TODAY = date(2025, 6, 30)


def plain(events: list[Purchase], scope: str, borders: Borders, today: date) -> list[Entry]:
    scoped = [p for p in events if in_scope(p, scope)]
    days_with_events = {p.occurred_on for p in scoped}
    entries: list[Entry] = []
    before = before_segment = None
    version = None
    day = min(days_with_events)
    while day <= max(today, max(days_with_events)):
        border = borders.on(day)
        figures = compute_figures(scoped, scope, as_of=day)
        segment = classify(figures, day, border.rules)
        if (figures, segment) != (before, before_segment):
            if day in days_with_events:
                kinds = {p.kind for p in scoped if p.occurred_on == day}
                cause = "void" if "void" in kinds else "purchase" if "sale" in kinds else "return"
            elif border.version != version:
                cause = "rules"
            else:
                cause = "lapse"
            entries.append(
                Entry(day, cause, before_segment, before, segment, figures, border.version)
            )
            before, before_segment = figures, segment
        version = border.version
        day += timedelta(days=1)
    return entries


@st.composite
def cases(draw):
    events = []
    for i in range(draw(st.integers(1, 8))):
        day = D0 + timedelta(days=draw(st.integers(0, 500)))
        kind = draw(st.sampled_from(["sale", "sale", "return", "void"]))
        order = draw(st.sampled_from([None, "o1", "o2"]))
        if kind == "void" and order is None:
            order = "o1"
        amount = Decimal(0) if kind == "void" else Decimal(draw(st.integers(1, 50_000)))
        events.append(
            Purchase(f"e{i}", kind, draw(st.sampled_from(["b1", "b2"])), day, amount, order)
        )
    borders = []
    for version in range(1, draw(st.integers(0, 2)) + 1):
        day = D0 + timedelta(days=draw(st.integers(0, 540)))
        rules = Rules(
            amount_border=Decimal(draw(st.sampled_from([20_000, 70_000]))),
            lapse_days=draw(st.sampled_from([60, 240])),
        )
        borders.append(Border(day, version, rules))
    return events, Borders(borders)


@settings(max_examples=200, deadline=None)
@given(cases(), st.sampled_from(["all", "b1"]))
def test_the_timeline_is_the_day_by_day_definition(case, scope):
    events, borders = case
    if not any(in_scope(p, scope) for p in events):
        assert timeline(events, scope, borders, TODAY) == []
        return
    assert timeline(events, scope, borders, TODAY) == plain(events, scope, borders, TODAY)
