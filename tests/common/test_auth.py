import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.auth import AuthError, TokenVerifier, mint_token
from services.common.config import CommonConfig

LOCAL = CommonConfig.from_env({}).auth


def test_round_trip_and_roles():
    verifier = TokenVerifier(LOCAL)
    ident = verifier.verify(mint_token(LOCAL, "demo-n5"))
    assert ident.user_id == "demo-n5" and not ident.is_admin
    assert verifier.verify(mint_token(LOCAL, "ops", ("admin",))).is_admin


def _claims(**over):
    now = int(time.time())
    claims = {"sub": "u1", "iss": LOCAL.issuer, "aud": LOCAL.audience, "iat": now, "exp": now + 60}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


# Tokens are minted when the test runs, not when it is collected: in a long suite a token made at
# collection time has expired (exp = now + 60 s) before its turn comes, and every case reads "expired".
@pytest.mark.parametrize(
    "make_token, words",
    [
        (lambda: jwt.encode(_claims(exp=int(time.time()) - 60), LOCAL.secret, "HS256"), "expired"),
        (lambda: jwt.encode(_claims(), "another-secret-of-sufficient-length!", "HS256"), "signature"),
        (lambda: jwt.encode(_claims(aud="someone-else"), LOCAL.secret, "HS256"), "audience"),
        (lambda: jwt.encode(_claims(iss="evil"), LOCAL.secret, "HS256"), "issuer"),
        (lambda: jwt.encode(_claims(sub=None), LOCAL.secret, "HS256"), "sub"),
        (lambda: "not.a.token", "invalid"),
        (lambda: "", "missing"),
    ],
    ids=["expired", "signature", "audience", "issuer", "sub", "invalid", "missing"],
)
def test_bad_tokens_rejected(make_token, words):
    with pytest.raises(AuthError) as err:
        TokenVerifier(LOCAL).verify(make_token())
    assert words in str(err.value)


def test_alg_none_rejected():
    token = jwt.encode(_claims(), key=None, algorithm="none")
    with pytest.raises(AuthError):
        TokenVerifier(LOCAL).verify(token)


def test_missing_role_is_visible():
    ident = TokenVerifier(LOCAL).verify(mint_token(LOCAL, "learner"))
    assert "admin" not in ident.roles


def test_rs256_via_jwks():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        auth = CommonConfig.from_env({
            "KOTOBA_ENV": "prod",
            "KOTOBA_JWKS_URL": f"http://127.0.0.1:{server.server_port}/jwks.json",
            "KOTOBA_JWT_ISSUER": "https://cognito.example",
        }).auth
        good = jwt.encode(_claims(iss=auth.issuer, **{"cognito:groups": ["admin"]}), key, "RS256",
                          headers={"kid": "k1"})
        ident = TokenVerifier(auth).verify(good)
        assert ident.user_id == "u1" and ident.is_admin
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(_claims(iss=auth.issuer), other, "RS256", headers={"kid": "k1"})
        with pytest.raises(AuthError):
            TokenVerifier(auth).verify(forged)
        hs = jwt.encode(_claims(iss=auth.issuer), "x" * 40, "HS256", headers={"kid": "k1"})
        with pytest.raises(AuthError):
            TokenVerifier(auth).verify(hs)
    finally:
        server.shutdown()


def test_cli_token_prints_token_alone():
    out = subprocess.run([sys.executable, "-m", "services.cli", "token", "--user", "demo-n5", "--admin"],
                         capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    lines = out.stdout.splitlines()
    assert len(lines) == 1
    ident = TokenVerifier(LOCAL).verify(lines[0])
    assert ident.user_id == "demo-n5" and ident.is_admin
