"""`kizuna users …` and `kizuna keys …`: people who log in and the API keys of systems, written
straight to the database (the same one `kizuna up` uses: DATABASE_URL, else the local or
embedded server). A new key or generated password is printed once, alone on the last line, so
a script can take it with ``tail -n 1``; only its hash is stored."""

from __future__ import annotations

import asyncio
import sys

import asyncpg

from shared.access import credentials
from shared.access import store as access
from shared.access.principal import KEY_ROLES, PERSON_ROLES
from shared.db import migrate, resolve_database_url
from shared.settings import Settings


def add_parsers(sub) -> None:
    keys = sub.add_parser("keys", help="API keys of systems (POS, order systems, BI)")
    kc = keys.add_subparsers(dest="action", required=True)
    create = kc.add_parser("create", help="a new key; printed once, alone on the last line")
    create.add_argument("--tenant", required=True, help="created when new")
    create.add_argument("--role", required=True, choices=KEY_ROLES)
    create.add_argument(
        "--branch", action="append", default=[], help="only this branch (repeatable)"
    )
    create.add_argument("--name", help="what the key is for, e.g. 'POS 渋谷'")
    listing = kc.add_parser("list", help="the tenant's keys (never the keys themselves)")
    listing.add_argument("--tenant", required=True)
    revoke = kc.add_parser("revoke", help="the key stops working at once")
    revoke.add_argument("key_id")
    keys.set_defaults(func=cmd_keys)

    users = sub.add_parser("users", help="people who log in on the dashboard")
    uc = users.add_subparsers(dest="action", required=True)
    create = uc.add_parser(
        "create", help="a new login; without --password-stdin a generated password is printed"
    )
    create.add_argument("--tenant", required=True, help="created when new")
    create.add_argument("--email", required=True)
    create.add_argument("--role", required=True, choices=PERSON_ROLES)
    create.add_argument(
        "--branch", action="append", default=[], help="their branch (repeatable); none: the chain"
    )
    create.add_argument("--password-stdin", action="store_true", help="read the password")
    listing = uc.add_parser("list", help="the tenant's people")
    listing.add_argument("--tenant", required=True)
    update = uc.add_parser("update", help="change role, branches or password (their sessions end)")
    update.add_argument("email")
    update.add_argument("--role", choices=PERSON_ROLES)
    update.add_argument(
        "--branch", action="append", default=None, help="their branches from now (repeatable)"
    )
    update.add_argument("--whole-chain", action="store_true", help="no branches: the chain")
    update.add_argument("--password-stdin", action="store_true", help="read a new password")
    update.add_argument("--enable", action="store_true", help="let a disabled person log in")
    disable = uc.add_parser("disable", help="they can no longer log in (sessions end)")
    disable.add_argument("email")
    users.set_defaults(func=cmd_users)


def _password_from_stdin() -> str:
    return sys.stdin.readline().rstrip("\r\n")


async def _connect(settings: Settings) -> tuple[asyncpg.Connection, object]:
    url, server = await resolve_database_url(settings)
    await migrate(url)
    return await asyncpg.connect(url), server


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


async def _keys(args, settings: Settings) -> int:
    conn, server = await _connect(settings)
    try:
        if args.action == "create":
            new = await access.create_key(
                conn, args.tenant, args.role, args.branch, args.name, settings.default_time_zone
            )
            where = ", ".join(args.branch) or "whole chain"
            print(f"created {args.role} key {new.key_id} for tenant {args.tenant} ({where}).")
            print("Shown once; keep it secret (send it as 'Authorization: Bearer <key>'):")
            print(new.key)
        elif args.action == "list":
            rows = await access.list_keys(conn, args.tenant)
            print(f"{'key_id':<18}{'role':<8}{'branches':<20}{'last used':<18}{'revoked':<18}name")
            for r in rows:
                print(
                    f"{r['key_id']:<18}{r['role']:<8}{','.join(r['branches']) or 'all':<20}"
                    f"{_when(r['last_used_at']):<18}{_when(r['revoked_at']):<18}{r['name']}"
                )
        elif args.action == "revoke":
            if not await access.revoke_key(conn, args.key_id):
                print(f"no key {args.key_id}", file=sys.stderr)
                return 2
            print(f"revoked {args.key_id}")
    finally:
        await conn.close()
        del server
    return 0


async def _users(args, settings: Settings) -> int:
    conn, server = await _connect(settings)
    try:
        if args.action == "create":
            generated = not args.password_stdin
            password = credentials.new_password() if generated else _password_from_stdin()
            await access.create_person(
                conn,
                args.tenant,
                args.email,
                args.role,
                password,
                args.branch,
                settings.default_time_zone,
            )
            where = ", ".join(args.branch) or "whole chain"
            print(f"created {args.role} {args.email} of tenant {args.tenant} ({where}).")
            if generated:
                print("Their password, shown once (they log in at /login):")
                print(password)
        elif args.action == "list":
            rows = await access.list_people(conn, args.tenant)
            print(f"{'email':<36}{'role':<9}{'branches':<24}{'disabled':<18}")
            for r in rows:
                print(
                    f"{r['email']:<36}{r['role']:<9}{','.join(r['branches']) or 'all':<24}"
                    f"{_when(r['disabled_at']):<18}"
                )
        elif args.action == "update":
            branches = [] if args.whole_chain else args.branch
            password = _password_from_stdin() if args.password_stdin else None
            row = await access.update_person(
                conn,
                args.email,
                role=args.role,
                branches=branches,
                password=password,
                enabled=True if args.enable else None,
            )
            where = ", ".join(row["branches"]) or "whole chain"
            print(f"updated {row['email']}: {row['role']} ({where})")
        elif args.action == "disable":
            await access.update_person(conn, args.email, enabled=False)
            print(f"disabled {args.email}: they can no longer log in")
    finally:
        await conn.close()
        del server
    return 0


def cmd_keys(args, settings: Settings) -> int:
    return _run(_keys(args, settings))


def cmd_users(args, settings: Settings) -> int:
    return _run(_users(args, settings))


def _run(work) -> int:
    try:
        return asyncio.run(work)
    except access.AccessError as exc:
        print(f"kizuna: {exc}", file=sys.stderr)
        return 2
