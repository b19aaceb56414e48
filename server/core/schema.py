"""The database schema: every table (SQLAlchemy Core), for SQLite and PostgreSQL alike.

Migrations (server/migrations) create it; tests check the migrated schema equals this
metadata. Tokens and cookies are stored only as SHA-256 hashes (`token_hash`): a copy of
the database gives no usable link, login or caller cookie.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

metadata = sa.MetaData()
# The revision a database made by metadata.create_all (before migrations existed) is at.
BASELINE_REVISION = "0001"

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # "<issuer> <sub>" of a single sign-on account (server/http/oidc.py): the provider's
    # stable id, so a renamed or reused user name at the provider never takes over another
    # row. NULL for a local account. An SSO row has no usable password (SSO_NO_PASSWORD).
    sa.Column("sso_subject", sa.String(512)),
    # A unique index rather than a column constraint: a migration can add it on SQLite too.
    sa.Index("ix_users_sso_subject", "sso_subject", unique=True),
)

# Single sign-on attempts in flight (server/http/oidc.py): one row per `state`, deleted by
# the callback that uses it (so it works once, on any node) or when it expires. The browser
# that started it holds `binding` in a cookie; only hashes are stored.
oidc_states = sa.Table(
    "oidc_states",
    metadata,
    sa.Column("state_hash", sa.String(64), primary_key=True),
    sa.Column("binding_hash", sa.String(64), nullable=False),
    sa.Column("nonce", sa.String(128), nullable=False),
    sa.Column("code_verifier", sa.String(128), nullable=False),
    sa.Column("return_to", sa.String(64), nullable=False),  # the page that started it
    sa.Column("created_at", sa.Float, nullable=False),
)

logins = sa.Table(
    "logins",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

# One row per support session (one phone call). The live part is the room with the same id.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("agent_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("phone", sa.String(32), nullable=False, index=True),  # E.164
    sa.Column("reference", sa.String(128), nullable=False, default=""),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("caller_status", sa.String(16), nullable=False),
    sa.Column("device_type", sa.String(128), nullable=False, default=""),
    sa.Column("notice_version", sa.String(32), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("link_sent_at", sa.Float),
    sa.Column("opened_at", sa.Float),
    sa.Column("accepted_at", sa.Float),
    sa.Column("media_started_at", sa.Float),
    sa.Column("media_ended_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Column("end_reason", sa.String(32)),  # a fixed code: agent_ended, ops, timeout, ...
    # Free text about the end (an ops user's reason): kept here, not in the audit chain, so
    # it goes with the session (erasure, retention). Phone numbers in it are masked.
    sa.Column("end_note", sa.String(500)),
)

links = sa.Table(
    "links",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("consumed_at", sa.Float),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

# The device-bound cookie a caller's browser got when it opened the link.
caller_devices = sa.Table(
    "caller_devices",
    metadata,
    sa.Column("cookie_hash", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


# Recordings of a session's camera and its photos (snapshots, uploads), all stored encrypted
# under `storage_key` (recorder/, docs/recording-format.md). The media itself is never here.
recordings = sa.Table(
    "recordings",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # the recording id (hex)
    sa.Column(
        "session_id", sa.String(32), sa.ForeignKey("sessions.id"), nullable=False, index=True
    ),  # fmt: skip
    sa.Column("kind", sa.String(16), nullable=False),  # video | snapshot | upload
    # recording (in progress) | complete | incomplete (recovered after a crash) | failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float),
    sa.Column("storage_key", sa.String(128), nullable=False),
    sa.Column("bytes", sa.Integer, nullable=False, default=0),  # ciphertext, all objects
    sa.Column("segments", sa.Integer, nullable=False, default=0),
    sa.Column("frames", sa.Integer, nullable=False, default=0),
    sa.Column("container", sa.String(16), nullable=False, default=""),  # webm | mkv | jpeg
    sa.Column("error", sa.String(256)),
    # Faces blurred before a snapshot/photo was stored (privacy.redact_faces; the receipt).
    sa.Column("faces_blurred", sa.Integer, nullable=False, default=0, server_default="0"),
)

# Chat of a session, kept only when `toolkit.keep_chat` is true (server/toolkit/service.py).
chat_messages = sa.Table(
    "chat_messages",
    metadata,
    sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id"), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True),  # the message's number in the session
    sa.Column("sender", sa.String(16), nullable=False),  # caller | agent
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)


# --- team (issue #19; server/signalling/team.py) -----------------------------------------
# Who held a session when: the agent who opened it from created_at, then each hand-over
# closes the holder's row (`until`) and opens the next one's. The report and the session
# record show it.
session_holders = sa.Table(
    "session_holders",
    metadata,
    sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id"), primary_key=True),
    sa.Column("since", sa.Float, primary_key=True),
    sa.Column("until", sa.Float),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("username", sa.String(64), nullable=False),
)

# A one-time staff link the agent made for a colleague (an expert) to join one room: like
# the caller's link, only the token's hash is kept; used once (`used_by`), 15 minutes.
staff_links = sa.Table(
    "staff_links",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("session_id", sa.String(32), sa.ForeignKey("sessions.id"), nullable=False,
              index=True),  # fmt: skip
    sa.Column("created_by", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float),
    sa.Column("used_by", sa.Integer, sa.ForeignKey("users.id")),
)


# Objections to recording (GDPR Art. 21), one row per phone number that must not be
# recorded. The number itself is not stored: `phone_key` is an HMAC of it under the server
# key (server/privacy/subjects.py), so the list names nobody to whoever reads the database.
recording_objections = sa.Table(
    "recording_objections",
    metadata,
    sa.Column("phone_key", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)


# --- recording keys (server/recording/keystore.py; docs/recording-format.md, "Keys") ------
# One row per recording: its recording key wrapped by a master key (local or KMS). The
# media in the store are unreadable without it, so deleting the row crypto-shreds the
# recording; rows go in the same transaction as the recording and session rows.
recording_keys = sa.Table(
    "recording_keys",
    metadata,
    sa.Column("recording_id", sa.String(32), primary_key=True),
    sa.Column("session_id", sa.String(32), nullable=False, index=True),
    sa.Column("alg", sa.Integer, nullable=False),  # 1 = local master key, 2 = AWS KMS
    sa.Column("key_id", sa.String(255), nullable=False),  # mk-NNNN or the KMS key ARN
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


def token_hash(token: str) -> str:
    # Tokens carry >= 128 random bits, so a plain (unsalted) SHA-256 is enough to make the
    # stored value useless while still allowing an indexed lookup.
    return hashlib.sha256(token.encode()).hexdigest()


# --- the webhook outbox (server/observe/webhooks.py; docs/ops.md, "Webhooks") -----------
# One row per event and receiver, written in the same transaction as the session change
# that caused it; deleted once the receiver took it. `status`: pending | dead (given up,
# waiting for `callassist webhooks replay`). The row's `data` carries what the receiver is
# sent (a masked number, the reference), never the phone number itself.
webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),  # the order
    sa.Column("id", sa.String(40), nullable=False, index=True),  # the event id (evt_…)
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("session_id", sa.String(32), nullable=False, index=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),  # when it happened (server clock)
    sa.Column("queued_at", sa.Float, nullable=False),  # wall clock: give_up_after_s from it
    sa.Column("data", sa.Text, nullable=False),  # JSON
    sa.Column("body", sa.Text),  # the JSON sent, frozen at the first attempt
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.String(256)),
)

# Who delivers the outbox: one row per job (`webhooks`), held by one node until
# `expires_at` (wall clock); the holder renews it, another node takes it once it expired.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)
