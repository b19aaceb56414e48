"""Agent accounts: password hashing, login cookies, CSRF and origin checks.

Passwords are hashed with Argon2id (memory-hard). A login is a random token in an
HttpOnly, SameSite=Strict cookie (the `__Host-` prefix and Secure when served over
HTTPS); only its hash is stored. State-changing requests need both an allowed Origin
(or `Sec-Fetch-Site: same-origin`) and the CSRF token, which is an HMAC of the login
token, so it needs no storage and dies with the login.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from server.core.db import User

ROLES = ("agent", "supervisor", "dpo", "admin")

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verifying against this keeps the time of a login with an unknown user name equal to
# that of a wrong password, so response time does not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    if len(password) < 10:
        raise ValueError("the password must have at least 10 characters")
    return _hasher.hash(password)


def verify_password(user: User | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user else _DUMMY_HASH, password) and (
            user is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def login_cookie_name(secure: bool) -> str:
    return "__Host-ca_login" if secure else "ca_login"


def caller_cookie_name(secure: bool) -> str:
    return "__Host-ca_caller" if secure else "ca_caller"


def set_cookie(
    response: web.StreamResponse, name: str, value: str, *, secure: bool, max_age: int
) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="Strict"
    )


def csrf_token(server_key: bytes, login_token: str) -> str:
    return hmac.new(server_key, b"csrf:" + login_token.encode(), hashlib.sha256).hexdigest()


def check_csrf(server_key: bytes, login_token: str, presented: str | None) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(csrf_token(server_key, login_token), presented)


def origin_allowed(request: web.Request, allowed: frozenset[str]) -> bool:
    """A browser request from one of our own pages (or a non-browser with no Origin)."""
    origin = request.headers.get("Origin")
    if origin is None:
        # No Origin: not a cross-site browser request (browsers always send Origin on
        # WebSocket upgrades and on cross-site POSTs); Sec-Fetch-Site, if present, decides.
        return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    return origin in allowed


def error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    body["error"].update(extra)
    return web.json_response(body, status=status)
