"""Faults over the real stack (`kizuna up`'s Stack on a PostgreSQL of its own): every service
SIGKILLed at random moments of a feed (the classifier twice), PostgreSQL restarted and the
embedded broker SIGKILLed; the feeder resends what was refused. Afterwards everything equals a
from-scratch computation and every event answered 202 is in the event store
(services.cli.bench.faults.py says what is checked)."""

from __future__ import annotations

import pytest

from services.cli.bench.faults import SHORT_FAULTS, run_faults
from tests.helpers import TMP, free_port

pytestmark = pytest.mark.e2e


async def test_nothing_accepted_is_lost_through_kills_restarts_and_a_broker_reset():
    ports = {
        name: free_port()
        for name in ("stack", "broker", "ingest", "classifier", "reports", "notifier")
    }
    result = await run_faults(
        TMP / f"faults-{ports['stack']}", ports, events=3000, customers=600, pace=0.02
    )
    assert [name for _, name in result["faults"]] == list(SHORT_FAULTS)
    assert result["problems"] == []
    assert result["events_unique"] == result["stored_events"] > 2500
    assert result["states_checked"] > 600 and result["timelines_checked"] > 600
    # the supervisor brought every killed process back (postgres is not its child)
    for name in ("classifier", "reports", "notifier", "ingest", "broker"):
        assert result["restarts"][name] >= SHORT_FAULTS.count(name), result["restarts"]
