"""Services as real processes (`kizuna serve NAME`), talking to the test broker and database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shared.embedded import EmbeddedBroker
from shared.kafka import ensure_topics
from tests.helpers import TMP, free_port, scratch_database, wait_for


class ServiceProcess:
    def __init__(self, name: str, env: dict[str, str], port: int):
        self.name, self.env, self.port = name, env, port
        self.process: subprocess.Popen | None = None
        self.log = TMP / f"e2e-{name}-{port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, **extra_env: str) -> None:
        env = {**self.env, **extra_env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", self.name],
            env=env,
            stdout=open(self.log, "ab"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )

    async def ready(self, timeout: float = 60) -> None:
        async def ok():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode}; see {self.log}"
                )
            try:
                async with httpx.AsyncClient(timeout=2) as c:
                    return (await c.get(self.url + "/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(ok, timeout=timeout, interval=0.2, what=f"{self.name} ready")

    def kill(self) -> None:
        """SIGKILL: no clean stop, no drain."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def services(broker, database_url):
    """A factory of service processes; every process is stopped after the test."""
    started: list[ServiceProcess] = []
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KIZUNA_TOPIC_PARTITIONS": "4",
        "KIZUNA_LOG_LEVEL": "WARNING",
    }

    def make(name: str, **extra_env: str) -> ServiceProcess:
        port = free_port()
        proc = ServiceProcess(
            name, {**env, f"KIZUNA_{name.upper()}_PORT": str(port), **extra_env}, port
        )
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
async def own_broker(request):
    """A broker of the test's own (a test that floods it leaves nothing for the next)."""
    b = EmbeddedBroker(free_port(), log_file=TMP / f"tansu-{request.node.name[:60]}.log")
    await b.start()
    await ensure_topics(b.bootstrap, 4)
    yield b
    b.stop()


@pytest.fixture
async def own_database(database_url):
    async with scratch_database(database_url, "history") as url:
        yield url
