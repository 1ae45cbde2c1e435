"""The local-only demo sign-in endpoint: three demo learners in local mode, absent (404) in prod."""

from __future__ import annotations

from types import SimpleNamespace

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.common.auth import TokenVerifier
from services.gateway import dev_signin
from services.gateway.httputil import make_middleware


def _config(config, environment: str, algorithm: str = "HS256"):
    auth = config.auth if algorithm == "HS256" else SimpleNamespace(algorithm=algorithm, token_ttl_seconds=3600)
    return SimpleNamespace(common=SimpleNamespace(environment=environment, auth=auth))


async def _client(cfg) -> TestClient:
    app = web.Application(middlewares=[make_middleware((), True)])
    dev_signin.add_routes(app.router, cfg)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_local_mode_signs_in_demo_learners_only(config):
    client = await _client(_config(config, "local"))
    try:
        r = await client.get(dev_signin.DEV_TOKEN_PATH)
        assert [d["user"] for d in (await r.json())["learners"]] == ["demo-n5", "demo-n4", "demo-advanced"]
        r = await client.post(dev_signin.DEV_TOKEN_PATH, json={"user": "demo-n4"})
        body = await r.json()
        assert r.status == 200 and TokenVerifier(config.auth).verify(body["token"]).user_id == "demo-n4"
        for bad in ({"user": "someone-else"}, {"user": ["demo-n5"]}, [], {}):
            r = await client.post(dev_signin.DEV_TOKEN_PATH, json=bad)
            assert r.status == 400 and (await r.json())["error"]["code"] == "bad_request"
        r = await client.post(dev_signin.DEV_TOKEN_PATH, data=b"{not json")
        assert r.status == 400
    finally:
        await client.close()


async def test_prod_has_no_demo_sign_in(config):
    for cfg in (_config(config, "prod", "RS256"), _config(config, "local", "RS256"), _config(config, "prod")):
        client = await _client(cfg)
        try:
            for method in ("GET", "POST"):
                r = await client.request(method, dev_signin.DEV_TOKEN_PATH, json={"user": "demo-n5"})
                assert r.status == 404, (cfg, method)
        finally:
            await client.close()
