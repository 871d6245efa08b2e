"""The secrets: API keys, passwords, session tokens and the CSRF token derived from a session.

API keys and session tokens are 256 random bits, so a plain SHA-256 of them is all the database
keeps (nothing to brute-force, and a lookup per request stays one index probe). Passwords are
chosen by people, so they get argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

KEY_PREFIX = "kzk_"
_hasher = PasswordHasher()
# Compared against when the e-mail is unknown, so a wrong e-mail costs as long as a wrong
# password (no timing difference tells which accounts exist).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def new_password() -> str:
    """A generated password: 20 URL-safe characters (~120 bits)."""
    return secrets.token_urlsafe(15)


def digest(token: str) -> bytes:
    """What the database keeps of a key or session token."""
    return hashlib.sha256(token.encode()).digest()


def csrf_token(session_token: str) -> str:
    """The session's CSRF token: derived from the cookie's token, so it needs no storage and a
    page can ask for it again (GET /v1/session) after a reload."""
    return hmac.new(session_token.encode(), b"kizuna csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(csrf_token(session_token), given)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
