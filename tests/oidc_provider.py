"""A real OpenID provider for the single sign-on tests, run as its own process on loopback.

Authlib's authorization server on Flask: discovery, JWKS, the authorization code grant
with PKCE (S256, required) and the OpenID Connect extension (ID tokens, nonce), and
RP-initiated logout (Authlib's EndSessionEndpoint). Its users log in on a form of its own,
and it remembers them in its own session cookie (so logout at the provider shows).

    python tests/oidc_provider.py --port P --client-id ID --client-secret S [--no-end-session]

prints `ready <issuer>` when it listens. Test knobs (JSON to POST /control):
    {"client": {"redirect_uri": URL, "post_logout_uri": URL}}  the client's registered
        URIs (a test's server has a port of its own)
    {"users": {"olga": {"groups": ["cc-agents"]}}}  who may log in (sub = "id-<name>")
    {"mode": "normal" | "wrong_audience" | "expired" | "bad_signature" | "unknown_key"}
        how the next ID tokens are made: another audience; exp an hour ago; exp 30 s ago
        (within the relying party's clock skew); another nonce than the request's; signed
        by a key that is not published but with the current key's id; signed by a key
        with an id the JWKS never had
    {"rotate": true}    a new signing key with a new id; the JWKS publishes only it
GET /control answers {"jwks_fetches", "logouts", "kid"}.
"""

from __future__ import annotations

import argparse
import hmac
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import urlencode

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.models import AuthorizationCodeMixin
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import Flask, Response, jsonify, request, session
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

MODES = ("normal", "wrong_audience", "expired", "late", "wrong_nonce", "bad_signature",
         "unknown_key")


def new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


@dataclass
class State:
    issuer: str
    key: RSAKey = field(default_factory=lambda: new_key("k1"))
    stranger: RSAKey = field(default_factory=lambda: new_key("stranger"))
    every_key: list[RSAKey] = field(default_factory=list)  # for id_token_hint checks
    mode: str = "normal"
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    nonces: set[str] = field(default_factory=set)
    jwks_fetches: int = 0
    logouts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    secret: str
    redirect_uris: list[str]
    client_metadata: dict[str, Any]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in ("openid", "profile", "email"))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic" if endpoint == "token" else True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: dict[str, Any]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


