"""`kizuna keys …` and `kizuna users …` (services/cli/accounts.py) against the test database:
what they print (a new key or generated password alone on the last line), what they store (a
hash), and that a revoked key, a changed role and a disabled person take effect at once."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import timedelta

import asyncpg
import pytest

from services.cli import main
from shared.access import credentials
from shared.access import store as access_store

pytestmark = pytest.mark.integration


def db(database_url: str, work):
    """Run ``await work(conn)`` on a connection of its own: the command runs its own event loop
    (asyncio.run), so these tests are plain functions."""

    async def run():
        conn = await asyncpg.connect(database_url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def kizuna(capsys, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_create_list_revoke(capsys, database_url):
    tenant = f"k{uuid.uuid4().hex[:8]}"
    code, out, _ = kizuna(
        capsys,
        "keys",
        "create",
        "--tenant",
        tenant,
        "--role",
        "ingest",
        "--branch",
        "b1",
        "--name",
        "POS b1",
    )
    assert code == 0
    key = out.strip().splitlines()[-1]
    assert key.startswith(credentials.KEY_PREFIX) and " " not in key
    who = db(database_url, lambda conn: access_store.key_principal(conn, key))
    assert (who.tenant_id, who.role, who.branches, who.name) == (
        tenant,
        "ingest",
        ("b1",),
        "POS b1",
    )
    stored = db(
        database_url,
        lambda conn: conn.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", who.subject),
    )
    assert stored["key_hash"] == credentials.digest(key) and key not in str(dict(stored))
    assert db(
        database_url,
        lambda conn: conn.fetchval("SELECT 1 FROM tenants WHERE tenant_id = $1", tenant),
    )

    code, out, _ = kizuna(capsys, "keys", "list", "--tenant", tenant)
    assert code == 0 and who.subject in out and "POS b1" in out and key not in out

    assert kizuna(capsys, "keys", "revoke", who.subject)[0] == 0
    assert db(database_url, lambda conn: access_store.key_principal(conn, key)) is None
    code, _, err = kizuna(capsys, "keys", "revoke", "key_nosuchkey")
    assert code == 2 and "no key" in err

    code, _, err = kizuna(
        capsys, "keys", "create", "--tenant", tenant, "--role", "admin", "--branch", "all"
    )
    assert code == 2 and "'all' is not a branch" in err


def test_users_create_update_disable(capsys, monkeypatch, database_url):
    tenant = f"u{uuid.uuid4().hex[:8]}"
    email = f"tanaka@{tenant}.jp"
    code, out, _ = kizuna(
        capsys,
        "users",
        "create",
        "--tenant",
        tenant,
        "--email",
        email,
        "--role",
        "manager",
        "--branch",
        "umeda",
    )
    assert code == 0
    password = out.strip().splitlines()[-1]
    row = db(database_url, lambda conn: access_store.person_for_login(conn, email))
    assert credentials.verify_password(row["password_hash"], password)
    assert password not in row["password_hash"] and row["password_hash"].startswith("$argon2id$")
    assert (row["role"], list(row["branches"])) == ("manager", ["umeda"])

    code, _, err = kizuna(
        capsys,
        "users",
        "create",
        "--tenant",
        tenant,
        "--email",
        email.upper(),
        "--role",
        "staff",
        "--password-stdin",
        stdin="long enough password\n",
        monkeypatch=monkeypatch,
    )
    assert code == 2 and "already has an account" in err

    person_id = row["person_id"]

    async def open_session(conn):
        now = await conn.fetchval("SELECT now()")
        return await access_store.open_session(conn, person_id, now, timedelta(hours=1), None)

    db(database_url, open_session)
    code, out, _ = kizuna(
        capsys,
        "users",
        "update",
        email,
        "--role",
        "staff",
        "--branch",
        "umeda",
        "--branch",
        "sakae",
        "--password-stdin",
        stdin="a new password\n",
        monkeypatch=monkeypatch,
    )
    assert code == 0 and "staff (sakae, umeda)" in out
    row = db(database_url, lambda conn: access_store.person_for_login(conn, email))
    assert credentials.verify_password(row["password_hash"], "a new password")
    # a change of role or branches ends the sessions: they log in again
    sessions = db(
        database_url,
        lambda conn: conn.fetchval("SELECT count(*) FROM sessions WHERE person_id = $1", person_id),
    )
    assert sessions == 0

    code, out, _ = kizuna(capsys, "users", "list", "--tenant", tenant)
    assert code == 0 and email in out and "sakae,umeda" in out

    assert kizuna(capsys, "users", "disable", email)[0] == 0
    assert db(database_url, lambda conn: access_store.person_for_login(conn, email)) is None
    code, _, err = kizuna(capsys, "users", "disable", f"nobody@{tenant}.jp")
    assert code == 2 and "nobody has the e-mail" in err
