"""What a consumer of ``kizuna.segment-changes.v1`` / ``kizuna.customer-states.v1`` holds after
applying the correction contract (README, "Corrections"), for tests that read the topics."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date

from aiokafka import AIOKafkaConsumer

from shared.events import SEGMENT_CHANGES
from shared.kafka import high_watermarks
from shared.timeline import Entry


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


def segment_moves(messages: list[dict]) -> list[tuple[str, str | None, str | None]]:
    """The segment moves a consumer holds (restatements that move nobody left out)."""
    return [
        (m["effective_on"], m["from_segment"], m["to_segment"])
        for m in messages
        if m["from_segment"] != m["to_segment"]
    ]


def timeline_moves(entries: list[Entry]) -> list[tuple[str, str | None, str | None]]:
    """The same, of a from-scratch timeline."""
    return [
        (e.effective_on.isoformat(), e.before_segment, e.segment)
        for e in entries
        if e.before_segment != e.segment
    ]


def day(text: str) -> date:
    return date.fromisoformat(text)


async def read_changes(bootstrap: str, tenant: str) -> list[dict]:
    marks = await high_watermarks(bootstrap, [SEGMENT_CHANGES])
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out = []
    try:
        consumer.assign(list(marks))
        for tp in marks:
            consumer.seek(tp, 0)
        remaining = {tp for tp, hw in marks.items() if hw > 0}
        while remaining:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    # the topic is shared with other tests (some publish poison on purpose)
                    if r.key and r.key.decode().startswith(f"{tenant}:"):
                        out.append(json.loads(r.value))
                    if r.offset + 1 >= marks[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return out
