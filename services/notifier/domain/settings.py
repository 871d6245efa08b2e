"""A tenant's notification settings: recipients, modes, the at-risk policy, alert templates."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.cpm import SEGMENTS

from .. import messages

Mode = Literal["immediate", "digest"]
AlertKind = Literal["lapsed", "at_risk"]
ACTIVE_SEGMENTS = tuple(s for s in SEGMENTS if s.endswith("_active"))


class Recipient(BaseModel):
    """Where alerts go. A branch recipient gets the alerts of customers whose home branch it
    is; a chain-wide one (``branch_id`` null) gets every alert."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Literal["email", "webhook"]
    address: str = Field(
        min_length=3,
        max_length=2000,
        description="An e-mail address, or the webhook's http(s) URL.",
        examples=["shibuya@example.jp", "https://hooks.example.jp/kizuna"],
    )
    branch_id: str | None = Field(
        None, max_length=100, description="null: chain-wide staff, who see every alert."
    )

    @model_validator(mode="after")
    def _address_fits_channel(self) -> Recipient:
        if self.channel == "email":
            local, _, domain = self.address.partition("@")
            if not local or not domain or any(c.isspace() or c in ",<>" for c in self.address):
                raise ValueError(f"not an e-mail address: {self.address!r}")
        else:
            parts = urlsplit(self.address)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"a webhook needs an http(s) URL, not {self.address!r}")
        return self


class AtRiskPolicy(BaseModel):
    """The early warning: an active customer of ``segments`` whose days since the last purchase
    are beyond ``factor`` times their own usual gap between purchases, and at least
    ``min_days``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    factor: float = Field(2.0, ge=1.0, le=20.0, description="× the customer's median gap")
    min_days: int = Field(30, ge=1, le=3650, description="never earlier than this silence")
    segments: tuple[str, ...] = Field(("loyal_active", "trendy_active"), max_length=5)

    @field_validator("segments")
    @classmethod
    def _active_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        wrong = [s for s in value if s not in ACTIVE_SEGMENTS]
        if wrong:
            raise ValueError(f"at-risk applies to active segments {ACTIVE_SEGMENTS}, not {wrong}")
        return tuple(dict.fromkeys(value))


class AlertTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=5000)

    @field_validator("subject", "body")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        return _check_placeholders(value)


def _check_placeholders(template: str) -> str:
    unknown = messages.unknown_fields(template)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; known: {sorted(messages.FIELDS)}")
    return template


class NotificationSettings(BaseModel):
    """A tenant's alerting: recipients, immediate or morning digest per segment, the at-risk
    policy and optional templates (Japanese defaults in ``messages.DEFAULT_TEMPLATES``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipients: tuple[Recipient, ...] = Field((), max_length=500)
    default_mode: Mode = "immediate"
    modes: dict[str, Mode] = Field(
        default_factory=dict,
        description="Per segment the alert is about (e.g. loyal_lapsed, or loyal_active for "
        "at-risk): 'immediate' or 'digest' (one e-mail per branch each morning).",
        examples=[{"loyal_lapsed": "immediate", "first_lapsed": "digest"}],
    )
    digest_hour: int = Field(8, ge=0, le=23, description="Local hour of the morning digest.")
    at_risk: AtRiskPolicy = Field(default_factory=AtRiskPolicy)
    templates: dict[AlertKind, AlertTemplate] = Field(default_factory=dict)

    @field_validator("modes")
    @classmethod
    def _known_segments(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(SEGMENTS))
        if unknown:
            raise ValueError(f"unknown segment(s) {unknown}")
        return value

    def mode_for(self, segment: str) -> Mode:
        return self.modes.get(segment, self.default_mode)

    def route(self, branch_id: str | None) -> tuple[list[str], list[str]]:
        """E-mail addresses and webhook URLs for an alert about a customer of ``branch_id``:
        chain-wide recipients plus that branch's, each once, in a stable order."""
        emails: dict[str, None] = {}
        hooks: dict[str, None] = {}
        for r in self.recipients:
            if r.branch_id is None or (branch_id is not None and r.branch_id == branch_id):
                (emails if r.channel == "email" else hooks)[r.address] = None
        return sorted(emails), sorted(hooks)

    @property
    def has_webhooks(self) -> bool:
        return any(r.channel == "webhook" for r in self.recipients)

    def template(self, kind: str) -> tuple[str, str]:
        custom = self.templates.get(kind)
        return (custom.subject, custom.body) if custom else messages.DEFAULT_TEMPLATES[kind]


DEFAULT_NOTIFICATION_SETTINGS = NotificationSettings()
