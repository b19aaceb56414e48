"""Single sign-on for staff: OpenID Connect, authorization code flow with PKCE
(docs/security.md, "Single sign-on"). Registered only when `auth.oidc.issuer` is set.

    GET /auth/oidc/login?next=/ops  a new state, nonce and PKCE verifier; 302 to the provider
    GET /auth/oidc/callback         the provider's answer: state (single use, bound to this
                                    browser, short-lived), code -> tokens, ID token checked,
                                    role mapped, a login like a password login's
    GET /auth/oidc/refused          the refusal page, in another language

The OAuth 2 client is Authlib's (`AsyncOAuth2Client`: the authorization URL with the S256
challenge, the token request with the client secret and the verifier); the ID token is
checked with joserfc (signature against the provider's JWKS, re-fetched when a token
names a key id it has not seen: key rotation; then iss, aud, azp, exp, iat, nbf with
`clock_skew_s` leeway, and the nonce).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx2
from aiohttp import web
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc6749.errors import OAuth2Error
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, ExpiredTokenError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from server.core.appkeys import AUDIT, CLOCK, CONFIG, DB, LOGIN_LIMITER, SECRETS
from server.core.config import OidcConfig
from server.core.db import User, token_hash
from server.http.auth import check_new_username, login_cookie_name, set_cookie
from server.http.net import client_address
from server.http.oidc_pages import known_reason, refused_page
from server.http.web_auth import LOGOUT_REDIRECT, revoke_sockets

log = logging.getLogger(__name__)

# Pages a sign-in may return to (never a URL from the query: no open redirect).
RETURN_PAGES = ("/agent", "/ops", "/dpo", "/admin")
# Asymmetric signatures only: "none" and HMAC (keyed with the client secret) are refused.
SIGNING_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
METADATA_TTL_S = 3600.0


def binding_cookie_name(secure: bool) -> str:
    return "__Host-ca_sso" if secure else "ca_sso"


def hint_cookie_name(secure: bool) -> str:
    # The last ID token, sent back to the provider as id_token_hint at logout.
    return "__Host-ca_sso_hint" if secure else "ca_sso_hint"


class Refused(Exception):
    """A sign-in that may not go on: `reason` picks the page, `detail` is for the log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# --- pure logic ---------------------------------------------------------------------------
def mapped_role(claims: dict[str, Any], role_claim: str, role_map: dict[str, str]) -> str | None:
    """The role of the first role_map entry (file order) whose group is in the claim."""
    value = claims.get(role_claim)
    groups = {value} if isinstance(value, str) else set(value) if isinstance(value, list) else set()
    for group, role in role_map.items():
        if group in groups:
            return role
    return None


def subject_of(issuer: str, claims: dict[str, Any]) -> str:
    return f"{issuer} {claims['sub']}"


