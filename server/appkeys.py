"""Typed application keys: the app's shared objects, without module-level state."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from .config import Config
from .db import Database
from .live import LiveRooms
from .ratelimit import KeyedLimiter
from .secrets import Secrets
from .sms import SmsSender

CONFIG = web.AppKey("config", Config)
DATA_DIR = web.AppKey("data_dir", Path)
SECRETS = web.AppKey("secrets", Secrets)
DB = web.AppKey("db", Database)
ROOMS = web.AppKey("rooms", LiveRooms)
SMS = web.AppKey("sms", SmsSender)
CLOCK = web.AppKey("clock", Callable[[], float])
LINK_LIMITER = web.AppKey("link_limiter", KeyedLimiter)
LOGIN_LIMITER = web.AppKey("login_limiter", KeyedLimiter)
ORIGINS = web.AppKey("origins", frozenset)
WEBSOCKETS = web.AppKey("websockets", set)
