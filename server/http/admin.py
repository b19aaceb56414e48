"""The administrator's API (role `admin` only; docs/security.md): accounts and the service's
configuration status. No session records, no media, no live rooms.

`dpo` and `admin` accounts are granted, and their passwords reset, only with the CLI on the
server (`callassist user …`): an admin here may create and manage agents and supervisors,
and may disable (never elevate or take over) a dpo or admin account.

    GET  /api/admin/users                 accounts (name, role, disabled, created)
    POST /api/admin/users                 {"username", "password", "role"} -> 201
    POST /api/admin/users/{username}      {"disabled"?: bool, "role"?: str, "password"?: str}
    GET  /api/admin/status                configuration and health, without secrets
    GET  /api/admin/config                the effective configuration, secrets masked
                                          (server/http/admin_config.py)
    GET  /admin                           the page (web/admin.html; it asks for a login)

Nodes: server/http/admin_cluster.py; webhook deliveries: server/http/admin_webhooks.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.core.appkeys import AUDIT, CLOCK, CONFIG, DB, SECRETS
from server.core.db import User
from server.core.eventloop import running_loop_kind
from server.http import admin_cluster, admin_webhooks
from server.http.admin_config import effective_config
from server.http.auth import (
    CLI_ONLY_ROLES,
    ROLES,
    check_new_username,
    error,
    hash_password,
    normalize_username,
)
from server.http.web_auth import USER_KEY, deny, require_user, revoke_sockets
from server.paths import WEB_DIR
from server.recording.service import RECORDING
from server.rooms.manager import ROOMS
from server.rooms.state import iso


def _user_view(u: User) -> dict[str, Any]:
    return {"name": u.username, "role": u.role, "disabled": u.disabled, "sso": u.sso}


async def _audit(request: web.Request, action: str, obj: str, reason: str = "") -> None:
    user: User = request[USER_KEY]
    await request.app[AUDIT].record(actor=user.username, role=user.role, action=action,
                                    object=obj, reason=reason)  # fmt: skip


async def _cli_only(request: web.Request, what: str) -> web.Response:
    # A refusal of this kind is an audit event (deny writes it).
    return await deny(
        request,
        request[USER_KEY],
        403,
        "cli_only",
        f"{what} only with the command line on the server: callassist user …",
    )


async def _json(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@require_user("admin")
async def list_users(request: web.Request) -> web.StreamResponse:
    users = await request.app[DB].list_users()
    return web.json_response({"users": [_user_view(u) for u in users]})


@require_user("admin")
async def create_user(request: web.Request) -> web.StreamResponse:
    body = await _json(request)
    if body is None:
        return error(400, "bad_request", "send a JSON object")
    name, password, role = body.get("username"), body.get("password"), body.get("role")
    if not isinstance(name, str) or len(name) > 256:
        return error(400, "bad_username", "give a user name")
    if role not in ROLES:
        return error(400, "bad_role", f"role must be one of {', '.join(ROLES)}")
    if role in CLI_ONLY_ROLES:
        return await _cli_only(request, f"a {role} account is created")
    db = request.app[DB]
    try:
        name = check_new_username(name, [u.username for u in await db.list_users()])
    except ValueError as exc:
        code = "user_exists" if "exists" in str(exc) or "looks like" in str(exc) else "bad_username"
        return error(409 if code == "user_exists" else 400, code, str(exc))
    if not isinstance(password, str):
        return error(400, "bad_password", "give a password")
    try:
        hashed = hash_password(password, name)
    except ValueError as exc:
        return error(400, "bad_password", str(exc))
    await db.add_user(name, hashed, role, request.app[CLOCK]())
    await _audit(request, "user.create", name, f"role {role}")
    user = await db.user_by_name(name)
    assert user is not None
    return web.json_response({"user": _user_view(user)}, status=201)


@require_user("admin")
async def update_user(request: web.Request) -> web.StreamResponse:
    body = await _json(request)
    if body is None:
        return error(400, "bad_request", "send a JSON object")
    db = request.app[DB]
    raw = request.match_info["username"]
    # The stored form; the raw name still finds an account made before names were normalised.
    user = await db.user_by_name(normalize_username(raw)) or await db.user_by_name(raw)
    if user is None:
        return error(404, "not_found", "no such user")
    me: User = request[USER_KEY]
    values: dict[str, Any] = {}
    if "disabled" in body:
        if not isinstance(body["disabled"], bool):
            return error(400, "bad_request", "'disabled' must be true or false")
        if body["disabled"] and user.id == me.id:
            return error(400, "own_account", "you cannot disable your own account")
        values["disabled"] = body["disabled"]
    if user.sso and ("password" in body or "role" in body):
        # Its password and role are the identity provider's (the role is mapped again at
        # every sign-in): one set here would be a second way in, or undone at the next one.
        return error(409, "sso_account", f"{user.username} signs in through single sign-on: "
                     "change the password or groups at the identity provider")  # fmt: skip
    if "role" in body:
        if body["role"] not in ROLES:
            return error(400, "bad_role", f"role must be one of {', '.join(ROLES)}")
        if body["role"] in CLI_ONLY_ROLES:
            return await _cli_only(request, f"the role {body['role']} is granted")
        if user.role in CLI_ONLY_ROLES and body["role"] != user.role:
            return await _cli_only(request, f"the role of a {user.role} account is changed")
        values["role"] = body["role"]
    if "password" in body:
        if user.role in CLI_ONLY_ROLES:
            return await _cli_only(request, f"the password of a {user.role} account is reset")
        if not isinstance(body["password"], str):
            return error(400, "bad_password", "give a password")
        try:
            values["password_hash"] = hash_password(body["password"], user.username)
        except ValueError as exc:
            return error(400, "bad_password", str(exc))
    if not values:
        return error(400, "nothing_to_change", "give disabled, role or password")
    changed = ", ".join(k if k != "password_hash" else "password" for k in sorted(values))
    if "role" in values and values["role"] != user.role:
        # A new role must not ride on logins made under the old one (update_user ends
        # every login when the password hash is written).
        values["password_hash"] = values.get("password_hash", user.password_hash)
    await db.update_user(user.id, **values)
    if values.get("disabled") or "password_hash" in values:
        # Its logins just ended; its open sockets (live rooms, silent watches) end too.
        revoke_sockets(request.app, user.id, "account_changed")
    await _audit(request, "user.update", user.username, f"changed: {changed}")
    updated = await db.user_by_id(user.id)
    assert updated is not None
    return web.json_response({"user": _user_view(updated)})


@require_user("admin")
async def status(request: web.Request) -> web.StreamResponse:
    app = request.app
    cfg = app[CONFIG]
    db = app[DB]
    try:
        revision = await db.revision()
    except Exception:  # the status page still answers when the database does not
        revision = None
    verdict = await app[AUDIT].verify_recent()  # from the newest anchor: bounded
    service = app.get(RECORDING)
    storage: dict[str, Any] = {"kind": cfg.recording.storage}
    if cfg.recording.storage == "s3":
        storage.update(
            bucket=cfg.recording.s3.bucket,
            region=getattr(service.storage, "region", None) if service else None,
        )
    rc = cfg.retention
    return web.json_response({
        "environment": cfg.environment,
        "public_url": cfg.http.public_url,
        "database": {"dialect": db.engine.dialect.name, "schema_revision": revision},
        "recording": {"mode": cfg.recording.mode, "keyring": cfg.recording.keyring,
                      "storage": storage,
                      "spool_bytes": service.spool.size_bytes if service and service.spool
                      else 0},
        "retention": {"sessions_days": rc.sessions_days, "recordings_days": rc.recordings_days,
                      "media_days": rc.media_days, "audit_days": rc.audit_days,
                      "sweep_interval_s": rc.sweep_interval_s},
        "sms": {"sender": cfg.sms.sender},
        "webhooks": {"receivers": len(cfg.webhooks.urls)},
        "live_rooms": len(app[ROOMS].rooms()),
        "event_loop": running_loop_kind(),  # media.event_loop, as this process runs it
        "audit": {"ok": verdict.ok, "records": verdict.count, "problem": verdict.problem},
        "at": iso(app[CLOCK]()),
    })  # fmt: skip


@require_user("admin")
async def config_view(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    data = effective_config(cfg, request.app.get(SECRETS))
    return web.json_response({**data, "at": iso(request.app[CLOCK]())},
                             headers={"Cache-Control": "no-store"})  # fmt: skip


async def admin_page(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(WEB_DIR / "admin.html")
    response.headers["Cache-Control"] = "no-store"
    return response


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin", admin_page)
    r.add_get("/api/admin/config", config_view)
    r.add_get("/api/admin/users", list_users)
    r.add_post("/api/admin/users", create_user)
    r.add_post("/api/admin/users/{username}", update_user)
    r.add_get("/api/admin/status", status)
    admin_cluster.setup(app)
    admin_webhooks.setup(app)
