"""``/v1/notifications`` and ``/v1/alerts``: settings, deliveries, alerts."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from shared.access import Permission, TenantId, allow
from shared.http import ApiError, AppSettings, Pool

from .. import messages, store
from ..domain.followups import CHAIN
from ..domain.settings import NotificationSettings

router = APIRouter()


class SettingsBody(NotificationSettings):
    """The settings as PUT: everything in ``NotificationSettings`` plus the webhook secret."""

    webhook_secret: str | None = Field(
        None,
        min_length=16,
        max_length=200,
        description="Signs webhook bodies (HMAC-SHA256). Write-only; omitted keeps the stored one.",
    )


def _settings_view(stored: store.StoredSettings) -> dict:
    return {
        "version": stored.version,
        "settings": stored.settings.model_dump(mode="json"),
        "webhook_secret_set": stored.webhook_secret is not None,
        "template_fields": messages.FIELDS,
        "default_templates": {
            kind: {"subject": subject, "body": body}
            for kind, (subject, body) in messages.DEFAULT_TEMPLATES.items()
        },
    }


@router.get(
    "/v1/notifications/settings",
    tags=["notifications"],
    dependencies=[allow(Permission.SETTINGS, chain_only=True)],
)
async def get_notification_settings(pool: Pool, tenant_id: TenantId) -> dict:
    """Recipients (per branch, or chain-wide), immediate or digest per segment, the at-risk
    policy and templates; the defaults (version 0) until set. The webhook secret is never
    shown, only whether one is set."""
    async with pool.acquire() as conn:
        return _settings_view(await store.load_settings(conn, tenant_id))


@router.put(
    "/v1/notifications/settings",
    tags=["notifications"],
    dependencies=[allow(Permission.SETTINGS, chain_only=True)],
)
async def put_notification_settings(
    pool: Pool, tenant_id: TenantId, settings: AppSettings, body: SettingsBody
) -> dict:
    """Replace the settings. They apply to alerts raised from now on (an alert's routing and
    text are fixed when it is raised, so its resends stay identical)."""
    settings = NotificationSettings.model_validate(body.model_dump(exclude={"webhook_secret"}))
    async with pool.acquire() as conn, conn.transaction():
        current = await store.load_settings(conn, tenant_id)
        if settings.has_webhooks and not (body.webhook_secret or current.webhook_secret):
            raise ApiError(
                422,
                "webhook_secret_required",
                "webhook recipients need a webhook_secret to sign with",
                problems=[{"field": "webhook_secret", "reason": "required with webhooks"}],
            )
        stored = await store.save_settings(conn, tenant_id, settings, body.webhook_secret)
    return _settings_view(stored)


DeliveryStatus = Literal["pending", "sent", "dead", "cancelled", "digested"]


@router.get(
    "/v1/notifications/deliveries",
    tags=["notifications"],
    dependencies=[allow(Permission.SETTINGS, chain_only=True)],
)
async def list_deliveries(
    pool: Pool,
    tenant_id: TenantId,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict:
    """Alert deliveries, newest first; ``status=dead`` is the dead-letter list (attempts and
    the last error on each)."""
    async with pool.acquire() as conn:
        return {"items": await store.list_deliveries(conn, tenant_id, status, limit)}


@router.post(
    "/v1/notifications/deliveries/{delivery_id}/retry",
    tags=["notifications"],
    dependencies=[allow(Permission.SETTINGS, chain_only=True)],
)
async def retry_delivery(delivery_id: str, pool: Pool, tenant_id: TenantId) -> dict:
    """Send a dead delivery again (same id: a receiver that did get it can drop it)."""
    async with pool.acquire() as conn:
        row = await store.retry_delivery(conn, tenant_id, delivery_id)
    if row is None:
        raise ApiError(404, "not_found", f"no delivery {delivery_id}", id=delivery_id)
    if row["status"] != "pending":
        raise ApiError(
            409, "not_dead", f"delivery {delivery_id} is {row['status']}", current=row["status"]
        )
    return row


@router.get("/v1/alerts", tags=["notifications"], dependencies=[allow(Permission.FOLLOWUPS)])
async def list_alerts(
    pool: Pool,
    tenant_id: TenantId,
    scope: Annotated[
        str, Query(min_length=1, max_length=100, description="'all' or a branch_id")
    ] = CHAIN,
    kind: Literal["lapsed", "at_risk"] | None = None,
    since: Annotated[date | None, Query(description="Raised for this day or later.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict:
    """Alerts most valuable first, with where each went: a branch sees its customers', the
    chain (``scope=all``) sees all."""
    async with pool.acquire() as conn:
        items = await store.list_alerts(
            conn,
            tenant_id,
            branch_id=None if scope == CHAIN else scope,
            kind=kind,
            since=since,
            limit=limit,
        )
    return {"items": items}
