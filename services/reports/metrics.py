"""The reports service's own Prometheus metrics, on its ``/metrics`` (what every service
reports is in shared/metrics.py)."""

from shared.metrics import Counter

STATES_APPLIED = Counter(
    "kizuna_reports_states_applied_total", "Customer states applied to the portfolio"
)
STATES_SKIPPED = Counter(
    "kizuna_reports_states_skipped_total",
    "Customer states skipped as already applied (redelivery) or stale",
)
