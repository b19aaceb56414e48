"""Strict configuration loading.

The TOML file maps one-to-one onto the dataclasses below. Unknown keys are an error that
names the key (a typo must never silently fall back to a default), and so is a value of the
wrong type. Secrets never live here: see `server.secrets`.

Over 400 lines because it is the one strict schema of every setting: each dataclass
field carries its comment, as config.toml does.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.core.cluster_config import ClusterConfig, ClusterConfigError, validate_cluster


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is wrong."""


@dataclass(frozen=True)
class HttpConfig:
    # Where links point to. Links are built from this, never from the request's Host.
    public_url: str = "http://127.0.0.1:8080"
    # Extra origins allowed to open WebSockets and send state-changing requests.
    allowed_origins: list[str] = field(default_factory=list)
    # Largest request body accepted (bytes).
    max_body_bytes: int = 1_048_576
    # Set when a TLS-terminating reverse proxy sits in front (trust X-Forwarded-For).
    behind_proxy: bool = False
    # Slowloris guard (server/http/guard.py): a connection's request headers must be
    # complete within this many seconds (also the keep-alive idle limit)...
    header_timeout_s: float = 10.0
    # ... and one address may hold at most this many connections (a call centre behind one
    # NAT opens a few per agent; behind a proxy every connection is the proxy's).
    max_connections_per_address: int = 256
    # What the access log says of a client: "none" (no address, no User-Agent), "masked"
    # (network /24 or /48 and the browser's product name) or "full" (docs/ops.md, "Logs").
    access_log_clients: str = "none"


@dataclass(frozen=True)
class SessionConfig:
    default_country_code: str = "+371"
    # A link that has not been opened within this many seconds stops working.
    link_ttl_s: int = 900
    # Link opens allowed per client address per minute.
    link_opens_per_minute: int = 20
    # The room ends when nothing happened (no media, no message) for this long.
    inactivity_timeout_s: int = 900
    # The room ends after this long, whatever happens.
    max_duration_s: int = 7200
    # Live rooms one agent may have at once (an agent helps one caller at a time).
    max_live_rooms_per_agent: int = 20
    # Version of the service notice and privacy summary the caller accepts.
    notice_version: str = "2026-12-01"
    # Shown to callers in the privacy summary.
    privacy_contact: str = "privacy@example.eu"
    operator_name: str = "Example Telecom"


@dataclass(frozen=True)
class OidcConfig:
    # Single sign-on for staff with OpenID Connect (server/http/oidc.py, docs/security.md
    # "Single sign-on"). Off while `issuer` is empty. The client secret is the secret
    # `oidc_client_secret` (CALLASSIST_OIDC_CLIENT_SECRET or _FILE), never this file.
    # The provider's issuer URL, exactly as its discovery document names it
    # (`<issuer>/.well-known/openid-configuration` is fetched).
    issuer: str = ""
    client_id: str = ""
    # Asked for at the provider; must contain "openid".
    scopes: list[str] = field(default_factory=lambda: ["openid", "profile"])
    # The ID token claim holding the user's groups (a list of strings, or one string).
    role_claim: str = "groups"
    # Group -> role (agent, supervisor, dpo, admin); the first entry, in file order, whose
    # group the user has decides. A user with no mapped group is refused.
    role_map: dict[str, str] = field(default_factory=dict)
    # Which of the roles dpo/admin the role_map may grant through SSO at all (empty: none;
    # docs/security.md, "Single sign-on").
    privileged_roles: list[str] = field(default_factory=list)
    # The claim that names the local user row (audit, sessions).
    username_claim: str = "preferred_username"
    # Clock difference tolerated between this server and the provider (exp, iat, nbf).
    clock_skew_s: int = 60
    # Seconds a sign-in may take at the provider before its `state` expires.
    state_ttl_s: int = 600
    # Timeout of each request to the provider (discovery, JWKS, token).
    http_timeout_s: float = 10.0


