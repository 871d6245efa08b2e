"""Where a benchmark's time goes: CPU seconds per component and a sampled profile.

Everything in `kizuna bench` shares one machine, so a rate alone does not say what limits it.
``CpuMeter`` reads the CPU time each component used during a run (the classifier processes,
every PostgreSQL process, the broker, the benchmark itself) and ``Profiler`` samples a service
with py-spy (a sampling profiler that attaches to a running process and adds almost no
overhead), summarised as the functions that use the most CPU.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from contextlib import suppress
from pathlib import Path

import psutil


def _cpu(process: psutil.Process) -> float:
    with suppress(psutil.Error):
        t = process.cpu_times()
        return t.user + t.system + t.children_user + t.children_system
    return 0.0


def _postgres() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["name"]):
        name = p.info.get("name") or ""
        if name.startswith("postgres") or name == "postmaster":
            found.append(p)
    return found


class CpuMeter:
    """CPU seconds used by named processes between ``start`` and ``stop``.

    PostgreSQL counts every server process of the machine (backends come and go; a backend that
    exits between the two readings takes its time with it, so the figure is a lower bound)."""

    def __init__(self) -> None:
        self.groups: dict[str, list[psutil.Process]] = {}
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def watch(self, name: str, pids: list[int]) -> None:
        procs = []
        for pid in pids:
            with suppress(psutil.Error):
                procs.append(psutil.Process(pid))
        self.groups[name] = procs

    def _read(self) -> dict[str, float]:
        pg = _postgres()
        self.groups["PostgreSQL"] = list(
            {p.pid: p for p in self.groups.get("PostgreSQL", []) + pg}.values()
        )
        return {name: sum(_cpu(p) for p in procs) for name, procs in self.groups.items()}

    def start(self) -> None:
        self.groups.setdefault("bench (load, polling)", [psutil.Process()])
        self.before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        self.used = {n: max(0.0, after[n] - self.before.get(n, 0.0)) for n in after}
        return self.used

    def rows(self, wall: float, events: int) -> list[tuple[str, str]]:
        total = sum(self.used.values())
        out = []
        for name, secs in sorted(self.used.items(), key=lambda kv: -kv[1]):
            out.append(
                (
                    f"CPU: {name}",
                    f"{secs:.1f} s ({secs / max(total, 1e-9):.0%} of used; "
                    f"{secs * 1e6 / max(events, 1):.0f} µs per event)",
                )
            )
        cores = psutil.cpu_count() or 1
        out.append(
            (
                "CPU: used of what the machine had",
                f"{total:.1f} s of {wall * cores:.1f} s ({total / max(wall * cores, 1e-9):.0%})",
            )
        )
        return out


class Profiler:
    """py-spy sampling one process until it exits; ``summary`` names the hot functions."""

    def __init__(self, pid: int, rate: int = 50):
        self.out = Path(tempfile.mkstemp(prefix="kizuna-pyspy-", suffix=".txt")[1])
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.process = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
            + ["--nonblocking", "--output", str(self.out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def finish(self, timeout: float = 30) -> None:
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        if self.process.poll() is None:
            self.process.terminate()

    def summary(self, top: int = 12) -> list[tuple[str, str]]:
        """The functions with the most samples on-CPU: own time and time including callees."""
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        with suppress(OSError):
            for line in self.out.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                n = int(count)
                total += n
                frames = [_frame(f) for f in stack.split(";") if f]
                if frames:
                    own[frames[-1]] += n
                for f in set(frames):
                    inclusive[f] += n
        if not total:
            return [("profile", "no samples (is py-spy installed and allowed to attach?)")]
        rows = [("profile: samples on CPU", f"{total:,}")]
        rows += [(f"own time: {name}", f"{n / total:.1%}") for name, n in own.most_common(top)]
        hot = [
            (name, n)
            for name, n in inclusive.most_common(top * 3)
            if _ours(name) and n < 0.9 * total  # not the entry points every sample passes
        ]
        rows += [(f"incl. callees: {name}", f"{n / total:.1%}") for name, n in hot[:top]]
        return rows


def _frame(raw: str) -> str:
    """``handle (services/classifier/pipeline.py:57)`` → ``handle (…/classifier/pipeline.py)``."""
    name, _, where = raw.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(where).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else where
    return f"{name} ({short})"


def _ours(name: str) -> bool:
    return any(f"({p}/" in name for p in ("classifier", "shared", "services"))
