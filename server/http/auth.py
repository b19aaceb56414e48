"""Agent accounts: password hashing, login cookies, CSRF and origin checks.

Passwords are hashed with Argon2id (memory-hard). A login is a random token in an
HttpOnly, SameSite=Strict cookie (the `__Host-` prefix and Secure when served over
HTTPS); only its hash is stored. State-changing requests need both an allowed Origin
(or `Sec-Fetch-Site: same-origin`) and the CSRF token, which is an HMAC of the login
token, so it needs no storage and dies with the login.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

from server.core.db import User

ROLES = ("agent", "supervisor", "dpo", "admin")
# Granted, and their passwords reset, only with the CLI on the server (docs/security.md).
CLI_ONLY_ROLES = frozenset({"dpo", "admin"})

MIN_PASSWORD_CHARS = 10
# NIST SP 800-63B asks for at least 64. The cap also bounds the strength estimator, whose
# time grows steeply with length (a 128-character password costs it about a second).
MAX_PASSWORD_CHARS = 64
# zxcvbn's score: 3 = "safely unguessable" against an online attack and a slow hash offline.
MIN_PASSWORD_SCORE = 3

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


@functools.cache
def dummy_hash() -> str:
    """Verifying against this keeps the time of a login with an unknown user name equal to
    that of a wrong password, so response time does not reveal which accounts exist.

    Made on first use, not at import: a hash costs 0.3 s, which every `callassist` command
    paid at start whether or not it answers logins. The server makes it while it builds
    its app (web_auth.setup), so its first unknown-name login costs what any other does."""
    return _hasher.hash(secrets.token_urlsafe(16))


def check_password(password: str, username: str = "") -> None:
    """Raise ValueError with a message for a person when `password` may not be set.

    The one password rule of the service: the admin API, the CLI and first-run setup all
    come through here (hash_password calls it).
    """
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"the password may have at most {MAX_PASSWORD_CHARS} characters")
    # Cheap refusals first: repeats of a few characters are trivial and are also the
    # inputs that cost the estimator most.
    if len(set(password.strip())) < 4:
        raise ValueError("the password is too easy to guess: use more different characters")
    verdict = zxcvbn(password, user_inputs=[username, "callassist"], max_length=MAX_PASSWORD_CHARS)
    if verdict["score"] < MIN_PASSWORD_SCORE:
        why = verdict["feedback"]["warning"] or "it is a common pattern"
        raise ValueError(
            f"the password is too easy to guess ({why.rstrip('.')}); use a few uncommon words "
            "or a longer phrase"
        )


def hash_password(password: str, username: str = "") -> str:
    check_password(password, username)
    return _hasher.hash(password)


def verify_password(user: User | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user else dummy_hash(), password) and (
            user is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# --- user names -------------------------------------------------------------------------
MAX_USERNAME_CHARS = 64
_USERNAME_CHARS = re.compile(r"^[\w.-]+$")  # letters and digits of any script, _ . -
# Letters that look like Latin ones (after casefolding) in the scripts a European call
# centre meets, and digits that pass for letters: two names with the same skeleton are
# confusable and the second is refused.
_LOOKALIKES = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
        "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
        "ј": "j", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ь": "b",
        # Greek
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "μ": "u", "ν": "v",
        "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "c",
        # digits and Latin lookalikes
        "0": "o", "1": "l", "ı": "i", "ℓ": "l",
    }
)  # fmt: skip


def normalize_username(name: str) -> str:
    """The form a user name is stored and looked up in: NFKC, casefolded, stripped."""
    # casefold() can leave a string that is not NFKC (e.g. ß -> ss is fine, but some
    # compatibility characters reappear), hence NFKC on both sides.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return folded.strip()


def username_skeleton(name: str) -> str:
    """What a name looks like: no accents, lookalike letters mapped, separators merged."""
    base = unicodedata.normalize("NFKD", normalize_username(name))
    base = "".join(c for c in base if not unicodedata.combining(c))
    return re.sub(r"[._-]+", "_", base.translate(_LOOKALIKES))


def _scripts(name: str) -> set[str]:
    # The first word of a letter's Unicode name is its script (LATIN, CYRILLIC, GREEK, ...).
    return {unicodedata.name(c, "?").split()[0] for c in name if c.isalpha()}


def check_new_username(name: str, existing: Iterable[str]) -> str:
    """The normalised name for a new account, or ValueError saying why it is refused:
    empty, too long, characters other than letters, digits, `_`, `.`, `-`, letters of more
    than one script, or a name that looks like one in `existing`."""
    norm = normalize_username(name)
    if not 1 <= len(norm) <= MAX_USERNAME_CHARS:
        raise ValueError(f"a user name has 1-{MAX_USERNAME_CHARS} characters")
    if not _USERNAME_CHARS.match(norm):
        raise ValueError("a user name has only letters, digits, '_', '.' and '-'")
    if len(_scripts(norm)) > 1:
        raise ValueError("a user name mixes letters of different scripts")
    skeleton = username_skeleton(norm)
    for other in existing:
        if normalize_username(other) == norm:
            raise ValueError(f"user '{other}' exists")
        if username_skeleton(other) == skeleton:
            raise ValueError(f"the name looks like the existing user '{other}'")
    return norm


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