@dataclass(frozen=True)
class AuthConfig:
    # Agent login session lifetime.
    session_ttl_s: int = 43_200
    # Every login attempt per client address (a flood guard: each costs an Argon2 hash).
    # Generous, since a whole call centre may share one NAT address.
    login_attempts_per_minute: int = 60
    # Failed logins before backoff (base, doubling, up to login_backoff_max_s) per account
    # name (known or not) and per client address (docs/security.md, "Logins").
    login_free_failures_per_account: int = 5
    login_free_failures_per_address: int = 30
    login_backoff_base_s: float = 1.0
    login_backoff_max_s: float = 900.0
    # User name + password logins; false leaves single sign-on as the only way in.
    local_login: bool = True
    oidc: OidcConfig = field(default_factory=OidcConfig)


@dataclass(frozen=True)
class SignallingConfig:
    # Largest client -> server message (bytes); larger ones get `too_large` and close 1009.
    max_message_bytes: int = 65_536
    # Largest server -> client message: an answer to a many-track offer is bigger than 64 KiB.
    max_server_message_bytes: int = 262_144
    # Ping interval; a client that does not answer a ping within half of it is dropped,
    # i.e. after 1.5 x this of silence (30 s by default; server/signalling/socket.py).
    heartbeat_s: float = 20.0
    rate_per_s: float = 50.0
    burst: int = 100
    # Messages queued for one slow client before it is dropped.
    outbox_size: int = 256


@dataclass(frozen=True)
class MediaConfig:
    # "VP8" or "H264": one codec on every leg, so frames are forwarded without re-encoding.
    codec: str = "VP8"
    # The event loop every server process runs (aiohttp, signalling and media share it):
    # "uvloop" (libuv, in C; the default) costs the media path ~20% less CPU per room than
    # the standard library's selector loop, "asyncio" (docs/media-performance.md, "The
    # event loop"). The choice is per process, made at start.
    event_loop: str = "uvloop"
    # Addresses offered as ICE host candidates; empty = every interface address.
    ice_host_addresses: list[str] = field(default_factory=list)
    # UDP ports this node's peer connections bind, "FIRST-LAST" (e.g. "40000-40999", for a
    # firewall rule); empty = any port the system picks. Each peer connection needs one
    # port per host address; when every port is taken the offer fails (sdp_failed).
    # With `serve --workers N` each worker gets its own slice of the range.
    udp_ports: str = ""
    stun_urls: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    # TURN credential lifetime (coturn use-auth-secret); the secret comes from secrets.
    turn_ttl_s: int = 3600
    # One TURN URL the server's own peer connections also gather a relay candidate from
    # (aiortc uses one TURN server), e.g. "turns:turn.example.eu:443?transport=tcp"; same
    # secret. Empty = the server offers its host addresses only (it is the public side).
    server_turn_url: str = ""
    # Frames queued per subscriber before it is reset to the next keyframe.
    subscriber_queue_frames: int = 60
    # Minimum spacing of keyframe requests sent upstream to one source.
    keyframe_min_interval_s: float = 0.3
    # The packets one subscriber is forwarded in one pass of the event loop go out in one
    # `sendmsg` (UDP GSO: the peer receives the same datagrams; server/media/send_batch.py).
    # Falls back to one send per packet by itself where the kernel refuses it; false is
    # for comparing (bench/capacity.py --no-send-batching).
    send_batching: bool = True
    # Remote ICE candidates (in offers and `candidate` messages) are used only at public
    # addresses: the server must not be made to send STUN into its own networks. A
    # deployment whose callers reach it over a LAN/VPN allows private ranges (RFC 1918,
    # fc00::/7, link-local, 100.64/10, mDNS .local names); loopback only for tests/demos.
    allow_private_candidates: bool = False
    allow_loopback_candidates: bool = False


EVENT_LOOPS = ("uvloop", "asyncio")  # server/core/eventloop.py makes them

# Number types sms.allowed_types may name (libphonenumber's; server/sessions/sms_policy.py).
SMS_TYPES = (
    "mobile", "fixed_line_or_mobile", "fixed_line", "voip", "personal_number", "pager", "uan",
    "toll_free", "premium_rate", "shared_cost",
)  # fmt: skip


@dataclass(frozen=True)
class SmsConfig:
    # "console" logs (phone masked) that a message would be sent; "http" POSTs JSON.
    sender: str = "console"
    http_url: str = ""
    http_timeout_s: float = 5.0
    # SMS pumping guard (server/sessions/sms_policy.py): destination countries (ISO 3166
    # codes; default EU/EEA + CH) and number types (libphonenumber's, e.g. "mobile").
    allowed_countries: list[str] = field(
        default_factory=lambda: [
            *("AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU"),
            *("IE", "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES"),
            *("SE", "IS", "LI", "NO", "CH"),
        ]
    )
    allowed_types: list[str] = field(default_factory=lambda: ["mobile", "fixed_line_or_mobile"])
    # Sends of one session's link, and of one agent per hour.
    max_per_session: int = 5
    max_per_agent_per_hour: int = 60


