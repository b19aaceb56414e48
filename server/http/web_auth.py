"""Login, logout and the current agent, as HTTP handlers and a small decorator."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.core.appkeys import AUDIT, CLOCK, CONFIG, DB, LOGIN_LIMITER, ORIGINS, SECRETS
from server.core.db import User
from server.http.auth import (
    check_csrf,
    csrf_token,
    error,
    login_cookie_name,
    origin_allowed,
    set_cookie,
    verify_password,
)
from server.http.net import client_address

USER_KEY = web.RequestKey("user", User | None)
TOKEN_KEY = web.RequestKey("login_token", str | None)


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
    """Refuse, and write the refusal to the audit log."""
    await request.app[AUDIT].record(
        actor=user.username if user else "-",
        role=user.role if user else "-",
        action=f"{request.method} {_route(request)}",
        object=request.match_info.get("session_id", "") or request.match_info.get("room_id", ""),
        result="denied",
        reason=code,
    )
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


async def login(request: web.Request) -> web.StreamResponse:

    if not origin_allowed(request, request.app[ORIGINS]):
        return error(403, "origin_not_allowed", "request from another site refused")
    now = request.app[CLOCK]()
    if not request.app[LOGIN_LIMITER].allow(client_address(request), now):
        return error(429, "rate_limited", "too many login attempts; wait a minute")
    try:
        body = await request.json()
        username = body["username"]
        password = body["password"]
        if not isinstance(username, str) or not isinstance(password, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return error(400, "bad_request", "send JSON with 'username' and 'password'")
    db = request.app[DB]
    user = await db.user_by_name(username[:64])
    if not verify_password(user, password[:1024]) or user is None or user.disabled:
        await request.app[AUDIT].record(
            actor=username[:64],
            role=user.role if user else "-",
            action="login",
            result="denied",
            reason="bad_credentials",
        )
        return error(401, "bad_credentials", "wrong user name or password")
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
    await request.app[DB].delete_login(request[TOKEN_KEY])
    user = request[USER_KEY]
    await request.app[AUDIT].record(actor=user.username, role=user.role, action="logout")
    response = web.Response(status=204)
    response.del_cookie(login_cookie_name(request.app[CONFIG].secure_cookies), path="/")
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
