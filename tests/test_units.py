"""Pure logic: configuration, protocol parsing, room state, phone numbers, rate limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.core import config as config_mod
from server.core.phone import BadPhone, mask, normalise
from server.core.ratelimit import KeyedLimiter, TokenBucket
from server.rooms.state import Room
from server.signalling import messages as P

ROOT = Path(__file__).resolve().parent.parent


def test_sample_config_is_the_defaults() -> None:
    assert config_mod.load(ROOT / "config.toml") == config_mod.load(None)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[media]\ncodecs = "VP8"\n')
    with pytest.raises(config_mod.ConfigError, match="'media.codecs'"):
        config_mod.load(p)
    p.write_text('colour = "blue"\n')
    with pytest.raises(config_mod.ConfigError, match="'colour'"):
        config_mod.load(p)


def test_wrong_type_and_value(tmp_path: Path) -> None:
    with pytest.raises(config_mod.ConfigError, match="session.link_ttl_s: expected int"):
        config_mod.from_dict({"session": {"link_ttl_s": "15m"}})
    with pytest.raises(config_mod.ConfigError, match="media.codec"):
        config_mod.from_dict({"media": {"codec": "AV1"}})
    with pytest.raises(config_mod.ConfigError, match="sms.http_url"):
        config_mod.from_dict({"sms": {"sender": "http"}})
    p = tmp_path / "bad.toml"
    p.write_text("[http\n")
    with pytest.raises(config_mod.ConfigError, match="not valid TOML"):
        config_mod.load(p)
    with pytest.raises(config_mod.ConfigError, match="not found"):
        config_mod.load(tmp_path / "missing.toml")


def test_every_sample_key_has_a_comment() -> None:
    lines = (ROOT / "config.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f"config.toml line {i + 1} has no comment"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", P.BAD_JSON),
        ("[1, 2]", P.BAD_JSON),
        ('{"kind": "offer"}', P.BAD_MESSAGE),
        ('{"type": "dance"}', P.UNKNOWN_TYPE),
        ('{"type": "offer", "pc": "1", "sdp": "v=0"}', P.BAD_MESSAGE),
        ('{"type": "offer", "pc": true, "sdp": "v=0"}', P.BAD_MESSAGE),
        ('{"type": "offer", "pc": 0, "sdp": "v=0"}', P.BAD_MESSAGE),
        ('{"type": "offer", "pc": 1, "sdp": "hello"}', P.BAD_MESSAGE),
        ('{"type": "candidate", "pc": 1, "candidate": 5}', P.BAD_MESSAGE),
        ('{"type": "media", "track": "camera", "state": "dancing"}', P.BAD_MESSAGE),
        ('{"type": "media", "track": "screen", "state": "live"}', P.NOT_ALLOWED),
        ('{"type": "end"}', P.NOT_ALLOWED),
    ],
)
def test_caller_messages_rejected(raw: str, code: str) -> None:
    with pytest.raises(P.ProtocolError) as info:
        P.parse(raw, "caller")
    assert info.value.code == code
    assert info.value.to_message()["type"] == "error"


def test_valid_messages() -> None:
    assert P.parse('{"type": "offer", "pc": 2, "sdp": "v=0\\r\\n"}', "agent").type == "offer"
    assert P.parse('{"type": "candidate", "pc": 2, "candidate": null}', "caller").type
    assert P.parse('{"type": "accept", "notice": "x", "extra": 1}', "caller").data["notice"]
    with pytest.raises(P.ProtocolError):
        P.parse('{"type": "accept", "notice": "x"}', "agent")


def test_protocol_doc_lists_every_error_code() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    codes = [
        v
        for k, v in vars(P).items()
        if k.isupper() and isinstance(v, str) and k not in ("SUBPROTOCOL",)
    ]
    for code in codes:
        assert f"`{code}`" in doc, code
    for mtype in P.ALL_TYPES:
        assert f"`{mtype}`" in doc, mtype


def test_room_state_machine() -> None:
    room = Room(id="s-1", agent_id=1, agent_name="a", created_at=0, last_activity=0)
    assert room.state == "waiting"
    assert room.set_caller_status("opened")
    assert not room.set_caller_status("opened")
    assert room.set_track("camera", True, now=5)
    assert room.state == "active" and room.started_at == 5
    assert room.expired(10, inactivity_s=100, max_duration_s=1000) is None
    assert room.expired(200, inactivity_s=100, max_duration_s=1000) == "inactive"
    room.touch(1500)
    assert room.expired(1500, inactivity_s=100, max_duration_s=1000) == "max_duration"
    assert room.end("agent_ended", now=20)
    assert not room.end("ops", now=21)
    assert room.end_reason == "agent_ended" and room.caller_status == "ended"
    assert not room.set_caller_status("live")
    msg = room.to_message()
    assert msg["state"] == "ended" and msg["tracks"] == {"camera": False, "screen": False}
    json.dumps(msg)


def test_phone_numbers() -> None:
    assert normalise("20000012", "+371") == "+37120000012"
    assert normalise("+44 20 7946 0958", "+371") == "+442079460958"
    assert normalise("0037120000012", "+49") == "+37120000012"
    for bad in ("", "abc", "+1", "12"):
        with pytest.raises(BadPhone):
            normalise(bad, "+371")
    assert mask("+37120000012") == "+371 ••••••12"


def test_rate_limits() -> None:
    bucket = TokenBucket(rate=1, burst=2, now=0)
    assert bucket.take(0) and bucket.take(0) and not bucket.take(0)
    assert bucket.take(1.0)
    limiter = KeyedLimiter(per_minute=2, max_keys=2)
    assert limiter.allow("a", 0) and limiter.allow("a", 0) and not limiter.allow("a", 0)
    assert limiter.allow("b", 0) and limiter.allow("c", 0)
    assert limiter.allow("a", 0)  # "a" was evicted: bounded memory beats a perfect count
