"""The role x endpoint matrix of docs/security.md, walked cell by cell against a real server.

The matrix is read from the document; every route of `app.router` must be in it (a new
route without a row fails here). Each cell is requested as that role: `yes`/`own` must
succeed (for `own`, another agent gets 404, audited), `403` must be refused with an audit
event naming the actor and the route, `401`/`404`/`410` must be answered exactly so.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from PIL import Image

from server.core.appkeys import AUDIT
from server.core.audit import audit_log
from server.rooms.manager import ROOMS
from tests.conftest import PASSWORD
from tests.signalling_client import SUBPROTOCOL, Signalling

DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"
ROLES = ("anonymous", "caller", "agent", "supervisor", "dpo", "admin")
STAFF = {"agent": "anna", "supervisor": "sue", "dpo": "dora", "admin": "adam"}
ROW = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) ([^`]+)` \|(.*)$")


def read_matrix() -> dict[tuple[str, str], dict[str, str]]:
    matrix: dict[tuple[str, str], dict[str, str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if not m:
            continue
        cells = [c.strip() for c in m.group(3).split("|")][: len(ROLES)]
        assert len(cells) == len(ROLES) and all(
            c in ("yes", "own", "401", "403", "404", "410") for c in cells
        ), line
        key = (m.group(1), m.group(2))
        assert key not in matrix, f"listed twice: {key}"
        matrix[key] = dict(zip(ROLES, cells, strict=True))
    return matrix


async def audit_after(server: Any, seq: int) -> list[dict[str, Any]]:
    query = sa.select(audit_log).where(audit_log.c.seq > seq).order_by(audit_log.c.seq)
    async with server.db.engine.connect() as conn:
        return [dict(r._mapping) for r in (await conn.execute(query)).all()]


async def audit_head(server: Any) -> int:
    async with server.db.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.max(audit_log.c.seq)))).scalar() or 0)


def registered_routes(app: Any) -> set[tuple[str, str]]:
    return {
        (r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"
    }


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 120, 200)).save(out, "PNG")
    return out.getvalue()


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(out, "JPEG")
    return out.getvalue()


@dataclass
class Who:
    role: str
    http: aiohttp.ClientSession
    name: str | None = None
    csrf: str = ""


@dataclass
class Scene:
    """One of anna's sessions, and what a route needs of it."""

    sid: str
    link: str
    caller: aiohttp.ClientSession | None = None
    sig: Signalling | None = None
    photo: str = ""
    blob: str = ""


@dataclass
class Ctx:
    server: Any
    staff: dict[str, Who] = field(default_factory=dict)
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)
    sigs: list[Signalling] = field(default_factory=list)

    async def login(self, name: str) -> tuple[aiohttp.ClientSession, str]:
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.sessions.append(http)
        async with http.post(self.server.url + "/api/login", json={"username": name,
                             "password": PASSWORD}, headers=self.origin) as r:  # fmt: skip
            assert r.status == 200
            return http, (await r.json())["csrf"]

    @property
    def origin(self) -> dict[str, str]:
        return {"Origin": self.server.url}

    async def scene(self, *, caller: bool = False, accept: bool = False, photo: bool = False,
                    blob: bool = False, camera: bool = False) -> Scene:  # fmt: skip
        anna = self.staff["agent"]
        status, body = await self.request(anna, "POST", "/api/sessions",
                                          json={"phone": "20000012"})  # fmt: skip
        assert status == 201, body
        scene = Scene(body["session"]["id"], body["link"])
        if caller or accept or photo or camera:
            scene.sig = await Signalling.caller(self.server.url, scene.link)
            scene.caller = scene.sig.http
            self.sigs.append(scene.sig)
            if accept or photo or camera:
                notice = scene.sig.welcome["notice"]["version"]
                await scene.sig.send({"type": "accept", "notice": notice})
                await scene.sig.wait_room(status="accepted")
        if photo:
            who = Who("caller", scene.caller)  # type: ignore[arg-type]
            status, body = await self.request(who, "POST", "/api/caller/photos", data=jpeg())
            assert status == 201, body
            scene.photo = body["photo"]["id"]
        if blob:
            status, body = await self.request(anna, "POST",
                                              f"/api/sessions/{scene.sid}/blobs?kind=image",
                                              data=png())  # fmt: skip
            assert status == 201, body
            scene.blob = body["blob"]["id"]
        if camera:  # the caller's camera is live (as the media layer would say)
            live = self.server.app[ROOMS].get(scene.sid)
            live.room.tracks["camera"] = True
        return scene

    async def request(
        self, who: Who, method: str, path: str, *, json: Any = None,
        data: bytes | None = None, redirects: bool = False,
    ) -> tuple[int, Any]:  # fmt: skip
        headers = dict(self.origin)
        if who.csrf:
            headers["X-CSRF-Token"] = who.csrf
        async with who.http.request(method, self.server.url + path, json=json, data=data,
                                    headers=headers, allow_redirects=redirects) as r:  # fmt: skip
            body = await r.read()
            try:
                import json as json_mod

                return r.status, json_mod.loads(body)
            except ValueError:
                return r.status, body

    async def ws(self, who: Who, path: str) -> tuple[int, Any]:
        try:
            url = self.server.url.replace("http", "ws", 1) + path
            ws = await who.http.ws_connect(url, protocols=(SUBPROTOCOL,), origin=self.server.url)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, None
        msg = await ws.receive_json(timeout=10)
        await ws.close()
        assert msg["type"] == "welcome", msg
        return 101, None


