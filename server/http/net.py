"""Request helpers that depend on how the service is deployed."""

from __future__ import annotations

from aiohttp import web

from server.core.appkeys import CONFIG


def client_address(request: web.Request) -> str:
    """The client's address, used only for rate limiting (never stored)."""
    if request.app[CONFIG].http.behind_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            # The proxy appends the address it saw: the last entry is the one we can trust.
            return forwarded.split(",")[-1].strip()
    return request.remote or "unknown"
