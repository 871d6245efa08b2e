"""Alerts end to end on the real broker, PostgreSQL, a real SMTP server (aiosmtpd, in-process
on a free port) and a real HTTP webhook receiver (asyncio server on a free port): segment
changes published with aiokafka, consumed by the notifier's own consumer, delivered by its
delivery worker. Also a follow-up sequence scheduled, carried over and stopped over the broker.

"Killed" is simulated in-process: the consumer fails mid-batch and is restarted with its
offsets lost; the delivery worker is cancelled right after the SMTP server accepted a message
and before the record of it, then a fresh worker starts."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import timedelta

import asyncpg
import httpx
import pytest

from services.notifier import messages, store
from services.notifier.app import GROUP
from services.notifier.domain.settings import NotificationSettings
from services.notifier.workers import DeliveryWorker
from shared.settings import get_settings
from tests.helpers import wait_for
from tests.notifier.changes import change, lapse, today

pytestmark = pytest.mark.integration

SECRET = "webhook-secret-for-tests-0123456789"


# --- the real servers ------------------------------------------------------------------------------


class Receiver:
    """A webhook receiver: ``/flaky`` answers 500 twice, then 200; ``/down`` always 500."""

    def __init__(self):
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            _, path, _ = head[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, v in (line.split(":", 1) for line in head[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            before = sum(1 for r in self.requests if r[0] == path)
            status = 200 if path == "/flaky" and before >= 2 else 500
            self.requests.append((path, headers, body, status))
            reason = "OK" if status == 200 else "Internal Server Error"
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()

    def to(self, path: str) -> list:
        return [r for r in self.requests if r[0] == path]


@pytest.fixture(scope="module")
async def receiver():
    handler = Receiver()
    server = await asyncio.start_server(handler.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", handler
    server.close()
    await server.wait_closed()


# --- the notifier, in-process ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings(smtp):
    controller, _ = smtp
    return get_settings().model_copy(
        update={
            "session_timeout_ms": 2000,
            "smtp_host": "127.0.0.1",
            "smtp_port": controller.port,
            "smtp_timeout_seconds": 5.0,
            "webhook_timeout_seconds": 5.0,
            "delivery_backoff_seconds": 0.05,
            "delivery_max_attempts": 3,
            "alert_worker_interval_seconds": 0.05,
        }
    )


class Deliverer:
    """The delivery worker's loop as the service runs it, to start, stop or kill."""

    def __init__(self, pool, settings):
        self.pool, self.settings = pool, settings
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        # One at a time and a short lease: order is visible, and a killed worker's lease runs
        # out quickly (in the service the lease outlasts the longest send).
        self.worker = DeliveryWorker(self.pool, self.settings, concurrency=1, lease_seconds=0.5)
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(self.worker.run(self.stop_event))

    async def stop(self) -> None:
        if self.task is not None:
            self.stop_event.set()
            await self.task
            await self.worker.close()
            self.task = None

    async def kill(self) -> None:
        """Cancelled wherever it is: no clean stop, nothing recorded after this point."""
        if self.task is not None:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
            await self.worker.close()
            self.task = None


@pytest.fixture
async def deliverer(service_pool, settings):
    d = Deliverer(service_pool, settings)
    yield d
    await d.stop()


async def deliveries_of(pool, tenant) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT d.*, a.customer_id, a.alert_key FROM alert_deliveries d"
        " LEFT JOIN alerts a ON a.id = d.alert_id WHERE d.tenant_id = $1 ORDER BY d.id",
        tenant,
    )


def all_settled(pool, tenant, count):
    async def settled() -> bool:
        rows = await deliveries_of(pool, tenant)
        return len(rows) == count and all(r["status"] in ("sent", "dead") for r in rows)

    return settled


# --- e-mail ------------------------------------------------------------------------------------------


