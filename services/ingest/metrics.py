"""Ingest's own Prometheus metrics, on its ``/metrics`` (what every service reports is in
shared/metrics.py)."""

from shared.metrics import Counter

INGEST_ACCEPTED = Counter(
    "kizuna_ingest_accepted_total", "Purchase events acknowledged by the broker"
)
INGEST_REJECTED = Counter("kizuna_ingest_rejected_total", "Purchase events rejected as invalid")
IMPORT_ROWS = Counter(
    "kizuna_import_rows_total", "CSV rows imported or rejected", ["kind", "result"]
)
IMPORTS_ENDED = Counter("kizuna_imports_total", "CSV imports ended, by status", ["kind", "status"])
IMPORT_EVENTS = Counter(
    "kizuna_import_events_published_total", "Imported sales events acknowledged by the broker"
)