# --- how to call each route: (success status, scene needs, call) -------------------------

Call = Callable[[Ctx, Who, Scene], Awaitable[tuple[int, Any]]]


def get(path: str, **kw: Any) -> Call:
    return lambda c, w, s: c.request(w, "GET", path.format(s=s), **kw)


def post(path: str, **kw: Any) -> Call:
    def call(c: Ctx, w: Who, s: Scene) -> Awaitable[tuple[int, Any]]:
        body = kw.get("json")
        return c.request(w, "POST", path.format(s=s), json=body(s) if callable(body) else body,
                         data=kw.get("data"))  # fmt: skip
    return call


def ws(path: str) -> Call:
    return lambda c, w, s: c.ws(w, path.format(s=s))


async def link_page(c: Ctx, w: Who, s: Scene) -> tuple[int, Any]:
    if w.role == "caller":  # a caller's browser (of scene s) opens another session's link
        s = await c.scene()
    return await c.request(w, "GET", "/j/" + s.link.rsplit("/", 1)[1])


async def open_link(c: Ctx, w: Who, s: Scene) -> tuple[int, Any]:
    if w.role == "caller":  # a caller's browser (of scene s) opens another session's link
        s = await c.scene()
    result = await c.request(w, "POST", "/j/" + s.link.rsplit("/", 1)[1])
    if w.role != "caller":
        w.http.cookie_jar.clear(lambda m: "caller" in m.key)  # the staff browser stays staff
    return result


async def login(c: Ctx, w: Who, s: Scene) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as fresh:  # logging in replaces the role's login
        return await c.request(Who(w.role, fresh), "POST", "/api/login",
                               json={"username": "lena", "password": PASSWORD})  # fmt: skip


async def logout(c: Ctx, w: Who, s: Scene) -> tuple[int, Any]:
    if w.name is None:
        return await c.request(w, "POST", "/api/logout")
    http, csrf = await c.login(w.name)  # a login of its own: the role's stays usable
    return await c.request(Who(w.role, http, w.name, csrf), "POST", "/api/logout")


async def stream(c: Ctx, w: Who, s: Scene) -> tuple[int, Any]:
    async with w.http.get(c.server.url + "/api/ops/stream") as r:
        return r.status, None


def new_user(s: Scene) -> dict[str, str]:
    return {"username": "u" + uuid.uuid4().hex[:8], "password": PASSWORD, "role": "agent"}


async def update_user(c: Ctx, w: Who, s: Scene) -> tuple[int, Any]:
    name = "v" + uuid.uuid4().hex[:8]
    await c.server.add_user(name)
    return await c.request(w, "POST", f"/api/admin/users/{name}", json={"disabled": True})


async def redeem(c: Ctx, w: Who, s: Scene) -> tuple[int, Any]:
    """A staff link anna made for her session, redeemed by `w`."""
    status, body = await c.request(c.staff["agent"], "POST", f"/api/sessions/{s.sid}/staff-link")
    assert status == 200, body
    token = body["link"].rsplit("/x/", 1)[1]
    return await c.request(w, "POST", "/api/staff-links/redeem", json={"token": token})


