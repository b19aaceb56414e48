"""The OpenAPI 3.1 description of every HTTP route, served at /api/openapi.json.

The routes are one table (server/http/openapi_routes.py and openapi_routes_staff.py, in
the vocabulary of server/http/openapi_spec.py); this module turns it into the document:
path parameters from the path, security and the errors every login route has from who
may call it, `x-roles` (the allowed cells of docs/security.md's role matrix).
tests/test_openapi.py checks the table against `app.router` and the matrix.
"""

from __future__ import annotations

import re
from typing import Any

from server.http.openapi_routes import ROUTES as CONSOLE_ROUTES
from server.http.openapi_routes_staff import ROUTES as STAFF_ROUTES
from server.http.openapi_spec import (
    COMPONENTS,
    STAFF_ROLES,
    Body,
    Reply,
    Route,
    ref,
)

ROUTES: tuple[Route, ...] = (*CONSOLE_ROUTES, *STAFF_ROUTES)

CODES = {
    400: "invalid input (`code` says which)",
    401: "`not_authenticated`: log in first",
    403: "refused: wrong role, origin or CSRF token",
    404: "`not_found`",
    409: "conflict (`code` says which)",
    413: "`too_large`",
    415: "not an image this route takes",
    429: "`rate_limited`: try again later",
}
TAGS = {
    "pages": "HTML pages",
    "health": "Health, metrics and this document",
    "auth": "Staff login",
    "caller": "The caller's link, page and notice",
    "sessions": "Support sessions (agent)",
    "recording": "Recording, snapshots and photos",
    "toolkit": "Visual-assist toolkit: images, chat, tutorials",
    "signalling": "WebSockets (docs/protocol.md)",
    "ops": "Ops console and reports (supervisor)",
    "dpo": "Data-subject requests (dpo)",
    "admin": "Accounts and configuration status (admin)",
}
_PARAM = re.compile(r"\{(\w+)\}")


def _who(roles: dict[str, str]) -> str:
    if "anonymous" in roles:
        return "anyone"
    return ", ".join(f"{r} (own sessions/rooms only)" if v == "own" else r
                     for r, v in roles.items())  # fmt: skip


def _security(route: Route) -> list[dict[str, list[str]]]:
    if "anonymous" in route.roles:
        return []
    options = []
    if any(r in STAFF_ROLES for r in route.roles):
        login: dict[str, list[str]] = {"login": []}
        if route.method != "GET":
            login["csrf"] = []
        options.append(login)
    if "caller" in route.roles:
        options.append({"caller": []})
    return options


def _implied_errors(route: Route) -> dict[int, str]:
    """The answers every route of this kind gives (server/http/web_auth.py, require_user)."""
    roles = route.roles
    if "anonymous" in roles or "caller" in roles:
        return {}
    out = {401: CODES[401]}
    refused = []
    if set(STAFF_ROLES) - set(roles):
        refused.append("`forbidden`: your role may not do this")
    if route.method != "GET":
        refused.append("`origin_not_allowed` or `csrf` (send X-CSRF-Token)")
    if refused:
        out[403] = "; ".join(refused)
    if "own" in roles.values() and route.reply.status != 101:
        out[404] = "`not_found`: no such session, or not yours (the same answer)"
    return out


def _response(reply: Reply, error: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if reply.schema is not None:
        out["content"] = {"application/json": {"schema": reply.schema}}
    elif reply.media is not None:
        out["content"] = {reply.media: {"schema": {"type": "string"}}}
    elif error:
        out["content"] = {"application/json": {"schema": ref("Error")}}
    return out


def _operation_id(route: Route) -> str:
    """`get_api_sessions_session_id_photos_photo_id`: unique, as OpenAPI wants."""
    words = re.findall(r"\w+", route.path.replace("openapi.json", "openapi"))
    return "_".join([route.method.lower(), *words]) if words else "get_root"


def operation(route: Route) -> dict[str, Any]:
    responses = {str(route.reply.status): _response(route.reply)}
    errors: dict[int, Reply] = {
        status: Reply(status, text) for status, text in _implied_errors(route).items()
    }
    for e in route.errors:
        if isinstance(e, Reply):
            errors[e.status] = e
        elif isinstance(e, tuple):
            errors[e[0]] = Reply(e[0], e[1])
        else:
            errors[e] = Reply(e, CODES[e])
    for status in sorted(errors):
        responses[str(status)] = _response(errors[status], error=True)
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in _PARAM.findall(route.path)]  # fmt: skip
    params += [{"name": q.name, "in": "query", "required": q.required, "schema": q.schema,
                "description": q.description} for q in route.query]  # fmt: skip
    who = f"Who may call it: {_who(route.roles)}."
    op: dict[str, Any] = {
        "summary": route.summary,
        "description": f"{route.description} {who}".strip(),
        "tags": [route.tag],
        "operationId": _operation_id(route),
        "security": _security(route),
        "x-roles": dict(route.roles),
        "responses": responses,
    }
    if params:
        op["parameters"] = params
    if isinstance(route.body, Body):
        op["requestBody"] = {
            "required": True,
            "description": route.body.description,
            "content": {route.body.media: {"schema": {"type": "string", "format": "binary"}}},
        }
    elif route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": route.body}},
        }
    return op


def openapi_document(public_url: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        methods = paths.setdefault(route.path, {})
        assert route.method.lower() not in methods, f"{route.method} {route.path} twice"
        methods[route.method.lower()] = operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callassist API",
            "version": "1",
            "description": (
                "Every HTTP route of the server (static files under /static aside). Errors "
                'are `{"error": {"code", "message"}}` (components/schemas/Error). '
                "`x-roles` of an operation: the roles that may call it, `own` meaning "
                "their own sessions/rooms only (docs/security.md). Signalling messages: "
                "docs/protocol.md."
            ),
        },
        "servers": [{"url": public_url}],
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "components": {
            "securitySchemes": {
                "login": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "ca_login",
                    "description": "`__Host-ca_login` when served over HTTPS",
                },
                "csrf": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-CSRF-Token",
                    "description": "from /api/login or /api/me; with an allowed Origin",
                },
                "caller": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "ca_caller",
                    "description": "set by opening the one-time link "
                    "(`__Host-ca_caller` over HTTPS)",
                },
            },  # fmt: skip
            "schemas": COMPONENTS,
        },
        "paths": paths,
    }
