"""/api/openapi.json describes every route the app serves, with the roles of
docs/security.md's matrix, and the answers of a real server fit the documented shapes."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from tests.conftest import PASSWORD
from tests.test_roles import read_matrix

METHODS = ("get", "post", "put", "patch", "delete")


async def fetch_doc(server: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/api/openapi.json") as r:
        assert r.status == 200 and r.content_type == "application/json"
        return json.loads(await r.text())


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    return {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
        and not isinstance(r.resource, web.StaticResource)
    }  # fmt: skip


def documented(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method in METHODS
    }


async def test_every_route_is_documented(server: Any) -> None:
    doc = await fetch_doc(server)
    validate_openapi(doc)  # a valid OpenAPI 3.1 document
    served, listed = served_routes(server.app), set(documented(doc))
    assert len(served) > 40  # the walk found the router
    missing = sorted(f"{m} {p}" for m, p in served - listed)
    extra = sorted(f"{m} {p}" for m, p in listed - served)
    assert not missing, f"served but not in openapi.json: {missing}"
    assert not extra, f"in openapi.json but not served: {extra}"


async def test_each_operation_says_what_it_takes_and_answers(server: Any) -> None:
    doc = await fetch_doc(server)
    error = {"$ref": "#/components/schemas/Error"}
    for (method, path), op in documented(doc).items():
        where = f"{method} {path}"
        # /metrics: no role at all, only Prometheus' bearer token (docs/ops.md, "Metrics")
        assert op["summary"] and op["tags"] and (op["x-roles"] or path == "/metrics"), where
        assert "Who may call it:" in op["description"], where
        codes = [int(c) for c in op["responses"]]
        assert any(c < 400 for c in codes), f"{where}: no success answer"
        for code, resp in op["responses"].items():
            assert resp["description"], f"{where} {code}"
            body = resp.get("content", {}).get("application/json", {}).get("schema")
            if int(code) >= 400 and body is not None and path != "/readyz":
                assert body == error, f"{where} {code}: errors are {{'error': {{...}}}}"
        if method == "POST" and path not in ("/api/logout",):
            assert "requestBody" in op or op.get("parameters"), f"{where}: what does it take?"
        if "anonymous" not in op["x-roles"] and path != "/metrics":
            assert op["security"], f"{where}: which credential?"


async def test_roles_are_the_matrix_of_docs_security(server: Any) -> None:
    doc = await fetch_doc(server)
    matrix = read_matrix()
    for key, op in documented(doc).items():
        assert key in matrix, f"{key} not in docs/security.md"
        allowed = {role: cell for role, cell in matrix[key].items() if cell in ("yes", "own")}
        assert op["x-roles"] == allowed, f"{key}: openapi {op['x-roles']} != matrix {allowed}"


# --- real answers against the documented shapes ------------------------------------------


class Checker:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, int]] = set()

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        op = self.doc["paths"][path][method.lower()]
        assert str(status) in op["responses"], f"{method} {path}: {status} is not documented"
        content = op["responses"][str(status)].get("content", {})
        schema = content.get("application/json", {}).get("schema")
        assert schema is not None, f"{method} {path} {status}: no JSON schema"
        # "#/components/..." resolves against the schema's root: give it the components.
        root = {**schema, "components": self.doc["components"]}
        errors = sorted(Draft202012Validator(root).iter_errors(body), key=str)
        assert not errors, f"{method} {path} {status}: {errors[0].message} in {body}"
        self.seen.add((method, path, status))


async def call(
    http: aiohttp.ClientSession, server: Any, method: str, url: str, **kw: Any
) -> tuple[int, Any]:
    async with http.request(method, server.url + url, **kw) as r:
        text = await r.text()
        return r.status, (json.loads(text) if r.content_type == "application/json" else None)


@pytest.mark.parametrize("role", ["supervisor", "dpo", "admin"])
async def test_answers_fit_the_documented_shapes(server: Any, role: str) -> None:
    ck = Checker(await fetch_doc(server))
    anna = await server.agent()
    for path in ("/healthz", "/readyz", "/api/caller/notice"):
        ck.check("GET", path, *(await call(anna.http, server, "GET", path)))
    ck.check("GET", "/api/me", *(await call(anna.http, server, "GET", "/api/me")))
    s, created = await anna.post("/api/sessions", {"phone": "20000012", "reference": "T-1"})
    ck.check("POST", "/api/sessions", s, created)
    sid = created["session"]["id"]
    p = "/api/sessions/{session_id}"
    ck.check("GET", "/api/sessions", *(await anna.get("/api/sessions")))
    ck.check("GET", p, *(await anna.get(f"/api/sessions/{sid}")))
    ck.check("GET", p, *(await anna.get("/api/sessions/s-nothing")))  # 404, the error shape
    s, body = await anna.post("/api/sessions", {"phone": "no"})
    ck.check("POST", "/api/sessions", s, body)  # 400
    ck.check("POST", p + "/link", *(await anna.post(f"/api/sessions/{sid}/link")))
    ck.check("GET", p + "/recordings", *(await anna.get(f"/api/sessions/{sid}/recordings")))
    ck.check("GET", p + "/photos", *(await anna.get(f"/api/sessions/{sid}/photos")))
    ck.check("GET", p + "/chat", *(await anna.get(f"/api/sessions/{sid}/chat")))
    ck.check("GET", "/api/tutorials", *(await anna.get("/api/tutorials")))
    ck.check("POST", p + "/recording",
             *(await anna.post(f"/api/sessions/{sid}/recording", {"action": "dance"})))  # fmt: skip
    ck.check("POST", p + "/end", *(await anna.post(f"/api/sessions/{sid}/end")))
    ck.check("GET", p + "/report", *(await anna.get(f"/api/sessions/{sid}/report")))

    name = {"supervisor": "sue", "dpo": "dora", "admin": "adam"}[role]
    await server.add_user(name, role)
    staff = aiohttp.ClientSession(headers={"Origin": server.url},
                                  cookie_jar=aiohttp.CookieJar(unsafe=True))  # fmt: skip
    try:
        s, body = await call(staff, server, "POST", "/api/login",
                             json={"username": name, "password": PASSWORD})  # fmt: skip
        ck.check("POST", "/api/login", s, body)
        csrf = {"X-CSRF-Token": body["csrf"]}
        ck.check("POST", "/api/sessions",  # another role: 403, the error shape
                 *(await call(staff, server, "POST", "/api/sessions", json={"phone": "1"},
                              headers=csrf)))  # fmt: skip
        if role == "supervisor":
            ck.check("GET", "/api/ops/snapshot",
                     *(await call(staff, server, "GET", "/api/ops/snapshot")))  # fmt: skip
            ck.check(
                "GET",
                p + "/report",
                *(await call(staff, server, "GET", f"/api/sessions/{sid}/report")),
            )
        elif role == "dpo":
            for path, extra in (("/api/dpo/search", {}),
                                ("/api/dpo/objection", {"do_not_record": False}),
                                ("/api/dpo/erase", {"confirm": "20000099"})):  # fmt: skip
                ck.check("POST", path, *(await call(
                    staff, server, "POST", path, json={"phone": "20000012", **extra},
                    headers=csrf)))  # fmt: skip
            ck.check("POST", "/api/dpo/sessions/{session_id}/rectify", *(await call(
                staff, server, "POST", f"/api/dpo/sessions/{sid}/rectify",
                json={"reference": "T-2", "reason": "ticket 7"}, headers=csrf)))  # fmt: skip
            ck.check("GET", "/api/dpo/audit", *(await call(staff, server, "GET", "/api/dpo/audit")))
        else:
            ck.check("GET", "/api/admin/users",
                     *(await call(staff, server, "GET", "/api/admin/users")))  # fmt: skip
            ck.check("POST", "/api/admin/users", *(await call(
                staff, server, "POST", "/api/admin/users", headers=csrf,
                json={"username": "bob", "password": PASSWORD, "role": "agent"})))  # fmt: skip
            ck.check("POST", "/api/admin/users/{username}", *(await call(
                staff, server, "POST", "/api/admin/users/bob", headers=csrf,
                json={"disabled": True})))  # fmt: skip
            ck.check("GET", "/api/admin/status",
                     *(await call(staff, server, "GET", "/api/admin/status")))  # fmt: skip
            for path in ("/api/admin/config", "/api/admin/nodes", "/api/admin/webhooks"):
                ck.check("GET", path, *(await call(staff, server, "GET", path)))
            ck.check("POST", "/api/admin/nodes/{node_id}/drain", *(await call(
                staff, server, "POST", "/api/admin/nodes/n1/drain", headers=csrf,
                json={"drain": True})))  # fmt: skip
            replay = "/api/admin/webhooks/{event_id}/replay"
            url = replay.format(event_id="evt_0")
            ck.check("POST", replay, *(await call(staff, server, "POST", url, headers=csrf)))
    finally:
        await staff.close()
    assert len(ck.seen) >= 20
