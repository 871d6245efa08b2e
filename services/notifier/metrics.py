"""The notifier's own Prometheus metrics, on its ``/metrics`` (what every service reports is in
shared/metrics.py). Counters of what a consumed batch or a scan created move when its
transaction commits (``shared.metrics.counted``)."""

from prometheus_client import Gauge

from shared.metrics import Counter

ALERTS_RAISED = Counter("kizuna_alerts_raised_total", "Alerts raised", ["kind"])
DELIVERIES = Counter(
    "kizuna_alert_deliveries_total",
    "Tries to deliver an alert, by channel and outcome (sent, retry, dead)",
    ["channel", "outcome"],
)
DELIVERY_BACKLOG = Gauge(
    "kizuna_alert_delivery_backlog", "Alert deliveries waiting to be sent (digests excluded)"
)
SEQUENCE_STEPS_CANCELLED = Counter(
    "kizuna_sequence_steps_cancelled_total",
    "Open sequence steps cancelled because the customer moved to another segment",
)
FOLLOWUPS_OPENED = Counter(
    "kizuna_followups_opened_total", "Follow-up tasks opened, by reason", ["reason"]
)
