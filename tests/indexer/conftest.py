"""Indexer/embedder fixtures: a small local HTTP server speaking the Bedrock InvokeModel API."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest


class FakeBedrock:
    """POST /model/<id>/invoke → {"embedding", "inputTextTokenCount"}; `faults` is a queue of statuses to answer."""

    def __init__(self) -> None:
        self.faults: list[int] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake.lock:
                    fake.requests.append({"path": self.path, "body": body})
                    status = fake.faults.pop(0) if fake.faults else 200
                if status != 200:
                    kind = {429: "ThrottlingException", 500: "InternalServerException",
                            400: "ValidationException"}.get(status, "ServiceUnavailableException")
                    payload = json.dumps({"message": f"fake {kind}"}).encode()
                    self.send_response(status)
                    self.send_header("x-amzn-ErrorType", kind)
                else:
                    dims = int(body.get("dimensions", 1024))
                    seed = int.from_bytes(hashlib.sha256(body["inputText"].encode()).digest()[:4], "little")
                    vec = np.random.default_rng(seed).standard_normal(dims)
                    if body.get("normalize", True):
                        vec /= np.linalg.norm(vec)
                    payload = json.dumps({"embedding": vec.tolist(),
                                          "inputTextTokenCount": len(body["inputText"].split())}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bedrock():
    fake = FakeBedrock()
    yield fake
    fake.close()
