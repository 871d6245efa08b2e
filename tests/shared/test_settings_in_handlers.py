"""Handlers take ``AppSettings`` (shared/http.py), never ``get_settings()``: a test can then give
a handler other settings by overriding one dependency. Walked from the apps' route tables, so a
route added later is held to it too: no module that serves routes calls ``get_settings()``
(an app module's lifespan may: it runs once, at start-up, outside any request)."""

from __future__ import annotations

import importlib
import inspect

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

SERVICES = ("ingest", "reports", "notifier", "classifier")


def _endpoints():
    for service in SERVICES:
        app = importlib.import_module(f"services.{service}.app").app
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            if isinstance(route, APIRoute):
                yield service, f"{'|'.join(sorted(context.methods))} {context.path}", route.endpoint


ENDPOINTS = list(_endpoints())


@pytest.mark.parametrize(
    ("service", "path", "endpoint"), ENDPOINTS, ids=[f"{s}:{p}" for s, p, _ in ENDPOINTS]
)
def test_no_handler_reads_the_settings_itself(service, path, endpoint):
    module = inspect.getmodule(endpoint)
    if module.__name__ in (f"services.{service}.app", "shared.http"):
        source = inspect.getsource(endpoint)  # the lifespan beside it may read them
    else:
        source = inspect.getsource(module)
    assert "get_settings()" not in source, f"{module.__name__} ({path})"
