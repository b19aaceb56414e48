"""The aiohttp application factory: `create_app(config, data_dir)`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import WSCloseCode, web

from server.cluster import limits as cluster_limits
from server.cluster import setup as cluster
from server.core.appkeys import (
    AUDIT,
    CLOCK,
    CONFIG,
    DATA_DIR,
    DB,
    LINK_LIMITER,
    LOGIN_LIMITER,
    ORIGINS,
    SECRETS,
    WEBSOCKETS,
)
from server.core.audit import Audit
from server.core.config import Config
from server.core.db import Database, unavailable
from server.core.phone import region_for
from server.core.secrets import load_secrets
from server.http import admin, oidc, web_auth
from server.http.openapi import openapi_document
from server.inspect import api as inspect_api
from server.observe import logs, metrics, ops, report, webhooks
from server.paths import WEB_DIR
from server.privacy import dpo, receipt, retention
from server.recording import api as recording
from server.rooms.manager import ROOMS, RoomManager
from server.sessions import api, caller
from server.sessions.sms import SMS, ConsoleSender, HttpSender, SmsSender
from server.sessions.sms_policy import SMS_BUDGET
from server.signalling import endpoints as signalling
from server.toolkit import api as toolkit

log = logging.getLogger(__name__)


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], object]
) -> web.StreamResponse:
    try:
        response = await handler(request)  # type: ignore[misc]
    except web.HTTPException as exc:
        response = exc
        if exc.status >= 400 and exc.content_type != "application/json":
            code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
                exc.status, "http_error"
            )
            response = web.json_response(
                {"error": {"code": code, "message": exc.reason}}, status=exc.status
            )
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Permissions-Policy", "camera=(self), microphone=(), geolocation=()")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.app[CONFIG].secure_cookies:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")
    if isinstance(response, web.HTTPException) and response.status >= 300:
        if response.status < 400:
            raise response
        return web.Response(status=response.status, body=response.body, headers=response.headers)
    return response


@web.middleware
async def database_unavailable(
    request: web.Request, handler: Callable[[web.Request], object]
) -> web.StreamResponse:
    """A request that needs the database while it cannot be reached gets a clear 503
    (docs/api.md, `database_unavailable`) instead of a 500 and a traceback; live rooms go
    on meanwhile (docs/ops.md, "Database down")."""
    try:
        return await handler(request)  # type: ignore[misc,no-any-return]
    except web.HTTPException:
        raise
    except Exception as exc:
        if not unavailable(exc):
            raise
        log.warning("%s %s: database unavailable (%s)", request.method, request.path,
                    type(exc).__name__)  # fmt: skip
        return web.json_response(
            {"error": {"code": "database_unavailable",
                       "message": "the database cannot be reached; try again in a moment"}},
            status=503, headers={"Retry-After": "5"},
        )  # fmt: skip


def _sms_sender(cfg: Config, key: bytes | None) -> SmsSender:
    if cfg.sms.sender == "http":
        assert key is not None
        return HttpSender(cfg.sms.http_url, key, cfg.sms.http_timeout_s)
    return ConsoleSender()


async def _services(app: web.Application) -> AsyncIterator[None]:
    db = app[DB]
    await db.create_schema()
    # Rooms live in memory: sessions left open by a previous process cannot come back.
    # Each such end is audited like any other (`session.end`, reason `restart`): retention
    # counts from this time (docs/security.md).
    # In a cluster the other nodes' rooms are alive: only those no node holds are ended.
    keep = await cluster.live_room_ids(app)
    for session_id in await db.end_open_sessions(app[CLOCK](), keep):
        await app[AUDIT].record(actor="server", role="system", action="session.end",
                                object=session_id, reason="restart")  # fmt: skip
    reaper = asyncio.create_task(_reap(app), name="room-reaper")
    yield
    reaper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reaper
    await app[ROOMS].shutdown()
    await app[SMS].close()
    await db.close()


async def _reap(app: web.Application) -> None:
    while True:
        await asyncio.sleep(2)
        try:
            await app[ROOMS].reap()
        except Exception:  # keep reaping whatever one room did
            log.exception("room reaper failed")


async def _close_websockets(app: web.Application) -> None:
    for ws in list(app[WEBSOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


async def _page(request: web.Request) -> web.StreamResponse:
    name = {"/agent": "agent.html"}[request.path]
    response = web.FileResponse(WEB_DIR / name)
    response.headers["Cache-Control"] = "no-store"
    return response


async def _root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/agent")


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(openapi_document(request.app[CONFIG].http.public_url))


async def _healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


def _private(data_dir: Path, sqlite: bool) -> None:
    """The data directory 0700 and the SQLite file 0600, also when they already exist
    (mkdir's mode is ignored then, and SQLite creates its file with the umask's mode)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    if not sqlite:
        return
    db_file = data_dir / "callassist.db"
    os.close(os.open(db_file, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(db_file, 0o600)  # SQLite's journal and WAL files copy this mode


def create_app(
    config: Config, data_dir: Path, *, clock: Callable[[], float] = time.time
) -> web.Application:
    _private(data_dir, sqlite=not config.storage.database_url)
    app = web.Application(
        middlewares=[security_headers, database_unavailable],
        client_max_size=config.http.max_body_bytes,
    )
    secrets = load_secrets(
        config.environment,
        data_dir,
        need_sms=config.sms.sender == "http",
        need_turn=bool(config.media.turn_urls or config.media.server_turn_url),
        need_webhook=bool(config.webhooks.urls),
        need_oidc=bool(config.auth.oidc.issuer),
    )
    db_url = config.storage.database_url or f"sqlite+aiosqlite:///{data_dir / 'callassist.db'}"
    db = Database(db_url)
    app[CONFIG] = config
    app[DATA_DIR] = data_dir
    app[SECRETS] = secrets
    app[CLOCK] = clock
    app[DB] = db
    app[AUDIT] = Audit(db, clock, region_for(config.session.default_country_code))
    app[ROOMS] = RoomManager(config, db, clock, cluster.build_router(config))
    app[ROOMS].turn_secret = secrets.turn_secret  # for media.server_turn_url
    app[SMS] = _sms_sender(config, secrets.sms_hmac_key)
    app[SMS_BUDGET] = cluster_limits.build_sms_budget(app, config)  # shared in a cluster
    # Per process, or shared by every node through Redis (cluster.router = "redis").
    app[LINK_LIMITER], app[LOGIN_LIMITER] = cluster_limits.build(app, config)
    web_auth.setup(app)  # login failures, sockets opened under a login
    oidc.setup(app)  # single sign-on, when auth.oidc.issuer is set
    app[ORIGINS] = frozenset([config.public_origin, *config.http.allowed_origins])
    app[WEBSOCKETS] = set()

    cluster.setup(app)  # cluster.router = "redis": before _services, which it outlives
    app.cleanup_ctx.append(_services)
    app.on_shutdown.append(_close_websockets)

    r = app.router
    r.add_get("/", _root)
    r.add_get("/agent", _page)
    r.add_get("/c", caller.caller_page)
    r.add_get("/j/{token}", caller.link_page)  # and HEAD: neither uses the link up
    r.add_post("/j/{token}", caller.open_link)
    r.add_get("/healthz", _healthz)
    r.add_get("/api/openapi.json", _openapi)
    r.add_get("/api/login/options", web_auth.login_options)
    r.add_post("/api/login", web_auth.login)
    r.add_post("/api/logout", web_auth.logout)
    r.add_get("/api/me", web_auth.me)
    r.add_post("/api/sessions", api.create_session)
    r.add_get("/api/sessions", api.list_sessions)
    r.add_get("/api/sessions/{session_id}", api.get_session)
    r.add_post("/api/sessions/{session_id}/link", api.new_link)
    r.add_post("/api/sessions/{session_id}/sms", api.send_sms)
    r.add_post("/api/sessions/{session_id}/end", api.end_session)
    r.add_get("/api/caller/notice", caller.notice)
    r.add_get("/ws/agent/{room_id}", signalling.agent_ws)
    r.add_get("/ws/caller", signalling.caller_ws)
    r.add_static("/static", WEB_DIR, append_version=False)

    # Ops console, observability and integrations: each module adds its own routes.
    logs.setup(app)
    metrics.setup(app)
    webhooks.setup(app)
    ops.setup(app)
    report.setup(app)

    # Recording, snapshots and photo uploads (server/recording/service.py): its cleanup context
    # starts after _services (the database exists) and, at shutdown, finishes every
    # recording before the rooms end.
    recording.setup(app)

    # Visual-assist toolkit (server/toolkit/api.py): uploads for freeze/push/photo-burst,
    # tutorials, the kept chat.
    toolkit.setup(app)

    # Reading codes and text from a stored still (server/inspect/api.py): its own bounded
    # pool, beside the photo decodes'.
    inspect_api.setup(app)

    # Privacy (docs/security.md): the retention sweeper (after recording.setup: it uses the
    # recording storage and spool), the DPO's and the administrator's APIs, the caller's
    # privacy receipt.
    retention.setup(app)
    dpo.setup(app)
    admin.setup(app)
    receipt.setup(app)
    return app