@dataclass(frozen=True)
class StorageConfig:
    # "sqlite:///{data_dir}/callassist.db" by default; postgresql+asyncpg://... in production.
    database_url: str = ""


@dataclass(frozen=True)
class WebhooksConfig:
    # Receivers of signed JSON events (docs/webhooks.md); empty = webhooks off. The signing
    # key is the secret `webhook_key` (CALLASSIST_WEBHOOK_KEY), needed only when set.
    urls: list[str] = field(default_factory=list)
    # Seconds to wait for one delivery attempt.
    timeout_s: float = 5.0
    # Obsolete and ignored since the outbox is in the database (nothing is dropped);
    # still accepted so older configuration files load.
    max_queue: int = 1000
    # Retry backoff: first wait, doubling up to the maximum, for at most give_up_after_s.
    retry_initial_s: float = 1.0
    retry_max_s: float = 300.0
    give_up_after_s: float = 86_400.0
    # The delivery lease (one node delivers at a time): seconds it lasts without renewal,
    # i.e. how long after its holder died another node takes over; and how often each
    # node renews it / looks for due events written by other nodes.
    lease_s: float = 10.0
    poll_s: float = 1.0
    # Sessions delivered at the same time (one event of each) by the lease holder.
    max_in_flight: int = 16


@dataclass(frozen=True)
class RetentionConfig:
    # Days each category is kept after the session ended; then it is deleted by itself.
    sessions_days: int = 90
    recordings_days: int = 30
    media_days: int = 30
    audit_days: int = 730
    # Days a staff login (account, login and expiry time) is kept after it expired.
    logins_days: int = 1
    # How often the background sweeper runs, in seconds.
    sweep_interval_s: int = 3600


# --- recording (recorder/, server/recording/service.py) ------------------------------------------

# AWS regions inside the EU/EEA (recorder.storage.EU_EEA_REGIONS; kept in step by a test).
EU_EEA_REGIONS = ["eu-west-1", "eu-west-3", "eu-central-1", "eu-north-1", "eu-south-1",
                  "eu-south-2"]  # fmt: skip


@dataclass(frozen=True)
class RecordingS3Config:
    # The bucket; it must already exist, in a region of allowed_regions.
    bucket: str = ""
    # Region the client signs for; empty = boto3's own resolution (AWS_REGION etc.).
    region: str = ""
    # Another S3-compatible endpoint, e.g. "https://s3.eu-north-1.amazonaws.com".
    endpoint_url: str = ""
    # The service refuses to start unless HeadBucket says the bucket is in one of these.
    allowed_regions: list[str] = field(default_factory=lambda: list(EU_EEA_REGIONS))
    # Attempts per request (botocore "standard" retry mode); the spool retries after that.
    max_attempts: int = 3
    # Add an AbortIncompleteMultipartUpload lifecycle rule after this many days; 0 = leave
    # the bucket's lifecycle alone.
    abort_incomplete_multipart_days: int = 1


@dataclass(frozen=True)
class RecordingKmsConfig:
    # KMS key ARN that wraps data keys when recording.keyring = "kms".
    key_id: str = ""
    region: str = ""
    endpoint_url: str = ""


