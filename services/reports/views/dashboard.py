"""The body of the dashboard's preview of a change of borders."""

from __future__ import annotations

from collections import Counter
from datetime import date

from shared.cpm import (
    Rules,
)


def preview_body(scope: str, today: date, rules: Rules, moves: Counter) -> dict:
    cells = [
        {"from": a, "to": b, "customers": n}
        for (a, b), n in sorted(moves.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return {
        "scope": scope,
        "as_of": today.isoformat(),
        "rules": rules.model_dump(mode="json"),
        "customers": sum(moves.values()),
        "moving": sum(n for (a, b), n in moves.items() if a != b),
        "moves": [c for c in cells if c["from"] != c["to"]],
    }
