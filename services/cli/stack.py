"""`kizuna up`: broker, database, migrations and the four services, in the foreground.

Every process it starts — the embedded broker and each service — is supervised the same way:
restarted when it dies, each on its own schedule (back-off doubling from half a second to 30 s,
back to the start once it had run for a healthy period), and a process that keeps dying is
reported: an error in the log on every death, ``failing`` in the stack's ``/readyz`` (503) and
``kizuna_stack_failing{unit}`` in its ``/metrics`` (``KIZUNA_STACK_PORT``).

A restarted embedded broker has an empty log and a new cluster id: the consumers notice and
read it from its start, and with broker replay the relay publishes again what the old one held
(shared/replay.py).

A clean stop drains first: ingest stops accepting, the classifier and the relay catch up, the
reports and notifier catch up, then the services stop, then the broker (whose log is memory
only with the embedded default) and an embedded database — also when the drain times out. The
children die with `kizuna up` however it ends, a SIGKILL included: the kernel kills each one
when its parent dies (PR_SET_PDEATHSIG, ``shared.embedded.die_with_parent``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import asyncpg
import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from shared import replay
from shared.db import migrate, resolve_database_url
from shared.embedded import EmbeddedBroker, die_with_parent
from shared.events import CUSTOMER_STATES, PURCHASES, SEGMENT_CHANGES
from shared.kafka import ensure_topics, group_lag
from shared.settings import Settings

log = logging.getLogger("kizuna.up")

SERVICES = ("ingest", "classifier", "reports", "notifier")
BROKER = "broker"
GROUPS = {
    "classifier": ("kizuna-classifier", [PURCHASES]),
    "reports": ("kizuna-reports", [CUSTOMER_STATES]),
    "notifier": ("kizuna-notifier", [SEGMENT_CHANGES]),
}
FIRST_BACKOFF = 0.5  # seconds before the first restart; doubles with each death in a row
MAX_BACKOFF = 30.0
HEALTHY_AFTER = 30.0  # a process that ran this long has recovered: its back-off starts over
FAILING_AFTER = 5  # deaths in a row (each before HEALTHY_AFTER) that make a unit "failing"

REGISTRY = CollectorRegistry()
RESTARTS = Counter(
    "kizuna_stack_restarts", "Restarts of a unit by kizuna up", ["unit"], registry=REGISTRY
)
UP = Gauge("kizuna_stack_up", "1 while the unit's process runs", ["unit"], registry=REGISTRY)
FAILING = Gauge(
    "kizuna_stack_failing",
    f"1 while the unit keeps dying ({FAILING_AFTER} deaths in a row, each within"
    f" {HEALTHY_AFTER:.0f} s of its start)",
    ["unit"],
    registry=REGISTRY,
)


def port_of(settings: Settings, service: str) -> int:
    return getattr(settings, f"{service}_port")


@dataclass
class Unit:
    """One supervised process (a service or the embedded broker) and its restart schedule."""

    name: str
    pid: int | None = None
    started: float = 0.0
    deaths_in_a_row: int = 0
    restarts: int = 0
    due: float | None = None  # dead: when it starts again
    last_exit: int | None = None
    starting: asyncio.Task | None = None

    @property
    def failing(self) -> bool:
        return self.deaths_in_a_row >= FAILING_AFTER


class Stack:
    """The running product: what `kizuna up` starts, supervises and stops."""

    def __init__(
        self,
        settings: Settings,
        services=SERVICES,
        healthy_after: float = HEALTHY_AFTER,
        first_backoff: float = FIRST_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ):
        self.settings = settings
        self.services = services
        self.healthy_after = healthy_after
        self.first_backoff, self.max_backoff = first_backoff, max_backoff
        self.broker: EmbeddedBroker | None = None
        self.embedded_db = None
        self.database_url: str | None = None
        self.bootstrap: str | None = None
        self.processes: dict[str, subprocess.Popen] = {}
        self.units: dict[str, Unit] = {}
        self.stopping = False
        self.status_server = None
        self.status_task: asyncio.Task | None = None

    def url(self, service: str) -> str:
        return f"http://{self.settings.host}:{port_of(self.settings, service)}"

    @property
    def replay(self) -> bool:
        """Broker replay (shared/replay.py): as set, else on for the embedded broker."""
        chosen = self.settings.broker_replay
        return self.broker is not None if chosen is None else chosen

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DATABASE_URL"] = self.database_url
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap
        # the children must agree with this process's settings, whatever their source
        s = self.settings
        env["KIZUNA_HOST"] = s.host
        env["KIZUNA_TOPIC_PARTITIONS"] = str(s.topic_partitions)
        env["KIZUNA_DATA_DIR"] = str(s.data_dir)
        env["KIZUNA_BROKER_REPLAY"] = "true" if self.replay else "false"
        for service in SERVICES:
            env[f"KIZUNA_{service.upper()}_PORT"] = str(port_of(s, service))
        if s.now:
            env["KIZUNA_NOW"] = s.now.isoformat()
        return env

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.database_url, self.embedded_db = await resolve_database_url(s)
            applied = await migrate(self.database_url)
            log.info("database ready (%s migrations applied now)", len(applied))
            if s.kafka_bootstrap_servers:
                self.bootstrap = s.kafka_bootstrap_servers
            else:
                self.broker = EmbeddedBroker(
                    s.embedded_kafka_port, log_file=s.data_dir / "tansu.log", tied_to_parent=True
                )
                self.bootstrap = self.broker.bootstrap
                await self._start_broker()
            for name in self.services:
                self.spawn(name)
            await self.serve_status()
            await self.wait_ready()
        except BaseException:
            await self.stop(drain_timeout=0)  # nothing half-started is left behind
            raise

    async def _start_broker(self) -> None:
        unit = self.units.setdefault(BROKER, Unit(BROKER))
        await self.broker.start()
        await ensure_topics(self.bootstrap, self.settings.topic_partitions)
        unit.pid, unit.started = self.broker.process.pid, time.monotonic()
        UP.labels(BROKER).set(1)

    def command(self, name: str) -> list[str]:
        return [sys.executable, "-m", "services.cli", "serve", name]

    def spawn(self, name: str) -> None:
        log_path = self.settings.data_dir / f"{name}.log"
        with open(log_path, "ab") as out:  # the child has its own copy
            process = subprocess.Popen(
                self.command(name),
                env=self.child_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # a session of its own: Ctrl-C reaches only `kizuna up`, which stops the
                # services in drain order; and it dies with `kizuna up` (SIGKILL included)
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
            )
        self.processes[name] = process
        unit = self.units.setdefault(name, Unit(name))
        unit.pid, unit.started = process.pid, time.monotonic()
        UP.labels(name).set(1)

    def alive(self, name: str) -> bool:
        if name == BROKER:
            return self.broker is not None and self.broker.alive()
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def exit_code(self, name: str) -> int | None:
        process = self.broker.process if name == BROKER else self.processes.get(name)
        return process.returncode if process is not None else None

    async def wait_ready(self, timeout: float = 60) -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            for name in self.services:
                deadline = time.monotonic() + timeout
                while True:
                    process = self.processes[name]
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with code {process.returncode}; see {self.settings.data_dir / (name + '.log')}"
                        )
                    try:
                        if (await client.get(self.url(name) + "/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} not ready after {timeout}s")
                    await asyncio.sleep(0.2)

    # --- supervision -------------------------------------------------------------------------

    async def watch(self, stop: asyncio.Event) -> None:
        """Restart what died, each unit on its own schedule, until asked to stop."""
        while not stop.is_set() and not self.stopping:
            now = time.monotonic()
            for unit in self.units.values():
                if unit.starting is not None:
                    continue  # a start is under way
                if unit.due is None and not self.alive(unit.name):
                    self._died(unit, now)
                elif (
                    unit.due is None
                    and unit.deaths_in_a_row
                    and now - unit.started >= self.healthy_after
                ):
                    self._recovered(unit)
                if unit.due is not None and now >= unit.due:
                    unit.due = None
                    unit.starting = asyncio.create_task(self._start_again(unit))
            dues = [u.due for u in self.units.values() if u.due is not None]
            nap = min([0.25] + [max(0.0, d - time.monotonic()) for d in dues])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), nap)

    def _died(self, unit: Unit, now: float) -> None:
        if now - unit.started >= self.healthy_after:
            unit.deaths_in_a_row = 0  # it had recovered: this death starts a new count
        unit.deaths_in_a_row += 1
        unit.last_exit = self.exit_code(unit.name)
        wait = min(self.max_backoff, self.first_backoff * 2 ** (unit.deaths_in_a_row - 1))
        unit.due = now + wait
        UP.labels(unit.name).set(0)
        where = self.settings.data_dir / (
            "tansu.log" if unit.name == BROKER else f"{unit.name}.log"
        )
        if unit.failing:
            FAILING.labels(unit.name).set(1)
            log.error(
                "%s keeps dying: %s deaths in a row, each within %.0fs of its start (last exit"
                " code %s); the stack is not ready; next try in %.1fs; see %s",
                unit.name,
                unit.deaths_in_a_row,
                self.healthy_after,
                unit.last_exit,
                wait,
                where,
            )
        else:
            log.error(
                "%s exited with code %s; restarting in %.1fs", unit.name, unit.last_exit, wait
            )

    def _recovered(self, unit: Unit) -> None:
        """Running for a healthy period since its last start: its back-off starts over."""
        if unit.failing:
            log.warning("%s has run for %.0fs: no longer failing", unit.name, self.healthy_after)
        unit.deaths_in_a_row = 0
        FAILING.labels(unit.name).set(0)

    async def _start_again(self, unit: Unit) -> None:
        try:
            if self.stopping:
                return
            if unit.name == BROKER:
                await self._start_broker()
            else:
                self.spawn(unit.name)
            unit.restarts += 1
            RESTARTS.labels(unit.name).inc()
            log.warning("%s started again (restart %s)", unit.name, unit.restarts)
        except Exception as exc:  # noqa: BLE001 - a failed start is one more death
            log.error("%s could not be started: %s", unit.name, exc)
            unit.started = time.monotonic()
        finally:
            unit.starting = None

    def status(self) -> dict:
        now = time.monotonic()
        units = {}
        for name, unit in self.units.items():
            running = self.alive(name)
            units[name] = {
                "running": running,
                "pid": unit.pid if running else None,
                "restarts": unit.restarts,
                "deaths_in_a_row": unit.deaths_in_a_row,
                "failing": unit.failing,
                "last_exit_code": unit.last_exit,
                "restart_in_seconds": round(max(0.0, unit.due - now), 1) if unit.due else None,
            }
        ready = all(u["running"] and not u["failing"] for u in units.values())
        return {"ready": ready, "units": units}

    async def serve_status(self) -> None:
        """The stack's own ``/readyz`` and ``/metrics`` on KIZUNA_STACK_PORT (0: none)."""
        if not self.settings.stack_port:
            return
        import uvicorn
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse, Response

        app = FastAPI(title="kizuna up")

        @app.get("/readyz")
        async def readyz() -> Response:
            body = self.status()
            return JSONResponse(body, status_code=200 if body["ready"] else 503)

        @app.get("/metrics")
        async def metrics() -> Response:
            return Response(generate_latest(REGISTRY), media_type="text/plain; version=0.0.4")

        config = uvicorn.Config(
            app,
            host=self.settings.host,
            port=self.settings.stack_port,
            log_level="warning",
            access_log=False,
        )
        self.status_server = uvicorn.Server(config)
        self.status_server.install_signal_handlers = lambda: None  # kizuna up owns signals
        self.status_task = asyncio.create_task(self.status_server.serve())
        while not self.status_server.started:
            if self.status_task.done():
                self.status_task.result()  # raises why it could not start
                raise RuntimeError(f"port {self.settings.stack_port} (KIZUNA_STACK_PORT) is taken")
            await asyncio.sleep(0.05)

    # --- drain and stop ----------------------------------------------------------------------

    async def lag(self, service: str) -> int:
        group, topics = GROUPS[service]
        pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=1)
        try:
            return await group_lag(pool, self.bootstrap, group, topics)
        finally:
            await pool.close()

    async def idle(self) -> bool:
        """Every consumer has processed everything and the outbox has nothing left to send."""
        conn = await asyncpg.connect(self.database_url)
        try:
            backlog = await replay.unsent_records(conn)
        finally:
            await conn.close()
        if backlog:
            return False
        for service in ("classifier", "reports", "notifier"):
            if service in self.processes and await self.lag(service):
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

    async def _terminate(self, names, timeout: float = 30) -> None:
        """SIGTERM to each, then wait for all together; SIGKILL for who outlives ``timeout``."""
        running = [
            (n, self.processes[n])
            for n in names
            if n in self.processes and self.processes[n].poll() is None
        ]
        for _, process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, max(0.0, deadline - time.monotonic()))
            if process.poll() is None:
                log.error("%s did not stop in %ss; killing it", name, timeout)
                process.kill()
                process.wait()
            UP.labels(name).set(0)

    async def stop(self, drain_timeout: float = 60) -> None:
        """Drain (up to ``drain_timeout``), then stop everything; whatever goes wrong on the
        way, no process of the stack is left running."""
        self.stopping = True
        for unit in self.units.values():
            if unit.starting is not None:
                unit.starting.cancel()
        try:
            await self._terminate(["ingest"])  # accept nothing more
            if (
                drain_timeout > 0
                and self.database_url
                and self.bootstrap
                and any(self.alive(n) for n in self.processes if n != "ingest")
            ):
                try:
                    if not await self.wait_idle(timeout=drain_timeout):
                        log.warning(
                            "not everything was processed within %ss; stopping anyway",
                            drain_timeout,
                        )
                except Exception as exc:  # noqa: BLE001 - a stop must go on
                    log.warning("could not check the backlog (%s); stopping", exc)
        finally:
            try:
                await self._terminate(list(self.processes))
                if self.status_server is not None:
                    self.status_server.should_exit = True
                    with contextlib.suppress(Exception):
                        await self.status_task
            finally:
                self._kill_leftovers()  # synchronous: runs even when the stop is cancelled
                if self.embedded_db is not None:
                    del self.embedded_db
                    self.embedded_db = None

    def _kill_leftovers(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is None:
                log.error("%s still runs; killing it", name)
                process.kill()
                process.wait()
            UP.labels(name).set(0)
        if self.broker:
            self.broker.stop()
            UP.labels(BROKER).set(0)