@dataclass(frozen=True)
class RecordingConfig:
    # "off": no video recording; "on_demand": the agent starts and stops it; "always":
    # every session's camera is recorded from its first frame (the agent cannot stop it).
    mode: str = "on_demand"
    # Length of one segment, in seconds; each starts at a keyframe.
    segment_s: float = 10.0
    # "local": encrypted objects in a directory; "s3": an EU/EEA S3 bucket.
    storage: str = "local"
    # Directory of the local storage; empty = <data-dir>/store.
    local_dir: str = ""
    # Local spool of ciphertext waiting for upload; empty = <data-dir>/spool.
    spool_dir: str = ""
    # Crossing this is reported (log, metric, the agent sees a warning); writing goes on.
    spool_limit_mb: int = 2048
    # Beyond this nothing more is spooled (segments are lost and counted); 0 = no limit.
    spool_hard_limit_mb: int = 0
    # Longest wait between two upload retries while the storage is down, in seconds.
    upload_retry_max_s: float = 30.0
    # On shutdown, wait this long for the spool to upload before leaving it for next start.
    shutdown_drain_s: float = 10.0
    # "local": versioned master keys from CALLASSIST_RECORDING_KEYS[_FILE], else from
    # keys_dir (embedded: made on first use); "kms": AWS KMS ([recording.kms]).
    keyring: str = "local"
    # Directory of local master keys; empty = <data-dir>/recording-keys.
    keys_dir: str = ""
    # Largest photo upload or snapshot accepted, in bytes.
    photo_max_bytes: int = 15 * 1024 * 1024
    # Larger images (in pixels) are refused as likely decompression bombs.
    photo_max_pixels: int = 50_000_000
    # Photos are stored at most this many pixels wide or high (scaled down, never up).
    photo_max_side_px: int = 4096
    # JPEG quality of the re-encoded photos (1-95).
    photo_jpeg_quality: int = 85
    # Photos a caller may send per session.
    photo_max_per_session: int = 50
    # Memory all photo decoding together may take (MB), shared by photo_decode_workers
    # decodes at a time (one pool for every session; the others wait): an image whose
    # decode would need more than its share is refused (413 image_too_large), a JPEG is
    # decoded scaled down (DCT scaling) when that is enough. 256 MB per decode takes a
    # 12-16 MP photo at full size.
    photo_decode_budget_mb: int = 256
    photo_decode_workers: int = 1
    s3: RecordingS3Config = field(default_factory=RecordingS3Config)
    kms: RecordingKmsConfig = field(default_factory=RecordingKmsConfig)


@dataclass(frozen=True)
class ToolkitConfig:
    # Folder of tutorials agents can push (one directory per tutorial with tutorial.json and
    # its images); empty: the samples shipped in server/tutorials.
    tutorials_dir: str = ""
    # Keep chat messages in the session record (database); false: chat lives only as long
    # as the room.
    keep_chat: bool = False
    # Largest freeze frame or photo-burst still, in bytes.
    max_frame_bytes: int = 300_000
    # Largest image an agent may push to the caller, in bytes.
    max_image_bytes: int = 900_000
    # Seconds an unpinned mark stays on screen before it fades.
    mark_fade_s: float = 4.0
    # Seconds between two stills in photo-burst mode.
    photo_interval_s: float = 2.0


@dataclass(frozen=True)
class RoomsConfig:
    # People in one room at once: the agent, the caller and the staff who joined
    # (supervisors, experts). The recorder and silent watchers are not counted; one more
    # is refused (`room_full`). Each extra viewer costs one more forwarded subscriber leg
    # per stream (bench/capacity.py --viewers).
    max_participants: int = 4


@dataclass(frozen=True)
class PrivacyConfig:
    # Blur the faces found in a snapshot or photo before it is stored (encrypted): the
    # terms ask callers not to show other people, and they do by accident. The stored,
    # shown and exported still is the blurred one; the receipt counts the blurred faces.
    redact_faces: bool = True
    # Blur ID documents' machine-readable zones (MRZ lines of passports and ID cards, found
    # by the OCR, server/inspect/documents.py) too. Off by default: it runs tesseract on
    # every stored still (about a second of one core each).
    redact_documents: bool = False


@dataclass(frozen=True)
class InspectConfig:
    # Reads (codes and text from a still, server/inspect/) running at once in this
    # process; more wait their turn. A read holds ~58 MB at its peak (bench/inspect_still.py,
    # pool_memory) and one core for ~0.7 s of CPU.
    workers: int = 1
    # Reads waiting for a worker before more are refused (503 inspect_busy).
    max_waiting: int = 8
    # Seconds one read may take (504 inspect_timeout past it). Tesseract gets 3/4 of it:
    # when it is stopped, or is not installed, the codes are answered without the text
    # (note "text_unavailable").
    timeout_s: float = 20.0
    # The tesseract binary: a name looked up on PATH, or an absolute path.
    tesseract: str = "tesseract"


