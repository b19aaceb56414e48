"""Room-bound HTTP requests that land on a node not holding the room go to the one that
does, and session creation goes to the node placement picks.

`owned_room(request, room_id)` is the one helper every room-bound handler uses: the
LiveRoom when this node holds it (or None when no node does), and otherwise the request is
forwarded to the owner's `cluster.internal_url` (method, path, query, body, headers and
cookies) and its answer becomes this request's answer. A forwarded request carries
`X-Callassist-Forwarded`, an HMAC over method, path and time with a key derived from the
cluster's shared `server_key`: a node never forwards such a request again, and nobody
outside the cluster can make a node skip forwarding. With the local router all of this is
a no-op.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from server.cluster.node import CLUSTER, ClusterNode, Elsewhere, locate
from server.cluster.redis import CLUSTER_ERRORS, ClusterUnavailable
from server.cluster.registry import placement
from server.core.appkeys import SECRETS
from server.http.auth import error
from server.rooms.manager import ROOMS, LiveRoom

log = logging.getLogger(__name__)

HEADER = "X-Callassist-Forwarded"
_MAX_SKEW_S = 60
_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}
_HOP |= {"te", "trailer", "proxy-authorization", "proxy-authenticate", HEADER.lower()}


class Forwarded(Exception):
    """The answer came from another node; the middleware returns it as it is."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response


def _key(request: web.Request) -> bytes:
    return hmac.new(request.app[SECRETS].server_key, b"cluster-forward", hashlib.sha256).digest()


def _sign(key: bytes, method: str, path_qs: str, ts: int) -> str:
    mac = hmac.new(key, f"{method} {path_qs} {ts}".encode(), hashlib.sha256).hexdigest()
    return f"{ts}.{mac}"


def is_forwarded(request: web.Request) -> bool:
    """A request another node of this cluster forwarded here (signature and time checked)."""
    value = request.headers.get(HEADER, "")
    ts_text, _, _ = value.partition(".")
    if not ts_text.isdigit() or abs(time.time() - int(ts_text)) > _MAX_SKEW_S:
        return False
    good = _sign(_key(request), request.method, request.path_qs, int(ts_text))
    return hmac.compare_digest(value, good)


def unavailable() -> web.Response:
    why = "the service cannot coordinate its servers right now; try again in a minute"
    return error(503, "cluster_unavailable", why)


async def forward(request: web.Request, node: ClusterNode, owner: str) -> web.StreamResponse:
    """Send the request to node `owner` and return its answer."""
    try:
        row = await node.registry.row_of(owner)
    except CLUSTER_ERRORS:
        return unavailable()
    if row is None:  # the owner stopped beating: its rooms are gone with it
        return error(503, "cluster_unavailable", "this call's server is not reachable")
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP)
    headers[HEADER] = _sign(_key(request), request.method, request.path_qs, int(time.time()))
    if request.remote:  # rate limits on the owner see the client, not this node
        xff = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{xff}, {request.remote}" if xff else request.remote
    body = await request.read()
    url = row.internal_url.rstrip("/") + request.path_qs
    node.forwarded += 1
    try:
        async with node.http.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            payload = await upstream.read()
            out = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP)
            return web.Response(status=upstream.status, body=payload, headers=out)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("cluster: forwarding %s %s to node %s failed: %s",
                    request.method, request.path, owner, exc)  # fmt: skip
        return error(502, "cluster_unavailable", "this call's server did not answer")


async def owned_room(request: web.Request, room_id: str) -> LiveRoom | None:
    """The room when this node holds it (or re-opened it: its node went); None when the
    session ended; otherwise raises Forwarded with the owner's answer to this request."""
    app = request.app
    live = app[ROOMS].get(room_id)
    if live is not None or CLUSTER not in app or is_forwarded(request):
        return live
    try:
        where = await locate(app, room_id)  # re-opens a live session no node holds
    except ClusterUnavailable:
        raise Forwarded(unavailable()) from None
    if not isinstance(where, Elsewhere):
        return where
    raise Forwarded(await forward(request, app[CLUSTER], where.node_id))


async def place_session(request: web.Request) -> web.StreamResponse | None:
    """Where a new session goes: None = here; otherwise the answer to give (forwarded to
    the placed node, or 503 no_capacity / cluster_unavailable). Nothing is written."""
    app = request.app
    if CLUSTER not in app:
        return None
    node = app[CLUSTER]
    if is_forwarded(request):
        # Placed here by another node from rows a moment old: a node that filled up (or
        # started draining) since says so rather than take more than its maximum.
        return _no_capacity(node, 1) if node.registry.full() else None
    try:
        rows = await node.registry.rows()
    except CLUSTER_ERRORS:
        return unavailable()
    if not node.registry.healthy:
        return unavailable()
    target = placement(rows)
    if target is None or (target == node.node_id and node.registry.full()):
        return _no_capacity(node, len(rows))
    if target == node.node_id:
        return None
    return await forward(request, node, target)


def _no_capacity(node: ClusterNode, nodes: int) -> web.Response:
    node.no_capacity += 1
    log.warning("cluster: no capacity: every node is full or draining (%d nodes)", nodes)
    return error(503, "no_capacity", "no capacity right now, try again in a minute")


@web.middleware
async def middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except Forwarded as fwd:
        return fwd.response
