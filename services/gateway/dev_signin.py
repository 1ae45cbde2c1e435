"""Local-only "sign in as a demo learner": `GET /api/v1/dev/token` lists the demo learners, `POST` with
`{"user": "demo-n5"}` returns a short-lived token for one of them.

The routes are registered only when KOTOBA_ENV=local (and tokens are locally signed, HS256); in prod they do
not exist (404) and the token comes from the app's sign-in (docs/protocol.md, "Signing in").
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from aiohttp import web

from services.common.auth import mint_token
from services.gateway.httputil import json_error, json_response

if TYPE_CHECKING:
    from services.gateway.config import GatewayConfig

DEV_TOKEN_PATH = "/api/v1/dev/token"
# The seeded demo learners (services/seed/learners.py): only these can be signed in as, never an arbitrary id.
DEMO_LEARNERS = (
    {"user": "demo-n5", "label": "Beginner (N5)"},
    {"user": "demo-n4", "label": "Elementary (N4)"},
    {"user": "demo-advanced", "label": "Advanced (N2)"},
)
DEMO_TOKEN_TTL_S = 3600


def enabled(config: GatewayConfig) -> bool:
    """Demo sign-in exists only in local mode with the dev HS256 secret, never in prod."""
    auth = config.common.auth
    return config.common.environment == "local" and auth.algorithm == "HS256"


def add_routes(router: web.UrlDispatcher, config: GatewayConfig) -> None:
    """Register /api/v1/dev/token (GET and POST) when demo sign-in is enabled."""
    if not enabled(config):
        return
    allowed = {d["user"] for d in DEMO_LEARNERS}

    async def learners(_: web.Request) -> web.Response:
        return json_response(200, {"learners": list(DEMO_LEARNERS)})

    async def token(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return json_error(400, "bad_request", "send JSON like {\"user\": \"demo-n5\"}")
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str) or user not in allowed:
            return json_error(400, "bad_request", f"user must be one of {', '.join(sorted(allowed))}")
        ttl = min(DEMO_TOKEN_TTL_S, config.common.auth.token_ttl_seconds or DEMO_TOKEN_TTL_S)
        return json_response(200, {"token": mint_token(config.common.auth, user, ttl_seconds=ttl), "user": user,
                                   "expires_at": int(time.time()) + ttl})

    router.add_get(DEV_TOKEN_PATH, learners, allow_head=False)
    router.add_post(DEV_TOKEN_PATH, token)
