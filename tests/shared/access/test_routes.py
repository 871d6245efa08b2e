"""Every route of every service, walked from the apps' route tables (so a route added later is
walked too), called by the callers who must not get in: no credentials, another tenant's key, a
revoked key, an expired session, a staff login of another branch, a key of the wrong kind. Each
is refused (401, 403 or 404) and nothing of the tenant's data comes back; the same calls made by
the owner (session cookie and CSRF token) and by an admin key get past the gate.
"""

from __future__ import annotations

import importlib
import json
import re
import uuid
from dataclasses import dataclass

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from shared.access import store as access_store
from shared.access.guard import SESSION_COOKIE, is_public
from tests.helpers import api_key, person

pytestmark = pytest.mark.integration

SERVICES = ("ingest", "reports", "notifier", "classifier")
# Only these may be called without credentials (DESIGN.md: health, readiness, metrics, the login
# page and its API, the dashboard page whose data all comes from guarded calls).
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/login"),
    ("GET", "/"),
    ("GET", "/asyncapi.json"),  # the description of the topics, like /openapi.json
    ("GET", "/asyncapi"),
    ("POST", "/v1/session"),
}
# Routes about the caller themselves (who am I, my scopes, log me out): open to anyone signed in.
ABOUT_THE_CALLER = {
    ("GET", "/v1/session"),
    ("DELETE", "/v1/session"),
    ("GET", "/v1/scopes"),
    # the tenant's today and its 初回→よちよち target: every login's dashboard needs the day
    ("GET", "/v1/dashboard/settings"),
}
# A POST that changes nothing: it computes a projection from the body.
READS_BY_POST = {("POST", "/v1/ltv/simulations"), ("POST", "/v1/rules/preview")}
# reports' gateway to the notifier and ingest: it lets only signed-in callers through, and the
# service behind (walked here itself) decides the rest.
FORWARDED = {"/notifier/{path:path}", "/ingest/{path:path}"}
# Routes about one thing of the tenant, named in the path.
ONE_THING = {"customer_id", "followup_id", "import_id", "table_id", "email", "key_id"}


@dataclass(frozen=True)
class Route:
    service: str
    method: str
    path: str
    route: APIRoute


def walk() -> list[Route]:
    found = []
    for service in SERVICES:
        app = importlib.import_module(f"services.{service}.app").app
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            if not isinstance(route, APIRoute):
                continue  # the OpenAPI pages and /static: no data
            for method in sorted(context.methods):
                found.append(Route(service, method, context.path, route))
    return found


ROUTES = walk()
GUARDED = [r for r in ROUTES if (r.method, r.path) not in PUBLIC]


def test_only_the_public_routes_are_public_and_every_other_names_its_rule():
    public = {(r.method, r.path) for r in ROUTES if is_public(r.method, r.path)}
    assert public <= PUBLIC
    for r in GUARDED:
        rules = [d.call for d in r.route.dependant.dependencies if hasattr(d.call, "permission")]
        assert len(rules) == 1, f"{r.method} {r.path} ({r.service}) has no access rule (allow)"


@dataclass
class Tenant:
    id: str
    customer: str
    name: str
    email: str
    followup_id: int
    import_id: int
    dm_table_id: int

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.customer, self.name, self.email, "123456")


