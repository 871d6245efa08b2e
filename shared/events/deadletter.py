"""``kizuna.deadletter.v1``: what could not be processed, with the reason. Never dropped."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class DeadLetter(BaseModel):
    schema_version: int = 1
    service: str
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    value: str
    reason: str
    failed_at: datetime