async def test_one_email_per_lapse_under_redelivery_and_a_killed_consumer(
    publish, client, service, service_pool, smtp, deliverer, monkeypatch, tenant
):
    _, inbox = smtp
    hq, shibuya, umeda = (f"{who}@{tenant}.example.jp" for who in ("hq", "shibuya", "umeda"))
    put = await client.put(
        "/v1/notifications/settings",
        json={
            "recipients": [
                {"channel": "email", "address": hq},
                {"channel": "email", "address": shibuya, "branch_id": "shibuya"},
                {"channel": "email", "address": umeda, "branch_id": "umeda"},
            ]
        },
    )
    assert put.status_code == 200, put.text

    # The first batch holding this tenant's lapses dies after the alerts were written and
    # before the commit: nothing of it stays, and the consumer reads it again.
    real_raise, died = store.raise_alerts, []

    async def raise_then_die(conn, alerts):
        new = await real_raise(conn, alerts)
        if not died and any(a.tenant_id == tenant for a in alerts):
            died.append(new)
            raise RuntimeError("killed mid-batch")
        return new

    monkeypatch.setattr(store, "raise_alerts", raise_then_die)
    loyal = lapse(tenant, "L-loyal", 7, "loyal", "300000")
    steady = lapse(tenant, "L-steady", 3, "steady", "50000", home_branch_id="umeda")
    first = lapse(tenant, "L-first", 2, "first", "8000", home_branch_id=None)
    branch_only = lapse(tenant, "L-branch", 4, scope="shibuya")
    await publish(first, steady, loyal, branch_only, loyal, steady)
    assert died  # the batch really died once, after writing alerts

    # Restarted with its offsets lost: everything is delivered again; plus one more copy.
    await service.stop()
    await service_pool.execute("DELETE FROM consumer_offsets WHERE group_id = $1", GROUP)
    await service.start()
    await publish(first)

    deliverer.start()
    await wait_for(all_settled(service_pool, tenant, 3), timeout=20, what="three e-mails sent")

    alerts = await service_pool.fetch(
        "SELECT customer_id, kind FROM alerts WHERE tenant_id = $1 ORDER BY customer_id", tenant
    )
    assert [(a["customer_id"], a["kind"]) for a in alerts] == [
        ("L-first", "lapsed"),
        ("L-loyal", "lapsed"),
        ("L-steady", "lapsed"),
    ]  # the branch-scope lapse raised nothing
    rows = await deliveries_of(service_pool, tenant)
    assert {(r["customer_id"], r["status"], r["attempts"]) for r in rows} == {
        ("L-loyal", "sent", 1),
        ("L-steady", "sent", 1),
        ("L-first", "sent", 1),
    }

    # Exactly one e-mail per lapse, routed to the home branch plus the chain-wide staff, most
    # valuable first (the worker started after all three were waiting).
    received = inbox.to(hq)
    assert [m["Subject"] for m in received] == [
        "【離脱】優良離脱客 L-loyal 様（shibuya）",
        "【離脱】コツコツ離脱客 L-steady 様（umeda）",
        "【離脱】初回離脱客 L-first 様（全社）",
    ]
    by_subject = {m["Subject"]: (rcpt, m) for rcpt, m in inbox.messages if hq in rcpt}
    assert sorted(by_subject["【離脱】優良離脱客 L-loyal 様（shibuya）"][0]) == sorted(
        [hq, shibuya]
    )
    assert sorted(by_subject["【離脱】コツコツ離脱客 L-steady 様（umeda）"][0]) == sorted(
        [hq, umeda]
    )
    assert by_subject["【離脱】初回離脱客 L-first 様（全社）"][0] == [hq]
    ids = {r["customer_id"]: messages.message_id(r["id"]) for r in rows}
    assert [m["Message-ID"] for m in received] == [ids["L-loyal"], ids["L-steady"], ids["L-first"]]
    loyal_mail = by_subject["【離脱】優良離脱客 L-loyal 様（shibuya）"][1]
    assert "L-loyal 様（顧客番号 L-loyal）が優良離脱客になりました。" in loyal_mail.get_content()
    assert "300,000円" in loyal_mail.get_content()


