"""Consumed records read against their contract model; what cannot be used becomes an outbox row
for ``kizuna.deadletter.v1`` with the reason, in the consumer's own transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from aiokafka import (
    ConsumerRecord,
)
from pydantic import BaseModel, ValidationError

from shared import metrics
from shared.events import DEADLETTER, DeadLetter
from shared.logs import record_context

log = logging.getLogger("kizuna.kafka")


def deadletter_row(service: str, record: ConsumerRecord, reason: str) -> tuple[str, str, str]:
    """An outbox row that sends an unprocessable record to the dead-letter topic."""
    value = record.value.decode("utf-8", "replace") if record.value else ""
    key = record.key.decode("utf-8", "replace") if record.key else ""
    letter = DeadLetter(
        service=service,
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        value=value,
        reason=reason,
        failed_at=datetime.now(UTC),
    )
    return DEADLETTER, key, letter.model_dump_json()


def decode_records(
    records: Sequence[ConsumerRecord],
    model: type[BaseModel],
    service: str,
    check: Callable[[BaseModel], str | None] | None = None,
) -> tuple[list, list[tuple[str, str, str]]]:
    """Records validated against a contract model; what cannot be used (not the model, or
    ``check`` names a problem) becomes a dead-letter outbox row with the reason."""
    values, dead = [], []
    for record in records:
        try:
            value = model.model_validate_json(record.value or b"")
        except ValidationError as exc:
            reason = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                + (f" (got {e['input']!r})" if e["type"] == "literal_error" else "")
                for e in exc.errors()
            )
        else:
            reason = check(value) if check else None
            if reason is None:
                values.append(value)
                continue
        dead.append(deadletter_row(service, record, reason))
        metrics.DEADLETTERS.labels(service, record.topic).inc()
        log.warning(
            "dead-lettered %s[%s]@%s: %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            extra=record_context(record.topic, record.partition, record.offset, record.key),
        )
    return values, dead
