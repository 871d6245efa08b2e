"""The monitoring files of deploy/: Prometheus accepts its configuration and alert rules
(promtool, from Debian's prometheus package, which `make test` installs), the rules do what
deploy/prometheus/alerts.test.yml says, the scrape jobs find every service where compose runs
it, and the Grafana dashboard is well-formed and reads the provisioned data source.

That every metric the dashboard and the rules name exists in a running stack's /metrics is
tests/e2e/test_monitoring_e2e.py's business."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.settings import Settings
from tests.helpers import unavailable

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "kizuna.json"
SERVICES = ("ingest", "classifier", "reports", "notifier")

# A metric name in PromQL: an identifier not followed by "(" (a function) and not a label or
# a keyword. Enough for the expressions we write; promtool checks the syntax itself.
_NAME = re.compile(r"(?<![\w{,=\"])([a-zA-Z_:][\w:]*)\b(?!\s*\()")
_KEYWORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "offset", "bool", "le"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (label matchers and strings removed)."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    return {
        n
        for n in _NAME.findall(bare)
        if n not in _KEYWORDS and not re.fullmatch(r"[\d.e]+", n) and not n[0].isdigit()
    }


def dashboard_expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expression) for every query of every panel, rows' panels included."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                found.append((inner["title"], target["expr"]))
    return found


def rule_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        unavailable(
            "no promtool: `make test` installs Debian's prometheus package through "
            "deploy/install-test-tools.sh, which needs root and apt-get"
        )
    return path


def run(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )


def test_prometheus_accepts_its_configuration(promtool):
    result = run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_accepts_the_alert_rules(promtool):
    result = run(promtool, "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rules_fire_when_they_should_and_only_then(promtool):
    result = run(promtool, "test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(promtool, tmp_path):
    """The check above would catch a mistake: an expression that does not parse is refused."""
    broken = (PROMETHEUS / "alerts.yml").read_text(encoding="utf-8")
    broken = broken.replace("kizuna_ready == 0", "kizuna_ready === 0")
    (tmp_path / "alerts.yml").write_text(broken, encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "alerts.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0


def test_the_rules_cover_what_operators_need():
    alerts = dict(rule_expressions())
    for needed in (
        "KizunaServiceDown",
        "KizunaServiceNotReady",
        "KizunaConsumerLagGrowing",
        "KizunaOutboxStuck",
        "KizunaDeadLetters",
    ):
        assert needed in alerts


def test_every_service_is_scraped_on_its_port():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    jobs = {
        job["job_name"]: [(n, sd["port"]) for sd in job["dns_sd_configs"] for n in sd["names"]]
        for job in config["scrape_configs"]
    }
    settings = Settings()
    for service in SERVICES:
        assert jobs.get(service) == [(service, getattr(settings, f"{service}_port"))]
        assert service in compose["services"]
    monitoring = compose["services"]["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in monitoring["volumes"]


def test_grafana_is_provisioned_from_the_deploy_files():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./deploy/grafana/dashboards"] == "/var/lib/grafana/dashboards"
    (source,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["type"] == "prometheus"
    (provider,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "kizuna.yml").read_text(encoding="utf-8")
    )["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_dashboard_is_well_formed():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    source = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )["datasources"][0]
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    queries = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert queries
    for panel in queries:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert metric_names(target["expr"]), f"{panel['title']}: {target['expr']} reads nothing"
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]


def test_the_dashboard_draws_what_the_issue_asks_for():
    names = {
        n
        for _, e in dashboard_expressions(json.loads(DASHBOARD.read_text()))
        for n in metric_names(e)
    }
    for needed in (
        "kizuna_consumer_lag_records",
        "kizuna_outbox_backlog_records",
        "kizuna_outbox_oldest_age_seconds",
        "kizuna_deadletters_total",
        "kizuna_batch_seconds_bucket",
        "kizuna_batch_records_sum",
        "kizuna_lapse_sweep_seconds_bucket",
        "kizuna_followups_opened_total",
        "kizuna_alert_deliveries_total",
        "kizuna_ready",
    ):
        assert needed in names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("sum by (group) (kizuna_consumer_lag_records)", {"kizuna_consumer_lag_records"}),
        (
            "histogram_quantile(0.95, sum by (service, le) (rate(kizuna_batch_seconds_bucket[5m])))",
            {"kizuna_batch_seconds_bucket"},
        ),
        ('up{job=~"ingest|classifier"} == 0', {"up"}),
        (
            "sum(rate(a_total[1m])) / sum by (x) (rate(b_count[5m])) > 0.5",
            {"a_total", "b_count"},
        ),
    ],
)
def test_metric_names_are_read_from_expressions(expr, names):
    assert metric_names(expr) == names