@pytest.fixture
async def data(pool) -> Tenant:
    """A tenant with one customer of branch b1 in every place a route reads from."""
    tid = f"t{uuid.uuid4().hex[:10]}"
    customer, name, email = f"SECRET{uuid.uuid4().hex[:8]}", "秘密 花子", f"hanako-{tid}@x.jp"
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO tenants (tenant_id) VALUES ($1)", tid)
        for scope in ("all", "b1"):
            await conn.execute(
                "INSERT INTO report_customers (tenant_id, scope, customer_id, seq, segment,"
                " purchase_count, total_amount, first_purchase_on, last_purchase_on,"
                " home_branch_id, effective_on) VALUES ($1, $2, $3, 1, 'loyal_active', 9,"
                " 123456, '2025-01-01', '2026-05-01', 'b1', '2026-05-01')",
                tid,
                scope,
                customer,
            )
            await conn.execute(
                "INSERT INTO portfolio_current (tenant_id, scope, segment, customers, sales)"
                " VALUES ($1, $2, 'loyal_active', 1, 123456)",
                tid,
                scope,
            )
        await conn.execute(
            "INSERT INTO customers (tenant_id, customer_id, branch_id, name, email)"
            " VALUES ($1, $2, 'b1', $3, $4)",
            tid,
            customer,
            name,
            email,
        )
        followup = await conn.fetchval(
            "INSERT INTO followups (tenant_id, customer_id, branch_id, segment, reason,"
            " priority, created_on, due_on, total_amount, dedupe_key) VALUES ($1, $2, 'b1',"
            " 'loyal_lapsed', 'lapsed', 0, '2026-05-01', '2026-05-01', 123456, $3) RETURNING id",
            tid,
            customer,
            f"lapsed:{customer}:1",
        )
        imported = await conn.fetchval(
            "INSERT INTO imports (tenant_id, kind, file_name, file_sha256, status)"
            " VALUES ($1, 'customers', $2, 'x', 'done') RETURNING id",
            tid,
            f"{customer}.csv",
        )
        table = await conn.fetchval(
            "INSERT INTO report_dm_tables (tenant_id, name, scope) VALUES ($1, $2, 'b1')"
            " RETURNING table_id",
            tid,
            f"DM {customer}",
        )
    return Tenant(tid, customer, name, email, followup, imported, table)


def url_of(r: Route, t: Tenant) -> str:
    values = {
        "customer_id": t.customer,
        "followup_id": t.followup_id,
        "import_id": t.import_id,
        "table_id": t.dm_table_id,
        "segment": "loyal_active",
        "month": "2026-05",
        "delivery_id": "d1",
        "kind": "customers",
        "path": "v1/followups",
        "email": f"owner@{t.id}.example",
        "key_id": "k-none",
    }
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: str(values[m.group(1)]), r.path)


@pytest.fixture
async def clients(broker, database_url, pool):
    """An httpx client per service app, running in this process on the test database."""
    from services.ingest.app import app as ingest_app

    apps = {s: importlib.import_module(f"services.{s}.app").app for s in SERVICES}
    for service in ("reports", "notifier", "classifier"):
        apps[service].state.pool = pool
    async with ingest_app.router.lifespan_context(ingest_app):
        made = {
            s: httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url=f"http://{s}")
            for s, a in apps.items()
        }
        try:
            yield made
        finally:
            for c in made.values():
                await c.aclose()


