"""The reports service's own Prometheus metrics (beside ``shared.metrics``), on its
``/metrics``. Counted when the consumed batch's transaction commits."""

from shared.metrics import Counter

STATES_APPLIED = Counter(
    "kizuna_reports_states_applied_total", "Customer states applied to the portfolio"
)
STATES_SKIPPED = Counter(
    "kizuna_reports_states_skipped_total",
    "Customer states skipped as already applied (redelivery) or stale",
)
