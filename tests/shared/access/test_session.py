"""Logging in and out (POST/GET/DELETE /v1/session on reports), the session cookie on another
service, CSRF, expiry, the failed-login limit, security headers; the audit log of exports and
the erasure of a customer; and that no password or key is kept or logged in clear."""

from __future__ import annotations

import csv
import io
import logging
import uuid
from datetime import timedelta

import httpx
import pytest

from services.notifier.app import app as notifier_app
from services.reports.app import app as reports_app
from shared.access import store as access_store
from shared.access.guard import SESSION_COOKIE
from shared.http import get_pool
from tests.helpers import api_key, login, person

pytestmark = pytest.mark.integration


@pytest.fixture
async def apps(pool):
    for app in (reports_app, notifier_app):
        app.dependency_overrides[get_pool] = lambda: pool
    yield
    for app in (reports_app, notifier_app):
        app.dependency_overrides.pop(get_pool, None)


def client(app, base="http://reports") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


async def test_login_sets_a_safe_cookie_and_the_session_works_until_logout(apps, pool, tenant):
    email, password = await person(pool, tenant, "owner")
    async with client(reports_app) as c:
        r = await c.post("/v1/session", json={"email": email.upper(), "password": password})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["email"], body["role"], body["tenant_id"]) == (email, "owner", tenant)
        csrf = body["csrf_token"]
        cookie = r.headers["set-cookie"]
        assert f"{SESSION_COOKIE}=" in cookie
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        assert "secure" not in cookie.lower()  # plain HTTP here; see the HTTPS case below

        who = await c.get("/v1/session")
        assert who.status_code == 200 and who.json()["csrf_token"] == csrf
        assert (await c.get("/v1/portfolio", params={"scope": "all"})).status_code == 200

        # a change made with the cookie needs the CSRF token
        rules = (await c.get("/v1/rules")).json()["rules"]
        assert (await c.put("/v1/rules", json=rules)).status_code == 403
        refused = await c.put("/v1/rules", json=rules, headers={"X-CSRF-Token": "0" * 64})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        assert (
            await c.put("/v1/rules", json=rules, headers={"X-CSRF-Token": csrf})
        ).status_code == 200

        # the same cookie is accepted by another service
        token = c.cookies[SESSION_COOKIE]
        async with client(notifier_app, "http://notifier") as n:
            n.cookies.set(SESSION_COOKIE, token)
            assert (await n.get("/v1/followups")).status_code == 200

        assert (await c.delete("/v1/session")).status_code == 403  # no CSRF token
        out = await c.delete("/v1/session", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        # the cookie is gone from the browser, and the session from the server
        c.cookies.set(SESSION_COOKIE, token)
        assert (await c.get("/v1/session")).status_code == 401


async def test_cookie_is_secure_over_https(apps, pool, tenant):
    email, password = await person(pool, tenant, "manager", ("b1",))
    async with client(reports_app, "https://reports") as c:
        r = await c.post("/v1/session", json={"email": email, "password": password})
        assert r.status_code == 200 and "secure" in r.headers["set-cookie"].lower()


async def test_a_wrong_login_says_nothing_of_what_exists_and_is_limited(apps, pool, tenant, caplog):
    email, password = await person(pool, tenant, "staff", ("b1",))
    caplog.set_level(logging.DEBUG)
    async with client(reports_app) as c:
        unknown = await c.post("/v1/session", json={"email": f"x{email}", "password": "guess-1"})
        wrong = await c.post("/v1/session", json={"email": email, "password": "guess-2"})
        assert unknown.status_code == wrong.status_code == 401
        assert unknown.json() == wrong.json()  # the same answer for an unknown e-mail
        assert "guess" not in wrong.text
        form = await c.post("/v1/session", data={"email": email, "password": password})
        assert form.status_code == 422  # only JSON: a form on another site cannot log in
        for n in range(3, 7):  # with guess-2: five failures for the account
            r = await c.post("/v1/session", json={"email": email, "password": f"guess-{n}"})
        assert r.status_code == 401
        # five failures for the account: even the right password waits now
        limited = await c.post("/v1/session", json={"email": email, "password": password})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert "guess" not in caplog.text and password not in caplog.text


async def test_an_expired_or_disabled_login_is_401(apps, pool, tenant):
    async with client(reports_app) as c:
        await login(c, pool, tenant, "manager", ("b1",))
        assert (await c.get("/v1/session")).status_code == 200
        token = c.cookies[SESSION_COOKIE]
        await pool.execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second'"
            " WHERE token_hash = sha256($1::text::bytea)",
            token,
        )
        r = await c.get("/v1/portfolio", params={"scope": "b1"})
        assert r.status_code == 401 and "expired" in r.json()["error"]["message"]

        email, password = await person(pool, tenant, "manager", ("b1",))
        assert (
            await c.post("/v1/session", json={"email": email, "password": password})
        ).status_code == 200
        async with pool.acquire() as conn:
            await access_store.update_person(conn, email, enabled=False)
        assert (await c.get("/v1/session")).status_code == 401
        again = await c.post("/v1/session", json={"email": email, "password": password})
        assert again.status_code == 401


