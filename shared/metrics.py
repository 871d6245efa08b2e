"""Prometheus metrics shared by every service (label ``service`` tells them apart)."""

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
OUTBOX_BACKLOG = Gauge("kizuna_outbox_backlog", "Outbox records not yet published")
REPLAYED = Counter(
    "kizuna_broker_replayed_total",
    "Records published again because the broker that had acknowledged them is gone",
)
OUTBOX_PUBLISHED = Counter("kizuna_outbox_published_total", "Outbox rows published to Kafka")
DEADLETTERS = Counter(
    "kizuna_deadletters_total", "Records sent to the dead-letter topic", ["service"]
)
INGEST_ACCEPTED = Counter(
    "kizuna_ingest_accepted_total", "Purchase events acknowledged by the broker"
)
INGEST_REJECTED = Counter("kizuna_ingest_rejected_total", "Purchase events rejected as invalid")
LAPSES = Counter("kizuna_lapses_total", "Customers moved to a lapsed segment by the clock")
FOLLOWUPS_OPENED = Counter("kizuna_followups_opened_total", "Follow-up tasks opened", ["reason"])
