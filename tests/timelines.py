"""What a consumer of ``kizuna.segment-changes.v1`` / ``kizuna.customer-states.v1`` holds after
applying the correction contract (README, "Corrections"), for tests that read the topics."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal

from shared.events import SEGMENT_CHANGES
from shared.timeline import Entry
from tests.helpers import read_topic


def held(messages: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Per (customer, scope), the changes that still hold, in seq order: messages are applied
    in seq order (a repeated seq, as a relay retry sends it, once); one with ``corrects_from``
    first withdraws those received before with ``effective_on`` on or after that date."""
    by_key: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)
    for m in messages:
        by_key[(m["customer_id"], m["scope"])][m["seq"]] = m
    out = {}
    for key, by_seq in by_key.items():
        kept: list[dict] = []
        for seq in sorted(by_seq):
            m = by_seq[seq]
            if m.get("corrects_from"):
                kept = [k for k in kept if k["effective_on"] < m["corrects_from"]]
            kept.append(m)
        out[key] = kept
    return out


def _day_ends(days: list[tuple[str, tuple]], nothing: tuple) -> list[tuple]:
    """What holds at the end of each day it changed (the last of a day's changes holds)."""
    ends = dict(days)
    out, last = [], nothing
    for day in sorted(ends):
        if ends[day] != last:
            out.append((day, *ends[day]))
            last = ends[day]
    return out


def segment_days(messages: list[dict]) -> list[tuple]:
    """The segment a segment-changes consumer holds at the end of each day it moved."""
    return _day_ends([(m["effective_on"], (m["to_segment"],)) for m in messages], (None,))


def timeline_segment_days(entries: list[Entry]) -> list[tuple]:
    """The same, of a from-scratch timeline."""
    return _day_ends([(e.effective_on.isoformat(), (e.segment,)) for e in entries], (None,))


def state_days(messages: list[dict]) -> list[tuple]:
    """What a customer-states consumer holds at the end of each day it changed: segment, count
    and total."""
    return _day_ends(
        [
            (m["effective_on"], (m["to_segment"], m["purchase_count"], Decimal(m["total_amount"])))
            for m in messages
        ],
        (None, 0, Decimal(0)),
    )


def timeline_state_days(entries: list[Entry]) -> list[tuple]:
    """The same, of a from-scratch timeline."""
    return _day_ends(
        [
            (
                e.effective_on.isoformat(),
                (
                    e.segment,
                    e.figures.purchase_count if e.figures else 0,
                    e.figures.total_amount if e.figures else Decimal(0),
                ),
            )
            for e in entries
        ],
        (None, 0, Decimal(0)),
    )


async def read_changes(bootstrap: str, tenant: str, topic: str = SEGMENT_CHANGES) -> list[dict]:
    """Every message of a tenant on a topic, from the beginning."""
    # the topic is shared with other tests (some publish poison on purpose)
    return [
        json.loads(r.value)
        for r in await read_topic(bootstrap, topic)
        if r.key and r.key.decode().startswith(f"{tenant}:")
    ]
