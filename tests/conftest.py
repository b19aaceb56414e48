"""Shared fixtures: a real server on a loopback port, real agents, real Chromium."""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from server.core import config as config_mod
from server.core.appkeys import DB
from server.http.app import create_app
from server.http.auth import check_password

# Fixtures of the privacy tests: a moto S3 server for the session, fake AWS credentials.
from tests.privacy_helpers import aws_env, s3_server  # noqa: F401

PASSWORD = "correct horse battery"


@functools.cache
def fixture_password_hash(password: str) -> str:
    """The stored hash of a fixture account (Server.add_user): argon2id, as the product
    stores it, but with the smallest cost parameters (1 pass, 1 MiB).

    argon2 keeps its parameters in the hash string and the product's verify_password reads
    them from there, so a login to such an account runs the real verification, only
    cheaper: the product's parameters (3 passes, 64 MiB) cost 0.3-0.6 s per hash and again
    per login on the loaded CI cores, and the suite creates and logs in hundreds of fixture
    accounts. Accounts made through the product (admin API, CLI, first run, demo) still get
    the product's parameters from hash_password; the password rule still applies here."""
    from argon2 import PasswordHasher

    check_password(password)
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(password)


# The suite's loop is the one the server runs as shipped (`media.event_loop`: uvloop): the
# in-process servers, their media and the tests' own peers run on it.
# CALLASSIST_TEST_LOOP=asyncio runs the suite on the standard library's loop instead.
TEST_LOOP = os.environ.get("CALLASSIST_TEST_LOOP", "uvloop")


def _new_test_loop() -> Any:
    from server.core.eventloop import new_event_loop

    return new_event_loop(TEST_LOOP)


# One mapping, one factory object for every test: pytest-asyncio parametrizes each test
# with the factory, and a different object per test (a fresh lambda) counts as another
# parameter, which tears down and rebuilds every module-scoped fixture for each test.
_LOOP_FACTORIES = {TEST_LOOP: _new_test_loop}


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    return _LOOP_FACTORIES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_config(port: int, **sections: dict[str, Any]) -> config_mod.Config:
    data: dict[str, Any] = {
        "http": {"public_url": f"http://127.0.0.1:{port}"},
        # The whole suite runs on loopback: the server must accept loopback candidates
        # (a real deployment does not, media.allow_loopback_candidates).
        "media": {"ice_host_addresses": ["127.0.0.1"], "allow_loopback_candidates": True},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_mod.from_dict(data)


@dataclass
class Server:
    url: str
    port: int
    app: web.Application
    data_dir: Path
    config: config_mod.Config
    clock: FakeClock

    @property
    def db(self):  # type: ignore[no-untyped-def]
        return self.app[DB]

    async def add_user(self, name: str, role: str = "agent", password: str = PASSWORD) -> None:
        await self.db.add_user(name, fixture_password_hash(password), role, time.time())

    async def agent(self, name: str = "anna") -> Agent:
        if await self.db.user_by_name(name) is None:
            await self.add_user(name)
        agent = Agent(
            self,
            aiohttp.ClientSession(
                headers={"Origin": self.url}, cookie_jar=aiohttp.CookieJar(unsafe=True)
            ),
        )
        await agent.login(name)
        return agent


class FakeClock:
    """Real time plus an offset a test can move forward (link expiry, timeouts)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Agent:
    server: Server
    http: aiohttp.ClientSession
    csrf: str = ""

    async def login(self, name: str, password: str = PASSWORD) -> None:
        async with self.http.post(
            self.server.url + "/api/login", json={"username": name, "password": password}
        ) as r:
            assert r.status == 200, await r.text()
            self.csrf = (await r.json())["csrf"]

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.post(
            self.server.url + path,
            json=body if body is not None else {},
            headers={"X-CSRF-Token": self.csrf},
        ) as r:
            return r.status, await r.json(content_type=None)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.server.url + path) as r:
            return r.status, await r.json(content_type=None)

    async def new_session(self, phone: str = "20000012") -> dict[str, Any]:
        status, body = await self.post("/api/sessions", {"phone": phone, "reference": "T-1"})
        assert status == 201, body
        return body

    async def close(self) -> None:
        await self.http.close()


ServerFactory = Callable[..., "AsyncIterator[Server]"]


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []
    agents: list[Agent] = []

    async def start(**sections: dict[str, Any]) -> Server:
        port = free_port()
        cfg = test_config(port, **sections)
        clock = FakeClock()
        data_dir = tmp_path / f"data-{port}"
        app = create_app(cfg, data_dir, clock=clock)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        server = Server(f"http://127.0.0.1:{port}", port, app, data_dir, cfg, clock)
        original = server.agent

        async def tracked(name: str = "anna") -> Agent:
            a = await original(name)
            agents.append(a)
            return a

        server.agent = tracked  # type: ignore[method-assign]
        return server

    yield start
    for a in agents:
        await a.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def server(make_server: Callable[..., Any]) -> Server:
    return await make_server()


@pytest.fixture(scope="session")
def postgres() -> Any:
    """One real PostgreSQL server for the whole run; each test gets its own database."""
    from tests.pg import PostgresServer

    pg = PostgresServer()
    pg.start()
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_db_server(request: pytest.FixtureRequest, make_server: Callable[..., Any]) -> Server:
    """The same server on each supported database."""
    if request.param == "postgresql":
        import uuid

        pg = request.getfixturevalue("postgres")
        url = pg.create_database("t" + uuid.uuid4().hex[:16])
        return await make_server(storage={"database_url": url})
    return await make_server()


async def dump_database(server: Server) -> str:
    """Every row of every table as text, whichever database the server uses."""
    import sqlalchemy as sa

    from server.core.db import metadata

    lines = []
    async with server.db.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in (await conn.execute(sa.select(table))).all():
                lines.append(f"{table.name}: {tuple(row)}")
    return "\n".join(lines)


# --- browsers ------------------------------------------------------------------------------

CHROMIUM = os.environ.get("CALLASSIST_CHROMIUM", "/usr/bin/chromium")


def write_quadrant_y4m(path: Path, width: int = 640, height: int = 480, frames: int = 30) -> None:
    """A fake camera file: red, green, blue and white quadrants (C420jpeg = full range)."""
    # Full-range BT.601 YCbCr of the four colours.
    colours = {
        "red": (76, 85, 255),
        "green": (150, 44, 21),
        "blue": (29, 255, 107),
        "white": (255, 128, 128),
    }
    tl, tr, bl, br = colours["red"], colours["green"], colours["blue"], colours["white"]
    hw, hh = width // 2, height // 2

    def plane(idx: int, w: int, h: int) -> bytes:
        top = bytes([tl[idx]]) * (w // 2) + bytes([tr[idx]]) * (w - w // 2)
        bottom = bytes([bl[idx]]) * (w // 2) + bytes([br[idx]]) * (w - w // 2)
        return top * (h // 2) + bottom * (h - h // 2)

    frame = plane(0, width, height) + plane(1, hw, hh) + plane(2, hw, hh)
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            fh.write(b"FRAME\n" + frame)


@pytest.fixture(scope="session")
def fake_camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("camera") / "quadrants.y4m"
    write_quadrant_y4m(path)
    return path


def chromium_args(fake_camera: Path, *extra: str) -> list[str]:
    """The command line of every test Chromium (`extra` for one module's own browser)."""
    # Chromium keeps only the last --disable-features: repeat Playwright's own list.
    disabled = ",".join(
        [
            # Playwright's own list (chromiumSwitches) ...
            "AvoidUnnecessaryBeforeUnloadCheckSync",
            "DestroyProfileOnBrowserClose",
            "HttpsUpgrades",
            "HttpsFirstBalancedModeAutoEnable",
            "LensOverlay",
            "MediaRouter",
            "PaintHolding",
            "ThirdPartyStoragePartitioning",
            "AvoidCorsURLLoaderRestartOnRedirect",
            "OptimizationHints",
            "NetworkTimeServiceQuerying",
            "AimEnabled",
            "PreconnectToSearch",
            # ... plus: a page without a camera grant (the agent) must not hide its
            # addresses behind mDNS, or ICE gathering never completes on loopback.
            "WebRtcHideLocalIpsWithMdns",
        ]
    )
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--allow-loopback-in-peer-connection",
        f"--disable-features={disabled}",
        "--use-fake-device-for-media-stream=fps=30",
        f"--use-file-for-fake-video-capture={fake_camera}",
        "--auto-accept-this-tab-capture",
        *extra,
    ]


@pytest.fixture(scope="session")
async def browser(fake_camera: Path) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=chromium_args(fake_camera)
        )
        pw_devices = pw.devices
        browser.callassist_devices = pw_devices  # type: ignore[attr-defined]
        yield browser
        await browser.close()