def build(state: State, client: Client, end_session: bool) -> Flask:
    app = Flask("oidc_provider")
    app.secret_key = secrets.token_hex(32)

    class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

        def save_authorization_code(self, code: str, req: Any) -> None:
            data = req.payload.data
            with state.lock:
                if data.get("nonce"):
                    state.nonces.add(data["nonce"])
                state.codes[code] = Code(
                    code, req.client.get_client_id(), req.payload.redirect_uri,
                    req.payload.scope, req.user, data.get("nonce"),
                    data.get("code_challenge"), data.get("code_challenge_method"),
                    int(time.time()),
                )  # fmt: skip

        def query_authorization_code(self, code: str, client: Client) -> Code | None:
            found = state.codes.get(code)
            return found if found and found.client_id == client.client_id else None

        def delete_authorization_code(self, authorization_code: Code) -> None:
            state.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: Code) -> dict[str, Any]:
            return authorization_code.user

    class IdToken(OpenIDCode):  # type: ignore[misc]
        def exists_nonce(self, nonce: str, req: Any) -> bool:
            return nonce in state.nonces

        def get_client_algorithm(self, client: Client) -> str:
            return "RS256"

        def resolve_client_private_key(self, client: Client) -> RSAKey:
            return state.stranger if state.mode in ("bad_signature", "unknown_key") else state.key

        def get_encode_header(self, client: Client) -> dict[str, str]:
            kid = "stranger" if state.mode == "unknown_key" else state.key.kid
            return {"alg": "RS256", "kid": str(kid)}

        def get_client_claims(self, client: Client) -> dict[str, Any]:
            now = int(time.time())
            aud = "someone-else" if state.mode == "wrong_audience" else client.client_id
            if state.mode == "expired":
                return {"iss": state.issuer, "aud": [aud], "iat": now - 7200,
                        "exp": now - 3600, "auth_time": now - 7200}  # fmt: skip
            if state.mode == "late":
                return {"iss": state.issuer, "aud": [aud], "iat": now - 330, "exp": now - 30}
            return {"iss": state.issuer, "aud": [aud], "iat": now, "exp": now + 300}

        def get_authorization_code_claims(self, authorization_code: Code) -> dict[str, Any]:
            claims = dict(super().get_authorization_code_claims(authorization_code))
            if state.mode == "wrong_nonce":
                claims["nonce"] = "not-the-one-asked-for"
            return claims

        def generate_user_info(self, user: dict[str, Any], scope: str) -> UserInfo:
            return UserInfo(sub=user["sub"], preferred_username=user["name"],
                            name=user["name"].title(), groups=user["groups"])  # fmt: skip

    class EndSession(EndSessionEndpoint):  # type: ignore[misc]
        def get_server_jwks(self) -> KeySet:
            return KeySet(list(state.every_key))

        def end_session(self, end_session_request: Any) -> None:
            session.clear()
            with state.lock:
                state.logouts += 1

    server = AuthorizationServer(app, query_client=lambda cid: client if cid == client.client_id
                                 else None, save_token=lambda token, req: None)  # fmt: skip
    server.register_grant(CodeGrant, [CodeChallenge(required=True), IdToken(require_nonce=True)])
    if end_session:
        server.register_endpoint(EndSession)

    @app.get("/.well-known/openid-configuration")
    def discovery() -> Response:
        meta = {
            "issuer": state.issuer,
            "authorization_endpoint": state.issuer + "/authorize",
            "token_endpoint": state.issuer + "/token",
            "jwks_uri": state.issuer + "/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email"],
        }
        if end_session:
            meta["end_session_endpoint"] = state.issuer + "/logout"
        return jsonify(meta)

    @app.get("/jwks")
    def jwks() -> Response:
        with state.lock:
            state.jwks_fetches += 1
            return jsonify(KeySet([state.key]).as_dict(private=False))

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize() -> Any:
        name = session.get("user")
        if request.method == "POST":
            name = request.form.get("username", "")
            if name not in state.users:
                return login_form(error=True)
            session["user"] = name
        if name not in state.users:
            return login_form(error=False)
        user = {"name": name, **state.users[name]}
        try:
            grant = server.get_consent_grant(end_user=user)
        except OAuth2Error as exc:
            return Response(f"refused: {exc.error}", status=400)
        return server.create_authorization_response(grant=grant, grant_user=user)

    def login_form(error: bool) -> Response:
        # The query (client_id, state, nonce, PKCE challenge, ...) goes along in the action.
        action = escape("/authorize?" + urlencode(list(request.args.items(multi=True))))
        html = (
            "<!doctype html><title>Test provider</title><h1>Test provider</h1>"
            + ("<p id='bad'>unknown user</p>" if error else "")
            + f"<form method='post' action='{action}'><input name='username' id='username'>"
            "<button id='signin' type='submit'>Sign in</button></form>"
        )
        return Response(html, mimetype="text/html")

    @app.post("/token")
    def token() -> Any:
        return server.create_token_response()

    @app.route("/logout", methods=["GET", "POST"])
    def logout() -> Any:
        try:
            done = server.create_endpoint_response("end_session")
        except OAuth2Error as exc:
            return Response(f"refused: {exc.error}", status=400)
        return done or Response("<!doctype html><p id='logged-out'>logged out</p>",
                                mimetype="text/html")  # fmt: skip

    @app.route("/control", methods=["GET", "POST"])
    def control() -> Response:
        if request.method == "POST":
            body = request.get_json(force=True)
            with state.lock:
                if "client" in body:
                    client.redirect_uris = [body["client"]["redirect_uri"]]
                    client.client_metadata["post_logout_redirect_uris"] = [
                        body["client"]["post_logout_uri"]
                    ]
                for name, user in body.get("users", {}).items():
                    state.users[name] = {"sub": f"id-{name}", "groups": [], **user}
                if "mode" in body:
                    assert body["mode"] in MODES, body["mode"]
                    state.mode = body["mode"]
                if body.get("rotate"):
                    state.key = new_key(f"k{len(state.every_key) + 1}")
                    state.every_key.append(state.key)
        return jsonify({"jwks_fetches": state.jwks_fetches, "logouts": state.logouts,
                        "kid": state.key.kid, "mode": state.mode})  # fmt: skip

    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="localhost")
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret", required=True)
    p.add_argument("--no-end-session", action="store_true")
    a = p.parse_args()
    state = State(issuer=f"http://{a.host}:{a.port}")
    state.every_key.append(state.key)
    client = Client(a.client_id, a.client_secret, [], {"post_logout_redirect_uris": []})
    app = build(state, client, not a.no_end_session)
    httpd = make_server("127.0.0.1", a.port, app, threaded=True)
    print("ready", state.issuer, flush=True)
    sys.stdout.close()  # nothing more: the test reads one line
    httpd.serve_forever()


if __name__ == "__main__":
    main()
