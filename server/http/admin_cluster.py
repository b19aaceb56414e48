"""The cluster's nodes on the admin page (docs/cluster.md): each node's heartbeat row
(rooms, load, draining) and the drain flag `callassist node drain` sets.

    GET  /api/admin/nodes                   {"cluster": false, ...} on a single node;
                                            else every node that beats
    POST /api/admin/nodes/{node_id}/drain   {"drain": true|false} (audited `node.drain`)

Draining here is the CLI's `node drain NODE_ID` / `--undo` (not `--stop`, which ends a
process: that stays on the command line of the machine it runs on). The flag is read by
the node's next heartbeat, so the row says `draining` a heartbeat later; until then the
answer shows `drain_requested`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.cluster.node import CLUSTER
from server.cluster.redis import CLUSTER_ERRORS, drain_key
from server.cluster.registry import NodeRow, headroom
from server.core.appkeys import AUDIT
from server.core.db import User
from server.http.admin_config import mask_url
from server.http.auth import error
from server.http.web_auth import USER_KEY, require_user
from server.rooms.manager import ROOMS


def node_view(row: NodeRow, flag: str | None, this: str) -> dict[str, Any]:
    return {
        "node_id": row.node_id, "internal_url": mask_url(row.internal_url),
        "rooms": row.rooms, "max_rooms": row.max_rooms,
        "cpu_percent": round(row.cpu * 100, 1), "loop_lag_ms": row.loop_lag_ms,
        "draining": row.draining, "drain_requested": flag, "this": row.node_id == this,
        "headroom": round(headroom(row), 3),
    }  # fmt: skip


def _unavailable(exc: BaseException) -> web.Response:
    return error(503, "cluster_unavailable", f"Redis did not answer ({type(exc).__name__}); "
                 "try again in a moment")  # fmt: skip


@require_user("admin")
async def nodes(request: web.Request) -> web.StreamResponse:
    app = request.app
    if CLUSTER not in app:
        rooms = app[ROOMS]
        return web.json_response({"cluster": False, "node_id": rooms.router.node_id,
                                  "rooms": len(rooms.rooms()), "nodes": []})  # fmt: skip
    node = app[CLUSTER]
    try:
        rows = sorted(await node.registry.rows(), key=lambda r: r.node_id)
        flags = await node.redis.mget([drain_key(r.node_id) for r in rows]) if rows else []
    except CLUSTER_ERRORS as exc:
        return _unavailable(exc)
    return web.json_response({
        "cluster": True, "node_id": node.node_id,
        "rooms": sum(r.rooms for r in rows),
        "nodes": [node_view(r, f, node.node_id) for r, f in zip(rows, flags, strict=True)],
    })  # fmt: skip


@require_user("admin")
async def drain(request: web.Request) -> web.StreamResponse:
    app = request.app
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("drain"), bool):
        return error(400, "bad_request", 'send {"drain": true} or {"drain": false}')
    if CLUSTER not in app:
        return error(409, "no_cluster", "a single node (cluster.router = 'local') has no "
                     "drain: stop it with SIGTERM")  # fmt: skip
    node = app[CLUSTER]
    node_id = request.match_info["node_id"]
    try:
        if body["drain"]:
            # Only a node that beats: a typo must not leave a flag for a node to come.
            if await node.registry.row_of(node_id) is None:
                return error(404, "not_found", f"no node {node_id!r} in the cluster")
            await node.redis.set(drain_key(node_id), "1")
        else:
            await node.redis.delete(drain_key(node_id))
    except CLUSTER_ERRORS as exc:
        return _unavailable(exc)
    user: User = request[USER_KEY]
    reason = "drain" if body["drain"] else "undo"
    await app[AUDIT].record(actor=user.username, role=user.role, action="node.drain",
                            object=node_id, reason=reason)  # fmt: skip
    return web.json_response({"node_id": node_id, "drain_requested": body["drain"]})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/admin/nodes", nodes)
    app.router.add_post("/api/admin/nodes/{node_id}/drain", drain)
