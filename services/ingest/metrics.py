"""The ingest service's own Prometheus metrics (beside ``shared.metrics``), on its ``/metrics``."""

from shared.metrics import Counter

ACCEPTED = Counter("kizuna_ingest_accepted_total", "Purchase events acknowledged by the broker")
REJECTED = Counter("kizuna_ingest_rejected_total", "Purchase events rejected as invalid")
