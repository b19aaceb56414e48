"""The caller's side over HTTP: opening the one-time link, the page, the notice text."""

from __future__ import annotations

import json
import logging
import re
import secrets
from functools import lru_cache
from typing import Any

from aiohttp import web
from user_agents import parse as parse_ua

from server.cluster.forward import owned_room
from server.core.appkeys import CLOCK, CONFIG, DB, LINK_LIMITER, ORIGINS
from server.http.auth import caller_cookie_name, origin_allowed, set_cookie
from server.http.net import client_address
from server.paths import TEMPLATES, WEB_DIR
from server.rooms.manager import ROOMS

log = logging.getLogger(__name__)

LANGS = ("lv", "en", "ru")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")


def _page(name: str, status: int = 200) -> web.FileResponse:
    response = web.FileResponse(WEB_DIR / name, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def link_invalid() -> web.StreamResponse:
    # Reused, expired, revoked, made-up or rate-limited: one neutral answer that reveals
    # nothing about any room, agent or phone number.
    return _page("link-invalid.html", status=410)


def device_type(user_agent: str) -> str:
    """'Android 14 · Chrome Mobile · phone': the device type the service terms name."""
    ua = parse_ua(user_agent[:512])
    os_name = f"{ua.os.family} {ua.os.version_string}".strip()
    browser = ua.browser.family
    if ua.is_mobile:
        kind = "phone"
    elif ua.is_tablet:
        kind = "tablet"
    elif ua.is_pc:
        kind = "computer"
    else:
        kind = "other"
    return " · ".join(p for p in (os_name, browser, kind) if p)[:128]


async def _token_allowed(request: web.Request) -> str | None:
    app = request.app
    if not await app[LINK_LIMITER].check(client_address(request), app[CLOCK]()):
        log.info("link opens rate-limited")
        return None
    token = request.match_info["token"]
    return token if TOKEN_RE.match(token) else None


async def _reopened_by_its_browser(request: web.Request, token: str) -> bool:
    """Is this the browser that already opened `token` (its device cookie belongs to the
    link's session, the link not revoked, the room live)? Then the link takes it back into
    the call: a caller who closed the tab by accident taps the SMS link again. Any other
    browser still gets the neutral 410 (docs/security.md, "One-time links")."""
    app = request.app
    held = request.cookies.get(caller_cookie_name(app[CONFIG].secure_cookies))
    if not held or len(held) >= 100:
        return False
    mine = await app[DB].session_for_device(held)
    if mine is None or mine != await app[DB].reopened_link_session(token):
        return False
    return await owned_room(request, mine) is not None


async def link_page(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /j/<token>: the page with the caller's "open" button. It uses nothing up:
    SMS and messenger apps fetch links to build previews, and a preview must neither spend
    the link nor get the session cookie (docs/security.md, "One-time links")."""
    app = request.app
    token = await _token_allowed(request)
    session_id = await app[DB].link_session(token, app[CLOCK]()) if token else None
    if session_id is None or await owned_room(request, session_id) is None:
        if token and await _reopened_by_its_browser(request, token):
            raise web.HTTPSeeOther("/c")
        return link_invalid()
    response = _page("link-open.html")
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    # Not no-referrer: under it browsers send "Origin: null" with the form's POST. Only the
    # origin, never the path with the token, goes out.
    response.headers["Referrer-Policy"] = "strict-origin"
    return response


async def open_link(request: web.Request) -> web.StreamResponse:
    """POST /j/<token>: the caller's tap on the link page (a plain form, so it works without
    scripts). Same origin only; trades the link for a device-bound cookie, once."""
    app = request.app
    now = app[CLOCK]()
    cfg = app[CONFIG]
    if not origin_allowed(request, app[ORIGINS]):
        return link_invalid()
    token = await _token_allowed(request)
    if token is None:
        return link_invalid()
    # A cluster: the node holding the room uses the link up (before anything is spent).
    linked = await app[DB].link_session(token, now, usable=False)
    if linked is not None:
        await owned_room(request, linked)
    cookie = secrets.token_urlsafe(32)
    session_id = await app[DB].consume_link(token, cookie, now)
    live = app[ROOMS].get(session_id) if session_id else None
    if live is None:
        # A second tap (or Back and tap again) from the browser that opened it: that
        # browser already holds the session's cookie, so it goes on to the page.
        if await _reopened_by_its_browser(request, token):
            raise web.HTTPSeeOther("/c")
        return link_invalid()
    device = device_type(request.headers.get("User-Agent", ""))
    await app[ROOMS].set_device(live, device)
    await app[DB].set_session_time_once(live.room.id, "opened_at", now)
    await app[ROOMS].set_caller_status(live, "opened")
    # 303 to a URL without the token: the token leaves the address bar and history, and
    # reloading /c works from this browser only (the cookie is the proof).
    response = web.HTTPSeeOther("/c")
    set_cookie(
        response,
        caller_cookie_name(cfg.secure_cookies),
        cookie,
        secure=cfg.secure_cookies,
        max_age=cfg.session.max_duration_s,
    )
    raise response


async def device_session(request: web.Request) -> str | None:
    """The session whose link this browser opened (its device cookie), or None. The one
    way every caller request (page, WebSocket, uploads) finds its caller."""
    cookie = request.cookies.get(caller_cookie_name(request.app[CONFIG].secure_cookies))
    return await request.app[DB].session_for_device(cookie) if cookie else None


async def caller_page(request: web.Request) -> web.StreamResponse:
    session_id = await device_session(request)
    if session_id is None or await owned_room(request, session_id) is None:
        return link_invalid()
    return _page("caller.html")


@lru_cache(maxsize=8)
def _notice_template(lang: str) -> dict[str, Any]:
    return json.loads((TEMPLATES / f"notice.{lang}.json").read_text(encoding="utf-8"))


def _fill(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, sub in subs.items():
            value = value.replace("{" + key + "}", sub)
        return value
    if isinstance(value, list):
        return [_fill(v, subs) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, subs) for k, v in value.items()}
    return value


async def notice(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    lang = request.query.get("lang", "lv")
    if lang not in LANGS:
        lang = "lv"
    subs = {"operator": cfg.session.operator_name, "contact": cfg.session.privacy_contact}
    body = _fill(_notice_template(lang), subs)
    body.update(
        version=cfg.session.notice_version,
        lang=lang,
        operator=cfg.session.operator_name,
        contact=cfg.session.privacy_contact,
    )
    return web.json_response(body)
