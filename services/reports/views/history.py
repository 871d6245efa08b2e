"""Bodies of the portfolio history and of the transition tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal

from shared.cpm import (
    SEGMENTS,
)

from ..domain.calendar import add_months, month_end, month_text
from ..domain.history import Counts
from ..domain.portfolio import ZERO
from ..domain.timeline import SIX
from ..domain.transitions import group_moves, headline, six_month_view, sizes, transition_cells
from .portfolio import amount_text


def history_body(
    scope: str, granularity: str, labels: Sequence[str], ends: Sequence[date], points: list[Counts]
) -> dict:
    """The history response: columns per segment (all ten, in ``SEGMENTS`` order) and totals."""
    series = []
    for segment in SEGMENTS:
        series.append(
            {
                "segment": segment,
                "customers": [int(p.get(segment, (0, ZERO))[0]) for p in points],
                "sales": [amount_text(Decimal(p.get(segment, (0, ZERO))[1])) for p in points],
            }
        )
    return {
        "scope": scope,
        "granularity": granularity,
        "from": labels[0] if labels else None,
        "to": labels[-1] if labels else None,
        "periods": list(labels),
        "as_of": [e.isoformat() for e in ends],
        "total_customers": [
            sum(int(c) for s, (c, _) in p.items() if s in SEGMENTS) for p in points
        ],
        "total_sales": [
            amount_text(sum((Decimal(v) for s, (_, v) in p.items() if s in SEGMENTS), ZERO))
            for p in points
        ],
        "segments": series,
    }


def transitions_body(
    scope: str,
    ms: Sequence[date],
    at: Mapping[date, Counts],
    stored_moves: Iterable[Mapping],
    complete_from: date | None,
    today: date,
) -> dict:
    """``GET /v1/transitions``: per month its cells, headline and six-month view.

    ``at`` maps the first day of each month from six months before the first to the last month
    to the portfolio at that month's end (or today). ``complete`` is false for months before
    ``complete_from`` (a database whose reports predate the timeline)."""
    grouped = group_moves(stored_moves)
    out = []
    for m in ms:
        eve_month, snap_month = add_months(m, -1), add_months(m, -SIX)
        at_eve = sizes(at[eve_month])
        cells = transition_cells(at_eve, grouped.get((1, m), {}))
        out.append(
            {
                "month": month_text(m),
                "eve": month_end(eve_month).isoformat(),
                "end": min(month_end(m), today).isoformat(),
                "complete": complete_from is None or m >= complete_from,
                "customers_at_eve": sum(at_eve.get(s, 0) for s in SEGMENTS),
                "customers_at_end": sum(sizes(at[m]).get(s, 0) for s in SEGMENTS),
                "cells": cells,
                "headline": headline(at_eve, cells),
                "six_month": {
                    **six_month_view(
                        month_end(snap_month), sizes(at[snap_month]), grouped.get((SIX, m), {})
                    ),
                    "complete": complete_from is None or m >= add_months(complete_from, SIX - 1),
                },
            }
        )
    return {
        "scope": scope,
        "from": month_text(ms[0]),
        "to": month_text(ms[-1]),
        "months": out,
    }
