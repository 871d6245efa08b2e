"""DM response tracking: a table and its monthly cells."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.cpm import (
    SEGMENTS,
)


class DmTable(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200, examples=["2025 季節DM"])
    scope: str = Field("all", min_length=1, max_length=100)


class DmCell(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segment: str
    mailed: int = Field(ge=0, le=10_000_000)
    responses: int = Field(ge=0, le=10_000_000)

    @model_validator(mode="after")
    def _valid(self) -> DmCell:
        if self.segment not in SEGMENTS:
            raise ValueError(f"segment: unknown segment {self.segment!r}")
        if self.responses > self.mailed:
            raise ValueError("responses: more responses than mails sent")
        return self


class DmMonth(BaseModel):
    """One month's mailing: mails sent and responses per segment. ``sent_on`` (default: the
    month's first day; within the month) is the day whose segment sizes are recorded."""

    model_config = ConfigDict(extra="forbid")

    sent_on: date | None = None
    segments: list[DmCell] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> DmMonth:
        names = [c.segment for c in self.segments]
        if len(names) != len(set(names)):
            raise ValueError("segments: each segment once per month")
        return self