async def test_a_branch_login_sees_its_branches_only(apps, pool, tenant):
    async with client(reports_app) as c:
        await login(c, pool, tenant, "manager", ("b1",))
        assert (await c.get("/v1/scopes")).json() == {"scopes": ["b1"]}
        assert (await c.get("/v1/portfolio", params={"scope": "b1"})).status_code == 200
        for scope in ("all", "b2"):
            r = await c.get("/v1/portfolio", params={"scope": scope})
            assert r.status_code == 403 and r.json()["error"]["code"] == "scope_forbidden"
        assert (await c.get("/v1/portfolio")).status_code == 403  # no scope means the chain
        assert (await c.get("/v1/audit")).status_code == 403  # owners only
        assert (await c.get("/v1/dm-tables")).status_code == 403  # chain-wide tables


async def test_security_headers_on_the_dashboard_and_login_page(apps):
    async with client(reports_app) as c:
        for path in ("/", "/login", "/static/login.js"):
            r = await c.get(path)
            assert r.status_code == 200, path
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["x-content-type-options"] == "nosniff"
        assert (await c.get("/v1/portfolio")).status_code == 401


async def seed_customer(pool, tenant, customer, branch="b1"):
    async with pool.acquire() as conn:
        for scope in ("all", branch):
            await conn.execute(
                "INSERT INTO report_customers (tenant_id, scope, customer_id, seq, segment,"
                " purchase_count, total_amount, first_purchase_on, last_purchase_on,"
                " home_branch_id, effective_on) VALUES ($1, $2, $3, 1, 'steady_active', 4,"
                " 50000, '2025-01-01', '2026-05-01', $4, '2026-05-01')",
                tenant,
                scope,
                customer,
                branch,
            )
        await conn.execute(
            "INSERT INTO customers (tenant_id, customer_id, branch_id, name, email, phone)"
            " VALUES ($1, $2, $3, '山田 太郎', 'taro@example.jp', '03-0000-0000')",
            tenant,
            customer,
            branch,
        )


async def test_exports_are_audited_and_an_erasure_keeps_the_figures(apps, pool, tenant):
    await seed_customer(pool, tenant, "C1")
    async with client(reports_app) as manager, client(reports_app) as owner:
        await login(manager, pool, tenant, "manager", ("b1",))
        csrf = await login(owner, pool, tenant, "owner")
        page = await manager.get("/v1/segments/steady_active/customers", params={"scope": "b1"})
        assert [i["customer_id"] for i in page.json()["items"]] == ["C1"]
        download = await manager.get(
            "/v1/segments/steady_active/customers", params={"scope": "b1", "format": "csv"}
        )
        assert download.status_code == 200 and "C1" in download.text
        rfm = await owner.get("/v1/rfm/customers", params={"scope": "all", "format": "csv"})
        assert rfm.status_code == 200

        log = (await owner.get("/v1/audit")).json()["items"]
        manager_email = (await manager.get("/v1/session")).json()["email"]
        # newest first: who, what, which list, how many rows, which format
        assert [(e["actor"], e["action"], e["subject"], e["rows"], e["format"]) for e in log][
            1:
        ] == [
            (
                manager_email,
                "export",
                "/v1/segments/steady_active/customers?scope=b1&format=csv",
                1,
                "csv",
            ),
            (manager_email, "export", "/v1/segments/steady_active/customers?scope=b1", 1, "json"),
        ]
        assert log[0]["subject"].startswith("/v1/rfm/customers") and log[0]["rows"] == 1
        as_csv = await owner.get("/v1/audit", params={"format": "csv"})
        rows = list(csv.DictReader(io.StringIO(as_csv.text.lstrip("\ufeff"))))
        assert len(rows) == len(log) and rows[0]["action"] == "export"

        assert (await manager.delete("/v1/customers/C1")).status_code == 403
        erased = await owner.delete("/v1/customers/C1", headers=csrf)
        assert erased.status_code == 200 and erased.json()["erased"]["master_data"] == 1
        assert (
            await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tenant) == 0
        )
        figures = await owner.get("/v1/customers/C1", params={"scope": "all"})
        assert figures.status_code == 200 and float(figures.json()["total_amount"]) == 50000
        assert (await owner.delete("/v1/customers/C1", headers=csrf)).status_code == 404
        latest = (await owner.get("/v1/audit")).json()["items"][0]
        assert (latest["action"], latest["subject"]) == ("erase", "customer C1")


async def test_no_password_or_key_is_kept_in_clear(pool, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    tenant = f"s{uuid.uuid4().hex[:8]}"
    key = (await api_key(database_url, tenant, "ingest", ("b1",)))["Authorization"][7:]
    email, password = await person(pool, tenant, "owner")
    async with pool.acquire() as conn:
        token = await access_store.open_session(
            conn,
            await conn.fetchval("SELECT person_id FROM people WHERE email = $1", email),
            await conn.fetchval("SELECT now()"),
            timedelta(hours=1),
            None,
        )
        # every row of every table, as text (what a dump would hold)
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        dumped = []
        for t in tables:
            dumped += await conn.fetch(
                f'SELECT row_to_json(x)::text AS row FROM "{t["tablename"]}" x'
            )
    text = "\n".join(r["row"] for r in dumped)
    assert email in text  # the scan does see the accounts
    for secret in (key, key[4:], password, token):
        assert secret not in text
    assert key not in caplog.text and password not in caplog.text