@dataclass(frozen=True)
class Config:
    # "embedded" generates missing secrets into the data directory; "production" refuses to
    # start without them.
    environment: str = "embedded"
    http: HttpConfig = field(default_factory=HttpConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    signalling: SignallingConfig = field(default_factory=SignallingConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    toolkit: ToolkitConfig = field(default_factory=ToolkitConfig)
    rooms: RoomsConfig = field(default_factory=RoomsConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    inspect: InspectConfig = field(default_factory=InspectConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    @property
    def secure_cookies(self) -> bool:
        return self.http.public_url.startswith("https://")

    @property
    def public_origin(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.http.public_url)
        return f"{parts.scheme}://{parts.netloc}"


def _check_type(path: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table, got {type(value).__name__}")
        return {_check_type(f"{path} key", k, key_t): _check_type(f"{path}.{k}", v, val_t)
                for k, v in value.items()}  # fmt: skip
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        return [_check_type(f"{path}[{i}]", v, item) for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: expected {hint.__name__}, got {type(value).__name__}")
        return value
    raise ConfigError(f"{path}: unsupported type {hint}")  # pragma: no cover


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            where = f"{prefix}{key}"
            raise ConfigError(f"unknown configuration key '{where}'")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        hint = hints[f.name]
        path = f"{prefix}{f.name}"
        value = data[f.name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a table [{path}]")
            kwargs[f.name] = _build(typing.cast(type, hint), value, f"{path}.")
        else:
            if isinstance(hint, types.UnionType):  # pragma: no cover - not used yet
                raise ConfigError(f"{path}: unsupported type")
            kwargs[f.name] = _check_type(path, value, hint)
    return cls(**kwargs)


MAX_WORKERS = 64


def parse_port_range(text: str, key: str = "media.udp_ports") -> tuple[int, int] | None:
    """"40000-40999" -> (40000, 40999); "" -> None (any port)."""
    if not text.strip():
        return None
    first, sep, last = text.strip().partition("-")
    try:
        lo, hi = int(first), int(last if sep else first)
    except ValueError:
        raise ConfigError(f"{key}: expected \"FIRST-LAST\", e.g. \"40000-40999\"") from None
    if not 1024 <= lo <= hi <= 65535:
        raise ConfigError(f"{key}: ports must be 1024-65535 with FIRST <= LAST, got {text!r}")
    return lo, hi


def check_workers(cfg: Config, workers: int) -> None:
    """`workers` processes on one machine: refused where rooms would be split up."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"cluster.workers: must be 1 to {MAX_WORKERS}, got {workers}")
    if workers > 1 and cfg.cluster.router == "local":
        raise ConfigError(
            f"cluster.workers = {workers} needs cluster.router = \"redis\": with the local "
            "router every process would hold its own rooms, and a caller's and an agent's "
            "requests landing on different workers would never meet (docs/deploy.md, Workers)"
        )
    ports = parse_port_range(cfg.media.udp_ports)
    if ports is not None and workers > ports[1] - ports[0] + 1:
        raise ConfigError(
            f"media.udp_ports: {cfg.media.udp_ports} has fewer ports than the {workers} workers"
        )


def _validate(cfg: Config) -> None:
    if cfg.environment not in ("embedded", "production"):
        raise ConfigError("environment: must be 'embedded' or 'production'")
    if not cfg.http.public_url.startswith(("http://", "https://")):
        raise ConfigError("http.public_url: must start with http:// or https://")
    if cfg.http.access_log_clients not in ("none", "masked", "full"):
        raise ConfigError("http.access_log_clients: must be 'none', 'masked' or 'full'")
    if cfg.media.codec not in ("VP8", "H264"):
        raise ConfigError("media.codec: must be 'VP8' or 'H264'")
    if cfg.media.event_loop not in EVENT_LOOPS:
        raise ConfigError("media.event_loop: must be 'uvloop' or 'asyncio'")
    parse_port_range(cfg.media.udp_ports)  # ConfigError naming the key
    check_workers(cfg, cfg.cluster.workers)
    if cfg.sms.sender not in ("console", "http"):
        raise ConfigError("sms.sender: must be 'console' or 'http'")
    if cfg.sms.sender == "http" and not cfg.sms.http_url.startswith(("http://", "https://")):
        raise ConfigError("sms.http_url: required (http:// or https://) when sms.sender = 'http'")
    for t in cfg.sms.allowed_types:
        if t not in SMS_TYPES:
            raise ConfigError(
                f"sms.allowed_types: unknown type {t!r} (one of {', '.join(SMS_TYPES)})"
            )
    if not cfg.session.default_country_code.startswith("+"):
        raise ConfigError("session.default_country_code: must start with '+', e.g. '+371'")
    for name in ("sessions_days", "recordings_days", "media_days", "audit_days", "logins_days"):
        if getattr(cfg.retention, name) < 1:
            raise ConfigError(f"retention.{name}: must be at least 1 day")
    if cfg.retention.sweep_interval_s < 1:
        raise ConfigError("retention.sweep_interval_s: must be at least 1 second")
    if not 2 <= cfg.rooms.max_participants <= 16:
        # Fewer than the agent and the caller is no call; more than 16 forwarded legs per
        # stream is beyond what one node was measured to carry.
        raise ConfigError("rooms.max_participants: must be 2 to 16")
    for name in ("link_ttl_s", "inactivity_timeout_s", "max_duration_s"):
        if getattr(cfg.session, name) <= 0:
            raise ConfigError(f"session.{name}: must be positive")
    for i, url in enumerate(cfg.webhooks.urls):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"webhooks.urls[{i}]: must start with http:// or https://")
    wh = cfg.webhooks
    if wh.timeout_s <= 0 or wh.max_queue <= 0 or wh.retry_initial_s <= 0:
        raise ConfigError("webhooks: timeout_s, max_queue and retry_initial_s must be positive")
    if wh.retry_max_s < wh.retry_initial_s:
        raise ConfigError("webhooks.retry_max_s: must be at least retry_initial_s")
    if wh.poll_s <= 0 or wh.max_in_flight < 1:
        raise ConfigError("webhooks: poll_s and max_in_flight must be positive")
    if wh.lease_s < 2 * wh.poll_s:
        raise ConfigError("webhooks.lease_s: must be at least twice poll_s (it is renewed "
                          "every poll_s)")  # fmt: skip


def _validate_recording(rc: RecordingConfig) -> None:
    if rc.mode not in ("off", "on_demand", "always"):
        raise ConfigError("recording.mode: must be 'off', 'on_demand' or 'always'")
    if not 1.0 <= rc.segment_s <= 600.0:
        raise ConfigError("recording.segment_s: must be between 1 and 600 seconds")
    if rc.storage not in ("local", "s3"):
        raise ConfigError("recording.storage: must be 'local' or 's3'")
    if rc.storage == "s3" and not rc.s3.bucket:
        raise ConfigError("recording.s3.bucket: required when recording.storage = 's3'")
    if not rc.s3.allowed_regions:
        raise ConfigError("recording.s3.allowed_regions: list at least one EU/EEA region")
    if rc.s3.max_attempts < 1 or rc.s3.abort_incomplete_multipart_days < 0:
        raise ConfigError("recording.s3: max_attempts >= 1, abort_incomplete_multipart_days >= 0")
    if rc.keyring not in ("local", "kms"):
        raise ConfigError("recording.keyring: must be 'local' or 'kms'")
    if rc.keyring == "kms" and not rc.kms.key_id:
        raise ConfigError("recording.kms.key_id: required when recording.keyring = 'kms'")
    if rc.spool_limit_mb <= 0 or rc.spool_hard_limit_mb < 0:
        raise ConfigError("recording.spool_limit_mb must be positive, spool_hard_limit_mb >= 0")
    if rc.spool_hard_limit_mb and rc.spool_hard_limit_mb < rc.spool_limit_mb:
        raise ConfigError("recording.spool_hard_limit_mb: must be 0 or at least spool_limit_mb")
    if rc.upload_retry_max_s <= 0 or rc.shutdown_drain_s < 0:
        raise ConfigError("recording: upload_retry_max_s > 0 and shutdown_drain_s >= 0")
    if rc.photo_max_bytes <= 0 or rc.photo_max_pixels <= 0 or rc.photo_max_side_px < 64:
        raise ConfigError("recording.photo_*: limits must be positive (max side >= 64)")
    if not 1 <= rc.photo_jpeg_quality <= 95:
        raise ConfigError("recording.photo_jpeg_quality: must be 1..95")
    if rc.photo_max_per_session < 0:
        raise ConfigError("recording.photo_max_per_session: must not be negative")
    if rc.photo_decode_workers < 1 or rc.photo_decode_budget_mb < 16 * rc.photo_decode_workers:
        raise ConfigError("recording.photo_decode_workers must be >= 1 and "
                          "photo_decode_budget_mb at least 16 per worker")  # fmt: skip


def _validate_toolkit(cfg: Config) -> None:
    tk = cfg.toolkit
    if not 10_000 <= tk.max_frame_bytes <= cfg.http.max_body_bytes:
        raise ConfigError("toolkit.max_frame_bytes: must be 10000 to http.max_body_bytes")
    if not 10_000 <= tk.max_image_bytes <= cfg.http.max_body_bytes:
        raise ConfigError("toolkit.max_image_bytes: must be 10000 to http.max_body_bytes")
    if not 0.5 <= tk.mark_fade_s <= 600 or not 0.5 <= tk.photo_interval_s <= 60:
        raise ConfigError("toolkit: mark_fade_s must be 0.5-600 and photo_interval_s 0.5-60")


def _validate_oidc(auth: AuthConfig) -> None:
    o = auth.oidc
    if not o.issuer:
        if not auth.local_login:
            raise ConfigError("auth.local_login = false needs auth.oidc.issuer (no way in)")
        return
    if not o.issuer.startswith(("https://", "http://")) or o.issuer.endswith("/"):
        raise ConfigError("auth.oidc.issuer: an http(s) URL without a trailing '/'")
    if not o.client_id:
        raise ConfigError("auth.oidc.client_id: required when auth.oidc.issuer is set")
    if "openid" not in o.scopes:
        raise ConfigError("auth.oidc.scopes: must contain \"openid\"")
    if not o.role_claim or not o.username_claim:
        raise ConfigError("auth.oidc.role_claim and username_claim: required")
    if not o.role_map:
        raise ConfigError("auth.oidc.role_map: map at least one group to a role")
    for group, role in o.role_map.items():
        if role not in ("agent", "supervisor", "dpo", "admin"):
            raise ConfigError(f"auth.oidc.role_map.{group}: {role!r} is not a role "
                              "(agent, supervisor, dpo, admin)")  # fmt: skip
        if role in ("dpo", "admin") and role not in o.privileged_roles:
            raise ConfigError(
                f"auth.oidc.role_map.{group}: {role!r} through single sign-on needs "
                f"auth.oidc.privileged_roles = [\"{role}\"] (docs/security.md, Single sign-on)"
            )
    for role in o.privileged_roles:
        if role not in ("dpo", "admin"):
            raise ConfigError(f"auth.oidc.privileged_roles: {role!r} is not dpo or admin")
    if not 0 <= o.clock_skew_s <= 600:
        raise ConfigError("auth.oidc.clock_skew_s: 0-600 seconds")
    if not 30 <= o.state_ttl_s <= 3600:
        raise ConfigError("auth.oidc.state_ttl_s: 30-3600 seconds")
    if not 0 < o.http_timeout_s <= 60:
        raise ConfigError("auth.oidc.http_timeout_s: more than 0, at most 60 seconds")


def from_dict(data: dict[str, Any]) -> Config:
    cfg = _build(Config, data, "")
    _validate(cfg)
    _validate_oidc(cfg.auth)
    _validate_recording(cfg.recording)
    _validate_toolkit(cfg)
    ic = cfg.inspect
    if not (1 <= ic.workers <= 8 and 0 <= ic.max_waiting <= 1000 and 1 <= ic.timeout_s <= 300):
        raise ConfigError("inspect: workers must be 1-8, max_waiting 0-1000, timeout_s 1-300")
    if not ic.tesseract.strip():
        raise ConfigError("inspect: tesseract must name the tesseract binary (or its path)")
    try:
        validate_cluster(cfg.cluster)
    except ClusterConfigError as exc:
        raise ConfigError(str(exc)) from None
    return cfg


def load(path: Path | None) -> Config:
    """Load `path` (TOML) or, with None, the built-in defaults."""
    if path is None:
        return from_dict({})
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(data)


def replace(cfg: Config, **sections: Any) -> Config:
    """A copy of cfg with whole sections or top-level values replaced (used by tests)."""
    return dataclasses.replace(cfg, **sections)
