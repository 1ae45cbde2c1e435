"""Fixtures for the local Live engine: a real TLS server on a free port, and real google-genai clients."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from google import genai
from google.genai import types

from devtools.procs import free_port
from services.common.tls import client_context, ensure_dev_ca
from services.local_live.config import LiveConfig
from services.local_live.server import Engine, bound_port, start

API_KEY = "test-live-key"

DECLARATIONS = [
    {"name": "search_words", "description": "Search words.", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}, "language": {"type": "string"},
                                         "level": {"type": "string"}, "limit": {"type": "integer"}}}},
    {"name": "get_word_details", "description": "Word details.", "parameters": {
        "type": "object", "properties": {"id": {"type": "string"}, "written": {"type": "string"}}}},
    {"name": "get_kanji_details", "description": "Kanji details.", "parameters": {
        "type": "object", "properties": {"character": {"type": "string"}}}},
    {"name": "get_user_progress", "description": "Progress.", "parameters": {
        "type": "object", "properties": {"entity_type": {"type": "string"}, "group": {"type": "string"}}}},
    {"name": "get_user_reviewable_items", "description": "Due items.", "parameters": {
        "type": "object", "properties": {"limit": {"type": "integer"}}}},
]



def system_instruction(language: str = "en", name: str = "Aki") -> str:
    return ('You are Kotoba, a friendly Japanese tutor.\n<learner-context>\n'
            f'{{"summary": "N5 learner", "language": "{language}", "base_level": "N5", "display_name": "{name}"}}'
            '\n</learner-context>')


@dataclass
class LiveServer:
    port: int
    ca_file: Path
    engine: Engine

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self, api_key: str = API_KEY, headers: dict[str, str] | None = None) -> genai.Client:
        return genai.Client(api_key=api_key, http_options=types.HttpOptions(
            base_url=self.base_url, api_version="v1beta", headers=headers,
            async_client_args={"ssl": client_context(self.ca_file)}))

    def config(self, **extra) -> types.LiveConnectConfig:
        options = dict(response_modalities=["TEXT"], system_instruction=system_instruction(),
                       tools=[{"function_declarations": DECLARATIONS}])
        options.update(extra)
        return types.LiveConnectConfig(**options)

    def connect(self, config: types.LiveConnectConfig | None = None, headers: dict[str, str] | None = None,
                api_key: str = API_KEY):
        return self.client(api_key, headers).aio.live.connect(model="gemini-live-2.5-flash",
                                                              config=config or self.config())


@contextlib.asynccontextmanager
async def running_engine(tmp: Path, **env: str) -> AsyncIterator[LiveServer]:
    ca = ensure_dev_ca(tmp / "tls")
    config = LiveConfig.from_env({"KOTOBA_LIVE_ADDR": f"127.0.0.1:{free_port()}", "KOTOBA_LIVE_CA_FILE": str(ca),
                                  "KOTOBA_LIVE_API_KEY": API_KEY, **env})
    server, engine = await start(config)
    try:
        yield LiveServer(bound_port(server), ca, engine)
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="session")
async def live(tmp_path_factory) -> AsyncIterator[LiveServer]:
    """One engine for the whole session (connections are independent)."""
    async with running_engine(tmp_path_factory.mktemp("live")) as server:
        yield server


@pytest.fixture
def live_factory(tmp_path) -> Callable[..., contextlib.AbstractAsyncContextManager[LiveServer]]:
    """A separate engine with its own env (server-wide faults and the like)."""
    return lambda **env: running_engine(tmp_path, **env)