async def call(clients, r: Route, t: Tenant, headers=None, cookies=None) -> httpx.Response:
    client = clients[r.service]
    client.cookies.clear()
    for k, v in (cookies or {}).items():
        client.cookies.set(k, v)
    # scope=b1: the customer's branch; dry_run: an import upload only previews
    params = {"scope": "b1", "dry_run": "true"}
    body = b"{}" if r.method in ("POST", "PUT", "PATCH") else None
    return await client.request(
        r.method,
        url_of(r, t),
        params=params,
        content=body,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


async def session_cookie(pool, tenant: str, role: str, branches=(), expired=False) -> dict:
    email, password = await person(pool, tenant, role, branches)
    async with pool.acquire() as conn:
        row = await access_store.person_for_login(conn, email)
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        lifetime = timedelta(hours=-1 if expired else 1)
        token = await access_store.open_session(conn, row["person_id"], now, lifetime, None)
    return token


def leaks(response: httpx.Response, t: Tenant) -> list[str]:
    """The tenant's data in a response, beyond what the caller sent (a 404 may echo the
    customer code asked for)."""
    asked = str(response.request.url)
    text = response.content.decode("utf-8", "replace")
    try:  # JSON escapes non-ASCII: compare the decoded text too
        text += json.dumps(response.json(), ensure_ascii=False)
    except ValueError:
        pass
    return [s for s in t.secrets if s in text and s not in asked]


async def test_every_route_refuses_who_must_not_get_in(clients, data, pool, database_url):
    t = data
    other = await api_key(database_url, f"o{uuid.uuid4().hex[:8]}")
    async with pool.acquire() as conn:
        revoked = await access_store.create_key(conn, t.id, "admin", name="old")
        await access_store.revoke_key(conn, revoked.key_id)
    expired = await session_cookie(pool, t.id, "owner", expired=True)
    staff_b2 = await session_cookie(pool, t.id, "staff", ("b2",))
    from shared.access.credentials import csrf_token

    callers = {
        "no credentials": ({}, None),
        "another tenant's key": (other, None),
        "a revoked key": ({"Authorization": f"Bearer {revoked.key}"}, None),
        "an expired session": ({"X-CSRF-Token": csrf_token(expired)}, {SESSION_COOKIE: expired}),
        "staff of another branch": (
            {"X-CSRF-Token": csrf_token(staff_b2)},
            {SESSION_COOKIE: staff_b2},
        ),
        "an ingest key": (await api_key(database_url, t.id, "ingest"), None),
        "a read key": (await api_key(database_url, t.id, "read"), None),
    }
    refused = {
        "no credentials": {401},
        "a revoked key": {401},
        "an expired session": {401},
        "staff of another branch": {403, 404},
    }
    outsiders = {*refused, "another tenant's key"}
    UNSIGNED = {"no credentials", "a revoked key", "an expired session"}
    for r in GUARDED:
        for who, (headers, cookies) in callers.items():
            if who != "no credentials" and (r.method, r.path) == ("DELETE", "/v1/session"):
                continue  # it would log the caller out (logging out is tested on its own)
            if r.path in FORWARDED and who not in UNSIGNED:
                continue  # signed in: forwarded to a service that is walked itself
            response = await call(clients, r, t, headers, cookies)
            status = response.status_code
            what = f"{r.method} {r.path} by {who}: {status} {response.text[:200]}"
            assert status < 500, what
            if who in outsiders:
                assert not leaks(response, t), what
            about_them = (r.method, r.path) in ABOUT_THE_CALLER
            if who in refused and not (who == "staff of another branch" and about_them):
                assert status in refused[who], what
            elif who == "another tenant's key" and r.route.param_convertors.keys() & ONE_THING:
                # not found, a body refused before anything is looked up, or an empty list (a
                # customer's tasks: none, as for any customer without tasks)
                empty = status == 200 and response.json().get("items") == []
                assert status in (404, 422) or empty, what
            elif who == "an ingest key":
                assert (status == 403) == (r.service != "ingest" and not about_them), what
            elif (
                who == "a read key"
                and r.method != "GET"
                and not about_them | ((r.method, r.path) in READS_BY_POST)
            ):
                assert status == 403, what  # reads, never a change

    # The owner's session and an admin key get past the gate on every route.
    owner = await session_cookie(pool, t.id, "owner")
    admin = await api_key(database_url, t.id, "admin")
    for r in GUARDED:
        if (r.method, r.path) == ("DELETE", "/v1/session") or r.path in FORWARDED:
            continue  # logging out: test_access_session; forwarded: walked behind the gateway
        for who, headers, cookies in (
            ("the owner", {"X-CSRF-Token": csrf_token(owner)}, {SESSION_COOKIE: owner}),
            ("an admin key", admin, None),
        ):
            response = await call(clients, r, t, headers, cookies)
            what = f"{r.method} {r.path} by {who}: {response.status_code} {response.text[:300]}"
            assert response.status_code not in (401, 403), what
            assert response.status_code < 500, what
