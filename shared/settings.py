"""Configuration: environment variables with the prefix ``KIZUNA_``, plus ``DATABASE_URL`` and
``KAFKA_BOOTSTRAP_SERVERS``. Validated once at start-up; no other module reads ``os.environ``."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KIZUNA_", extra="ignore", frozen=True)

    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "KIZUNA_DATABASE_URL"),
        description="PostgreSQL URL. Unset: the local server on 127.0.0.1:5432 if one answers, "
        "else an embedded server under the data directory.",
    )
    kafka_bootstrap_servers: str | None = Field(
        None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "KIZUNA_KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers. Unset: `kizuna up` starts the embedded broker.",
    )
    now: datetime | None = Field(
        None, description="Pin the clock to this ISO timestamp (historical views, tests)."
    )
    data_dir: Path = Field(Path(".kizuna"), description="Where embedded servers keep their files.")
    embedded_kafka_port: int = 9092
    host: str = "127.0.0.1"
    ingest_port: int = 8001
    reports_port: int = 8002
    notifier_port: int = 8003
    classifier_port: int = 8004
    stack_port: int = Field(
        8000,
        ge=0,
        le=65535,
        description="`kizuna up`'s own /readyz and /metrics (its processes, restarts, what "
        "keeps dying); 0: not served.",
    )
    # The dashboard (served by reports) reaches the notifier's and ingest's APIs through reports
    # (same origin: one session cookie, no CORS); unset: http://{host}:{port} of each.
    notifier_url: str | None = Field(None, description="Base URL of the notifier for reports.")
    ingest_url: str | None = Field(None, description="Base URL of ingest for reports.")
    topic_partitions: int = Field(8, ge=1, le=256)
    default_tenant: str = "demo"
    default_time_zone: str = "Asia/Tokyo"
    classifier_batch_size: int = Field(5000, ge=1)
    classifier_parallel: int = Field(
        2,
        ge=1,
        le=16,
        description="Concurrent transactions per fetched batch (disjoint partitions).",
    )
    classifier_fast_path: bool = Field(
        True,
        description="Fold a customer's in-order sales of new orders into their stored state "
        "without reading their events (off: every batch reads its customers' events).",
    )
    consumer_batch_size: int = Field(5000, ge=1)
    relay_batch_size: int = Field(5000, ge=1)
    sweep_interval_seconds: float = Field(1.0, gt=0)
    sweep_batch_size: int = Field(5000, ge=1)
    sweep_max_backlog: int = Field(
        20000,
        ge=0,
        description="The lapse sweep waits while more purchases than this are still to be read "
        "(history being loaded); events catch the clock up in date order meanwhile.",
    )
    followup_max_age_days: int = Field(
        30,
        ge=0,
        description="A lapse older than this when it is first seen (e.g. while history is "
        "loaded) is recorded but opens no follow-up task.",
    )
    session_timeout_ms: int = Field(6000, ge=1000)
    broker_replay: bool | None = Field(
        None,
        description="Keep what the broker acknowledged in PostgreSQL until its consumers have "
        "applied it, and publish it again after a broker reset (shared/replay.py). Unset: on "
        "when `kizuna up` runs the embedded broker (its log is memory only), off with "
        "KAFKA_BOOTSTRAP_SERVERS (Apache Kafka's replicated log is the durable copy).",
    )
    max_body_bytes: int = Field(
        16 << 20,
        ge=1024,
        description="Largest request body any service reads (413 beyond; refused while it "
        "streams in, never read whole).",
    )
    max_upload_bytes: int = Field(
        4 << 30, ge=1024, description="Largest CSV upload (`POST /v1/imports/...`)."
    )
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`json`: one JSON object per line with tenant, topic, partition and offset "
        "as fields where they apply (for a log pipeline); `text`: lines for a terminal.",
    )

    # --- Notifier: alert delivery (e-mail over SMTP, webhooks) and the at-risk scan ----------
    # docker-compose points smtp_host/port at Mailpit; the defaults suit a local Mailpit or a
    # test server. Retries and back-off apply to both channels (services/notifier/README.md).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(1025, ge=1, le=65535)
    smtp_from: str = Field("Kizuna <kizuna@localhost>", description="From header of alerts.")
    smtp_timeout_seconds: float = Field(10.0, gt=0)
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    delivery_max_attempts: int = Field(
        6, ge=1, le=50, description="Tries per alert delivery; then it is recorded as dead."
    )
    delivery_backoff_seconds: float = Field(
        5.0, gt=0, description="Wait before the first retry; doubles with every further try."
    )
    delivery_backoff_max_seconds: float = Field(3600.0, gt=0)
    alert_worker_interval_seconds: float = Field(
        1.0, gt=0, description="How often the delivery worker looks for due deliveries."
    )
    at_risk_scan_interval_seconds: float = Field(
        600.0, gt=0, description="How often active customers are checked for a long silence."
    )
    # --- end of the notifier's block ------------------------------------------------------

    # --- Accounts and access (shared/access) -----------------------------------------------
    api_key: str | None = Field(
        None,
        description="The API key `kizuna import` and `kizuna demo-data` send (or --key).",
        repr=False,
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="A login lasts this long, then asks again."
    )
    login_window_minutes: float = Field(
        15.0, gt=0, description="Failed logins are counted over this window."
    )
    login_failures_per_account: int = Field(
        5, ge=1, description="Failed logins of one e-mail in the window before it waits (429)."
    )
    login_failures_per_address: int = Field(
        30, ge=1, description="Failed logins from one address in the window before it waits."
    )

    @field_validator("default_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("now")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo("Asia/Tokyo"))
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()


def utcnow(settings: Settings | None = None) -> datetime:
    """The service clock: ``KIZUNA_NOW`` when pinned, else the wall clock (UTC)."""
    settings = settings or get_settings()
    return settings.now.astimezone(UTC) if settings.now else datetime.now(UTC)


def today_in(zone: str, settings: Settings | None = None):
    """Today's calendar date in a tenant's time zone."""
    return utcnow(settings).astimezone(ZoneInfo(zone)).date()