async def test_a_worker_killed_between_acceptance_and_record_resends_the_same_message_id(
    publish, service_pool, smtp, deliverer, monkeypatch, tenant
):
    _, inbox = smtp
    hq = f"hq@{tenant}.example.jp"
    async with service_pool.acquire() as conn:
        await store.save_settings(
            conn,
            tenant,
            NotificationSettings.model_validate(
                {"recipients": [{"channel": "email", "address": hq}]}
            ),
            None,
        )
    await publish(lapse(tenant, "K1", 5, "trendy", "120000"))

    # The SMTP server accepts; the worker dies before recording it.
    real_record, accepted = store.record_sent, asyncio.Event()

    async def die_before_recording(conn, delivery_id, attempts):
        if not accepted.is_set():
            accepted.set()
            await asyncio.Event().wait()  # hangs here until the kill below
        await real_record(conn, delivery_id, attempts)

    monkeypatch.setattr(store, "record_sent", die_before_recording)
    deliverer.start()
    await wait_for(lambda: _is_set(accepted), timeout=20, what="the SMTP server to accept")
    assert len(inbox.to(hq)) == 1
    await deliverer.kill()
    [row] = await deliveries_of(service_pool, tenant)
    assert (row["status"], row["attempts"]) == ("pending", 0)  # nothing recorded

    deliverer.start()  # a fresh worker: the lease runs out and it sends again
    await wait_for(all_settled(service_pool, tenant, 1), timeout=20, what="the resend recorded")

    [first, again] = inbox.to(hq)
    assert first["Message-ID"] == again["Message-ID"] == messages.message_id(row["id"])
    assert first.as_bytes() == again.as_bytes()  # the very same message: the receiver drops it
    [row] = await deliveries_of(service_pool, tenant)
    assert (row["status"], row["attempts"]) == ("sent", 1)


async def _is_set(event: asyncio.Event) -> bool:
    return event.is_set()


# --- webhooks ----------------------------------------------------------------------------------------


