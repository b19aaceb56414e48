"""Typed application keys: the app's shared objects, without module-level state."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from .audit import Audit
from .config import Config
from .db import Database
from .live import LiveRooms
from .ratelimit import KeyedLimiter
from .secrets import Secrets
from .sms import SmsSender

if TYPE_CHECKING:  # the ops/metrics/webhooks modules import this one
    from .metrics import Metrics
    from .ops import OpsMonitor
    from .webhooks import WebhookSender

CONFIG = web.AppKey("config", Config)
AUDIT = web.AppKey("audit", Audit)
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

# Ops console, observability and integrations (server/ops.py, metrics.py, webhooks.py).
OPS: web.AppKey[OpsMonitor] = web.AppKey("ops")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
WEBHOOKS: web.AppKey[WebhookSender] = web.AppKey("webhooks")

# Recording and photos (server/recording.py, which imports this module).
if TYPE_CHECKING:
    from .recording import RecordingService
RECORDING: web.AppKey[RecordingService] = web.AppKey("recording")
