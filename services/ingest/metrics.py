"""The ingest service's own Prometheus metrics (beside ``shared.metrics``), on its ``/metrics``."""

from shared.metrics import Counter

ACCEPTED = Counter("kizuna_ingest_accepted_total", "Purchase events acknowledged by the broker")
REJECTED = Counter("kizuna_ingest_rejected_total", "Purchase events rejected as invalid")
IMPORT_ROWS = Counter(
    "kizuna_import_rows_total",
    "CSV rows imported or rejected (counted once checkpointed)",
    ["kind", "result"],
)
IMPORTS_ENDED = Counter("kizuna_imports_total", "CSV imports ended, by status", ["kind", "status"])
IMPORT_EVENTS = Counter(
    "kizuna_import_events_published_total", "Imported sales events acknowledged by the broker"
)
