"""The OpenAPI 3.1 description of the REST API, served at /api/openapi.json."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"description": desc}
    if schema is not None:
        body["content"] = {"application/json": {"schema": schema}}
    return body


def _err(desc: str) -> dict[str, Any]:
    return _resp(desc, ERROR)


def _post(summary: str, body: dict[str, Any] | None, ok: dict[str, Any], *codes: int):
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"login": [], "csrf": []}],
        "responses": {**ok, **{str(c): _err(_CODES[c]) for c in codes}},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


_CODES = {
    400: "invalid input (code says which)",
    401: "not logged in",
    403: "wrong role, origin or CSRF token",
    404: "no such session (or not yours)",
    409: "the session has ended or the link was used",
    429: "rate limited",
    502: "the SMS gateway failed (message says why)",
}

SESSION = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "phone": {"type": "string", "description": "E.164"},
        "phone_masked": {"type": "string"},
        "reference": {"type": "string"},
        "state": {"enum": ["waiting", "active", "ended"]},
        "caller_status": {
            "enum": [
                "link_sent",
                "opened",
                "accepted",
                "connecting",
                "live",
                "paused",
                "reconnecting",
                "left",
                "ended",
            ]
        },
        "device_type": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "ended_at": {"type": ["string", "null"], "format": "date-time"},
        "end_reason": {"type": ["string", "null"]},
    },
}
LINK = {
    "type": "object",
    "properties": {
        "link": {"type": "string", "format": "uri"},
        "qr_svg": {"type": "string", "description": "SVG document of the link's QR code"},
        "expires_at": {"type": "string", "format": "date-time"},
        "sms": {
            "type": "object",
            "description": "per language (lv, en, ru): encoding (GSM-7 or UCS-2), characters, "
            "segments and per_segment of the SMS that would carry this link",
        },
    },
}


def openapi_document(public_url: str) -> dict[str, Any]:
    sid = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callassist API",
            "version": "1",
            "description": "Agent console API. Signalling is a WebSocket: see docs/protocol.md.",
        },
        "servers": [{"url": public_url}],
        "components": {
            "securitySchemes": {
                "login": {"type": "apiKey", "in": "cookie", "name": "ca_login"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
                "Session": SESSION,
                "Link": LINK,
            },
        },
        "paths": {
            "/api/login": {
                "post": {
                    "summary": "Log in (sets the login cookie)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["username", "password"],
                                    "properties": {
                                        "username": {"type": "string"},
                                        "password": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _resp(
                            "logged in; `csrf` goes in X-CSRF-Token",
                            {
                                "type": "object",
                                "properties": {
                                    "user": {"type": "object"},
                                    "csrf": {"type": "string"},
                                },
                            },
                        ),
                        "401": _err("wrong user name or password"),
                        "429": _err(_CODES[429]),
                    },
                }
            },
            "/api/logout": {"post": _post("Log out", None, {"204": _resp("logged out")}, 401)},
            "/api/me": {
                "get": {
                    "summary": "The logged-in user and CSRF token",
                    "security": [{"login": []}],
                    "responses": {"200": _resp("the user"), "401": _err("not logged in")},
                }
            },
            "/api/sessions": {
                "post": _post(
                    "Start a support session and issue its one-time link",
                    {
                        "type": "object",
                        "required": ["phone"],
                        "properties": {
                            "phone": {"type": "string", "description": "E.164 or local"},
                            "reference": {"type": "string", "maxLength": 128},
                        },
                    },
                    {
                        "201": _resp(
                            "created",
                            {
                                "allOf": [
                                    LINK,
                                    {"type": "object", "properties": {"session": SESSION}},
                                ]
                            },
                        )
                    },
                    400,
                    401,
                    403,
                ),
                "get": {
                    "summary": "The agent's recent sessions",
                    "security": [{"login": []}],
                    "responses": {
                        "200": _resp(
                            "sessions",
                            {
                                "type": "object",
                                "properties": {"sessions": {"type": "array", "items": SESSION}},
                            },
                        ),
                        "401": _err(_CODES[401]),
                    },
                },
            },
            "/api/sessions/{session_id}": {
                "get": {
                    "summary": "One session",
                    "parameters": [sid],
                    "security": [{"login": []}],
                    "responses": {"200": _resp("the session"), "404": _err(_CODES[404])},
                }
            },
            "/api/sessions/{session_id}/link": {
                "post": {
                    **_post(
                        "Issue a new link (revokes the old one)",
                        None,
                        {"200": _resp("new link", LINK)},
                        401,
                        403,
                        404,
                        409,
                    ),
                    "parameters": [sid],
                }
            },
            "/api/sessions/{session_id}/sms": {
                "post": {
                    **_post(
                        "Send the current link by SMS",
                        {
                            "type": "object",
                            "required": ["link"],
                            "properties": {
                                "link": {"type": "string"},
                                "lang": {"enum": ["lv", "en", "ru"], "default": "lv"},
                            },
                        },
                        {"200": _resp("sent")},
                        400,
                        401,
                        403,
                        404,
                        502,
                    ),
                    "parameters": [sid],
                }
            },
            "/api/sessions/{session_id}/end": {
                "post": {
                    **_post("End the session", None, {"200": _resp("ended")}, 401, 403, 404),
                    "parameters": [sid],
                }
            },
            "/api/caller/notice": {
                "get": {
                    "summary": "The service notice and privacy summary for callers",
                    "parameters": [
                        {"name": "lang", "in": "query", "schema": {"enum": ["lv", "en", "ru"]}}
                    ],
                    "responses": {"200": _resp("notice")},
                }
            },
        },
    }
