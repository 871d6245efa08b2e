"""Who is asking, on every request of every service (FastAPI dependencies).

Every service's app is built with ``dependencies=[GUARD]``: a request to anything but the public
paths (health, readiness, metrics, the login page and its API, static assets) needs a valid API
key (``Authorization: Bearer …``) or session cookie, else 401. Each route then says what it
needs with ``dependencies=[allow(Permission.…)]``: the wrong role answers 403, and so does a
``scope`` outside the caller's branches. A customer, task, import or list outside them answers
404 in the route itself (nothing tells what exists). tests/access walks every route of every
service to hold this.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute

from shared.http import ApiError, Pool

from . import credentials, store
from .principal import CHAIN, Permission, Principal

log = logging.getLogger("kizuna.access")

SESSION_COOKIE = "kizuna_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Paths anyone may call: they hold no data (the API descriptions, like the OpenAPI pages and the
# mounted static files, which are Starlette routes and never run these dependencies).
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/login", "/", "/asyncapi.json", "/asyncapi"}
)
PUBLIC_ROUTES = frozenset({("POST", "/v1/session")})
# A key's last use is written at most this often per process: a busy POS feed must not turn
# every request into a write on the same row.
TOUCH_EVERY_SECONDS = 60.0
_touched: dict[str, float] = {}


def wall_clock() -> datetime:
    """Sessions, failed logins and a key's last use run on the real clock: ``KIZUNA_NOW`` moves
    the business day (history, tests), never how long a login lasts."""
    return datetime.now(UTC)


def is_public(method: str, path: str) -> bool:
    return path in PUBLIC_PATHS or (method, path) in PUBLIC_ROUTES


def _unauthenticated(message: str) -> ApiError:
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})


async def _touch(pool, principal: Principal, now: datetime) -> None:
    last = _touched.get(principal.subject)
    clock = time.monotonic()
    if last is not None and clock - last < TOUCH_EVERY_SECONDS:
        return
    _touched[principal.subject] = clock
    async with pool.acquire() as conn:
        await store.touch_keys(conn, [principal.subject], now)


async def _lookup(request: Request, pool) -> Principal:
    now = wall_clock()
    authorization = request.headers.get("authorization")
    try:
        if authorization is not None:
            scheme, _, key = authorization.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise _unauthenticated("the Authorization header must be 'Bearer <API key>'")
            async with pool.acquire() as conn:
                principal = await store.key_principal(conn, key.strip())
            if principal is None:
                raise _unauthenticated("the API key is not valid (unknown or revoked)")
            await _touch(pool, principal, now)
            return principal
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise _unauthenticated("log in at /login, or send 'Authorization: Bearer <API key>'")
        async with pool.acquire() as conn:
            principal = await store.session_principal(conn, token, now)
    except OSError as exc:  # the database is down: we cannot tell who is asking
        raise ApiError(503, "access_unavailable", "credentials cannot be checked now") from exc
    if principal is None:
        raise _unauthenticated("the session has expired or was closed; log in again at /login")
    if request.method not in SAFE_METHODS and not credentials.csrf_matches(
        token, request.headers.get(CSRF_HEADER)
    ):
        raise ApiError(
            403,
            "csrf_failed",
            f"a change made with the session cookie needs the {CSRF_HEADER} header"
            " (the csrf_token from POST /v1/session or GET /v1/session)",
        )
    return principal


async def authenticate(request: Request, pool: Pool) -> Principal | None:
    """The caller of a request (None on public paths); 401 without valid credentials. FastAPI
    runs it once per request, however many dependencies ask."""
    if is_public(request.method, request.url.path):
        return None
    return await _lookup(request, pool)


GUARD = Depends(authenticate)


async def caller(principal: Annotated[Principal | None, GUARD]) -> Principal:
    if principal is None:  # a public path never asks for its caller
        raise _unauthenticated("credentials are needed")
    return principal


Caller = Annotated[Principal, Depends(caller)]


async def tenant_of(who: Caller) -> str:
    return who.tenant_id


TenantId = Annotated[str, Depends(tenant_of)]


def _takes_scope(route) -> bool:
    return isinstance(route, APIRoute) and any(
        f.alias == "scope" for f in route.dependant.query_params
    )


def check_scope(who: Principal, scope: str | None) -> None:
    """403 when a scope lies outside the caller's branches (``all`` is outside any branch)."""
    scope = scope or CHAIN
    if not who.covers(scope):
        mine = ", ".join(who.branches)
        raise ApiError(
            403,
            "scope_forbidden",
            f"scope {scope!r} is outside your branches ({mine}): ask with scope={who.branches[0]}",
            scope=scope,
            branches=list(who.branches),
        )


def allow(permission: Permission | None = None, *, chain_only: bool = False):
    """A route's access rule: the caller's role must grant ``permission`` (None: any caller);
    ``chain_only`` routes hold chain-wide data that no branch login may see. When the route
    takes a ``scope``, a branch login must name one of its branches."""

    async def check(request: Request, who: Caller) -> Principal:
        if permission is not None and not who.may(permission):
            raise ApiError(
                403,
                "forbidden",
                f"a {who.role} {'key' if who.kind == 'key' else 'login'}"
                f" may not do this (needs {permission.value})",
                role=who.role,
            )
        if not who.chain_wide:
            if chain_only:
                raise ApiError(
                    403,
                    "chain_only",
                    "this shows the whole chain; a login or key of some branches may not see it",
                )
            if _takes_scope(request.scope.get("route")):
                check_scope(who, request.query_params.get("scope"))
        return who

    check.permission = permission  # tests/access: every route names its rule
    return Depends(check)
