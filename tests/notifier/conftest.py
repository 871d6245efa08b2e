"""The notifier's fixtures, shared by its test modules: the service's pool, its consumer run
in-process, a producer to publish segment changes and wait until they are processed, the HTTP
API over ASGI, ``apply`` for feeding changes straight to the pipeline, and a real SMTP server
(aiosmtpd, in-process on a free port) with the inbox it fills."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller

from services.notifier.app import GROUP, app, build_consumer
from services.notifier.consumer import Notifier
from shared.events import SEGMENT_CHANGES, SegmentChange
from shared.http import get_pool
from shared.settings import get_settings
from tests.helpers import RunningConsumer, asgi_client, committed_past, free_port, keyed
from tests.notifier.changes import change


@pytest.fixture(scope="module")
def settings():
    """The service's settings; a short session: the embedded broker makes a joining member wait
    about half of it, and a rejoin after a restart for about the whole of it. A module may
    override this fixture (the delivery tests add their SMTP server)."""
    return get_settings().model_copy(update={"session_timeout_ms": 2000})


@pytest.fixture(scope="module")
async def service(service_pool, settings):
    """The notifier's consumer, consuming ``kizuna.segment-changes.v1`` as the service does."""
    running = RunningConsumer(lambda: build_consumer(service_pool, settings))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def client(service_pool, tenant, auth):
    """The notifier's HTTP API as ``tenant`` (an admin key of it)."""
    app.dependency_overrides[get_pool] = lambda: service_pool
    async with asgi_client(app, "http://notifier", headers=auth) as c:
        yield c
    app.dependency_overrides.pop(get_pool, None)


@pytest.fixture
async def apply(service_pool):
    """Changes applied by the pipeline in one transaction, without the broker."""

    async def run(*changes, notifier=None):
        notifier = notifier or Notifier(get_settings())
        async with service_pool.acquire() as conn, conn.transaction():
            return await notifier.apply(conn, list(changes))

    return run


def _noop() -> SegmentChange:
    """A change that asks nothing of the notifier (tenant drain has no sequences)."""
    return change(
        "drain", "noop", 1, "first_active", "fledgling_active", "purchase", home_branch_id=None
    )


@pytest.fixture
def publish(producer, service, service_pool):
    """Publish changes (or raw bytes) keyed ``tenant:customer``; then wait until the consumer
    has committed past every one of them, so a test asserts on finished work, not on time.
    ``drain``: first a change that asks nothing into every partition, so that whatever other
    modules published on the shared broker is behind the consumer too."""

    async def run(*items: SegmentChange | tuple[bytes, bytes], drain: bool = False) -> None:
        sent = []
        if drain:
            noop = _noop().model_dump_json().encode()
            for partition in sorted(await producer.partitions_for(SEGMENT_CHANGES)):
                sent.append(
                    await producer.send_and_wait(SEGMENT_CHANGES, noop, partition=partition)
                )
        for key, value in map(keyed, items):
            sent.append(await producer.send_and_wait(SEGMENT_CHANGES, value, key=key))
        await committed_past(
            service_pool,
            GROUP,
            SEGMENT_CHANGES,
            sent,
            timeout=60,
            what="the notifier to process what was published",
        )

    return run


class Inbox:
    """aiosmtpd handler: keeps every accepted message (runs in the controller's thread)."""

    def __init__(self):
        self.messages: list[tuple[list[str], object]] = []

    async def handle_DATA(self, server, session, envelope):
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list:
        return [m for rcpt, m in self.messages if address in rcpt]


@pytest.fixture(scope="module")
def smtp():
    """A real SMTP server for the module: ``(controller, inbox)``."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()
