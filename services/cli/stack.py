"""`kizuna up`: broker, database, migrations and the four services, in the foreground.

A clean stop drains first: ingest stops accepting, the classifier and the relay catch up, the
reports and notifier catch up, then the services stop, then the broker (whose log is memory
only with the embedded default) and an embedded database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import asyncpg
import httpx

from shared.db import migrate, resolve_database_url
from shared.embedded import EmbeddedBroker
from shared.events import CUSTOMER_STATES, PURCHASES, SEGMENT_CHANGES
from shared.kafka import ensure_topics, group_lag
from shared.settings import Settings

log = logging.getLogger("kizuna.up")

SERVICES = ("ingest", "classifier", "reports", "notifier")
GROUPS = {
    "classifier": ("kizuna-classifier", [PURCHASES]),
    "reports": ("kizuna-reports", [CUSTOMER_STATES]),
    "notifier": ("kizuna-notifier", [SEGMENT_CHANGES]),
}


def port_of(settings: Settings, service: str) -> int:
    return getattr(settings, f"{service}_port")


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    restarts: int = 0


class Stack:
    """The running product: what `kizuna up` starts and stops."""

    def __init__(self, settings: Settings, services=SERVICES):
        self.settings = settings
        self.services = services
        self.broker: EmbeddedBroker | None = None
        self.embedded_db = None
        self.database_url: str | None = None
        self.bootstrap: str | None = None
        self.children: dict[str, Child] = {}
        self.stopping = False

    def url(self, service: str) -> str:
        return f"http://{self.settings.host}:{port_of(self.settings, service)}"

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DATABASE_URL"] = self.database_url
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap
        # the children must agree with this process's settings, whatever their source
        s = self.settings
        env["KIZUNA_HOST"] = s.host
        env["KIZUNA_TOPIC_PARTITIONS"] = str(s.topic_partitions)
        env["KIZUNA_DATA_DIR"] = str(s.data_dir)
        for service in SERVICES + ("classifier",):
            env[f"KIZUNA_{service.upper()}_PORT"] = str(port_of(s, service))
        if s.now:
            env["KIZUNA_NOW"] = s.now.isoformat()
        return env

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.database_url, self.embedded_db = await resolve_database_url(s)
        applied = await migrate(self.database_url)
        log.info("database ready (%s migrations applied now)", len(applied))
        if s.kafka_bootstrap_servers:
            self.bootstrap = s.kafka_bootstrap_servers
        else:
            self.broker = EmbeddedBroker(s.embedded_kafka_port, log_file=s.data_dir / "tansu.log")
            await self.broker.start()
            self.bootstrap = self.broker.bootstrap
        await ensure_topics(self.bootstrap, s.topic_partitions)
        for name in self.services:
            self.spawn(name)
        await self.wait_ready()

    def spawn(self, name: str) -> None:
        log_path = self.settings.data_dir / f"{name}.log"
        out = open(log_path, "ab")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", name],
            env=self.child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        old = self.children.get(name)
        self.children[name] = Child(name, process, restarts=old.restarts + 1 if old else 0)

    async def wait_ready(self, timeout: float = 60) -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            for name in self.services:
                deadline = time.monotonic() + timeout
                while True:
                    child = self.children[name]
                    if child.process.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with code {child.process.returncode}; see {self.settings.data_dir / (name + '.log')}"
                        )
                    try:
                        if (await client.get(self.url(name) + "/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} not ready after {timeout}s")
                    await asyncio.sleep(0.2)

    async def watch(self, stop: asyncio.Event) -> None:
        """Restart a service that died (with back-off) until asked to stop."""
        while not stop.is_set():
            for name, child in list(self.children.items()):
                if child.process.poll() is not None and not self.stopping:
                    wait = min(30, 2 ** min(child.restarts, 5))
                    log.error(
                        "%s exited with code %s; restarting in %ss",
                        name,
                        child.process.returncode,
                        wait,
                    )
                    await asyncio.sleep(wait)
                    self.spawn(name)
            try:
                await asyncio.wait_for(stop.wait(), 1)
            except TimeoutError:
                pass

    async def lag(self, service: str) -> int:
        group, topics = GROUPS[service]
        pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=1)
        try:
            return await group_lag(pool, self.bootstrap, group, topics)
        finally:
            await pool.close()

    async def idle(self) -> bool:
        """Every consumer has processed everything and the outbox is empty."""
        conn = await asyncpg.connect(self.database_url)
        try:
            backlog = await conn.fetchval("SELECT coalesce(sum(record_count), 0) FROM outbox")
        finally:
            await conn.close()
        if backlog:
            return False
        for service in ("classifier", "reports", "notifier"):
            if service in self.children and await self.lag(service):
                return False
        return True

    async def wait_idle(self, timeout: float = 600, progress=None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.idle():
                return True
            if progress:
                await progress()
            await asyncio.sleep(0.5)
        return False

    def _terminate(self, name: str, timeout: float = 30) -> None:
        child = self.children.get(name)
        if not child or child.process.poll() is not None:
            return
        child.process.send_signal(signal.SIGTERM)
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("%s did not stop in %ss; killing it", name, timeout)
            child.process.kill()
            child.process.wait()

    async def stop(self, drain_timeout: float = 60) -> None:
        self.stopping = True
        self._terminate("ingest")  # accept nothing more
        if (
            self.database_url
            and self.bootstrap
            and any(c.process.poll() is None for n, c in self.children.items() if n != "ingest")
        ):
            try:
                drained = await self.wait_idle(timeout=drain_timeout)
                if not drained:
                    log.warning(
                        "not everything was processed within %ss; stopping anyway", drain_timeout
                    )
            except Exception as exc:  # noqa: BLE001 - a stop must go on
                log.warning("could not check the backlog (%s); stopping", exc)
        for name in ("classifier", "reports", "notifier"):
            self._terminate(name)
        if self.broker:
            self.broker.stop()
        if self.embedded_db is not None:
            del self.embedded_db
            self.embedded_db = None