async def expert_ws(c: Ctx, w: Who, s: Scene) -> tuple[int, Any]:
    """Anna redeemed a staff link of the room first (her "own"); anyone else did not."""
    if w.name == c.staff["agent"].name:
        status, _ = await redeem(c, w, s)
        assert status == 200
    return await c.ws(w, f"/ws/expert/{s.sid}")


SID = "/api/sessions/{s.sid}"
ROUTES: dict[tuple[str, str], tuple[int, dict[str, bool], Call]] = {
    ("GET", "/"): (302, {}, get("/")),
    ("GET", "/agent"): (200, {}, get("/agent")),
    ("GET", "/ops"): (200, {}, get("/ops")),
    ("GET", "/dpo"): (200, {}, get("/dpo")),
    ("GET", "/admin"): (200, {}, get("/admin")),
    ("GET", "/c"): (200, {}, get("/c")),
    ("GET", "/j/{token}"): (200, {}, link_page),
    ("POST", "/j/{token}"): (303, {}, open_link),
    ("GET", "/healthz"): (200, {}, get("/healthz")),
    ("GET", "/readyz"): (200, {}, get("/readyz")),
    ("GET", "/metrics"): (200, {}, get("/metrics")),
    ("GET", "/api/openapi.json"): (200, {}, get("/api/openapi.json")),
    ("GET", "/static"): (200, {}, get("/static/style.css")),
    ("GET", "/api/caller/notice"): (200, {}, get("/api/caller/notice?lang=en")),
    ("POST", "/api/login"): (200, {}, login),
    ("POST", "/api/logout"): (204, {}, logout),
    ("GET", "/api/me"): (200, {}, get("/api/me")),
    ("GET", "/api/login/options"): (200, {}, get("/api/login/options")),
    ("POST", "/api/sessions"): (201, {}, post("/api/sessions", json={"phone": "20000013"})),
    ("GET", "/api/sessions"): (200, {}, get("/api/sessions")),
    ("GET", "/api/sessions/{session_id}"): (200, {}, get(SID)),
    ("POST", "/api/sessions/{session_id}/link"): (200, {}, post(SID + "/link")),
    ("POST", "/api/sessions/{session_id}/sms"): (200, {}, post(SID + "/sms",
                                                  json=lambda s: {"link": s.link})),
    ("POST", "/api/sessions/{session_id}/end"): (200, {}, post(SID + "/end")),
    ("GET", "/api/sessions/{session_id}/report"): (200, {}, get(SID + "/report")),
    ("POST", "/api/sessions/{session_id}/recording"): (200, {}, post(
        SID + "/recording", json={"action": "stop"})),
    ("GET", "/api/sessions/{session_id}/recordings"): (200, {}, get(SID + "/recordings")),
    ("POST", "/api/sessions/{session_id}/snapshot"): (202, {"camera": True},
                                                      post(SID + "/snapshot")),
    ("GET", "/api/sessions/{session_id}/photos"): (200, {}, get(SID + "/photos")),
    ("GET", "/api/sessions/{session_id}/photos/{photo_id}"): (200, {"photo": True}, get(
        SID + "/photos/{s.photo}")),
    ("POST", "/api/sessions/{session_id}/inspect"): (200, {"photo": True}, post(
        SID + "/inspect", json=lambda s: {"photo": s.photo})),
    ("POST", "/api/sessions/{session_id}/inspect/reference"): (200, {}, post(
        SID + "/inspect/reference", json={"value": "00:1A:2B:3C:4D:5E"})),
    ("POST", "/api/sessions/{session_id}/blobs"): (201, {}, post(SID + "/blobs?kind=image",
                                                                  data=png())),
    ("POST", "/api/sessions/{session_id}/freeze/snapshot"): (201, {}, post(
        SID + "/freeze/snapshot", data=jpeg())),
    ("GET", "/api/sessions/{session_id}/chat"): (200, {}, get(SID + "/chat")),
    ("GET", "/ws/agent/{room_id}"): (101, {}, ws("/ws/agent/{s.sid}")),
    ("GET", "/ws/caller"): (101, {}, ws("/ws/caller")),
    ("POST", "/api/caller/photos"): (201, {"accept": True}, post("/api/caller/photos",
                                                                  data=jpeg())),
    ("POST", "/api/caller/blobs"): (201, {"accept": True}, post("/api/caller/blobs?kind=still",
                                                                 data=jpeg())),
    ("GET", "/api/caller/receipt"): (200, {}, get("/api/caller/receipt")),
    ("GET", "/api/rooms/{room_id}/blobs/{blob_id}"): (200, {"blob": True}, get(
        "/api/rooms/{s.sid}/blobs/{s.blob}")),
    ("GET", "/api/tutorials"): (200, {}, get("/api/tutorials")),
    ("GET", "/api/tutorials/{tutorial_id}"): (200, {}, get("/api/tutorials/router-restart")),
    ("GET", "/api/tutorials/{tutorial_id}/{name}"): (200, {}, get(
        "/api/tutorials/router-restart/1.png")),
    ("GET", "/api/ops/snapshot"): (200, {}, get("/api/ops/snapshot")),
    ("GET", "/api/ops/stream"): (200, {}, stream),
    ("POST", "/api/ops/rooms/{room_id}/end"): (200, {}, post(
        "/api/ops/rooms/{s.sid}/end", json={"reason": "matrix test"})),
    ("GET", "/ws/watch/{room_id}"): (101, {}, ws("/ws/watch/{s.sid}")),
    ("GET", "/ws/join/{room_id}"): (101, {}, ws("/ws/join/{s.sid}")),
    ("GET", "/ws/expert/{room_id}"): (101, {}, expert_ws),
    ("POST", "/api/sessions/{session_id}/staff-link"): (200, {}, post(SID + "/staff-link")),
    ("POST", "/api/sessions/{session_id}/hand-over"): (200, {}, post(
        SID + "/hand-over", json={"username": "lena"})),
    ("POST", "/api/staff-links/redeem"): (200, {}, redeem),
    ("GET", "/x/{token}"): (200, {}, get("/x/" + "t" * 32)),
    ("POST", "/api/dpo/search"): (200, {}, post("/api/dpo/search", json={"phone": "20000012"})),
    ("POST", "/api/dpo/export"): (200, {}, post("/api/dpo/export", json={"phone": "20000099"})),
    ("POST", "/api/dpo/erase"): (200, {}, post("/api/dpo/erase", json={
        "phone": "20000099", "confirm": "20000099"})),
    ("POST", "/api/dpo/objection"): (200, {}, post("/api/dpo/objection", json={
        "phone": "20000099", "do_not_record": True})),
    ("POST", "/api/dpo/sessions/{session_id}/rectify"): (200, {}, post(
        "/api/dpo/sessions/{s.sid}/rectify", json={"reference": "T-2", "reason": "test"})),
    ("GET", "/api/dpo/audit"): (200, {}, get("/api/dpo/audit?limit=5")),
    ("GET", "/api/admin/users"): (200, {}, get("/api/admin/users")),
    ("POST", "/api/admin/users"): (201, {}, post("/api/admin/users", json=new_user)),
    ("POST", "/api/admin/users/{username}"): (200, {}, update_user),
    ("GET", "/api/admin/status"): (200, {}, get("/api/admin/status")),
    ("GET", "/api/admin/config"): (200, {}, get("/api/admin/config")),
    ("GET", "/api/admin/nodes"): (200, {}, get("/api/admin/nodes")),
    # One node here: the admin's answer is 409 no_cluster (test_admin_page: a real cluster).
    ("POST", "/api/admin/nodes/{node_id}/drain"): (409, {}, post(
        "/api/admin/nodes/n1/drain", json={"drain": True})),
    ("GET", "/api/admin/webhooks"): (200, {}, get("/api/admin/webhooks")),
    # No dead letter here: 404 (test_admin_page replays a real one).
    ("POST", "/api/admin/webhooks/{event_id}/replay"): (404, {}, post(
        "/api/admin/webhooks/evt_00/replay")),
}


