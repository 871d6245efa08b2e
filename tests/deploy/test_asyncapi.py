"""The AsyncAPI document of the Kafka topics: generated from the contract models, committed as
docs/asyncapi.json (a test fails when the two differ), valid for the AsyncAPI Initiative's own
parser, naming all four topics with their payload schemas, and served by every service."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from shared import http
from shared.events import (
    ALL_TOPICS,
    CUSTOMER_STATES,
    DEADLETTER,
    PURCHASES,
    SEGMENT_CHANGES,
    CustomerState,
    DeadLetter,
    PurchaseEvent,
    SegmentChange,
    asyncapi,
)
from tests.helpers import unavailable

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.json"
VALIDATOR = ROOT / "deploy" / "asyncapi"
MODELS = {
    PURCHASES: PurchaseEvent,
    CUSTOMER_STATES: CustomerState,
    SEGMENT_CHANGES: SegmentChange,
    DEADLETTER: DeadLetter,
}


def test_the_committed_document_is_what_the_code_generates():
    assert COMMITTED.read_text(encoding="utf-8") == asyncapi.document_text(), (
        "docs/asyncapi.json differs from what the contract models generate; regenerate it with "
        "`.venv/bin/python -m shared.events.asyncapi docs/asyncapi.json` and commit it"
    )


@pytest.fixture(scope="module")
def parsed() -> dict:
    """What @asyncapi/parser made of the committed document."""
    node = shutil.which("node")
    if node is None or not (VALIDATOR / "node_modules" / "@asyncapi" / "parser").is_dir():
        unavailable(
            "@asyncapi/parser is not installed: `make test` installs it into deploy/asyncapi "
            "through deploy/install-test-tools.sh (needs node and npm)"
        )
    result = subprocess.run(
        [node, str(VALIDATOR / "validate.mjs"), str(COMMITTED)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout, f"the validator printed nothing: {result.stderr}"
    return json.loads(result.stdout)


def test_the_document_is_valid_asyncapi(parsed):
    assert parsed["valid"], json.dumps(parsed["errors"], indent=2)
    assert parsed["errors"] == []


def test_every_topic_is_named_with_its_payload_schema(parsed):
    channels = {c["address"]: c for c in parsed["channels"]}
    assert set(channels) == set(ALL_TOPICS)
    for topic, model in MODELS.items():
        (message,) = channels[topic]["messages"]
        payload = message["payload"]
        assert payload["title"] == model.__name__
        assert set(payload["properties"]) == set(model.model_fields), topic
        required = {name for name, f in model.model_fields.items() if f.is_required()}
        assert set(payload.get("required", [])) == required, topic


def test_every_contract_field_is_described():
    """The descriptions are the integrators' documentation: none may be missing."""
    schemas = asyncapi.document()["components"]["schemas"]
    undocumented = [
        f"{name}.{field}"
        for name, schema in schemas.items()
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description") and "$ref" not in prop
    ]
    assert undocumented == []


async def test_every_service_serves_the_document():
    app = FastAPI()

    async def ready() -> dict[str, bool]:
        return {"database": True}

    http.install(app, ready, service="test")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        served = await client.get("/asyncapi.json")
        page = await client.get("/asyncapi")
    assert served.status_code == 200
    assert served.json() == json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Kizuna events" in page.text and "AsyncApiStandalone" in page.text
