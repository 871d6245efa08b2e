"""The reports consumer's batch fold in memory: what ``services.reports.consumer`` does with a
batch of customer states, without a database (shared by the reports' unit tests)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from services.reports.domain.portfolio import Entry, fold, sum_deltas, touches_from
from services.reports.domain.timeline import entry_at, load_since, month_moves, moves_delta
from shared.events import CustomerState


class Folder:
    """One tenant's rows, whole timelines, daily and monthly deltas and moves, kept the way the
    consumer keeps them: each batch reads only the part of a timeline the store would read."""

    def __init__(self) -> None:
        self.rows: dict = {}
        self.timelines: dict[tuple[str, str], list[Entry]] = defaultdict(list)
        self.daily: Counter = Counter()  # (scope, day, segment, "c" | "s") -> sum
        self.moves: dict = {}

    def batch(self, states: Iterable[CustomerState]) -> None:
        by_key = defaultdict(list)
        for s in states:
            by_key[(s.scope, s.customer_id)].append(s)
        for key, key_states in by_key.items():
            row = self.rows.get(key)
            full = self.timelines[key]
            loaded = read_since(full, load_since(touches_from(row, key_states)))
            folded = fold(row, loaded, key_states)
            if not folded.applied:
                continue
            self.rows[key] = folded.row
            for k, (c, s, b) in moves_delta(loaded, folded.timeline, folded.lowest).items():
                acc = self.moves.setdefault((key[0], *k), [0, Decimal(0), 0])
                acc[0] += c
                acc[1] += s
                acc[2] += b
            gone = {e.seq for e in folded.removed}
            kept = [e for e in full if e.seq not in gone]
            self.timelines[key] = sorted([*kept, *folded.added], key=lambda e: e.seq)
            for (_, scope, day, segment), (c, s) in sum_deltas(
                [("t", key[0], d) for d in folded.deltas]
            ).daily.items():
                self.daily[(scope, day, segment, "c")] += c
                self.daily[(scope, day, segment, "s")] += s

    def nonzero_moves(self) -> dict:
        return {k: tuple(v) for k, v in self.moves.items() if any(v)}

    def nonzero_daily(self) -> dict:
        return {k: v for k, v in self.daily.items() if v}

    def nonzero_monthly(self) -> dict:
        monthly: Counter = Counter()
        for (scope, day, segment, kind), v in self.daily.items():
            monthly[(scope, day.replace(day=1), segment, kind)] += v
        return {k: v for k, v in monthly.items() if v}

    def portfolio(self, scope: str, day: date) -> dict[str, tuple[int, Decimal]]:
        """Customers and sales per segment as of ``day``: the daily deltas summed up to it."""
        out: dict[str, list] = defaultdict(lambda: [0, Decimal(0)])
        for (s, d, segment, kind), v in self.daily.items():
            if s == scope and d <= day:
                out[segment][0 if kind == "c" else 1] += v
        return {seg: (c, v) for seg, (c, v) in out.items() if c or v}

    def segments_on(self, scope: str, day: date) -> dict[str, tuple[str, Decimal]]:
        """Every customer's segment and total on ``day`` by their timeline."""
        out = {}
        for (s, cid), entries in self.timelines.items():
            e = entry_at(entries, day) if s == scope else None
            if e is not None and e.segment:
                out[cid] = (e.segment, e.total_amount)
        return out


def read_since(timeline: list[Entry], since: date) -> list[Entry]:
    """What the store reads of a timeline: the entries from ``since`` and the one in force
    before it, in seq order."""
    before = [e for e in timeline if e.effective_on < since]
    loaded = [e for e in timeline if e.effective_on >= since]
    if before:
        loaded.append(max(before, key=lambda e: e.seq))
    return sorted(loaded, key=lambda e: e.seq)


def recomputed_moves(timelines: dict, first: date, last: date) -> dict:
    """``report_moves`` computed from whole timelines: what the maintained table must equal."""
    out: dict = {}
    for (scope, _), entries in timelines.items():
        for k, (c, s, b) in month_moves(entries, first, last).items():
            acc = out.setdefault((scope, *k), [0, Decimal(0), 0])
            acc[0] += c
            acc[1] += s
            acc[2] += b
    return {k: tuple(v) for k, v in out.items() if any(v)}