# Routes that use no session of the test: answered from the shared one.
NO_SCENE = {
    ("GET", p) for p in ("/", "/agent", "/ops", "/dpo", "/admin", "/c", "/healthz", "/readyz",
                         "/metrics",
                         "/api/openapi.json", "/static", "/api/caller/notice", "/api/me",
                         "/api/login/options", "/api/sessions", "/api/tutorials",
                         "/api/tutorials/{tutorial_id}",
                         "/api/tutorials/{tutorial_id}/{name}", "/api/ops/snapshot",
                         "/api/ops/stream", "/api/dpo/audit", "/api/admin/users",
                         "/api/admin/status", "/api/admin/config", "/api/admin/nodes",
                         "/api/admin/webhooks", "/api/caller/receipt", "/x/{token}")
} | {("POST", p) for p in ("/api/login", "/api/logout", "/api/sessions", "/api/dpo/search",
                          "/api/dpo/export", "/api/dpo/erase", "/api/dpo/objection",
                          "/api/admin/users", "/api/admin/users/{username}",
                          "/api/admin/nodes/{node_id}/drain",
                          "/api/admin/webhooks/{event_id}/replay")}  # fmt: skip


def test_every_route_is_in_the_matrix(server: Any) -> None:
    matrix = read_matrix()
    routes = registered_routes(server.app)
    assert routes - set(matrix) == set(), "routes without a row in docs/security.md"
    assert set(matrix) - routes == set(), "rows in docs/security.md without a route"
    assert set(ROUTES) == routes, "routes this test does not know how to call"


