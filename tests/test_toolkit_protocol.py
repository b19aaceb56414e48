"""Visual-assist toolkit without a browser: message validation, relay, uploads, tutorials."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.signalling import messages as P
from server.toolkit.messages import check_link
from tests.signalling_client import Signalling


def _png(w: int = 4, h: int = 3) -> bytes:
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * w for _ in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def parse(msg: dict[str, Any], role: str) -> dict[str, Any]:
    return P.parse(json.dumps(msg), role).data


def refused(msg: dict[str, Any], role: str) -> str:
    with pytest.raises(P.ProtocolError) as info:
        P.parse(json.dumps(msg), role)
    return info.value.code


# --- validation (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "role", "code"),
    [
        ({"type": "pointer", "x": 1.2, "y": 0.5}, "agent", "bad_message"),
        ({"type": "pointer", "x": "0.5", "y": 0.5}, "agent", "bad_message"),
        ({"type": "pointer", "x": True, "y": 0.5}, "agent", "bad_message"),
        ({"type": "pointer", "x": 0.5, "y": 0.5}, "caller", "not_allowed"),
        ({"type": "mark", "id": "m1", "shape": "path", "pts": []}, "agent", "bad_message"),
        ({"type": "mark", "id": "m 1", "shape": "path", "pts": [[0, 0]]}, "agent", "bad_message"),
        (
            {"type": "mark", "id": "m1", "shape": "arrow", "pts": [[0, 0]]},
            "agent",
            "bad_message",
        ),
        (
            {"type": "mark", "id": "m1", "shape": "path", "pts": [[0, 0]], "color": "#f00"},
            "agent",
            "bad_message",
        ),
        ({"type": "mark", "id": "m1", "shape": "text", "pts": [[0, 0]]}, "agent", "bad_message"),
        ({"type": "mark", "id": "m1", "shape": "blob", "pts": [[0, 0]]}, "agent", "bad_message"),
        ({"type": "mark", "id": "m1", "shape": "path", "pts": [[0, 0]]}, "caller", "not_allowed"),
        ({"type": "freeze"}, "agent", "bad_message"),  # the agent names its uploaded frame
        (
            {"type": "camera_request", "id": 1, "action": "torch", "value": 1},
            "agent",
            "bad_message",
        ),
        (
            {"type": "camera_request", "id": 1, "action": "zoom", "value": 500},
            "agent",
            "bad_message",
        ),
        (
            {"type": "camera_request", "id": 1, "action": "mode", "value": "hd"},
            "agent",
            "bad_message",
        ),
        (
            {"type": "camera_request", "id": 1, "action": "torch", "value": True},
            "caller",
            "not_allowed",
        ),
        (
            {"type": "caps", "zoom": {"min": 1, "max": 2, "step": 0.1, "value": 3}},
            "caller",
            "bad_message",
        ),
        ({"type": "caps"}, "agent", "not_allowed"),
        ({"type": "push", "kind": "link", "url": "javascript:alert(1)"}, "agent", "bad_url"),
        ({"type": "push", "kind": "link", "url": "data:text/html,<b>x</b>"}, "agent", "bad_url"),
        ({"type": "push", "kind": "tutorial", "tutorial": "../etc"}, "agent", "bad_message"),
        ({"type": "push", "kind": "link", "url": "https://example.eu"}, "caller", "not_allowed"),
        ({"type": "chat", "text": "   "}, "caller", "bad_message"),
        ({"type": "chat", "text": "x" * 1001}, "agent", "bad_message"),
        ({"type": "chat_receipt", "n": 0, "state": "read"}, "caller", "bad_message"),
        ({"type": "netq", "score": 6}, "caller", "bad_message"),
        ({"type": "netq", "score": 3, "rtt": float("1e9")}, "agent", "bad_message"),
        ({"type": "still", "image": "b1"}, "agent", "not_allowed"),
        ({"type": "pointer", "x": 0.5, "y": 0.5, "pad": "x" * 700}, "agent", "bad_message"),
    ],
)
def test_toolkit_messages_refused(msg: dict[str, Any], role: str, code: str) -> None:
    assert refused(msg, role) == code


def test_toolkit_messages_cleaned() -> None:
    out = parse(
        {"type": "mark", "id": "m-1", "shape": "text", "pts": [[0.123456, 1]], "text": "<b>",
         "extra": {"evil": 1}, "ar": 1.5},
        "agent",
    )  # fmt: skip
    assert out == {
        "type": "mark", "id": "m-1", "shape": "text", "on": "camera", "color": "red",
        "pin": False, "pts": [[0.1235, 1.0]], "text": "<b>", "ar": 1.5,
    }  # fmt: skip
    assert parse({"type": "pointer", "x": None, "y": None}, "agent")["x"] is None
    assert parse({"type": "freeze", "frame": "bx"}, "caller") == {"type": "freeze"}
    caps = parse({"type": "caps", "torch": False, "zoom": None, "junk": 1}, "caller")
    assert caps["zoom"] is None and "junk" not in caps and caps["mode"] == "normal"
    assert parse({"type": "chat", "text": "<script>x</script>"}, "caller")["text"] == (
        "<script>x</script>"
    )  # relayed as text; pages never interpret it


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "vbscript:msgbox",
        "file:///etc/passwd",
        "ftp://example.eu/",
        "//example.eu/x",
        "https://",
        "https://bank.example@evil.example/",
        "https://user:pw@example.eu/",
        "https://exa mple.eu/",
        "https://example.eu/\nx",
        "https://" + "a" * 2000 + ".eu",
        "http://[::1",
    ],
)
def test_bad_links(url: str) -> None:
    with pytest.raises(Exception) as info:
        check_link(url)
    assert getattr(info.value, "code", None) == "bad_url"


def test_good_links() -> None:
    assert check_link("https://Example.EU/help?q=1#x") == (
        "https://Example.EU/help?q=1#x",
        "example.eu",
    )
    assert check_link("HTTP://example.eu:8080/")[1] == "example.eu:8080"
    assert check_link("https://rīga.lv/")[1] == "xn--rga-uta.lv"


# --- over a real server -------------------------------------------------------------------------


async def _room(server: Any) -> tuple[Any, Signalling, Signalling, str]:
    agent = await server.agent()
    created = await agent.new_session()
    room = created["session"]["id"]
    caller = await Signalling.caller(server.url, created["link"])
    await caller.send({"type": "accept", "notice": caller.welcome["notice"]["version"]})
    await caller.wait_room(status="accepted")
    ws = await Signalling.agent(server.url, agent.http, room)
    return agent, caller, ws, room


async def _upload(agent: Any, room: str, kind: str, body: bytes) -> tuple[int, Any]:
    async with agent.http.post(
        f"{agent.server.url}/api/sessions/{room}/blobs?kind={kind}",
        data=body,
        headers={"X-CSRF-Token": agent.csrf, "Content-Type": "application/octet-stream"},
    ) as r:
        return r.status, await r.json()


async def test_toolkit_settings_chat_and_receipts(server) -> None:  # type: ignore[no-untyped-def]
    agent, caller, ws, room = await _room(server)
    settings = ws.welcome["toolkit"]
    assert settings["fade_s"] == 4.0 and settings["max_frame_bytes"] == 300_000
    assert caller.welcome["toolkit"] == settings
    payload = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    await caller.send({"type": "chat", "text": payload, "cid": "c1"})
    mine = await caller.expect("chat")
    theirs = await ws.expect("chat")
    assert mine == theirs
    assert mine["text"] == payload and mine["from"] == "caller" and mine["n"] == 1
    assert mine["cid"] == "c1"
    await ws.send({"type": "chat", "text": "Labi, paldies"})
    assert (await caller.expect("chat", n=2))["from"] == "agent"
    await ws.send({"type": "chat_receipt", "n": 1, "state": "read"})
    receipt = await caller.expect("chat_receipt")
    assert receipt == {"type": "chat_receipt", "by": "agent", "n": 1, "state": "read"}
    # A receipt beyond the last message is clamped; repeating one says nothing new.
    await caller.send({"type": "chat_receipt", "n": 99, "state": "delivered"})
    assert (await ws.expect("chat_receipt"))["n"] == 2
    # The agent's page reloads: it gets the chat and the caller's receipt again.
    await ws.close()
    ws = await Signalling.agent(server.url, agent.http, room)
    assert [(await ws.expect("chat"))["n"] for _ in range(2)] == [1, 2]
    assert (await ws.expect("chat_receipt"))["state"] == "delivered"
    # Not kept in the session record by default.
    status, body = await agent.get(f"/api/sessions/{room}/chat")
    assert status == 200 and body == {"kept": False, "messages": []}
    await ws.close()
    await caller.close()


async def test_chat_kept_when_configured(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(toolkit={"keep_chat": True})
    agent, caller, ws, room = await _room(server)
    await caller.send({"type": "chat", "text": "hello"})
    await ws.expect("chat")
    status, body = await agent.get(f"/api/sessions/{room}/chat")
    assert status == 200 and body["kept"] is True
    assert [(m["n"], m["from"], m["text"]) for m in body["messages"]] == [(1, "caller", "hello")]
    other = await server.agent("boris")
    assert (await other.get(f"/api/sessions/{room}/chat"))[0] == 404
    await ws.close()
    await caller.close()


async def test_push_links_and_tutorials(server) -> None:  # type: ignore[no-untyped-def]
    agent, caller, ws, room = await _room(server)
    for url in ("javascript:alert(document.cookie)", "data:text/html,x", "https://a@b.eu"):
        await ws.send({"type": "push", "kind": "link", "url": url})
        err = await ws.expect("error")
        assert err["code"] == "bad_url" and err["ref"] == "push"
    await ws.send({"type": "push", "kind": "link", "url": "https://help.example.eu/router"})
    push = await caller.expect("push")
    assert push["host"] == "help.example.eu" and push["id"] == "p1"
    assert (await ws.expect("push"))["id"] == "p1"
    # Nothing of the refused links reached the caller.
    await caller.send({"type": "ping"})
    while (msg := await caller.recv())["type"] != "pong":
        assert msg["type"] != "push", msg

    status, body = await agent.get("/api/tutorials")
    assert status == 200
    assert [t["id"] for t in body["tutorials"]] == ["router-restart"]
    assert body["tutorials"][0]["title"]["lv"] and body["tutorials"][0]["steps"] == 3
    await ws.send({"type": "push", "kind": "tutorial", "tutorial": "no-such"})
    assert (await ws.expect("error"))["code"] == "not_found"
    await ws.send({"type": "push", "kind": "tutorial", "tutorial": "router-restart"})
    push = await caller.expect("push")
    assert push["src"] == "/api/tutorials/router-restart"
    await caller.send({"type": "push_state", "id": push["id"], "state": "shown", "step": 1})
    assert (await ws.expect("push_state"))["step"] == 1
    # The caller (its cookie) reads the tutorial and its images; a stranger cannot.
    async with caller.http.get(server.url + push["src"]) as r:
        assert r.status == 200
        tut = await r.json()
    assert tut["steps"][0]["image"] == "/api/tutorials/router-restart/1.png"
    async with caller.http.get(server.url + tut["steps"][0]["image"]) as r:
        assert r.status == 200 and r.content_type == "image/png"
        assert (await r.read()).startswith(b"\x89PNG")
    async with caller.http.get(server.url + "/api/tutorials/router-restart/tutorial.json") as r:
        assert r.status == 404
    async with caller.http.get(server.url + "/api/tutorials/router-restart/..%2f..%2fdb.py") as r:
        assert r.status == 404
    async with aiohttp.ClientSession() as stranger, stranger.get(server.url + push["src"]) as r:
        assert r.status == 404

    # Pushing an image: upload, then name it.
    status, up = await _upload(agent, room, "image", _png())
    assert status == 201
    await ws.send({"type": "push", "kind": "image", "image": up["blob"]["id"]})
    push = await caller.expect("push")
    async with caller.http.get(server.url + push["src"]) as r:
        assert r.status == 200 and r.content_type == "image/png"
    status, err = await _upload(agent, room, "image", b"<svg onload=alert(1)>")
    assert status == 415 and err["error"]["code"] == "bad_image"
    status, err = await _upload(agent, room, "frame", b"\xff\xd8\xff" + b"0" * 300_001)
    assert status == 413
    await ws.close()
    await caller.close()


async def test_freeze_flow_and_blob_access(server) -> None:  # type: ignore[no-untyped-def]
    agent, caller, ws, room = await _room(server)
    # The caller asks; the agent's page is told to take the still.
    await caller.send({"type": "freeze"})
    await ws.expect("freeze_request")
    jpeg = b"\xff\xd8\xff\xe0" + bytes(100)
    status, up = await _upload(agent, room, "frame", jpeg)
    assert status == 201
    await ws.send({"type": "freeze", "frame": "nope"})
    assert (await ws.expect("error"))["code"] == "not_found"
    await ws.send({"type": "freeze", "frame": up["blob"]["id"]})
    frozen = await caller.expect("frozen")
    assert frozen["by"] == "caller" and frozen == await ws.expect("frozen")
    async with caller.http.get(server.url + frozen["src"]) as r:
        assert r.status == 200 and await r.read() == jpeg
    async with aiohttp.ClientSession() as stranger:
        r = await stranger.get(server.url + frozen["src"])
        assert r.status == 404
    other_agent = await server.agent("boris")
    async with other_agent.http.get(server.url + frozen["src"]) as r:
        assert r.status == 404
    # Marks on the still get its frame id; they are replayed to a page that reconnects.
    await ws.send(
        {"type": "mark", "id": "a1", "shape": "circle", "pts": [[0.5, 0.5], [0.6, 0.5]],
         "on": "freeze"}
    )  # fmt: skip
    mark = await caller.expect("mark")
    assert mark["frame"] == frozen["frame"]
    await ws.close()
    ws = await Signalling.agent(server.url, agent.http, room)
    assert (await ws.expect("frozen"))["frame"] == frozen["frame"]
    assert (await ws.expect("mark"))["id"] == "a1"
    await caller.send({"type": "unfreeze"})
    assert (await ws.expect("unfrozen"))["by"] == "caller"
    await caller.expect("unfrozen")
    await ws.close()
    await caller.close()


async def test_requests_need_the_other_side_and_pointer_is_rate_limited(server) -> None:  # type: ignore[no-untyped-def]
    agent, caller, ws, room = await _room(server)
    await caller.close()
    await ws.send({"type": "camera_request", "id": 1, "action": "torch", "value": True})
    err = await ws.expect("error")
    assert err["code"] == "peer_absent" and err["ref"] == "camera_request"
    await ws.close()

    agent, caller, ws, room = await _room(server)
    await ws.send({"type": "camera_request", "id": 7, "action": "zoom", "value": 2.5})
    req = await caller.expect("camera_request")
    assert req == {"type": "camera_request", "id": 7, "action": "zoom", "value": 2.5}
    await caller.send({"type": "camera_result", "id": 7, "action": "zoom", "result": "unsupported"})
    assert (await ws.expect("camera_result"))["result"] == "unsupported"
    await caller.send({"type": "caps", "torch": False, "zoom": None, "can_switch": False})
    assert (await ws.expect("caps"))["torch"] is False
    # 80 pointer moves at once (within the connection's burst): extras above 30/s are
    # dropped without an error.
    for i in range(80):
        await ws.send({"type": "pointer", "x": i / 200, "y": 0.5})
    await ws.send({"type": "chat", "text": "done"})
    got = 0
    while (msg := await caller.recv())["type"] != "chat":
        got += msg["type"] == "pointer"
    assert 25 <= got <= 40, got
    await ws.send({"type": "ping"})
    while (msg := await ws.recv())["type"] != "pong":
        assert msg["type"] != "error", msg
    await ws.close()
    await caller.close()


async def test_caller_still_upload(server) -> None:  # type: ignore[no-untyped-def]
    agent, caller, ws, room = await _room(server)
    jpeg = b"\xff\xd8\xff\xe0" + bytes(50)
    async with caller.http.post(
        server.url + "/api/caller/blobs?kind=still", data=jpeg, headers={"Origin": server.url}
    ) as r:
        assert r.status == 201
        blob = (await r.json())["blob"]
    async with caller.http.post(
        server.url + "/api/caller/blobs?kind=still",
        data=jpeg,
        headers={"Origin": "https://evil.example"},
    ) as r:
        assert r.status == 403
    async with caller.http.post(
        server.url + "/api/caller/blobs?kind=image", data=jpeg, headers={"Origin": server.url}
    ) as r:
        assert r.status == 400
    await caller.send({"type": "still", "image": blob["id"]})
    still = await ws.expect("still")
    async with agent.http.get(server.url + still["src"]) as r:
        assert r.status == 200 and await r.read() == jpeg
    await ws.close()
    await caller.close()


def test_sample_tutorial_is_complete() -> None:
    from server.core.config import ToolkitConfig
    from server.toolkit.service import Toolkit

    kit = Toolkit(ToolkitConfig(), db=None)  # type: ignore[arg-type]
    tut = kit.load_tutorial("router-restart")
    assert tut is not None and len(tut["steps"]) == 3
    assert kit.load_tutorial("../router-restart") is None


def test_broken_tutorials_are_left_out(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from server.core.config import ToolkitConfig
    from server.toolkit.service import Toolkit

    good = tmp_path / "good"
    good.mkdir()
    (good / "a.png").write_bytes(_png())
    texts = {"lv": "a", "en": "b", "ru": "c"}
    (good / "tutorial.json").write_text(
        json.dumps({"title": texts, "steps": [{"image": "a.png", "text": texts}]})
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tutorial.json").write_text(
        json.dumps({"title": texts, "steps": [{"image": "../good/a.png", "text": texts}]})
    )
    (tmp_path / "nolang").mkdir()
    (tmp_path / "nolang" / "tutorial.json").write_text(
        json.dumps({"title": {"en": "x"}, "steps": [{"text": texts}]})
    )
    kit = Toolkit(ToolkitConfig(tutorials_dir=str(tmp_path)), db=None)  # type: ignore[arg-type]
    assert [t["id"] for t in kit.list_tutorials()] == ["good"]


# --- the pages ---------------------------------------------------------------------------------

WEB = Path(__file__).resolve().parent.parent / "web"
STATIC_IMPORT = re.compile(
    r"""^\s*import\s+(?:[^'"();]*?\s+from\s+)?["'](\.{1,2}/[\w./-]+)["']""", re.M
)


def _static_closure(names: list[str]) -> set[str]:
    """The files a page loads before any dynamic import(): its scripts and styles and
    every module they import statically (paths below web/, e.g. "lib/api.js")."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name.endswith(".js"):
            here = (WEB / name).parent
            for ref in STATIC_IMPORT.findall((WEB / name).read_text(encoding="utf-8")):
                todo.append((here / ref).resolve().relative_to(WEB).as_posix())
    return seen


def test_caller_page_weight_before_media() -> None:
    html = (WEB / "caller.html").read_text(encoding="utf-8")
    assets = re.findall(r'(?:src|href)="/static/([\w./-]+\.(?:js|css))"', html)
    before = _static_closure(assets)
    size = sum((WEB / n).stat().st_size for n in before)
    # The toolkit comes with the camera (a dynamic import in caller.js), not before it.
    later_only = ("toolkit", "overlay", "chat", "netq")
    assert not any(Path(n).name.startswith(later_only) for n in before), before
    assert size < 100_000, (size, sorted(before))
    toolkit = _static_closure(["toolkit-caller.js"]) - before
    later = sum((WEB / n).stat().st_size for n in toolkit) + (WEB / "toolkit.css").stat().st_size
    print(f"caller page before media: {size} bytes; toolkit after the camera: {later} bytes")


def _string_keys(path: Path) -> dict[str, list[str]]:
    text = path.read_text(encoding="utf-8")
    blocks = re.split(r"^  (lv|en|ru): \{$", text, flags=re.M)
    return {
        blocks[i]: re.findall(r'^    "([\w.]+)":', blocks[i + 1], flags=re.M)
        for i in range(1, len(blocks), 2)
    }


@pytest.mark.parametrize("name", ["strings/toolkit.js", "strings/toolkit-agent.js"])
def test_toolkit_strings_in_three_languages(name: str) -> None:
    keys = _string_keys(WEB / name)
    assert set(keys) == {"lv", "en", "ru"}
    assert keys["lv"] == keys["en"] == keys["ru"], name
    assert len(set(keys["lv"])) == len(keys["lv"]), "duplicate keys"
    # Every key the toolkit's markup and code name is defined.
    used = set()
    toolkit = sorted(p.name for p in WEB.glob("toolkit-*.js"))
    for page in ("caller.html", "agent.html", *toolkit, "chat.js"):
        used |= set(re.findall(r'"(t[ka]\.[\w.]*\w)"', (WEB / page).read_text(encoding="utf-8")))
    defined = set(_string_keys(WEB / "strings/toolkit.js")["en"]) | set(
        _string_keys(WEB / "strings/toolkit-agent.js")["en"]
    )
    assert used - defined == set(), used - defined
