"""Validation errors of a request body as ``{field, reason}``."""

from __future__ import annotations

from pydantic import ValidationError

from shared.cpm import (
    Rules,
)

_RULE_FIELDS = tuple(Rules.model_fields)


def problems(exc: ValidationError) -> list[dict]:
    """Validation errors of any request body as ``{"field", "reason"}`` (``rule_problems``)."""
    return rule_problems(exc)


def rule_problems(exc: ValidationError) -> list[dict]:
    """Validation errors of a ``Rules`` body as ``{"field", "reason"}``. Errors of the whole
    model (borders that contradict each other) are attributed to the field their message names."""
    problems = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        reason = error["msg"].removeprefix("Value error, ")
        if not loc:
            named = [(reason.find(f), f) for f in _RULE_FIELDS if f in reason]
            # Earliest mention wins; on a tie the longer name (lapse_days_by_tier, not lapse_days).
            loc = [min(named, key=lambda n: (n[0], -len(n[1])))[1]] if named else []
        problems.append({"field": ".".join(loc) or "body", "reason": reason})
    return problems
