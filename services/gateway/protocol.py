"""The learner WebSocket protocol (docs/protocol.md): parsing client frames, building server frames.

Parsing never raises on bad input from a learner: it returns a `ProtocolError`
whose code and message go back to the client as an `error` frame.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

MODES = ("text", "audio")
LANGUAGES = ("en", "ja")

# Error codes a client may see.
BAD_JSON = "bad_json"
BAD_MESSAGE = "bad_message"
UNKNOWN_TYPE = "unknown_type"
TOO_LARGE = "too_large"
BINARY_IN_TEXT_MODE = "binary_in_text_mode"
RATE_LIMITED = "rate_limited"
BUDGET_EXCEEDED = "budget_exceeded"
BUSY = "busy"
UNAUTHENTICATED = "unauthenticated"
TOO_MANY_SESSIONS = "too_many_sessions"
RESUME_FAILED = "resume_failed"
UPSTREAM_UNAVAILABLE = "upstream_unavailable"
INTERNAL = "internal"
TOKEN_EXPIRED = "token_expired"
CLOSE_TOKEN_EXPIRED = 4001  # WebSocket close code after TOKEN_EXPIRED
# Too many sessions opening at once (as the HTTP 503 before the upgrade); the error carries `retry_after`.
SERVER_BUSY = "server_busy"
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class ProtocolError:
    code: str
    message: str


@dataclass(frozen=True)
class Start:
    mode: str | None
    language: str | None
    resume: str | None


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class AudioEnd:
    pass


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Video:
    jpeg: bytes


ClientMessage = Start | Text | AudioEnd | Ping | Video

MAX_VIDEO_FRAME_BYTES = 192 * 1024  # decoded; the base64 text must also fit the WebSocket frame limit


MAX_NUMBER_DIGITS = 64


class _NumberTooLong(ValueError):
    pass


def _parse_int(text: str) -> int:
    # No field of the protocol is a big number; int() of thousands of digits raises (or is slow).
    if len(text) > MAX_NUMBER_DIGITS:
        raise _NumberTooLong(text[:20])
    return int(text)


def parse(raw: str, max_text_chars: int) -> ClientMessage | ProtocolError:
    """Validate a learner's JSON message, returning it typed or a ProtocolError."""
    try:
        data = json.loads(raw, parse_int=_parse_int)
    except _NumberTooLong:
        return ProtocolError(BAD_JSON, f"numbers in a message may have at most {MAX_NUMBER_DIGITS} digits")
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return ProtocolError(BAD_JSON, "message is not valid JSON")
    if not isinstance(data, dict):
        return ProtocolError(BAD_MESSAGE, "message must be a JSON object with a \"type\"")
    kind = data.get("type")
    if kind == "text":
        return _text(data.get("text"), max_text_chars)
    if kind == "start":
        return _start(data)
    if kind == "audio_end":
        return AudioEnd()
    if kind == "ping":
        return Ping()
    if kind == "video":
        return _video(data.get("jpeg"))
    if not isinstance(kind, str):
        return ProtocolError(BAD_MESSAGE, "message needs a \"type\" string")
    return ProtocolError(UNKNOWN_TYPE, f"unknown message type {kind[:40]!r}")


def _text(text: Any, max_text_chars: int) -> Text | ProtocolError:
    if not isinstance(text, str) or not text.strip():
        return ProtocolError(BAD_MESSAGE, "text message needs a non-empty \"text\" string")
    if len(text) > max_text_chars:
        return ProtocolError(TOO_LARGE, f"text is longer than {max_text_chars} characters")
    return Text(text.strip())


def _start(data: dict[str, Any]) -> Start | ProtocolError:
    mode, language, resume = data.get("mode"), data.get("language"), data.get("resume")
    if mode is not None and mode not in MODES:
        return ProtocolError(BAD_MESSAGE, "mode must be \"text\" or \"audio\"")
    if language is not None and language not in LANGUAGES:
        return ProtocolError(BAD_MESSAGE, "language must be \"en\" or \"ja\"")
    if resume is not None and (not isinstance(resume, str) or not 0 < len(resume) <= 64):
        return ProtocolError(BAD_MESSAGE, "resume must be a session id string")
    return Start(mode, language, resume)


def _video(encoded: Any) -> Video | ProtocolError:
    if not isinstance(encoded, str) or not encoded:
        return ProtocolError(BAD_MESSAGE, "video message needs a \"jpeg\" base64 string")
    if len(encoded) > MAX_VIDEO_FRAME_BYTES * 4 // 3 + 4:
        return ProtocolError(TOO_LARGE, f"a video frame may be at most {MAX_VIDEO_FRAME_BYTES // 1024} KiB")
    try:
        jpeg = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return ProtocolError(BAD_MESSAGE, "video.jpeg is not valid base64")
    if not jpeg.startswith(b"\xff\xd8"):
        return ProtocolError(BAD_MESSAGE, "video.jpeg must be a JPEG image")
    return Video(jpeg)


def frame(kind: str, **fields: Any) -> str:
    """Encode a message to the learner."""
    return json.dumps({"type": kind, **fields}, ensure_ascii=False)


def error(code: str, message: str) -> str:
    """Encode an error message to the learner."""
    return frame("error", code=code, message=message)
