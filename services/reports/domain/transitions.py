"""Monthly transition tables: cells, rates, the headline and the six-month view."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal

from shared.cpm import (
    SEGMENTS,
    TIERS,
    tier_part,
)

from .calendar import add_months, month_end, month_start, months, parse_month
from .timeline import NEW, NONE, SIX

ORDER = {s: i for i, s in enumerate((NEW, *SEGMENTS, NONE))}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def transition_cells(
    sizes_at_eve: Mapping[str, int], moved: Mapping[tuple[str, str], int]
) -> list[dict]:
    """A month's table: every non-zero (from, to) cell with its rate.

    ``moved`` counts the customers who had an entry in the month by (from, to) (span-1 moves);
    everybody else in segment A at the eve is still in A at the end, so the diagonal is the size
    at the eve minus those who left A. ``rate`` is customers over the from-segment's size at the
    eve; null for ``new``. ``to`` is null for customers in no segment at the end.
    """
    cells: dict[tuple[str, str], int] = {k: int(v) for k, v in moved.items() if v}
    for segment in SEGMENTS:
        size = int(sizes_at_eve.get(segment, 0))
        left = sum(n for (f, t), n in cells.items() if f == segment and t != segment)
        stayed = size - left
        if stayed:
            cells[(segment, segment)] = stayed
        else:
            cells.pop((segment, segment), None)
    out = []
    for (f, t), n in sorted(cells.items(), key=lambda kv: (ORDER[kv[0][0]], ORDER[kv[0][1]])):
        if not n:
            continue
        out.append(
            {
                "from": f,
                "to": None if t == NONE else t,
                "customers": n,
                "rate": None if f == NEW else _rate(n, int(sizes_at_eve.get(f, 0))),
            }
        )
    return out


def headline(sizes_at_eve: Mapping[str, int], cells: Sequence[dict]) -> dict:
    """The rates staff meetings look at, from a month's cells.

    - ``first_to_fledgling`` (初回→よちよち): customers in ``first_active`` or ``first_lapsed`` at
      the eve who are ``fledgling_*`` at the end, over all first-tier customers at the eve. New
      customers who bought twice within the month are not in it (they were nobody at the eve).
    - ``active_to_lapsed``: per tier, ``<tier>_active`` at the eve → ``<tier>_lapsed`` at the end,
      over ``<tier>_active`` at the eve.
    - ``comebacks``: per tier, ``<tier>_lapsed`` at the eve → any ``*_active`` segment at the end
      (a comeback may move up a tier), over ``<tier>_lapsed`` at the eve; ``total`` over all.
    - ``new``: customers new in the month (in no segment at the eve).
    """

    def count(pred) -> int:
        return sum(c["customers"] for c in cells if pred(c["from"], c["to"]))

    def rate_of(n: int, base: int) -> dict:
        return {"customers": n, "base": base, "rate": _rate(n, base)}

    first_base = int(sizes_at_eve.get("first_active", 0)) + int(sizes_at_eve.get("first_lapsed", 0))
    first = count(lambda f, t: tier_part(f) == "first" and tier_part(t) == "fledgling")
    lapsed, comebacks = {}, {}
    total_back = total_lapsed = 0
    for tier in TIERS:
        active, gone = f"{tier}_active", f"{tier}_lapsed"
        n = count(lambda f, t, a=active, g=gone: f == a and t == g)
        lapsed[tier] = rate_of(n, int(sizes_at_eve.get(active, 0)))
        back = count(lambda f, t, g=gone: f == g and bool(t) and t.endswith("_active"))
        comebacks[tier] = rate_of(back, int(sizes_at_eve.get(gone, 0)))
        total_back += back
        total_lapsed += int(sizes_at_eve.get(gone, 0))
    comebacks["total"] = rate_of(total_back, total_lapsed)
    return {
        "first_to_fledgling": rate_of(first, first_base),
        "active_to_lapsed": lapsed,
        "comebacks": comebacks,
        "new": count(lambda f, t: f == NEW),
    }


def six_month_view(
    snapshot: date, sizes_at_snapshot: Mapping[str, int], moved: Mapping[tuple[str, str], int]
) -> dict:
    """Of the customers in tier X at the snapshot (the month-end six months earlier, either
    state), how many are in the next tier or a higher one (``TIERS`` order: first, fledgling,
    steady, trendy, loyal) at this month's end. ``moved`` are the span-6 cells."""
    rank = {t: i for i, t in enumerate(TIERS)}
    tiers = []
    for tier in TIERS[:-1]:
        base = sum(int(sizes_at_snapshot.get(f"{tier}_{s}", 0)) for s in ("active", "lapsed"))
        reached = sum(
            n
            for (f, t), n in moved.items()
            if tier_part(f) == tier and rank[tier_part(t)] > rank[tier]
        )
        tiers.append(
            {"tier": tier, "base": base, "reached": int(reached), "rate": _rate(int(reached), base)}
        )
    return {"snapshot": snapshot.isoformat(), "tiers": tiers}


def sizes(counts: Mapping[str, tuple[int, Decimal]]) -> dict[str, int]:
    return {s: int(c) for s, (c, _) in counts.items()}


def group_moves(rows: Iterable[Mapping]) -> dict[tuple[int, date], dict[tuple[str, str], int]]:
    """Stored move rows by (span, month) → {(from, to): customers}."""
    out: dict[tuple[int, date], dict[tuple[str, str], int]] = defaultdict(dict)
    for r in rows:
        if r["customers"]:
            out[(r["span"], r["month"])][(r["from_segment"], r["to_segment"])] = int(r["customers"])
    return out


MAX_TRANSITION_MONTHS = 120


def transition_months(first: str | None, last: str | None, today: date) -> list[date]:
    """The months of a transitions request (default: the twelve up to this one); ``ValueError``
    names what is wrong."""
    hi = min(parse_month(last), month_start(today)) if last else month_start(today)
    lo = parse_month(first) if first else add_months(hi, -11)
    if lo > hi:
        raise ValueError("from is after to (or after this month)")
    ms = months(lo, hi)
    if len(ms) > MAX_TRANSITION_MONTHS:
        raise ValueError(f"at most {MAX_TRANSITION_MONTHS} months per request")
    return ms


def month_ends_for(ms: Sequence[date], today: date) -> list[date]:
    """The as-of days a transitions request reads from the portfolio history: every month-end
    from six months before the first month (the six-month snapshot) to the last month (today
    for the month under way)."""
    return [min(month_end(m), today) for m in months(add_months(ms[0], -SIX), ms[-1])]