# --- the provider ------------------------------------------------------------------------
class Provider:
    """One OpenID provider: its discovery document, its keys, and the OAuth 2 client."""

    def __init__(self, cfg: OidcConfig, client_secret: str, redirect_uri: str) -> None:
        self.cfg = cfg
        self.client = AsyncOAuth2Client(
            client_id=cfg.client_id,
            client_secret=client_secret,
            scope=" ".join(cfg.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
            timeout=cfg.http_timeout_s,
        )
        self._meta: dict[str, Any] | None = None
        self._meta_at = 0.0
        self._keys: KeySet | None = None
        self._lock = asyncio.Lock()
        self.jwks_fetches = 0  # how often the keys were fetched (a test sees rotation)

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            # withhold_token: these are the provider's public documents, not an API call.
            response = await self.client.request("GET", url, withhold_token=True)
            response.raise_for_status()
            data = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            raise Refused("provider", f"GET {url}: {exc}") from None
        if not isinstance(data, dict):
            raise Refused("provider", f"GET {url}: not a JSON object")
        return data

    async def metadata(self, now: float) -> dict[str, Any]:
        if self._meta is None or now - self._meta_at > METADATA_TTL_S:
            meta = await self._get_json(self.cfg.issuer + "/.well-known/openid-configuration")
            # OpenID Connect Discovery 4.3: the document's issuer is exactly the one asked.
            if meta.get("issuer") != self.cfg.issuer:
                raise Refused("provider", f"discovery names issuer {meta.get('issuer')!r}")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(meta.get(key), str):
                    raise Refused("provider", f"discovery document has no {key}")
            self._meta, self._meta_at = meta, now
        return self._meta

    async def keys(self, now: float, *, refresh: bool = False) -> KeySet:
        async with self._lock:
            if self._keys is None or refresh:
                data = await self._get_json((await self.metadata(now))["jwks_uri"])
                try:
                    self._keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
                except (JoseError, KeyError, TypeError, ValueError) as exc:
                    raise Refused("provider", f"JWKS not usable: {exc}") from None
                self.jwks_fetches += 1
            return self._keys

    async def authorization_url(self, state: str, nonce: str, verifier: str, now: float) -> str:
        meta = await self.metadata(now)
        url, _ = self.client.create_authorization_url(
            meta["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
        )
        return str(url)

    async def exchange(self, code: str, verifier: str, now: float) -> dict[str, Any]:
        meta = await self.metadata(now)
        try:
            token = await self.client.fetch_token(
                meta["token_endpoint"], grant_type="authorization_code", code=code,
                code_verifier=verifier,
            )  # fmt: skip
        except OAuth2Error as exc:
            raise Refused("provider", f"token endpoint: {exc.error}") from None
        except httpx2.HTTPError as exc:
            raise Refused("provider", f"token endpoint: {exc}") from None
        if not isinstance(token.get("id_token"), str):
            raise Refused("provider", "the token response has no id_token")
        return dict(token)

    async def verify(self, id_token: str, nonce: str, now: float) -> dict[str, Any]:
        """The ID token's claims, or Refused: bad_signature / token_invalid."""
        meta = await self.metadata(now)
        offered = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        algs = [a for a in SIGNING_ALGS if a in offered] or ["RS256"]
        try:
            kid = jws.extract_compact(id_token.encode()).headers().get("kid")
        except (JoseError, ValueError) as exc:
            raise Refused("token_invalid", f"not a JWS: {exc}") from None
        keys = await self.keys(now)
        if kid is not None and all(k.kid != kid for k in keys.keys):
            # The provider rotated its keys: fetch them again, once for this token. The
            # token came from the token endpoint over our own request, not from the
            # browser, so a client cannot make us fetch at will.
            keys = await self.keys(now, refresh=True)
        try:
            token = jwt.decode(id_token, keys, algorithms=algs)
        except (BadSignatureError, InvalidKeyIdError) as exc:
            raise Refused("bad_signature", f"{type(exc).__name__}: kid {kid!r}") from None
        except (JoseError, ValueError) as exc:
            raise Refused("token_invalid", f"{type(exc).__name__}: {exc}") from None
        claims = dict(token.claims)
        registry = jwt.JWTClaimsRegistry(
            now=int(now), leeway=self.cfg.clock_skew_s,
            iss={"essential": True, "value": self.cfg.issuer},
            aud={"essential": True, "value": self.cfg.client_id},
            sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )  # fmt: skip
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise Refused("token_invalid", "expired") from None
        except JoseError as exc:
            raise Refused("token_invalid", f"{type(exc).__name__}: {exc}") from None
        if int(claims["iat"]) > now + self.cfg.clock_skew_s:
            raise Refused("token_invalid", "issued in the future")
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.cfg.client_id:
            raise Refused("token_invalid", "several audiences and azp is not this client")
        return claims

    async def end_session_url(self, id_token: str | None, post_logout: str, now: float) -> str:
        """RP-initiated logout at the provider, or "" when it offers none."""
        try:
            endpoint = (await self.metadata(now)).get("end_session_endpoint")
        except Refused:
            return ""
        if not isinstance(endpoint, str):
            return ""
        params = {"client_id": self.cfg.client_id, "post_logout_redirect_uri": post_logout}
        if id_token:
            params["id_token_hint"] = id_token
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"

    async def close(self) -> None:
        await self.client.aclose()


PROVIDER = web.AppKey("oidc_provider", Provider)


# --- handlers ----------------------------------------------------------------------------
def _return_to(value: str | None) -> str:
    return value if value in RETURN_PAGES else "/agent"


async def start(request: web.Request) -> web.StreamResponse:
    app, cfg = request.app, request.app[CONFIG]
    now = app[CLOCK]()
    if not await app[LOGIN_LIMITER].check(client_address(request), now):
        return refused_page(request, "provider", 429, "/agent")
    return_to = _return_to(request.query.get("next"))
    state, nonce, binding = (secrets.token_urlsafe(32) for _ in range(3))
    verifier = secrets.token_urlsafe(64)  # 86 characters: RFC 7636 allows 43-128
    try:
        url = await app[PROVIDER].authorization_url(state, nonce, verifier, now)
    except Refused as exc:
        log.warning("single sign-on cannot start: %s", exc.detail)
        return refused_page(request, "provider", 502, return_to)
    await app[DB].add_oidc_state(state, binding, nonce, verifier, return_to, now,
                                 cfg.auth.oidc.state_ttl_s)  # fmt: skip
    response = web.HTTPFound(url)
    # Lax, not Strict: it must come back on the provider's redirect, a cross-site
    # navigation. It is not a login, only this browser's half of the state.
    response.set_cookie(binding_cookie_name(cfg.secure_cookies), binding,
                        max_age=cfg.auth.oidc.state_ttl_s, path="/", secure=cfg.secure_cookies,
                        httponly=True, samesite="Lax")  # fmt: skip
    return response


async def _user_for(request: web.Request, claims: dict[str, Any], role: str) -> User:
    app, ocfg = request.app, request.app[CONFIG].auth.oidc
    db, now = app[DB], app[CLOCK]()
    subject = subject_of(ocfg.issuer, claims)
    user = await db.user_by_sso_subject(subject)
    if user is None:
        raw = claims.get(ocfg.username_claim)
        if not isinstance(raw, str):
            raise Refused("account", f"no {ocfg.username_claim} claim")
        # An e-mail-like name (Entra's UPN): its local part; user names have no "@".
        raw = raw.split("@", 1)[0]
        try:
            name = check_new_username(raw, [u.username for u in await db.list_users()])
        except ValueError as exc:
            # Never joined to an existing local account of that name: whoever controls
            # names at the provider would take it over.
            raise Refused("account", f"user name {raw!r}: {exc}") from None
        await db.add_sso_user(name, subject, role, now)
        await app[AUDIT].record(actor="sso", role="system", action="user.create",
                                object=name, reason=role)  # fmt: skip
        user = await db.user_by_sso_subject(subject)
        assert user is not None
    elif user.role != role:
        # The provider's groups are the truth for an SSO account: a new role every login
        # that maps to one; its other logins end (as an admin's role change does).
        await db.update_user(user.id, role=role, disabled=user.disabled)
        await db.end_logins(user.id)
        revoke_sockets(app, user.id, "role_changed")
        await app[AUDIT].record(actor="sso", role="system", action="user.update",
                                object=user.username, reason=f"role {user.role} -> {role}")
        user = await db.user_by_sso_subject(subject)
        assert user is not None
    if user.disabled:
        raise Refused("account", f"account {user.username} is disabled")
    return user


async def callback(request: web.Request) -> web.StreamResponse:
    app, cfg = request.app, request.app[CONFIG]
    now = app[CLOCK]()
    return_to = "/agent"
    who = "-"
    try:
        if not await app[LOGIN_LIMITER].check(client_address(request), now):
            raise Refused("provider", "too many sign-ins from this address")
        state = request.query.get("state", "")
        row = await app[DB].take_oidc_state(state) if 0 < len(state) < 200 else None
        if row is None or now - row["created_at"] > cfg.auth.oidc.state_ttl_s:
            raise Refused("state_invalid", "state unknown, used or expired")
        return_to = row["return_to"]
        binding = request.cookies.get(binding_cookie_name(cfg.secure_cookies), "")
        if not hmac.compare_digest(token_hash(binding), row["binding_hash"]):
            raise Refused("state_foreign", "state of another browser")
        if "error" in request.query:
            raise Refused("provider", f"provider answered {request.query['error'][:64]!r}")
        code = request.query.get("code", "")
        if not 0 < len(code) < 2048:
            raise Refused("provider", "no code")
        provider = app[PROVIDER]
        token = await provider.exchange(code, row["code_verifier"], now)
        claims = await provider.verify(token["id_token"], row["nonce"], now)
        who = str(claims.get(cfg.auth.oidc.username_claim, "-"))[:64]
        role = mapped_role(claims, cfg.auth.oidc.role_claim, cfg.auth.oidc.role_map)
        if role is None:
            raise Refused("no_role", f"no group of {cfg.auth.oidc.role_claim} is mapped")
        user = await _user_for(request, claims, role)
    except Refused as exc:
        log.warning("single sign-on refused (%s): %s", exc.reason, exc.detail)
        await app[AUDIT].record(actor=who, role="-", action="login", result="denied",
                                reason=f"sso_{exc.reason}")  # fmt: skip
        status = 502 if exc.reason == "provider" else 403
        response = refused_page(request, known_reason(exc.reason), status, return_to)
        response.del_cookie(binding_cookie_name(cfg.secure_cookies), path="/")
        return response
    login = secrets.token_urlsafe(32)  # a new id on every login: no session fixation
    await app[DB].add_login(login, user.id, now, cfg.auth.session_ttl_s)
    await app[AUDIT].record(actor=user.username, role=user.role, action="login", reason="sso")
    response = web.HTTPSeeOther(return_to)
    set_cookie(response, login_cookie_name(cfg.secure_cookies), login,
               secure=cfg.secure_cookies, max_age=cfg.auth.session_ttl_s)  # fmt: skip
    set_cookie(response, hint_cookie_name(cfg.secure_cookies), token["id_token"],
               secure=cfg.secure_cookies, max_age=cfg.auth.session_ttl_s)  # fmt: skip
    response.del_cookie(binding_cookie_name(cfg.secure_cookies), path="/")
    return response


async def refused(request: web.Request) -> web.StreamResponse:
    reason = known_reason(request.query.get("reason", ""))
    return refused_page(request, reason, 200, _return_to(request.query.get("next")))


async def logout_url(request: web.Request, user: User) -> str:
    """Where the browser goes after logout: the provider's end_session_endpoint for an SSO
    account when it has one, else "" (stay on our page)."""
    if not user.sso:
        return ""
    cfg = request.app[CONFIG]
    hint = request.cookies.get(hint_cookie_name(cfg.secure_cookies))
    post_logout = cfg.http.public_url.rstrip("/") + "/agent"
    return await request.app[PROVIDER].end_session_url(hint, post_logout, request.app[CLOCK]())


async def _provider(app: web.Application) -> AsyncIterator[None]:
    yield
    with contextlib.suppress(Exception):
        await app[PROVIDER].close()


def setup(app: web.Application) -> None:
    cfg = app[CONFIG]
    if not cfg.auth.oidc.issuer:
        return
    secret = app[SECRETS].oidc_client_secret
    assert secret is not None  # load_secrets(need_oidc=True) refuses to start without it
    redirect_uri = cfg.http.public_url.rstrip("/") + "/auth/oidc/callback"
    app[PROVIDER] = Provider(cfg.auth.oidc, secret, redirect_uri)
    app[LOGOUT_REDIRECT] = logout_url
    app.cleanup_ctx.append(_provider)
    app.router.add_get("/auth/oidc/login", start)
    app.router.add_get("/auth/oidc/callback", callback)
    app.router.add_get("/auth/oidc/refused", refused)
