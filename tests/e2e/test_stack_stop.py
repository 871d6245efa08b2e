"""Every way `kizuna up` ends leaves nothing behind: SIGTERM (a clean stop), SIGKILL (the kernel
kills its children with it) and a drain that times out (a consumer died while draining) — no
process of the stack left running, every port free."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
import psutil
import pytest

from services.cli.stack import Stack
from shared.settings import Settings
from tests.helpers import ROOT, TMP, free_port, wait_for

pytestmark = pytest.mark.e2e

PORTS = ("stack", "embedded_kafka", "ingest", "classifier", "reports", "notifier")


def stack_ports() -> dict[str, int]:
    return {name: free_port() for name in PORTS}


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def nothing_left(pids, ports: dict[str, int]) -> None:
    async def clean():
        return all(gone(p) for p in pids) and all(port_free(p) for p in ports.values())

    await wait_for(clean, timeout=60, interval=0.2, what="every process gone, every port free")


def start_up(database_url: str, ports: dict[str, int], tag: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KIZUNA_DATA_DIR": str(TMP / f"up-{tag}-{ports['stack']}"),
        "KIZUNA_LOG_LEVEL": "WARNING",
        **{f"KIZUNA_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # its own embedded broker
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up"],
        env=env,
        cwd=ROOT,
        stdout=open(TMP / f"up-{tag}-{ports['stack']}.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )


async def ready_pids(up: subprocess.Popen, ports: dict[str, int]) -> list[int]:
    async def ready():
        assert up.poll() is None, f"kizuna up exited with {up.returncode}"
        try:
            async with httpx.AsyncClient(timeout=2) as c:
                r = await c.get(f"http://127.0.0.1:{ports['stack']}/readyz")
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    status = await wait_for(ready, timeout=120, interval=0.3, what="kizuna up ready")
    units = status["units"]
    assert set(units) == {"broker", "ingest", "classifier", "reports", "notifier"}
    return [u["pid"] for u in units.values()]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_kizuna_up_leaves_nothing_behind(database_url, how):
    ports = stack_ports()
    up = start_up(database_url, ports, how.name.lower())
    try:
        pids = await ready_pids(up, ports)
        up.send_signal(how)
        code = up.wait(90)
        if how == signal.SIGTERM:
            assert code == 0
        await nothing_left(pids, ports)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


async def test_a_drain_that_times_out_still_stops_everything(database_url, tenant, auth):
    ports = stack_ports()
    settings = Settings(
        database_url=database_url,
        data_dir=TMP / f"up-drain-{ports['stack']}",
        kafka_bootstrap_servers=None,
        **{f"{name}_port": port for name, port in ports.items()},
    )
    stack = Stack(settings)
    await stack.start()
    try:
        pids = [u.pid for u in stack.units.values()]
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.post(
                stack.url("ingest") + "/v1/purchases",
                headers=auth,
                json={
                    "events": [
                        {
                            "event_id": f"drain-{i}",
                            "branch_id": "b1",
                            "customer_id": f"C{i}",
                            "occurred_at": "2026-11-01T10:00:00",
                            "amount": "1000",
                        }
                        for i in range(200)
                    ]
                },
            )
        assert r.status_code == 202
        # the classifier dies before it has read them: the drain cannot finish
        stack.processes["classifier"].kill()
        stack.processes["classifier"].wait()
        assert await stack.lag("classifier") > 0
        await stack.stop(drain_timeout=2)
    finally:
        await stack.stop(drain_timeout=0)
    await nothing_left(pids, ports)
