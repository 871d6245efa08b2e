"""`kizuna up`'s restart schedule, on real child processes: each unit on its own clock, the
back-off starting over after a healthy run, a unit that keeps dying reported as failing."""

from __future__ import annotations

import asyncio
import sys

from prometheus_client import generate_latest

from services.cli.stack import FAILING_AFTER, REGISTRY, Stack
from shared.settings import Settings
from tests.helpers import TMP, wait_for

# what each unit's process does: exit at once, or run until killed
PROGRAMS = {
    "crashy": "import sys; sys.exit(3)",
    "steady": "import time; time.sleep(600)",
}


class ProgramStack(Stack):
    def command(self, name: str) -> list[str]:
        return [sys.executable, "-c", PROGRAMS[name]]


def stack(**schedule) -> ProgramStack:
    settings = Settings(data_dir=TMP / "supervision")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    s = ProgramStack(settings, services=tuple(PROGRAMS), **schedule)
    s.database_url, s.bootstrap = "postgresql://unused/x", "127.0.0.1:1"  # the children ignore them
    return s


async def test_a_unit_that_keeps_dying_is_failing_and_does_not_hold_up_the_others():
    s = stack(first_backoff=0.02, max_backoff=0.2, healthy_after=30)
    for name in PROGRAMS:
        s.spawn(name)
    steady_pid = s.units["steady"].pid
    stop = asyncio.Event()
    watcher = asyncio.create_task(s.watch(stop))
    try:
        await wait_for(
            lambda: asyncio.sleep(0, s.units["crashy"].failing), timeout=30, what="failing"
        )
        status = s.status()
        assert status["ready"] is False
        crashy = status["units"]["crashy"]
        assert crashy["failing"] and crashy["last_exit_code"] == 3
        assert crashy["deaths_in_a_row"] >= FAILING_AFTER
        assert status["units"]["steady"] == {
            **status["units"]["steady"],
            "running": True,
            "failing": False,
            "restarts": 0,
        }
        metrics = generate_latest(REGISTRY).decode()
        assert 'kizuna_stack_failing{unit="crashy"} 1.0' in metrics
        assert 'kizuna_stack_restarts_total{unit="crashy"}' in metrics
        # the steady unit was never touched while the other was restarted again and again
        assert s.units["steady"].pid == steady_pid and s.alive("steady")

        # the steady one dies once: it is back after the first back-off, not behind the
        # crashy one's schedule
        s.processes["steady"].kill()
        await wait_for(
            lambda: asyncio.sleep(0, s.units["steady"].restarts == 1 and s.alive("steady")),
            timeout=10,
            what="steady restarted",
        )
        assert s.units["steady"].deaths_in_a_row == 1
    finally:
        stop.set()
        await watcher
        s.stopping = True
        await s._terminate(list(s.processes), timeout=5)


async def test_the_back_off_starts_over_after_a_healthy_run():
    s = stack(first_backoff=0.01, max_backoff=1, healthy_after=0.5)
    s.spawn("steady")
    unit = s.units["steady"]
    stop = asyncio.Event()
    watcher = asyncio.create_task(s.watch(stop))
    try:
        for n in (1, 2, 3):  # deaths in quick succession: the count (and the wait) grows
            s.processes["steady"].kill()
            await wait_for(
                lambda n=n: asyncio.sleep(0, unit.restarts == n), timeout=10, what=f"restart {n}"
            )
        assert unit.deaths_in_a_row == 3
        # it runs past the healthy period; its next death counts as the first
        await asyncio.sleep(0.6)
        s.processes["steady"].kill()
        await wait_for(lambda: asyncio.sleep(0, unit.restarts == 4), timeout=10, what="again")
        assert unit.deaths_in_a_row == 1
    finally:
        stop.set()
        await watcher
        s.stopping = True
        await s._terminate(list(s.processes), timeout=5)
