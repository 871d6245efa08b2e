"""Prometheus metrics every service reports alike, labelled by ``service``: what a consumer takes
in and how fast, its lag, its dead letters, what goes to an outbox. Written by shared code
(``shared.kafka``), never by a service's own modules.

The convention: a metric of one service lives in ``services/<name>/metrics.py`` and that
service's modules use it as ``metrics.NAME`` after ``from . import metrics`` (names
``kizuna_<what>_total`` for counters). LAPSES and OUTBOX_* below are the classifier's, to move
to services/classifier/metrics.py with its restructuring."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("kizuna_events_in_total", "Records consumed and processed", ["service"])
BATCH_SECONDS = Histogram(
    "kizuna_batch_seconds",
    "Time to process one consumed batch, database commit included",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "kizuna_consumer_lag", "High-water mark minus position", ["service", "topic", "partition"]
)
CHANGES_OUT = Counter("kizuna_changes_out_total", "Changes written to the outbox", ["topic"])
OUTBOX_BACKLOG = Gauge("kizuna_outbox_backlog", "Outbox rows not yet published")
OUTBOX_PUBLISHED = Counter("kizuna_outbox_published_total", "Outbox rows published to Kafka")
DEADLETTERS = Counter(
    "kizuna_deadletters_total", "Records sent to the dead-letter topic", ["service"]
)
LAPSES = Counter("kizuna_lapses_total", "Customers moved to a lapsed segment by the clock")