def scraper(server: Any) -> dict[str, str]:
    """The header Prometheus sends to /metrics (docs/ops.md, "Metrics")."""
    from server.core.appkeys import SECRETS

    return {"Authorization": f"Bearer {server.app[SECRETS].metrics_token}"}


# --- one cluster for several modules -----------------------------------------------------

# The tests that share the three-node cluster (tests/cluster_procs.py) below; the fixture
# stops it right after the last of them, instead of each module starting its own (Redis,
# three `serve` processes, haproxy: tens of seconds to start and stop on a loaded machine).
_shared_cluster: dict[str, Any] = {}
_last_cluster_item: list[pytest.Item] = []


@pytest.hookimpl(trylast=True)  # after -k/-m deselected theirs
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    users = [i for i in items if "shared_cluster" in getattr(i, "fixturenames", ())]
    _last_cluster_item[:] = users[-1:]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _last_cluster_item and item is _last_cluster_item[0]:
        _stop_shared_cluster()


def _stop_shared_cluster() -> None:
    cluster = _shared_cluster.pop("cluster", None)
    if cluster is not None:
        cluster.stop()


@pytest.fixture(scope="session")
async def shared_cluster(postgres: Any) -> AsyncIterator[Any]:
    """Redis + three nodes (cluster.max_rooms_per_node = 3) + haproxy on one database,
    for test_cluster and test_cluster_media. Each test leaves it as it found it: its rooms
    ended, no node drained, every node (and Redis) running."""
    import uuid

    from tests.cluster_procs import Cluster

    c = Cluster(postgres.create_database("cl" + uuid.uuid4().hex[:12]), nodes=3, max_rooms=3)
    _shared_cluster["cluster"] = c
    try:
        c.start()
        await c.ready()
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        _stop_shared_cluster()  # when the last user's teardown has not already
