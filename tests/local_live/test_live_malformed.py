"""Malformed input over a raw WebSocket: each gets a protocol-error close, never a crash or a hang,
and other sessions keep working."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from google.genai import types
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from devtools.procs import free_port, stop, wait_until
from services.common.tls import client_context

pytestmark = pytest.mark.timeout(60)
PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
SETUP = json.dumps({"setup": {"model": "models/kotoba-local-permissive", "generationConfig": {"responseModalities": ["TEXT"]}}})


async def close_after(live, frames: list[str | bytes], path: str = PATH, key: str = "test-live-key"):
    """Send frames; return (code, reason) of the server's close."""
    async with connect(f"wss://127.0.0.1:{live.port}{path}?key={key}", ssl=client_context(live.ca_file),
                       max_size=None, open_timeout=5, close_timeout=5) as ws:
        try:
            for frame in frames:
                await ws.send(frame)
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "the server must close with a code, not drop the socket"
            return closed.rcvd.code, closed.rcvd.reason


@pytest.mark.parametrize(("frames", "code", "words"), [
    (["{not json"], 1007, "invalid JSON"),
    ([b"\xff\xfe binary"], 1007, "UTF-8"),
    (['{"setup": {}, "bogus": 1}'], 1007, "unknown field 'bogus'"),
    (['{"mystery": {}}'], 1007, "unknown field"),
    (['[1, 2]'], 1007, "JSON object"),
    (['{"client_content": {"turns": []}}'], 1008, "first message must be setup"),
    ([SETUP, SETUP], 1008, "already received"),
    ([SETUP, '{"client_content": {"turns": "nope"}}'], 1007, "turns"),
    ([SETUP, '{"realtime_input": {"audio": {"data": "***", "mime_type": "audio/pcm;rate=16000"}}}'], 1007,
     "base64"),
    ([SETUP, '{"realtime_input": {"audio": {"data": "AAAA", "mime_type": "audio/pcm;rate=44100"}}}'], 1007,
     "16000"),
    ([SETUP, '{"tool_response": {"functionResponses": [{"name": "x"}]}}'], 1007, "id"),
    (['{"setup": {"generationConfig": {"responseModalities": ["VIDEO"]}}}'], 1007, "modality"),
    (['{"setup": {"kotobaFaults": "explode=1"}}'], 1008, "unknown fault"),
    ([SETUP, '{"context_update": {"tools": [{"functionDeclarations": []}]}}'], 1007, "tools"),
    ([SETUP, '{"context_update": {"system_instruction": 5}}'], 1007, "systemInstruction"),
    ([SETUP, '{"context_update": {"bogus": 1}}'], 1007, "unknown field"),
])
async def test_malformed_frames_close_with_protocol_error(live, frames, code, words):
    got_code, reason = await close_after(live, frames)
    assert got_code == code and words in reason


async def test_huge_payload_closes_1009_and_others_keep_working(live):
    async with live.connect() as healthy:
        code, _ = await close_after(live, [SETUP, json.dumps({"realtime_input": {"text": "x" * (5 * 2**20)}})])
        assert code == 1009
        code, _ = await close_after(live, ["{oops"])
        assert code == 1007
        await healthy.send_client_content(turns=types.Content(role="user", parts=[types.Part(text="hello")]))
        text = "".join([m.text async for m in healthy.receive() if m.text])
    assert "Hi" in text


async def test_unknown_path_is_404_and_query_key_works(live):
    with pytest.raises(Exception, match="404"):
        await close_after(live, [SETUP], path="/ws/elsewhere")
    code, reason = await close_after(live, [SETUP], key="wrong")
    assert code == 1008 and "API key" in reason


def test_python_m_services_local_live_serves_the_sdk(tmp_path):
    """The real entry point, as the gateway and `make run` start it."""
    port = free_port()
    env = {**os.environ, "KOTOBA_LIVE_ADDR": f"127.0.0.1:{port}", "KOTOBA_LIVE_CA_FILE": str(tmp_path / "ca.pem"),
           "KOTOBA_LIVE_API_KEY": "sub-key"}
    log = open(tmp_path / "live.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "services.local_live"], env=env, stdout=log, stderr=log)
    try:
        import socket

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        wait_until(lambda: proc.poll() is None and listening(), 30, "local Live engine")
        script = f"""
import asyncio
from google import genai
from google.genai import types
from services.common.tls import client_context
async def main():
    client = genai.Client(api_key="sub-key", http_options=types.HttpOptions(
        base_url="https://127.0.0.1:{port}", api_version="v1beta",
        async_client_args={{"ssl": client_context("{tmp_path / 'ca.pem'}")}}))
    async with client.aio.live.connect(model="gemini-live-2.5-flash", config={{"response_modalities": ["TEXT"]}}) as s:
        await s.send_client_content(turns={{"role": "user", "parts": [{{"text": "hello"}}]}})
        print("".join([m.text async for m in s.receive() if m.text]))
asyncio.run(main())
"""
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                             cwd=os.getcwd())
        assert out.returncode == 0, out.stderr
        assert "Hi" in out.stdout
    finally:
        stop(proc)
        log.close()
    assert b'"local Live engine listening"' in (tmp_path / "live.log").read_bytes()
