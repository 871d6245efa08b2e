"""The classifier's own Prometheus metrics (beside ``shared.metrics``), on its ``/metrics``."""

from prometheus_client import Gauge, Histogram

from shared.metrics import Counter

LAPSES = Counter(
    "kizuna_lapses_total",
    "Customer states the lapse sweep re-classified as due (counted when the sweep commits)",
)
LAPSE_SWEEP_SECONDS = Histogram(
    "kizuna_lapse_sweep_seconds",
    "Time of one lapse sweep over every tenant (what was due, classified and committed)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
RECLASSIFIED = Counter(
    "kizuna_rules_reclassified_total",
    "Customer states re-classified after a tenant's borders changed",
)
OUTBOX_PUBLISHED = Counter("kizuna_outbox_published_total", "Outbox records published to Kafka")
OUTBOX_BACKLOG = Gauge(
    "kizuna_outbox_backlog_records", "Outbox records not yet published (read at scrape time)"
)
OUTBOX_AGE = Gauge(
    "kizuna_outbox_oldest_age_seconds",
    "Age of the oldest outbox record not yet published; 0 when the outbox is empty",
)
REPLAYED = Counter(
    "kizuna_broker_replayed_records_total",
    "Records the relay published again: the broker that had acknowledged them is gone, or it"
    " did not keep them (broker replay, shared/replay.py)",
)
FAST_PATH_CUSTOMERS = Counter(
    "kizuna_classifier_fast_path_customers_total",
    "Customers whose new sales were folded into their stored state without reading their events"
    " (the fast path; counted when the batch commits)",
)
