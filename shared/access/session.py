"""Logging in and out: ``POST /v1/session`` (e-mail and password → session cookie and CSRF token),
``GET /v1/session`` (who is logged in, and the CSRF token again after a page reload) and
``DELETE /v1/session``. Served by reports (the dashboard's service); the cookie is accepted by
every service, since the session lives in PostgreSQL.

Failed logins are counted per account and per address over a window; past the limit the login
waits (429 with Retry-After) whatever the password, so guessing is slow for one account and for
one machine trying many accounts.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from shared.http import ApiError, AppSettings, Pool

from . import credentials, store
from .guard import SESSION_COOKIE, Caller, allow, wall_clock
from .principal import Permission

log = logging.getLogger("kizuna.access")
router = APIRouter(tags=["session"])


class Login(BaseModel):
    email: str = Field(min_length=3, max_length=320, examples=["owner@example.jp"])
    # Bounded: argon2 of a megabyte-long "password" would be a cheap way to burn our CPU.
    password: str = Field(min_length=1, max_length=1024)


def _who(who) -> dict:
    body = {"kind": who.kind, "tenant_id": who.tenant_id, "role": who.role}
    body["branches"] = list(who.branches)
    # What the role may do, so the dashboard shows the pages and buttons that will work (the
    # one table of roles stays in principal.py).
    body["permissions"] = sorted(p.value for p in Permission if who.may(p))
    if who.kind == "person":
        body["email"] = who.subject
    else:
        body.update(key_id=who.subject, name=who.name)
    return body


@router.post("/v1/session")
async def log_in(
    login: Login, request: Request, response: Response, pool: Pool, settings: AppSettings
) -> dict:
    """Log in: 200 with ``{"csrf_token", …}`` and the session cookie; 401 otherwise. The body
    must be JSON (FastAPI refuses another content type with 422): a form on another site can
    post form data without asking, never JSON, so it cannot log a browser into its account."""
    now = wall_clock()
    window = timedelta(minutes=settings.login_window_minutes)
    address = request.client.host if request.client else "unknown"
    account, machine = f"email:{login.email.strip().lower()}", f"address:{address}"
    async with pool.acquire() as conn:
        failures = await store.recent_failures(conn, [account, machine], now - window)
        if (
            failures.get(account, 0) >= settings.login_failures_per_account
            or failures.get(machine, 0) >= settings.login_failures_per_address
        ):
            wait = math.ceil(window.total_seconds())
            raise ApiError(
                429,
                "too_many_failed_logins",
                f"too many failed logins; try again in {math.ceil(wait / 60)} minutes",
                headers={"Retry-After": str(wait)},
            )
        person = await store.person_for_login(conn, login.email)
        # argon2 takes tens of milliseconds of CPU: off the event loop.
        ok = await asyncio.to_thread(
            credentials.verify_password, person["password_hash"] if person else None, login.password
        )
        if not ok:
            await store.record_failure(conn, [account, machine], now)
            log.info("failed login from %s", address)
            raise ApiError(401, "invalid_login", "the e-mail or the password is wrong")
        await store.clear_failures(conn, account, now - window)
        lifetime = timedelta(hours=settings.session_hours)
        token = await store.open_session(conn, person["person_id"], now, lifetime, address)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return {
        "csrf_token": credentials.csrf_token(token),
        "expires_at": (now + lifetime).isoformat(),
        "kind": "person",
        "tenant_id": person["tenant_id"],
        "email": person["email"],
        "role": person["role"],
        "branches": list(person["branches"]),
    }


@router.get("/v1/session", dependencies=[allow()])
async def who_am_i(who: Caller, request: Request) -> dict:
    """Who is asking; with a session cookie also its CSRF token (a page that was reloaded
    needs it again)."""
    body = _who(who)
    token = request.cookies.get(SESSION_COOKIE)
    if who.kind == "person" and token:
        body["csrf_token"] = credentials.csrf_token(token)
    return body


@router.delete("/v1/session", status_code=204, dependencies=[allow()])
async def log_out(who: Caller, request: Request, pool: Pool) -> Response:
    """Log out: the session ends on the server and the cookie is removed."""
    token = request.cookies.get(SESSION_COOKIE)
    if who.kind == "person" and token:
        async with pool.acquire() as conn:
            await store.close_session(conn, token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response
