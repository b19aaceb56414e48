"""First run without a terminal: a one-time setup URL creates the first accounts.

When `serve` starts on a database with no accounts and no terminal to ask on, it calls
`offer(app)` and prints the URL it returns on the console (stdout, never a log):

    GET  /setup/{token}   checks the token, moves it into a cookie, 303 to /setup
    GET  /setup           the page (web/setup.html) while the offer is open
    GET  /api/setup       {"open": true, "expires_at"} or 410 (closed)
    POST /api/setup       {"admin": {"username", "password"}, "agent": {...}} -> 201

The offer is good for one use, for SETUP_TTL_S seconds, and only from this machine (a
loopback address, or the server's own address when it listens on a LAN interface; behind
a proxy, the forwarded client address must be loopback too). The token lives in memory as
a hash; it leaves the address bar at once (like caller links), and the access log redacts
/setup/<token>. Once an account exists, by this page or by `callassist user add`, the
offer is closed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from server.core.appkeys import AUDIT, CLOCK, CONFIG, DB, ORIGINS
from server.http.auth import (
    check_new_username,
    error,
    hash_password,
    origin_allowed,
    set_cookie,
)
from server.paths import WEB_DIR
from server.rooms.state import iso

log = logging.getLogger(__name__)

SETUP_TTL_S = 900
COOKIE = "ca_setup"


@dataclass
class SetupOffer:
    token_hash: bytes
    created_at: float
    used: bool = False

    def accepts(self, token: str | None, now: float) -> bool:
        if token is None or self.used or now - self.created_at >= SETUP_TTL_S:
            return False
        presented = hashlib.sha256(token.encode()).digest()
        return hmac.compare_digest(presented, self.token_hash)


# This feature's application key.
SETUP = web.AppKey("setup", SetupOffer)


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def from_this_machine(request: web.Request) -> bool:
    """A client on the console's host: loopback, or connecting to our own address from it."""
    peer = request.remote
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    own = sockname[0] if sockname else None
    if not (_loopback(peer) or (peer is not None and peer == own)):
        return False
    if request.app[CONFIG].http.behind_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded and not _loopback(forwarded.split(",")[-1].strip()):
            return False
    return True


def _closed(status: int = 410) -> web.Response:
    return error(
        status,
        "setup_closed",
        "this setup link is used, expired or not for this machine; restart "
        "`callassist serve` on an empty data directory for a new one, or create accounts "
        "with `callassist user add`",
    )


async def _open(request: web.Request) -> SetupOffer | None:
    offer = request.app[SETUP]
    if not from_this_machine(request):
        return None
    if await request.app[DB].list_users():
        offer.used = True  # accounts were made another way: the page has no purpose
        return None
    return offer


async def open_setup(request: web.Request) -> web.StreamResponse:
    offer = await _open(request)
    token = request.match_info["token"]
    if offer is None or not offer.accepts(token, request.app[CLOCK]()):
        return _closed()
    response = web.HTTPSeeOther("/setup")
    cfg = request.app[CONFIG]
    set_cookie(response, COOKIE, token, secure=cfg.secure_cookies, max_age=SETUP_TTL_S)
    raise response


async def setup_page(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(WEB_DIR / "setup.html")
    response.headers["Cache-Control"] = "no-store"
    return response


async def status(request: web.Request) -> web.StreamResponse:
    offer = await _open(request)
    if offer is None or not offer.accepts(request.cookies.get(COOKIE), request.app[CLOCK]()):
        return _closed()
    return web.json_response({"open": True, "expires_at": iso(offer.created_at + SETUP_TTL_S)})


def _account(body: dict[str, Any], which: str) -> tuple[str, str] | web.Response:
    item = body.get(which)
    if not isinstance(item, dict):
        return error(400, f"bad_{which}", f"give the {which} account's user name and password")
    name, password = item.get("username"), item.get("password")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 64 or not name.isprintable():
        return error(400, f"bad_{which}_username", "a user name of 1-64 printable characters")
    if not isinstance(password, str):
        return error(400, f"bad_{which}_password", "give a password")
    try:
        clean = check_new_username(name, ())
    except ValueError as exc:
        return error(400, f"bad_{which}_username", str(exc))
    try:
        return clean, hash_password(password, clean)
    except ValueError as exc:
        return error(400, f"bad_{which}_password", str(exc))


async def complete(request: web.Request) -> web.StreamResponse:
    if not origin_allowed(request, request.app[ORIGINS]):
        return error(403, "bad_origin", "this request must come from the setup page")
    offer = await _open(request)
    if offer is None or not offer.accepts(request.cookies.get(COOKIE), request.app[CLOCK]()):
        return _closed()
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return error(400, "bad_request", "send a JSON object")
    accounts: list[tuple[str, str, str]] = []
    for which in ("admin", "agent"):
        got = _account(body, which)
        if isinstance(got, web.Response):
            return got  # nothing consumed: the newcomer corrects the form and sends again
        accounts.append((got[0], got[1], which))
    if accounts[0][0] == accounts[1][0]:
        return error(400, "same_username", "the administrator and the agent need two names")
    if offer.used:  # another request won while the passwords were being hashed
        return _closed()
    offer.used = True
    db, now = request.app[DB], request.app[CLOCK]()
    for name, hashed, role in accounts:
        await db.add_user(name, hashed, role, now)
        await request.app[AUDIT].record(
            actor="first-run setup", role="-", action="user.create", object=name,
            reason=f"role {role}",
        )  # fmt: skip
    log.info("first-run setup created the accounts %s", ", ".join(a[0] for a in accounts))
    response = web.json_response(
        {
            "accounts": [{"username": name, "role": role} for name, _, role in accounts],
            "console": "/agent",
        },
        status=201,
    )
    response.del_cookie(COOKIE, path="/")
    return response


def offer(app: web.Application) -> str:
    """Open the first-run page; returns the token (the caller prints the URL)."""
    token = secrets.token_urlsafe(32)
    app[SETUP] = SetupOffer(hashlib.sha256(token.encode()).digest(), app[CLOCK]())
    r = app.router
    r.add_get("/setup/{token}", open_setup)
    r.add_get("/setup", setup_page)
    r.add_get("/api/setup", status)
    r.add_post("/api/setup", complete)
    return token
