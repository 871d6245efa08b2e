"""The one validation-error handler: a body declared as a pydantic model that does not validate
is 422 ``invalid_request`` with ``problems: [{field, reason}]``, each field named by its path in
the body (a nested field called ``body`` included), an error of the whole body by the field its
message names."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import Body, FastAPI
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared import http
from shared.cpm import Rules


class Template(BaseModel):
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1)


class Borders(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: int = 1
    high: int = 2
    templates: dict[str, Template] = {}

    @model_validator(mode="after")
    def _ordered(self) -> Borders:
        if self.high <= self.low:
            raise ValueError("high must be greater than low")
        return self


def _app() -> FastAPI:
    app = FastAPI()

    @app.put("/required")
    async def required(borders: Borders) -> dict:
        return borders.model_dump()

    @app.post("/optional")
    async def optional(borders: Annotated[Borders | None, Body()] = None) -> dict:
        return (borders or Borders()).model_dump()

    async def ready():
        return {}

    http.install(app, ready, service="test")
    return app


async def _call(method: str, path: str, **kwargs) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://kizuna") as c:
        return await c.request(method, path, **kwargs)


async def _problems(method: str, path: str, **kwargs) -> list[dict]:
    response = await _call(method, path, **kwargs)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("invalid_request", "the request is not valid")
    return error["problems"]


async def test_fields_are_named_by_their_path_in_the_body():
    bad = {"low": "x", "templates": {"lapsed": {"subject": "s", "body": ""}}, "other": 1}
    assert [p["field"] for p in await _problems("PUT", "/required", json=bad)] == [
        "low",
        "templates.lapsed.body",
        "other",
    ]


async def test_a_whole_body_error_is_the_field_it_names():
    assert await _problems("PUT", "/required", json={"low": 3, "high": 3}) == [
        {"field": "high", "reason": "high must be greater than low"}
    ]


async def test_a_missing_or_unreadable_body():
    assert [p["field"] for p in await _problems("PUT", "/required")] == ["body"]
    unreadable = await _problems(
        "PUT", "/required", content=b"{", headers={"content-type": "application/json"}
    )
    assert len(unreadable) == 1 and unreadable[0]["reason"]


async def test_an_optional_body_may_be_left_out_but_not_be_wrong():
    assert (await _call("POST", "/optional")).json()["high"] == 2
    assert (await _call("POST", "/optional", json={"high": 5})).json()["high"] == 5
    assert [p["field"] for p in await _problems("POST", "/optional", json={"high": 0})] == ["high"]


# The borders (shared.cpm.Rules) as every handler that takes them reports them.
ANY_REASON = object()


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        ({"lapse_days": 0}, [{"field": "lapse_days", "reason": "Input should be greater than 0"}]),
        (
            {"loyal_tenure_days": 60},
            [
                {
                    "field": "loyal_tenure_days",
                    "reason": "loyal_tenure_days must be greater than fledgling_tenure_days",
                }
            ],
        ),
        (
            {"lapse_days_by_tier": {"vip": 10}},
            [{"field": "lapse_days_by_tier", "reason": ANY_REASON}],
        ),
        ({"colour": "red"}, [{"field": "colour", "reason": "Extra inputs are not permitted"}]),
        ([], [{"field": "body", "reason": ANY_REASON}]),
    ],
)
def test_rules_problems_name_field_and_reason(body, problems):
    with pytest.raises(ValidationError) as caught:
        Rules.model_validate(body)
    found = http.problems(caught.value.errors(), Rules.model_fields)
    assert [p["field"] for p in found] == [p["field"] for p in problems]
    for got, want in zip(found, problems, strict=True):
        if want["reason"] is not ANY_REASON:
            assert got["reason"] == want["reason"]
        assert got["reason"]
