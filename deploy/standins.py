"""Local stand-ins for prod's cloud endpoints in deploy-check: Bedrock Titan, a JWKS issuer, moto.

Only endpoints differ from the rendered prod overlay: the workloads keep `KOTOBA_EMBEDDER=titan`, RS256
tokens checked against a JWKS, DynamoDB and s3:// snapshots.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, handler) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeBedrock(_Server):
    """InvokeModel for Titan text v2: a deterministic unit vector per input text."""

    def __init__(self) -> None:
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                dims = int(body.get("dimensions", 1024))
                seed = int.from_bytes(hashlib.sha256(body["inputText"].encode()).digest()[:4], "little")
                vec = np.random.default_rng(seed).standard_normal(dims)
                vec /= np.linalg.norm(vec)
                payload = json.dumps({"embedding": vec.tolist(),
                                      "inputTextTokenCount": len(body["inputText"].split())}).encode()
                counter.calls += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.calls = 0
        super().__init__(Handler)


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Issuer(_Server):
    """An RS256 identity provider: a fresh key, its JWKS over HTTP, and tokens signed with it."""

    KID = "deploy-check"

    def __init__(self, issuer: str, audience: str) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.issuer, self.audience = issuer, audience
        pub = self.key.public_key().public_numbers()
        jwks = json.dumps({"keys": [{"kty": "RSA", "kid": self.KID, "use": "sig", "alg": "RS256",
                                     "n": _b64(pub.n), "e": _b64(pub.e)}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(jwks)))
                self.end_headers()
                self.wfile.write(jwks)

        super().__init__(Handler)
        self.jwks_url = f"{self.endpoint}/.well-known/jwks.json"

    def token(self, user: str, roles: tuple[str, ...] = (), ttl: int = 3600) -> str:
        import jwt

        now = int(time.time())
        return jwt.encode({"sub": user, "iss": self.issuer, "aud": self.audience, "iat": now, "exp": now + ttl,
                           "roles": list(roles)}, self.key, algorithm="RS256", headers={"kid": self.KID})


class Moto:
    """moto server as a process (DynamoDB and S3)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("moto server did not start")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
