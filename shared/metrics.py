"""Kizuna's metrics: the convention every service follows, and the metrics of the machinery
they share (the PostgreSQL-offset consumer, the outbox, readiness).

The convention:
- Names are ``kizuna_<what>[_<unit>]``: counters end in ``_total``, durations are histograms in
  ``_seconds``, sizes are histograms in ``_records``; gauges say what they hold
  (``kizuna_outbox_backlog_records``).
- A metric is defined once: a service's own metrics in ``services/<service>/metrics.py``, used
  by that service's modules as ``metrics.NAME`` after ``from . import metrics``; the shared
  machinery's here (with a ``service`` label where several services report it), written by
  shared code, never by a service's own modules.
  deploy/grafana and deploy/prometheus name only metrics defined in those places (a test holds
  them to a running stack's ``/metrics``).
- Counters of work done in a database transaction move when that transaction commits, never
  before: open it with ``counted(conn)`` instead of ``conn.transaction()``. A batch that fails
  and is retried then counts once, like its effects. Use this module's ``Counter`` for that;
  outside ``counted`` it counts at once, as usual.
- Series that a dashboard or alert rate()s are created at start-up with their known labels
  (``declare``), so they read 0 instead of being absent until the first event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

import prometheus_client
from prometheus_client import Gauge, Histogram

# Increments waiting for the commit of the transaction they belong to (None: count at once).
_pending: ContextVar[list[tuple[Counter, float]] | None] = ContextVar(
    "kizuna_metrics_pending", default=None
)


class Counter(prometheus_client.Counter):
    """A Prometheus counter whose increments inside ``counted`` wait for the commit."""

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        pending = _pending.get()
        if pending is None:
            super().inc(amount, exemplar)
        else:
            pending.append((self, amount))


@asynccontextmanager
async def counted(conn) -> AsyncIterator[None]:
    """``conn.transaction()`` whose counter increments happen once it has committed (and not
    at all when it rolls back). Nested, the inner one's increments wait for the outer commit."""
    outer = _pending.get()
    moves: list[tuple[Counter, float]] = []
    token = _pending.set(moves)
    try:
        async with conn.transaction():
            yield
    finally:
        _pending.reset(token)
    if outer is not None:
        outer.extend(moves)
    else:
        for counter, amount in moves:
            prometheus_client.Counter.inc(counter, amount)


def declare(metric, *label_sets: tuple[str, ...]) -> None:
    """Create the series of ``metric`` for these label values (at 0)."""
    for labels in label_sets:
        metric.labels(*labels)


# --- The consumer that keeps its offsets in PostgreSQL (shared/consumer.py) ------------------

EVENTS_IN = Counter(
    "kizuna_events_in_total",
    "Records consumed and processed (counted when their transaction commits)",
    ["service"],
)
BATCH_SECONDS = Histogram(
    "kizuna_batch_seconds",
    "Time to process one consumed batch in one transaction, commit included",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_RECORDS = Histogram(
    "kizuna_batch_records",
    "Records in one consumed batch processed in one transaction",
    ["service"],
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 25000),
)
BATCH_FAILURES = Counter(
    "kizuna_batch_failures_total",
    "Consumed batches whose transaction failed (they are retried from their first offsets)",
    ["service"],
)
CONSUMER_LAG = Gauge(
    "kizuna_consumer_lag_records",
    "Records of a partition not yet processed by the group: the high-water mark from the last "
    "fetch response minus the group's position",
    ["service", "group", "topic", "partition"],
)
DEADLETTERS = Counter(
    "kizuna_deadletters_total",
    "Records sent to the dead-letter topic, by service and the topic they came from",
    ["service", "topic"],
)
BROKER_RESETS = Counter(
    "kizuna_broker_resets_total",
    "Partitions read from the beginning because the broker is not the one offsets were stored "
    "for (a restarted embedded broker)",
    ["service"],
)

# --- The outbox, as every consumer writes it in its transaction (the relay's: classifier) ----

OUTBOX_WRITTEN = Counter(
    "kizuna_changes_out_total",
    "Records written to the outbox, by destination topic (counted when they commit)",
    ["topic"],
)

# --- Readiness, as /readyz sees it, read at every scrape -------------------------------------

READY = Gauge(
    "kizuna_ready",
    "1 when the check passes (what /readyz reports), else 0",
    ["service", "check"],
)
