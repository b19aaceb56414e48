"""WebSocket signalling endpoints for agents and callers (protocol v1, docs/protocol.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from server.cluster.node import CLUSTER, Elsewhere, locate
from server.cluster.redis import ClusterUnavailable
from server.core.appkeys import AUDIT, CONFIG, DB, ORIGINS, SECRETS, WEBSOCKETS
from server.core.db import User
from server.core.ratelimit import TokenBucket
from server.http.auth import error, origin_allowed
from server.http.web_auth import LOGIN_SOCKETS, TOKEN_KEY, current_user, deny
from server.media.peers import MediaError, ice_servers_for_client
from server.recording.service import RECORDING
from server.rooms.connection import Connection
from server.rooms.manager import ROOMS, LiveRoom, staff_media_ids
from server.rooms.participant import MessageSink
from server.sessions.caller import device_session
from server.signalling import messages as P
from server.signalling.socket import SignallingSocket
from server.toolkit.messages import TYPES as TOOLKIT_TYPES
from server.toolkit.service import TOOLKIT

log = logging.getLogger(__name__)

# The login this socket was opened with ended (logout, account disabled, new password or
# role, expiry): docs/protocol.md, "Transport".
CLOSE_LOGGED_OUT = 4003


def _precheck(request: web.Request) -> web.Response | None:
    # A WebSocket upgrade must name its Origin (browsers always do): one without it is not
    # from one of our pages (docs/protocol.md, "Transport").
    if "Origin" not in request.headers or not origin_allowed(request, request.app[ORIGINS]):
        return error(403, "origin_not_allowed", "this page may not connect here")
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    if P.SUBPROTOCOL not in offered:
        return error(
            400,
            "version_unsupported",
            f"offer the WebSocket subprotocol '{P.SUBPROTOCOL}' (protocol version {P.VERSION})",
        )
    return None


async def agent_ws(request: web.Request) -> web.StreamResponse:
    refused = _precheck(request)
    if refused:
        return refused
    user = await current_user(request)
    if user is None:
        return await deny(request, None, 401, "not_authenticated", "log in first")
    if user.role != "agent":  # live media of a room: its own agent only (docs/security.md)
        return await deny(
            request, user, 403, "forbidden", f"your role ({user.role}) may not join rooms"
        )
    room_id = request.match_info["room_id"]
    live = await _room_for(request, room_id)
    if isinstance(live, web.StreamResponse):
        return live
    if isinstance(live, Elsewhere):  # held by another node: its record says whose it is
        row = await request.app[DB].get_session(room_id)
        agent_id = row["agent_id"] if row else None
    else:
        agent_id = live.room.agent_id
    if agent_id != user.id:
        return await deny(request, user, 403, "forbidden", "this session belongs to another agent")
    # Watching the caller's camera live is a view of personal data: audited.
    await request.app[AUDIT].record(
        actor=user.username, role=user.role, action="media.view", object=room_id
    )
    return await _serve(request, live, "agent", "agent", user)


async def caller_ws(request: web.Request) -> web.StreamResponse:
    refused = _precheck(request)
    if refused:
        return refused
    session_id = await device_session(request)
    if session_id is None:
        return error(401, "not_authenticated", "open the link from your SMS again")
    live = await _room_for(request, session_id)
    if isinstance(live, web.StreamResponse):
        return live
    return await _serve(request, live, "caller", "caller")


# --- supervisor: silent watch (docs/protocol.md, "supervisor") ---------------------------
SUPERVISOR_MAY_SEND = frozenset({"offer", "candidate", "ping"})


async def _room_for(request: web.Request, room_id: str) -> LiveRoom | Elsewhere | web.Response:
    """The room held here, the node holding it (a cluster: the socket is bridged there),
    or the refusal (ended; the cluster cannot say)."""
    try:
        where = await locate(request.app, room_id)
    except ClusterUnavailable:
        return error(503, P.CLUSTER_UNAVAILABLE, "the service cannot reach this call right now")
    if where is None:
        return error(410, P.ROOM_ENDED, "this session has ended")
    return where


def _parse(raw: str, role: str) -> P.Message:
    if role != "supervisor":  # a staff participant's own list: messages.ALLOWED["staff"]
        return P.parse(raw, role)
    # A supervisor's offer/candidate/ping have the agent's shapes; nothing else is allowed.
    try:
        msg = P.parse(raw, "agent")
    except P.ProtocolError as exc:
        if exc.code == P.NOT_ALLOWED:
            raise P.ProtocolError(
                P.NOT_ALLOWED, f"a supervisor may not send '{exc.ref}'", exc.ref
            ) from None
        raise
    if msg.type not in SUPERVISOR_MAY_SEND:
        raise P.ProtocolError(P.NOT_ALLOWED, f"a supervisor may not send '{msg.type}'", msg.type)
    return msg


async def _serve(
    request: web.Request,
    live: LiveRoom | Elsewhere,
    role: str,
    participant: str,
    user: User | None = None,
) -> web.StreamResponse:
    """A socket: the WebSocket's part (prepare, login), then for a room held here the
    transport-agnostic `serve`, and for a room held `Elsewhere` the signal bridge to
    it, where the same `serve` runs (server/cluster/bridge.py)."""
    sig = request.app[CONFIG].signalling
    ws = SignallingSocket(sig)  # limits as documented (server/signalling/socket.py)
    await ws.prepare(request)
    sockets = request.app[WEBSOCKETS]
    sockets.add(ws)
    conn = Connection(
        ws, role, participant, sig.outbox_size, max_bytes=sig.max_server_message_bytes
    )
    room_id = live.room_id if isinstance(live, Elsewhere) else live.room.id
    if user is not None:
        # Ends with the login it was opened under (server/http/web_auth.py, LoginSockets).
        def revoke(reason: str) -> None:
            log.info("%s socket in room %s closed: %s", role, room_id, reason)
            conn.send(P.error(P.LOGGED_OUT, "your login has ended; log in again"))
            conn.close_soon(CLOSE_LOGGED_OUT, "logged out")

        request.app[LOGIN_SOCKETS].add(ws, user.id, request[TOKEN_KEY] or "", revoke)
    name = user.username if user else None
    try:
        if isinstance(live, Elsewhere):
            await request.app[CLUSTER].bridge.hold(ws, conn, live.node_id, room_id, name)
        else:
            await serve(request.app, live, role, participant, conn, ws, name)
    finally:
        sockets.discard(ws)
        request.app[LOGIN_SOCKETS].discard(ws)
    return ws


class Incoming(Protocol):
    """What `serve` reads: the WebSocket itself, or a bridged socket's frames (both yield
    aiohttp `WSMessage`s and say why they ended)."""

    def __aiter__(self) -> AsyncIterator[WSMessage]: ...
    def exception(self) -> BaseException | None: ...


class Sink(MessageSink, Protocol):
    async def wait_closed(self) -> None: ...


async def serve(
    app: web.Application,
    live: LiveRoom,
    role: str,
    participant: str,
    conn: Sink,
    incoming: Incoming,
    name: str | None = None,
) -> None:
    """Serve one participant of a room held here: welcome, join, the receive loop, leave.
    `incoming` are its frames and `conn` where its messages go, wherever its socket is."""
    cfg = app[CONFIG]
    sig = cfg.signalling
    rooms = app[ROOMS]
    ws = incoming
    if role == "staff" and live.room.full(cfg.rooms.max_participants, participant):
        # On the socket (a browser cannot read a refused upgrade's status), where the room
        # is, with no wait before the join below: two cannot both take the last place.
        n = cfg.rooms.max_participants
        conn.send(P.error(P.ROOM_FULL, f"this call has {n} people (rooms.max_participants)"))
        conn.close_soon(WSCloseCode.TRY_AGAIN_LATER, "room full")
        await conn.wait_closed()
        return
    notice = None
    if role == "caller":
        notice = {"version": cfg.session.notice_version, "accepted": live.room.notice_accepted}
    conn.send(
        P.welcome(
            role,
            participant,
            live.room.to_message(),
            ice_servers_for_client(cfg.media, app[SECRETS].turn_secret, time.time()),
            notice=notice,
            # docs/protocol.md, "Toolkit"; a silent watcher gets none
            toolkit=app[TOOLKIT].settings() if role != "supervisor" else None,
        )
    )
    # A supervisor gets `room`/`ended`; nobody is told it joined (a silent participant).
    # Staff: everyone is told (`participant_joined`, the caller first) inside the join.
    extra: dict[str, object] = {}
    if role == "staff":  # staff-<role>-<user id>-<hex> (serve_staff)
        _, staff_role, user_id, _ = participant.split("-", 3)
        extra = {"role": staff_role, "user_id": int(user_id)}
    await rooms.join(live, role, participant, conn, name=name, **extra)
    if role != "supervisor":
        app[TOOLKIT].joined(live, conn)  # toolkit settings and what it missed
    if role == "agent" and live.room.reopened_at is not None:
        # The room came back on this node after its node went (docs/cluster.md): the
        # agent learns which toolkit state did not.
        conn.send(P.reopened(app[TOOLKIT].config.keep_chat))
    bucket = TokenBucket(sig.rate_per_s, sig.burst, time.monotonic())
    strikes = 0
    try:
        async for msg in ws:
            # Text and binary frames share one budget: a flood of either is a flood.
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not bucket.take(time.monotonic()):
                strikes += 1
                conn.send(P.ProtocolError(P.RATE_LIMITED, "too many messages").to_message())
                if strikes > sig.burst:
                    conn.close_soon(WSCloseCode.POLICY_VIOLATION, "rate limit")
                continue
            if msg.type == WSMsgType.TEXT:
                try:
                    await _dispatch(app, live, conn, _parse(msg.data, role))
                except P.ProtocolError as exc:
                    conn.send(exc.to_message())
                except Exception:  # a bug must cost one message, never the room
                    log.exception("signalling %s message failed in room %s", role, live.room.id)
                    conn.send(
                        P.ProtocolError(
                            P.INTERNAL, "the server failed on this message"
                        ).to_message()
                    )
            elif msg.type == WSMsgType.BINARY:
                conn.send(P.ProtocolError(P.BAD_JSON, "binary frames are not used").to_message())
            elif msg.type == WSMsgType.ERROR:
                exc = ws.exception()
                if exc is not None and "size" in str(exc).lower():
                    log.info("%s sent an oversized message in room %s", role, live.room.id)
                break
    finally:
        await rooms.leave(live, participant, conn)
        # Let the writer flush what is queued (e.g. `ended`) and the close frame before
        # aiohttp drops the transport.
        await conn.wait_closed()


def _media_leg(conn: Sink, data: dict[str, object]) -> tuple[str, str]:
    """The media leg (participant id in the MediaRoom, media role) an offer or candidate
    is for: a staff participant has one per track it receives."""
    if conn.role != "staff":
        return conn.participant, conn.role
    camera, screen = staff_media_ids(conn.participant)
    return (camera, "staff") if data.get("track") == "camera" else (screen, "staff_screen")


# A caller's messages that need the notice accepted first: everything that reaches the
# agent (docs/protocol.md, "accept"); `accept`, `ping`, `leave` and `candidate` do not,
# and `offer` has its own check below.
NEEDS_NOTICE = frozenset(P.ALLOWED["caller"] - {"accept", "ping", "leave", "candidate", "offer"})


async def _dispatch(app: web.Application, live: LiveRoom, conn: Sink, msg: P.Message) -> None:
    rooms = app[ROOMS]
    cfg = app[CONFIG]
    room = live.room
    if msg.type == "ping":
        conn.send(P.pong())
        return
    if room.ended:
        raise P.ProtocolError(P.ROOM_ENDED, "this session has ended", msg.type)
    if conn.role != "supervisor":  # a watcher does not keep a room alive
        rooms.touch(live)
    if conn.role == "caller" and not room.notice_accepted and msg.type in NEEDS_NOTICE:
        # Nothing of the caller's reaches the agent before the notice is accepted.
        raise P.ProtocolError(P.NOTICE_NOT_ACCEPTED, "accept the notice first", msg.type)
    if msg.type in TOOLKIT_TYPES:  # pointer, marks, freeze, chat, ... (server/toolkit/service.py)
        await app[TOOLKIT].dispatch(live, conn, msg)
        return
    data = msg.data

    if msg.type == "accept":
        if data["notice"] != cfg.session.notice_version:
            raise P.ProtocolError(
                P.NOTICE_OUTDATED, "the notice has changed; reload the page", msg.type
            )
        await rooms.accept_notice(live, data["notice"])
        return

    if msg.type == "dismiss":  # the caller asks a joined supervisor/expert to leave
        if not await rooms.dismiss(live, data["participant"]):
            raise P.ProtocolError(P.NOT_FOUND, "no such participant in this call", msg.type)
        return

    if msg.type == "offer":
        if conn.role == "caller" and not room.notice_accepted:
            raise P.ProtocolError(
                P.NOTICE_NOT_ACCEPTED, "accept the notice before sharing", msg.type
            )
        # A warm offer (the page connects before its camera starts) is not "connecting" yet:
        # the agent keeps "accepted" until the camera's first frame makes it "live".
        warm = data.get("warm") is True and room.caller_status == "accepted"
        again = room.caller_status in ("accepted", "left", "reconnecting")
        if conn.role == "caller" and again and not warm:
            await rooms.set_caller_status(live, "connecting")
        media_id, media_role = _media_leg(conn, data)
        try:
            answer = await live.media.handle_offer(media_id, media_role, data["pc"], data["sdp"])
        except Exception as exc:
            log.info("offer from %s failed in room %s: %s", conn.role, room.id, exc)
            raise P.ProtocolError(
                P.SDP_FAILED, f"the offer could not be answered: {exc}", "offer"
            ) from None
        conn.send(P.answer(data["pc"], answer))
        return

    if msg.type == "candidate":
        cand = data.get("candidate")
        try:
            await live.media.add_candidate(
                _media_leg(conn, data)[0], data["pc"], P.parse_candidate(cand) if cand else None
            )
        except MediaError as exc:  # a candidate the media layer cannot use: the sender's fault
            raise P.ProtocolError(P.BAD_MESSAGE, str(exc), "candidate") from None
        return

    if msg.type == "media":
        if conn.role == "caller":
            if data["state"] == "unavailable":
                await rooms.set_camera_unavailable(live, data["reason"])
            elif data["state"] == "paused":
                await rooms.set_caller_status(live, "paused")
            elif data["state"] == "live" and room.tracks.get("camera"):
                await rooms.set_caller_status(live, "live")
            rooms.notify(live)
        else:
            # The server cannot see a browser's replaceTrack(null): the agent's word is
            # what tells the caller's page to show or hide the screen area.
            await rooms.set_track(live, "screen", data["state"] == "live")
        return

    if msg.type == "snapshot_failed":  # the caller's page could not take the still
        app[RECORDING].snapshot_failed(live, data["id"], data["reason"])
        return

    if msg.type == "leave":
        await live.media.drop(conn.participant)
        await rooms.set_caller_status(live, "left")
        return

    if msg.type == "end":
        await rooms.end(room.id, "agent_ended")
        return
