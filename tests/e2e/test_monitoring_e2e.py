"""A running stack backs what operators are given: every metric the Grafana dashboard and the
alert rules read exists in the services' /metrics, and with KIZUNA_LOG_FORMAT=json a dead
letter's log line is JSON naming the tenant, topic, partition and offset."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.events import PURCHASES
from shared.kafka import new_producer
from tests.deploy.test_monitoring import (
    DASHBOARD,
    dashboard_expressions,
    metric_names,
    rule_expressions,
)
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

SERVICES = ("ingest", "classifier", "reports", "notifier")
# Prometheus' own series, not Kizuna's.
BUILT_IN = {"up"}


def exposed(text: str) -> set[str]:
    """Every name a scrape of this text gives: families (declared even without a series yet),
    their counters' ``_total`` and histograms' ``_bucket``/``_sum``/``_count`` samples."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
        names |= {sample.name for sample in family.samples}
    return names


async def test_dashboard_and_alerts_read_metrics_the_stack_exposes(services, broker, tenant):
    procs = {name: services(name, KIZUNA_LOG_FORMAT="json") for name in SERVICES}
    for p in procs.values():
        p.start()
    for p in procs.values():
        await p.ready()

    # One record that breaks the contract: dead-lettered by the classifier, with its reason.
    producer = new_producer(broker.bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            PURCHASES,
            b'{"event_id": "no-branch"}',
            key=f"{tenant}:C-{uuid.uuid4().hex[:6]}".encode(),
        )
    finally:
        await producer.stop()

    async with httpx.AsyncClient(timeout=10) as http:

        async def dead_lettered():
            text = (await http.get(procs["classifier"].url + "/metrics")).text
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    if (
                        s.name == "kizuna_deadletters_total"
                        and s.labels == {"service": "classifier", "topic": PURCHASES}
                        and s.value >= 1
                    ):
                        return True
            return False

        await wait_for(dead_lettered, timeout=60, what="the dead letter counted")
        scraped = {name: (await http.get(p.url + "/metrics")).text for name, p in procs.items()}

    available = set().union(*(exposed(text) for text in scraped.values())) | BUILT_IN
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    missing = sorted(
        f"{where}: {name}"
        for where, expr in dashboard_expressions(dashboard) + rule_expressions()
        for name in metric_names(expr)
        if name not in available
    )
    assert missing == []

    # Readiness is a metric too: every service reports its checks as passing.
    for name, text in scraped.items():
        ready = [
            s
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "kizuna_ready"
        ]
        assert ready and all(s.labels["service"] == name and s.value == 1 for s in ready), name

    # Every line the process wrote is one JSON object (uvicorn's and aiokafka's included).
    lines = [json.loads(line) for line in procs["classifier"].log.read_text().splitlines() if line]
    letters = [
        line
        for line in lines
        if line.get("topic") == PURCHASES
        and line.get("offset") == sent.offset
        and line.get("partition") == sent.partition
    ]
    assert letters, "no JSON log line about the dead letter"
    (letter,) = letters
    assert letter["tenant"] == tenant and letter["level"] == "WARNING"
    assert letter["service"] == "classifier" and "branch_id" in letter["message"]
