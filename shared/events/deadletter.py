"""``kizuna.deadletter.v1``: what could not be processed, with the reason. Never dropped."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class DeadLetter(BaseModel):
    """A record a Kizuna service could not use, as it arrived, with the reason. The record's
    offset was still committed (it would fail again): fix the producer, then send it again."""

    schema_version: int = Field(1, description="Contract version; absent means 1.")
    service: str = Field(
        description="The service that could not use the record.", examples=["classifier"]
    )
    source_topic: str = Field(
        description="The topic the record came from.", examples=["kizuna.purchases.v1"]
    )
    partition: int | None = Field(None, description="Its partition there.", examples=[3])
    offset: int | None = Field(None, description="Its offset in that partition.", examples=[1042])
    key: str | None = Field(None, description="Its key, as UTF-8 text.", examples=["demo:C000123"])
    value: str = Field(
        description="Its value, as UTF-8 text (bytes that are not UTF-8 replaced).",
        examples=['{"event_id": "pos-17-000124", "tenant_id": "demo"}'],
    )
    reason: str = Field(
        description="What is wrong with it: each field and problem, or the rule it breaks.",
        examples=["branch_id: Field required; occurred_at: Field required"],
    )
    failed_at: datetime = Field(
        description="When the service gave up on it (UTC).",
        examples=["2026-11-20T05:03:12.345000Z"],
    )
