"""Login, logout and the current agent, as HTTP handlers and a small decorator; the
WebSockets opened under a login, closed when the login ends."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from server.cluster.limits import LocalBackoff, build_backoff
from server.core.appkeys import AUDIT, CLOCK, CONFIG, DB, LOGIN_LIMITER, ORIGINS, SECRETS
from server.core.db import User, token_hash, unavailable
from server.core.ratelimit import FailureBackoff
from server.http import denials
from server.http.auth import (
    MAX_USERNAME_CHARS,
    check_csrf,
    csrf_token,
    dummy_hash,
    error,
    login_cookie_name,
    normalize_username,
    origin_allowed,
    set_cookie,
    verify_password,
)
from server.http.denials import DenialKey, record_denial
from server.http.net import client_address

log = logging.getLogger(__name__)

USER_KEY = web.RequestKey("user", User | None)
TOKEN_KEY = web.RequestKey("login_token", str | None)


@dataclass(frozen=True)
class LoginFailures:
    """Failed logins per account name and per client address (docs/security.md, "Logins")."""

    # This process's own, or shared through Redis in a cluster (server/cluster/limits.py).
    accounts: LocalBackoff
    addresses: LocalBackoff


LOGIN_FAILURES = web.AppKey("login_failures", LoginFailures)
# Where a logged-out browser goes next ("" = stays): set by single sign-on
# (server/http/oidc.py: the provider's RP-initiated logout), absent without it.
LogoutRedirect = Callable[[web.Request, User], Awaitable[str]]
LOGOUT_REDIRECT = web.AppKey("logout_redirect", LogoutRedirect)


# --- sockets opened under a login --------------------------------------------------------
# Closes the socket with a reason; set by the WebSocket endpoint that opened it.
Revoke = Callable[[str], None]
# How often open sockets' logins are checked against the database. This is what catches a
# logout, a disabled account or a new password made by another process (the CLI) or
# another node, and an expired login: within this time plus a round trip.
REVALIDATE_S = 0.5


class LoginSockets:
    """The open WebSockets of logged-in users (agents, supervisors), by login."""

    def __init__(self) -> None:
        self._open: dict[object, tuple[int, str, Revoke]] = {}  # key -> user, login hash, close

    def add(self, key: object, user_id: int, login_token: str, revoke: Revoke) -> None:
        self._open[key] = (user_id, token_hash(login_token), revoke)

    def discard(self, key: object) -> None:
        self._open.pop(key, None)

    def logins(self) -> set[str]:
        return {login for _, login, _ in self._open.values()}

    def revoke(
        self, reason: str, *, user_id: int | None = None, logins: set[str] | None = None
    ) -> int:
        """Close the sockets of `user_id`, or of the logins (hashes) in `logins`."""
        hit = [
            (key, close)
            for key, (uid, login, close) in self._open.items()
            if uid == user_id or (logins is not None and login in logins)
        ]
        for key, close in hit:
            self._open.pop(key, None)
            close(reason)
        return len(hit)


LOGIN_SOCKETS = web.AppKey("login_sockets", LoginSockets)


def revoke_sockets(app: web.Application, user_id: int, reason: str) -> int:
    """Close every open socket of an account now (disabled, new password or role)."""
    closed = app[LOGIN_SOCKETS].revoke(reason, user_id=user_id)
    if closed:
        log.info("closed %d socket(s) of user %d: %s", closed, user_id, reason)
    return closed


async def _revalidate(app: web.Application) -> None:
    sockets, db = app[LOGIN_SOCKETS], app[DB]
    while True:
        await asyncio.sleep(REVALIDATE_S)
        logins = sockets.logins()
        if not logins:
            continue
        try:
            alive = await db.live_logins(logins, app[CLOCK]())
        except Exception as exc:  # the database is away for a moment: try again next round
            log.warning("could not check the logins of open sockets", exc_info=not unavailable(exc))
            continue
        gone = logins - alive
        if gone:
            closed = sockets.revoke("login_ended", logins=gone)
            log.info("closed %d socket(s) whose login ended", closed)


async def _revalidator(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_revalidate(app), name="login-sockets")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup(app: web.Application) -> None:
    auth = app[CONFIG].auth
    backoff = {"base_s": auth.login_backoff_base_s, "max_s": auth.login_backoff_max_s}
    cfg = app[CONFIG]
    app[LOGIN_FAILURES] = LoginFailures(
        build_backoff(app, cfg, "login-account",
                      FailureBackoff(auth.login_free_failures_per_account, **backoff)),
        build_backoff(app, cfg, "login-address",
                      FailureBackoff(auth.login_free_failures_per_address, **backoff)),
    )  # fmt: skip
    app[LOGIN_SOCKETS] = LoginSockets()
    dummy_hash()  # before the first login, not during it (auth.dummy_hash)
    denials.setup(app)
    app.cleanup_ctx.append(_revalidator)


async def current_user(request: web.Request) -> User | None:
    if USER_KEY in request:
        return request[USER_KEY]
    cfg = request.app[CONFIG]
    token = request.cookies.get(login_cookie_name(cfg.secure_cookies))
    user = None
    if token and len(token) < 200:
        user = await request.app[DB].login_user(token, request.app[CLOCK]())
    request[USER_KEY] = user
    request[TOKEN_KEY] = token if user else None
    return user


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def deny(
    request: web.Request, user: User | None, status: int, code: str, message: str
) -> web.Response:
    """Refuse, and write the refusal to the audit log (aggregated per client and route:
    server/http/denials.py)."""
    key = DenialKey(
        who=f"user:{user.username}" if user else f"address:{client_address(request)}",
        actor=user.username if user else "-",
        role=user.role if user else "-",
        action=f"{request.method} {_route(request)}",
        code=code,
    )
    obj = request.match_info.get("session_id", "") or request.match_info.get("room_id", "")
    await record_denial(request.app, key, obj)
    return error(status, code, message)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def require_user(*roles: str) -> Callable[[Handler], Handler]:
    """Reject requests without a login (401), with another role (403), or that change state
    without an allowed Origin and the CSRF token (403)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def inner(request: web.Request) -> web.StreamResponse:
            user = await current_user(request)
            if user is None:
                return await deny(request, None, 401, "not_authenticated", "log in first")
            if roles and user.role not in roles:
                return await deny(
                    request, user, 403, "forbidden", f"your role ({user.role}) may not do this"
                )
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                if not origin_allowed(request, request.app[ORIGINS]):
                    return await deny(
                        request,
                        user,
                        403,
                        "origin_not_allowed",
                        "request from another site refused",
                    )
                if not check_csrf(
                    request.app[SECRETS].server_key,
                    request[TOKEN_KEY],
                    request.headers.get("X-CSRF-Token"),
                ):
                    return await deny(
                        request,
                        user,
                        403,
                        "csrf",
                        "missing or wrong X-CSRF-Token; reload the page",
                    )
            return await handler(request)

        return inner

    return wrap


