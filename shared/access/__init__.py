"""Accounts and access (issue 14; contract: DESIGN.md "Accounts and access").

- principal.py: who is asking (``Principal``) and what each role may do (pure).
- credentials.py: API keys, passwords (argon2), session tokens, CSRF tokens.
- store.py: all the SQL (people, keys, sessions, failed logins, audit log).
- guard.py: the FastAPI dependencies every service uses (``GUARD``, ``allow``, ``Caller``).
- session.py: ``POST/GET/DELETE /v1/session`` (login, who am I, logout).
- privacy.py: the audit log (``GET /v1/audit``) and erasure of a customer.
- headers.py: security headers on the dashboard.
"""

from .guard import GUARD, Caller, TenantId, allow, check_scope
from .principal import CHAIN, Permission, Principal

__all__ = [
    "CHAIN",
    "GUARD",
    "Caller",
    "Permission",
    "Principal",
    "TenantId",
    "allow",
    "check_scope",
]
