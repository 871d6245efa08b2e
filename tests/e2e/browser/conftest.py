"""The dashboard in a real browser: Debian's Chromium (/usr/bin/chromium, installed by
deploy/install-test-tools.sh) driven by Playwright for Python, against the four services as
real processes on a broker and database of their own, with a small demo chain loaded once for the
whole browser suite (the clock pinned, so every number is the same on every run)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.cli import demo
from shared.events import CUSTOMER_STATES, PURCHASES, SEGMENT_CHANGES
from shared.kafka import group_lag
from tests.e2e.conftest import ServiceProcess
from tests.helpers import api_key, person, wait_for

CHROMIUM = Path("/usr/bin/chromium")
# No browser download and no calls home: Playwright drives the system's Chromium as it is.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TODAY = date(2026, 11, 23)
NOW = "2026-11-23T12:00:00+09:00"
CUSTOMERS = 400
ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "docs" / "screenshots"


def _unavailable(reason: str):
    """Skip where the browser cannot be had; under CI (root, Debian reachable) that fails."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must have it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
async def browser():
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(
            f"no {CHROMIUM}: `make test` installs Debian's chromium through "
            "deploy/install-test-tools.sh, which needs root and apt-get"
        )
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        await b.close()


@dataclass
class Stack:
    tenant: str
    ingest: str
    reports: str
    notifier: str
    pool: asyncpg.Pool
    bootstrap: str
    auth: dict[str, str]  # an admin key of the tenant, as headers
    owner: tuple[str, str]  # the owner's e-mail and password: how the browser logs in

    async def api(self, path: str, **params) -> dict:
        async with httpx.AsyncClient(timeout=30, headers=self.auth) as c:
            r = await c.get(self.reports + path, params=params)
            assert r.status_code == 200, r.text
            return r.json()

    async def settled(self) -> bool:
        """Everything sent has been classified, reported and noticed: nothing is due for the
        lapse clock, the outbox is empty and no consumer group has records left to read."""
        if await self.pool.fetchval(
            "SELECT count(*) FROM customer_states WHERE tenant_id = $1 AND lapse_due_on <= $2",
            self.tenant,
            TODAY,
        ):
            return False
        if await self.pool.fetchval(
            "SELECT count(*) FROM tenants WHERE tenant_id = $1"
            " AND applied_rules_version <> rules_version",
            self.tenant,
        ):
            return False
        if await self.pool.fetchval("SELECT count(*) FROM outbox"):
            return False
        for group, topic in (
            ("kizuna-classifier", PURCHASES),
            ("kizuna-reports", CUSTOMER_STATES),
            ("kizuna-notifier", SEGMENT_CHANGES),
        ):
            if await group_lag(self.pool, self.bootstrap, group, [topic]):
                return False
        return True

    async def settle(self) -> None:
        await wait_for(self.settled, timeout=240, interval=0.5, what="the demo chain to settle")


@pytest.fixture(scope="session")
async def own_broker():
    """A broker of the browser suite's own: its stack runs for the whole session, and its
    consumers (clock pinned to TODAY) must not join the groups of other tests' services."""
    from shared.embedded import EmbeddedBroker
    from shared.kafka import ensure_topics
    from tests.helpers import TMP, free_port

    b = EmbeddedBroker(free_port(), log_file=TMP / "tansu-browser.log")
    await b.start()
    await ensure_topics(b.bootstrap, 4)
    yield b
    b.stop()


@pytest.fixture(scope="session")
async def own_database(database_url):
    from tests.helpers import scratch_database

    async with scratch_database(database_url, "browser") as url:
        yield url


@pytest.fixture(scope="session")
async def stack(own_broker, own_database):
    """ingest, classifier, reports and notifier as processes, the demo chain loaded and
    settled. The browser talks to reports only (the notifier and ingest through its gateway)."""
    tenant = f"dash{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": own_database,
        "KAFKA_BOOTSTRAP_SERVERS": own_broker.bootstrap,
        "KIZUNA_TOPIC_PARTITIONS": "4",
        "KIZUNA_LOG_LEVEL": "WARNING",
        "KIZUNA_NOW": NOW,
        "KIZUNA_SWEEP_INTERVAL_SECONDS": "0.2",
        "KIZUNA_DEFAULT_TENANT": tenant,
    }
    from tests.helpers import free_port

    ports = {name: free_port() for name in ("ingest", "classifier", "reports", "notifier")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env.update({f"KIZUNA_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env.update(KIZUNA_NOTIFIER_URL=urls["notifier"], KIZUNA_INGEST_URL=urls["ingest"])
    procs = [ServiceProcess(name, env, port) for name, port in ports.items()]
    pool = await asyncpg.create_pool(own_database, min_size=1, max_size=4)
    try:
        for p in procs:
            p.start()
        for p in procs:
            await p.ready()
        events = list(
            demo.generate(
                customers=CUSTOMERS, branches=5, years=3, seed=11, tenant=tenant, end=TODAY
            )
        )
        auth = await api_key(pool, tenant, "admin", name="browser suite")
        owner = await person(pool, tenant, "owner")
        await demo.load(urls["ingest"], auth["Authorization"].removeprefix("Bearer "), events)
        s = Stack(
            tenant,
            urls["ingest"],
            urls["reports"],
            urls["notifier"],
            pool,
            own_broker.bootstrap,
            auth,
            owner,
        )

        async def all_stored():
            stored = await pool.fetchval(
                "SELECT count(*) FROM purchases WHERE tenant_id = $1", tenant
            )
            return stored == len({e["event_id"] for e in events})

        await wait_for(all_stored, timeout=120, interval=0.5, what="every demo event stored")
        await s.settle()
        yield s
    finally:
        for p in procs:
            p.stop()
        await pool.close()


@pytest.fixture
async def page_at(browser, stack):
    """``await page_at(width, "#/home")``: a fresh browser context (nothing remembered) at that
    width, logged in as the owner through the login page, the page loaded and drawn;
    ``page.errors`` collects console errors and uncaught exceptions."""
    contexts = []

    async def open_(width: int, route: str, height: int = 900, context=None):
        if context is None:
            context = await browser.new_context(
                viewport={"width": width, "height": height}, accept_downloads=True
            )
            contexts.append(context)
        page = await context.new_page()
        page.errors = []
        page.on(
            "console",
            lambda m: (
                page.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None
            ),
        )
        page.on("pageerror", lambda e: page.errors.append(f"uncaught: {e}"))
        await page.goto(stack.reports + "/" + route)
        # a fresh context has no session: the dashboard sends it to the login page
        await page.wait_for_selector("main[data-ready=true], #login", timeout=30_000)
        if "/login" in page.url:
            await log_in(page, *stack.owner)
            page.errors.clear()  # the browser logs the 401 that sent it to the login page
        await drawn(page)
        return page

    yield open_
    for c in contexts:
        await c.close()


async def log_in(page, email: str, password: str) -> None:
    """Fill in the login page and wait until it has sent us on."""
    await page.wait_for_selector("#login")
    await page.fill("#email", email)
    await page.fill("#password", password)
    async with page.expect_navigation():
        await page.click("#submit")


async def drawn(page) -> None:
    """The page's data arrived and was drawn (app.js marks <main> ready after each render)."""
    await page.wait_for_selector("main[data-ready=true]", timeout=30_000)
    await painted(page)


async def painted(page) -> None:
    """Two animation frames: what was drawn (charts included) is on the screen."""
    await page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