async def login_options(request: web.Request) -> web.StreamResponse:
    """How staff log in here: the password form (`local`) and/or single sign-on (`sso`)."""
    auth = request.app[CONFIG].auth
    return web.json_response({"local": auth.local_login, "sso": bool(auth.oidc.issuer)})


async def login(request: web.Request) -> web.StreamResponse:
    if not origin_allowed(request, request.app[ORIGINS]):
        return error(403, "origin_not_allowed", "request from another site refused")
    if not request.app[CONFIG].auth.local_login:
        return error(403, "local_login_disabled",
                     "log in with single sign-on (auth.local_login = false)")  # fmt: skip
    now = request.app[CLOCK]()
    address = client_address(request)
    if not await request.app[LOGIN_LIMITER].check(address, now):
        return error(429, "rate_limited", "too many login attempts; wait a minute")
    try:
        body = await request.json()
        username = body["username"]
        password = body["password"]
        if not isinstance(username, str) or not isinstance(password, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return error(400, "bad_request", "send JSON with 'username' and 'password'")
    raw = username[: MAX_USERNAME_CHARS * 4]
    name = normalize_username(raw)[:MAX_USERNAME_CHARS]
    # Throttled per account name (known or not, so the answer reveals nothing) and per
    # address: many addresses against one account, or one address against many.
    # A try that may go ahead is counted as a failure at once, before the (slow) check, so
    # parallel guesses cannot all pass before the first of them is counted; a success takes
    # it back.
    failures = request.app[LOGIN_FAILURES]
    wait = await failures.accounts.attempt(name, now)
    if wait <= 0:
        wait = await failures.addresses.attempt(address, now)
        if wait > 0:  # refused for the address: this was no try against the account
            await failures.accounts.forgive(name)
    if wait > 0:
        seconds = math.ceil(wait)
        response = error(
            429,
            "rate_limited",
            f"too many failed logins; try again in {seconds} s",
            retry_after_s=seconds,
        )
        response.headers["Retry-After"] = str(seconds)
        return response
    db = request.app[DB]
    # The stored form; the raw name still finds an account made before names were normalised.
    user = await db.user_by_name(name) or (
        await db.user_by_name(raw[:MAX_USERNAME_CHARS]) if raw != name else None
    )
    # Longer than any password that can be set: refused, never silently cut.
    too_long = len(password) > 1024
    if too_long or not verify_password(user, password) or user is None or user.disabled:
        await request.app[AUDIT].record(
            actor=name,
            role=user.role if user else "-",
            action="login",
            result="denied",
            reason="bad_credentials",
        )
        return error(401, "bad_credentials", "wrong user name or password")
    await failures.accounts.succeeded(name)
    await failures.addresses.forgive(address)  # the address keeps its real failures (a NAT)
    cfg = request.app[CONFIG]
    token = secrets.token_urlsafe(32)  # a new id on every login: no session fixation
    await db.add_login(token, user.id, now, cfg.auth.session_ttl_s)
    await request.app[AUDIT].record(actor=user.username, role=user.role, action="login")
    response = web.json_response(
        {
            "user": {"name": user.username, "role": user.role},
            "csrf": csrf_token(request.app[SECRETS].server_key, token),
        }
    )
    set_cookie(
        response,
        login_cookie_name(cfg.secure_cookies),
        token,
        secure=cfg.secure_cookies,
        max_age=cfg.auth.session_ttl_s,
    )
    return response


@require_user()
async def logout(request: web.Request) -> web.StreamResponse:
    token = request[TOKEN_KEY]
    await request.app[DB].delete_login(token)
    # The sockets opened under this login (a live room, a silent watch) end with it.
    request.app[LOGIN_SOCKETS].revoke("logged_out", logins={token_hash(token)})
    user = request[USER_KEY]
    await request.app[AUDIT].record(actor=user.username, role=user.role, action="logout")
    # An SSO account's browser goes on to the provider's logout (RP-initiated) when it has one.
    redirect = ""
    if LOGOUT_REDIRECT in request.app:
        redirect = await request.app[LOGOUT_REDIRECT](request, user)
    response = web.json_response({"redirect": redirect}) if redirect else web.Response(status=204)
    secure = request.app[CONFIG].secure_cookies
    response.del_cookie(login_cookie_name(secure), path="/")
    if user.sso:
        response.del_cookie("__Host-ca_sso_hint" if secure else "ca_sso_hint", path="/")
    return response


@require_user()
async def me(request: web.Request) -> web.StreamResponse:
    user: User = request[USER_KEY]
    return web.json_response(
        {
            "user": {"name": user.username, "role": user.role},
            "csrf": csrf_token(request.app[SECRETS].server_key, request[TOKEN_KEY]),
            # The console's phone hint: numbers without a country code get this one.
            "default_country_code": request.app[CONFIG].session.default_country_code,
        }
    )