@pytest.fixture(params=["sqlite", "postgresql"])
async def matrix_server(request: pytest.FixtureRequest, make_server: Any) -> Any:
    """Like any_db_server, with room for the many logins and link opens of the walk."""
    sections: dict[str, Any] = {"auth": {"login_attempts_per_minute": 10_000},
                                "session": {"link_opens_per_minute": 10_000,
                                            "max_live_rooms_per_agent": 10_000},
                                "sms": {"max_per_session": 10_000,
                                        "max_per_agent_per_hour": 10_000}}  # fmt: skip
    if request.param == "postgresql":
        pg = request.getfixturevalue("postgres")
        sections["storage"] = {"database_url": pg.create_database("t" + uuid.uuid4().hex[:16])}
    return await make_server(**sections)


async def test_matrix(matrix_server: Any) -> None:
    server = matrix_server
    matrix = read_matrix()
    assert set(matrix) == registered_routes(server.app)
    for name, role in (("anna", "agent"), ("boris", "agent"), ("lena", "agent"),
                       ("sue", "supervisor"), ("dora", "dpo"), ("adam", "admin")):  # fmt: skip
        await server.add_user(name, role)
    ctx = Ctx(server)
    for role, name in STAFF.items():
        http, csrf = await ctx.login(name)
        ctx.staff[role] = Who(role, http, name, csrf)
    http, csrf = await ctx.login("boris")
    boris = Who("agent", http, "boris", csrf)
    anonymous = Who("anonymous", aiohttp.ClientSession())
    ctx.sessions.append(anonymous.http)
    # For refused cells (the handler never runs) and routes that use no session.
    shared = await ctx.scene(photo=True, blob=True)
    audit = server.app[AUDIT]
    failures: list[str] = []
    try:
        for (method, path), cells in sorted(matrix.items()):
            success, needs, call = ROUTES[(method, path)]
            for role in ROLES:
                expect = cells[role]
                allowed = expect in ("yes", "own")
                needs_caller = role == "caller" or bool(needs)
                fresh = allowed and (method, path) not in NO_SCENE
                scene = await ctx.scene(caller=needs_caller, **needs) if fresh else shared
                if role == "caller":
                    who = Who("caller", scene.caller)  # type: ignore[arg-type]
                elif role == "anonymous":
                    who = anonymous
                else:
                    who = ctx.staff[role]
                seq = await audit_head(server)
                status, body = await call(ctx, who, scene)
                want = success if allowed else int(expect)
                label = f"{method} {path} as {role}: expected {want} ({expect}), got {status}"
                if status != want:
                    failures.append(f"{label} {str(body)[:200]}")
                    continue
                new = await audit_after(server, seq)
                if expect == "403" and not any(
                    r["actor"] == who.name and r["result"] == "denied"
                    and r["action"] == f"{method} {path}" for r in new
                ):  # fmt: skip
                    failures.append(f"{label}, but no audit event: {new}")
                if expect == "own":
                    # Another agent: the same 404 as for an unknown session, and audited.
                    other = await ctx.scene(caller=needs_caller, **needs)
                    status, _ = await call(ctx, boris, other)
                    # (A WebSocket upgrade says 403: its page shows the refusal.)
                    if status != (403 if path.startswith("/ws/") else 404):
                        failures.append(f"{method} {path} as another agent: {status}, not 404")
                    elif not any(r["actor"] == "boris" and r["result"] == "denied"
                                 for r in await audit_after(server, seq)):  # fmt: skip
                        failures.append(f"{method} {path} as another agent: 404 not audited")
        assert not failures, "\n".join(failures)
        assert (await audit.verify()).ok
    finally:
        for sig in ctx.sigs:
            await sig.close()
        for http in ctx.sessions:
            await http.close()
