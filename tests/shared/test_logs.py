"""KIZUNA_LOG_FORMAT=json: one JSON object per line, with the context a line is about (tenant,
topic, partition, offset) as fields of their own."""

from __future__ import annotations

import json
import logging

import pytest

from shared import logs
from shared.settings import Settings


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], level = saved
    root.setLevel(level)


def test_json_lines_carry_the_record_context(root_logging, capsys):
    logs.configure("INFO", "json", service="notifier")
    log = logging.getLogger("kizuna.test")
    log.warning(
        "dead-lettered %s: %s",
        "x",
        "bad 値",
        extra=logs.record_context("kizuna.segment-changes.v1", 3, 42, b"acme:C1"),
    )
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed", extra={"tenant": "acme"})
    lines = capsys.readouterr().err.splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "dead-lettered x: bad 値"
    assert first["level"] == "WARNING" and first["logger"] == "kizuna.test"
    assert first["service"] == "notifier"
    assert (first["tenant"], first["topic"], first["partition"], first["offset"]) == (
        "acme",
        "kizuna.segment-changes.v1",
        3,
        42,
    )
    assert second["tenant"] == "acme"
    assert "ValueError: boom" in second["exception"]


def test_text_is_the_default_and_json_is_the_alternative(root_logging, capsys, monkeypatch):
    assert Settings().log_format == "text"
    logs.configure("INFO", Settings().log_format)
    logging.getLogger("kizuna.test").info("hello", extra={"tenant": "acme"})
    assert capsys.readouterr().err.rstrip().endswith("INFO kizuna.test: hello")
    monkeypatch.setenv("KIZUNA_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()


def test_a_key_without_a_tenant_prefix_names_no_tenant():
    assert "tenant" not in logs.record_context("t", 0, 1, b"no-colon")
    assert "tenant" not in logs.record_context("t", 0, 1, None)
