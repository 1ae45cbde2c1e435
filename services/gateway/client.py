"""A small /v1/chat client: used by `kotoba chat`, `kotoba eval answers`, the tests and the benchmark."""

from __future__ import annotations

import asyncio
import json
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

# Error codes after which no more of the answer comes (docs/protocol.md).
TURN_ENDING_ERRORS = ("rate_limited", "budget_exceeded", "busy", "upstream_unavailable", "bad_message", "too_large",
                      "unknown_type", "bad_json", "binary_in_text_mode", "token_expired")


@dataclass
class TurnResult:
    text: str = ""
    audio: bytes = b""
    transcripts: list[tuple[str, str]] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    first_text_s: float | None = None
    first_audio_s: float | None = None
    total_s: float = 0.0
    frames: list[dict[str, Any]] = field(default_factory=list)

    def transcript(self, role: str) -> str:
        """Everything transcribed for one speaker, joined."""
        return "".join(t for r, t in self.transcripts if r == role)

    @property
    def answer(self) -> str:
        """The tutor's reply: its text, or the transcript of its speech."""
        return self.text or self.transcript("tutor")

    def add(self, frame: dict[str, Any], now: float, on_text=None) -> bool:
        """Take in one JSON frame of the answer; True when it ends the turn."""
        self.frames.append(frame)
        kind = frame.get("type")
        if kind == "text":
            if self.first_text_s is None:
                self.first_text_s = now
            self.text += frame["text"]
            if on_text is not None:
                on_text(frame["text"])
        elif kind == "transcript":
            self.transcripts.append((frame["role"], frame["text"]))
        elif kind == "tool":
            self.tools.append(frame["name"])
        elif kind == "interrupted":
            self.interrupted = True
            self.audio = b""
        elif kind == "error":
            self.errors.append(frame)
            return frame.get("code") in TURN_ENDING_ERRORS
        elif kind == "turn_complete":
            self.usage = frame.get("usage", {})
            self.sources = list(frame.get("sources") or [])
            return True
        return False

    def as_dict(self) -> dict[str, Any]:
        """The turn as JSON-ready data for the CLI and benchmarks."""
        return {"answer": self.answer, "text": self.text, "audio_bytes": len(self.audio),
                "transcripts": [{"role": r, "text": t} for r, t in self.transcripts], "tools": self.tools,
                "errors": self.errors, "usage": self.usage, "sources": self.sources, "first_text_s": self.first_text_s,
                "first_audio_s": self.first_audio_s, "total_s": round(self.total_s, 4)}


class ChatClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.session: dict[str, Any] = {}

    @classmethod
    async def open(cls, url: str, token: str, *, headers: dict[str, str] | None = None,
                   open_wait_s: float = 10) -> ChatClient:
        """Connect to the gateway's chat socket with a learner token."""
        ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}", **(headers or {})},
                           open_timeout=open_wait_s, max_size=16 * 1024 * 1024, ping_interval=30, ping_timeout=90)
        return cls(ws)

    async def close(self) -> None:
        """Close the chat socket."""
        await self.ws.close()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def send(self, **message: Any) -> None:
        """Send one JSON message to the gateway."""
        await self.ws.send(json.dumps(message, ensure_ascii=False))

    async def recv_json(self, wait_s: float = 30) -> dict[str, Any]:
        """Wait for the next JSON message, skipping audio frames."""
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), wait_s)
            if isinstance(raw, str):
                return json.loads(raw)

    async def start(self, mode: str = "text", language: str | None = None, resume: str | None = None,
                    wait_s: float = 30) -> dict[str, Any]:
        """Begin (or resume) a session and wait until the gateway reports it open."""
        msg: dict[str, Any] = {"type": "start", "mode": mode}
        if language:
            msg["language"] = language
        if resume:
            msg["resume"] = resume
        await self.send(**msg)
        while True:
            frame = await self.recv_json(wait_s)
            if frame["type"] == "session":
                self.session = frame
                return frame
            if frame["type"] == "error" and frame.get("code") != "resume_failed":
                raise RuntimeError(f"{frame['code']}: {frame['message']}")

    async def collect(self, started: float, wait_s: float = 60, on_text=None) -> TurnResult:
        """Read frames until turn_complete (or an error that ends the turn)."""
        result = TurnResult()
        deadline = time.perf_counter() + wait_s
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), max(0.1, deadline - time.perf_counter()))
            now = time.perf_counter() - started
            if isinstance(raw, bytes):
                if result.first_audio_s is None:
                    result.first_audio_s = now
                result.audio += raw
                continue
            frame = json.loads(raw)
            if frame.get("type") == "session":
                self.session = frame
            if result.add(frame, now, on_text):
                result.total_s = now
                return result

    async def ask(self, text: str, wait_s: float = 60) -> TurnResult:
        """Send a typed question and collect the tutor's whole answer."""
        started = time.perf_counter()
        await self.send(type="text", text=text)
        return await self.collect(started, wait_s)

    async def say(self, pcm16_16k: bytes, chunk_ms: int = 100, realtime: bool = False,
                  wait_s: float = 90) -> TurnResult:
        """Stream a voice turn (PCM16 mono 16 kHz), then audio_end; timings count from audio_end."""
        step = 16000 * 2 * chunk_ms // 1000
        for i in range(0, len(pcm16_16k), step):
            await self.ws.send(pcm16_16k[i:i + step])
            if realtime:
                await asyncio.sleep(chunk_ms / 1000)
        started = time.perf_counter()
        await self.send(type="audio_end")
        return await self.collect(started, wait_s)


def read_wav_16k(path: Path) -> bytes:
    """PCM16 mono 16 kHz from a WAV (resampled linearly and mixed down if need be)."""
    import numpy as np

    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: need 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        rate, channels = w.getframerate(), w.getnchannels()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    if rate != 16000:
        n = int(len(samples) * 16000 / rate)
        samples = np.interp(np.linspace(0, len(samples) - 1, n), np.arange(len(samples)), samples)
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def write_wav_24k(path: Path, pcm: bytes) -> None:
    """Save the tutor's 24 kHz PCM speech as a playable WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(pcm)
