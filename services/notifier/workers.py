"""The notifier's background loops: delivering alerts (e-mail, webhooks, morning digests) and
scanning active customers for a silence already long for them.

Delivery is an outbox worker. The consumer writes alerts and their deliveries in the same
transaction as the tasks and the consumed offsets; this loop leases due deliveries (most
valuable first), sends each, and records the outcome. A crash between a receiver's acceptance
and that record sends again once the lease runs out, with the same id (the e-mail's
Message-ID, the webhook's ``X-Kizuna-Event-Id``) and the same bytes, so the receiver can drop
it. A failed try is retried with exponential back-off; after the last one the delivery is
``dead`` and stays as the dead-letter record (``GET /v1/notifications/deliveries?status=dead``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import smtplib
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import timedelta
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from shared.settings import Settings, today_in, utcnow

from . import messages, metrics, store
from .consumer import NameLookup
from .domain.alerts import SendResult, after_attempt, backoff_seconds, digest_id, plan_alert
from .domain.at_risk import assess_at_risk
from .domain.followups import AT_RISK, NewTask

log = logging.getLogger("kizuna.notifier")


async def repeat(
    step: Callable[[], Awaitable[int]], interval: float, stop: asyncio.Event, name: str
) -> None:
    """Run ``step`` until ``stop``: again at once while it finds work, else after ``interval``.
    Whatever it raises is logged and retried after a growing pause; the loop never ends on its
    own (``shared.service.supervised`` would take the service down if it did)."""
    pause = interval
    while not stop.is_set():
        try:
            busy = await step()
            pause = interval
        except Exception:  # noqa: BLE001 - database or network trouble heals; log and go on
            log.exception("%s failed; trying again in %.1fs", name, pause)
            busy = 0
            pause = min(pause * 2, 60.0)
        if not busy:
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)


# --- Channels ------------------------------------------------------------------------------------


class EmailChannel:
    """SMTP with the standard library, in a thread (one connection per message: alerts are few
    and a morning digest is one message per branch)."""

    def __init__(self, settings: Settings):
        self.host, self.port = settings.smtp_host, settings.smtp_port
        self.sender, self.timeout = settings.smtp_from, settings.smtp_timeout_seconds

    async def send(self, delivery: store.Claimed) -> SendResult:
        recipients = delivery.target.split(",")
        message = messages.email_message(
            delivery_id=delivery.id,
            sender=self.sender,
            recipients=recipients,
            subject=delivery.subject or "",
            body=delivery.body,
            created_at=delivery.created_at,
        )
        try:
            refused = await asyncio.to_thread(self._send, message, recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return SendResult(
                False, f"recipients refused: {exc.recipients}", all(c >= 500 for c in codes)
            )
        except smtplib.SMTPResponseException as exc:
            # 5xx is the server's final word (RFC 5321); 4xx and the rest may pass later.
            return SendResult(
                False, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", exc.smtp_code >= 500
            )
        except (smtplib.SMTPException, OSError) as exc:
            return SendResult(False, f"{type(exc).__name__}: {exc}")
        if refused:
            log.warning(
                "delivery %s: some recipients refused: %s",
                delivery.id,
                refused,
                extra={"tenant": delivery.tenant_id, "delivery": delivery.id},
            )
        return SendResult(True)

    def _send(self, message, recipients: list[str]) -> dict:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            return smtp.send_message(message, to_addrs=recipients)


class WebhookChannel:
    """A JSON POST signed with the tenant's secret; any answer but 2xx is a failed try."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None):
        self.client = client or httpx.AsyncClient(
            timeout=settings.webhook_timeout_seconds, follow_redirects=False
        )

    async def send(self, delivery: store.Claimed, secret: str | None) -> SendResult:
        if not secret:
            return SendResult(False, "the tenant has no webhook secret")
        body = delivery.body.encode()
        try:
            response = await self.client.post(
                delivery.target,
                content=body,
                headers=messages.webhook_headers(delivery.id, body, secret),
            )
        except httpx.HTTPError as exc:
            return SendResult(False, f"{type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return SendResult(True)
        return SendResult(False, f"HTTP {response.status_code}: {response.text[:200]}")

    async def close(self) -> None:
        await self.client.aclose()


# --- The delivery worker ---------------------------------------------------------------------------


class DeliveryWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        email: EmailChannel | None = None,
        webhook: WebhookChannel | None = None,
        batch_size: int = 100,
        concurrency: int = 8,
        lease_seconds: float | None = None,
    ):
        self.pool = pool
        self.settings = settings
        self.email = email or EmailChannel(settings)
        self.webhook = webhook or WebhookChannel(settings)
        self.batch_size = batch_size
        self.concurrency = concurrency
        # Longer than any one try, so a live worker's send is never duplicated by another.
        self.lease_seconds = (
            lease_seconds
            or 2 * max(settings.smtp_timeout_seconds, settings.webhook_timeout_seconds) + 10
        )

    async def run(self, stop: asyncio.Event) -> None:
        await repeat(self.run_once, self.settings.alert_worker_interval_seconds, stop, "delivery")

    async def close(self) -> None:
        await self.webhook.close()

    async def run_once(self) -> int:
        """Assemble due digests, then lease and send one batch. Returns what it sent or tried."""
        digests = await self.assemble_digests()
        async with self.pool.acquire() as conn:
            claimed = await store.claim_deliveries(conn, self.batch_size, self.lease_seconds)
            hooks = {c.tenant_id for c in claimed if c.channel == "webhook"}
            secrets = await store.webhook_secrets(conn, hooks) if hooks else {}
            metrics.DELIVERY_BACKLOG.set(await store.delivery_backlog(conn))
        if not claimed:
            return digests
        gate = asyncio.Semaphore(self.concurrency)

        async def deliver(delivery: store.Claimed) -> None:
            async with gate:
                if delivery.channel == "email":
                    result = await self.email.send(delivery)
                else:
                    result = await self.webhook.send(delivery, secrets.get(delivery.tenant_id))
                await self.record(delivery, result)

        # Every send finishes and is recorded before a failure is raised: one delivery's
        # trouble must not leave the others' outcomes unrecorded.
        results = await asyncio.gather(*(deliver(c) for c in claimed), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        return len(claimed) + digests

    async def record(self, delivery: store.Claimed, result: SendResult) -> None:
        attempts = delivery.attempts + 1
        status = after_attempt(result, attempts, self.settings.delivery_max_attempts)
        async with self.pool.acquire() as conn:
            if status == "sent":
                await store.record_sent(conn, delivery.id, attempts)
            else:
                await store.record_failure(
                    conn,
                    delivery.id,
                    attempts=attempts,
                    status=status,
                    error=result.error or "failed",
                    retry_in=backoff_seconds(
                        attempts,
                        self.settings.delivery_backoff_seconds,
                        self.settings.delivery_backoff_max_seconds,
                    ),
                )
        metrics.DELIVERIES.labels(
            delivery.channel, "retry" if status == "pending" else status
        ).inc()
        if status == "dead":
            log.warning(
                "delivery %s (%s to %s) is dead after %d tries: %s",
                delivery.id,
                delivery.channel,
                delivery.target,
                attempts,
                result.error,
                extra={"tenant": delivery.tenant_id, "delivery": delivery.id},
            )

    async def assemble_digests(self) -> int:
        """Turn digest members whose morning has come (the tenant's clock, ``KIZUNA_NOW``
        included) into one digest e-mail per tenant, recipients and branch."""
        now = utcnow(self.settings)
        async with self.pool.acquire() as conn, conn.transaction():
            members = await store.due_digest_members(conn, now, 5000)
            if not members:
                return 0
            zones = await store.time_zones(
                conn, {m.tenant_id for m in members}, self.settings.default_time_zone
            )
            made = 0
            for (tenant, _, branch), group in itertools.groupby(
                members, key=lambda m: (m.tenant_id, m.target, m.branch_id)
            ):
                group = list(group)
                morning = max(m.digest_due_at for m in group).astimezone(ZoneInfo(zones[tenant]))
                subject, body = messages.digest_text(
                    branch,
                    morning.date(),
                    [(m.subject, m.total_amount, m.last_purchase_on) for m in group],
                )
                await store.create_digest(
                    conn,
                    digest_id=digest_id(m.id for m in group),
                    members=group,
                    subject=subject,
                    body=body,
                )
                made += 1
        return made


# --- The at-risk scan ------------------------------------------------------------------------------


class AtRiskScanner:
    """Periodically: per tenant, active customers of the policy's segments whose silence is
    beyond their own rhythm get one at-risk task and alert per silence episode; at-risk tasks
    whose silence ended are closed. Reads the classifier's tables (see ``store``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        names: NameLookup = store.customer_names,
        page_size: int = 2000,
    ):
        self.pool, self.settings, self.names, self.page_size = pool, settings, names, page_size

    async def run(self, stop: asyncio.Event) -> None:
        async def step() -> int:
            await self.scan()
            return 0  # whatever it found, the next scan waits for the interval

        await repeat(step, self.settings.at_risk_scan_interval_seconds, stop, "at-risk scan")

    async def scan(self, tenant_ids: set[str] | None = None) -> int:
        """Scan every tenant (or those given); returns the alerts raised."""
        async with self.pool.acquire() as conn:
            known = await store.tenants(conn)
        raised = 0
        for tenant, zone in known:
            if tenant_ids is None or tenant in tenant_ids:
                raised += await self.scan_tenant(tenant, zone)
        return raised

    async def scan_tenant(self, tenant_id: str, zone: str) -> int:
        today, now = today_in(zone, self.settings), utcnow(self.settings)
        async with self.pool.acquire() as conn:
            stored = await store.load_settings(conn, tenant_id)
            await store.close_at_risk(conn, tenant_id, today)
        policy = stored.settings.at_risk
        if not policy.enabled:
            return 0
        raised, after = 0, ""
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                page = await store.at_risk_candidates(
                    conn,
                    tenant_id,
                    segments=policy.segments,
                    silent_since=today - timedelta(days=policy.min_days),
                    today=today,
                    after=after,
                    limit=self.page_size,
                )
                found = [r for c in page if (r := assess_at_risk(c, today, policy)) is not None]
                names = (
                    await self.names(conn, tenant_id, [r.customer.customer_id for r in found])
                    if found
                    else {}
                )
                alerts = [
                    plan_alert(
                        kind=AT_RISK,
                        tenant_id=tenant_id,
                        customer_id=r.customer.customer_id,
                        name=names.get(r.customer.customer_id),
                        branch_id=r.customer.branch_id,
                        segment=r.customer.segment,
                        total_amount=r.customer.total_amount,
                        last_purchase_on=r.customer.last_purchase_on,
                        effective_on=today,
                        seq=None,
                        settings=stored.settings,
                        today=today,
                        now=now,
                        zone=zone,
                        details={
                            "silence_days": r.silence_days,
                            "usual_gap_days": f"{r.usual_gap_days:g}",
                        },
                    )
                    for r in found
                ]
                opened = await store.open_tasks(
                    conn,
                    [
                        NewTask(
                            tenant_id=tenant_id,
                            customer_id=a.customer_id,
                            branch_id=a.branch_id,
                            segment=a.segment,
                            reason=AT_RISK,
                            created_on=today,
                            due_on=today,
                            total_amount=a.total_amount,
                            dedupe_key=a.alert_key,
                            note=a.subject,
                            last_purchase_on=a.last_purchase_on,
                        )
                        for a in alerts
                    ],
                )
                new = await store.raise_alerts(conn, alerts)
            raised += new
            if new:
                metrics.ALERTS_RAISED.labels(AT_RISK).inc(new)
            if opened:
                metrics.FOLLOWUPS_OPENED.labels(AT_RISK).inc(opened)
            if len(page) < self.page_size:
                return raised
            after = page[-1].customer_id