async def test_webhook_failing_twice_then_succeeding_gets_it_once_signed(
    publish, client, service_pool, receiver, deliverer, tenant
):
    base, handler = receiver
    put = await client.put(
        "/v1/notifications/settings",
        json={
            "recipients": [
                {"channel": "webhook", "address": f"{base}/flaky"},
                {"channel": "webhook", "address": f"{base}/down", "branch_id": "umeda"},
            ],
            "webhook_secret": SECRET,
        },
    )
    assert put.status_code == 200 and put.json()["webhook_secret_set"] is True
    assert SECRET not in put.text

    deliverer.start()
    await publish(lapse(tenant, "W1", 3, "loyal", "200000", home_branch_id="umeda"))
    await wait_for(all_settled(service_pool, tenant, 2), timeout=20, what="both webhooks settled")

    rows = {r["target"].rsplit("/", 1)[1]: r for r in await deliveries_of(service_pool, tenant)}
    flaky = [
        r for r in handler.to("/flaky") if r[1].get("x-kizuna-event-id") == rows["flaky"]["id"]
    ]
    assert [status for *_, status in flaky] == [500, 500, 200]  # got it once, on the third try
    assert len({body for _, _, body, _ in flaky}) == 1  # the same bytes every time
    for _, headers, body, _ in flaky:
        assert messages.verify(SECRET, body, headers["x-kizuna-signature"])
        assert headers["content-type"].startswith("application/json")
    event = httpx.Response(200, content=flaky[0][2]).json()
    assert event["id"] == rows["flaky"]["id"] and event["type"] == "customer.lapsed"
    assert event["alert"]["customer_id"] == "W1" and event["alert"]["segment_ja"] == "優良離脱客"
    assert (rows["flaky"]["status"], rows["flaky"]["attempts"]) == ("sent", 3)

    # The receiver that never answers well: three tries (the setting), then a dead letter.
    down = [r for r in handler.to("/down") if r[1].get("x-kizuna-event-id") == rows["down"]["id"]]
    assert len(down) == 3
    dead = (await client.get("/v1/notifications/deliveries", params={"status": "dead"})).json()
    [letter] = dead["items"]
    assert (letter["id"], letter["attempts"], letter["channel"]) == (
        rows["down"]["id"],
        3,
        "webhook",
    )
    assert letter["last_error"].startswith("HTTP 500")

    # Sent again by hand: the same id, so a receiver that had it can drop it.
    retried = await client.post(f"/v1/notifications/deliveries/{letter['id']}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    await wait_for(all_settled(service_pool, tenant, 2), timeout=20, what="the retry settled")
    sent = await client.post(f"/v1/notifications/deliveries/{rows['flaky']['id']}/retry")
    assert sent.status_code == 409 and sent.json()["error"]["code"] == "not_dead"
    assert len([r for r in handler.to("/down") if r[1]["x-kizuna-event-id"] == letter["id"]]) == 6


# --- a follow-up sequence over the broker ------------------------------------------------------------


async def test_sequence_scheduled_carried_over_and_stopped(publish, client, tenant):
    put = await client.put(
        "/v1/sequences/first_active",
        json={
            "name": "アフターフォロー",
            "steps": [
                {"offset_days": 1, "channel": "post", "template": "{name} 様へお礼状を郵送"},
                {"offset_days": 8, "channel": "phone", "template": "{name} 様へお電話"},
                {"offset_days": 15, "channel": "e-mail", "template": "{name} 様へQ&A集"},
            ],
        },
    )
    assert put.status_code == 200, put.text
    entered = today() - timedelta(days=9)
    new_customer = change(
        tenant, "S1", 1, None, "first_active", "purchase", "5400",
        effective_on=entered, purchase_count=1, last_purchase_on=entered,
    )  # fmt: skip
    branch_entry = change(
        tenant, "S2", 1, None, "first_active", "purchase", "5400", scope="shibuya",
        effective_on=entered, purchase_count=1,
    )  # fmt: skip
    await publish(new_customer, branch_entry, new_customer)

    params = {"reason": "sequence"}
    scheduled = (await client.get("/v1/followups", params=params)).json()["items"]
    assert [(i["customer_id"], i["step"], i["due_on"], i["channel"]) for i in scheduled] == [
        ("S1", 0, (entered + timedelta(days=1)).isoformat(), "post"),
        ("S1", 1, (entered + timedelta(days=8)).isoformat(), "phone"),
        ("S1", 2, (entered + timedelta(days=15)).isoformat(), "email"),
    ]
    assert scheduled[0]["note"] == "S1 様へお礼状を郵送"

    # Today's list: both earlier steps, undone, carried over; the future one not yet.
    due = (await client.get("/v1/followups", params=params | {"due": "today"})).json()["items"]
    assert [i["step"] for i in due] == [0, 1]
    done = await client.post(f"/v1/followups/{due[0]['id']}/done")
    assert done.status_code == 200
    due = (await client.get("/v1/followups", params=params | {"due": "today"})).json()["items"]
    assert [i["step"] for i in due] == [1]

    # The first-time buyer buys again: they leave the first-timer sequence.
    await publish(
        change(
            tenant,
            "S1",
            2,
            "first_active",
            "fledgling_active",
            "purchase",
            "9800",
            effective_on=today(),
            purchase_count=2,
            last_purchase_on=today(),
        )  # fmt: skip
    )
    cancelled = (await client.get("/v1/followups", params=params | {"status": "cancelled"})).json()
    assert [(i["step"], i["outcome"]) for i in cancelled["items"]] == [(2, "left_segment")]
    still = (await client.get("/v1/followups", params=params | {"due": "today"})).json()["items"]
    assert [i["step"] for i in still] == [1]  # already due: stays on the list until done
