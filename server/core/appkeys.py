"""Typed application keys of the core: config, storage, secrets, audit, clock.

Each feature package owns its own keys (`server.rooms.manager.ROOMS`,
`server.recording.service.RECORDING`, `server.observe.ops.OPS`, ...), next to the type it
holds, so this module imports nothing of the features and no import circle can form here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from server.core.audit import Audit
from server.core.config import Config
from server.core.db import Database
from server.core.ratelimit import Limiter
from server.core.secrets import Secrets

CONFIG = web.AppKey("config", Config)
AUDIT = web.AppKey("audit", Audit)
DATA_DIR = web.AppKey("data_dir", Path)
SECRETS = web.AppKey("secrets", Secrets)
DB = web.AppKey("db", Database)
CLOCK = web.AppKey("clock", Callable[[], float])
LINK_LIMITER = web.AppKey("link_limiter", Limiter)
LOGIN_LIMITER = web.AppKey("login_limiter", Limiter)
ORIGINS = web.AppKey("origins", frozenset)
WEBSOCKETS = web.AppKey("websockets", set)
