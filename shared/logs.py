"""Logging for every process: plain text for a person at a terminal, or one JSON object per line
for a log pipeline (``KIZUNA_LOG_FORMAT=json``).

Where a line is about a tenant, a Kafka record or a partition, the call passes what applies as
``extra`` (``tenant``, ``topic``, ``partition``, ``offset``, ``group``, …); the JSON format writes
each as a field of its own, so lines can be filtered by them instead of parsed.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, the process's
    ``service``, every ``extra`` field, and ``exception`` with the traceback when there is one."""

    def __init__(self, service: str | None = None):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.service:
            line["service"] = self.service
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, log_format: LogFormat = "text", service: str | None = None) -> None:
    """Send every logger (uvicorn's and aiokafka's included) to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn installs handlers of its own unless told otherwise; let its records reach ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # aiokafka narrates every join and rebalance at INFO; keep the console for what matters
    logging.getLogger("aiokafka").setLevel(
        max(logging.WARNING, logging.getLevelName(level.upper()))
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


def record_context(topic: str, partition: int, offset: int, key: bytes | None) -> dict:
    """The ``extra`` fields of a line about one Kafka record (the tenant is the key's prefix)."""
    context: dict = {"topic": topic, "partition": partition, "offset": offset}
    if key:
        tenant, sep, _ = key.decode("utf-8", "replace").partition(":")
        if sep:
            context["tenant"] = tenant
    return context
