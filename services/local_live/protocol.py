"""Wire format of BidiGenerateContent: parsing client frames, building server frames.

The SDK mixes casings (`client_content` at the top, `turnComplete` inside, `mime_type` inside
`audio`), and the deprecated `send()` uses camelCase throughout, so every key is looked up in both
forms. Server frames use camelCase like the real service.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

# Close codes (RFC 6455) the engine uses, named for what they mean here.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007  # bad JSON, unknown fields, wrong types
CLOSE_POLICY = 1008  # wrong key, wrong order, rejected setup or handle
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011

PATHS = (
    "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
    "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContent",
    "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained",
    "/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent",
    "/ws/google.cloud.aiplatform.v1.LlmBidiService/BidiGenerateContent",
)

# Top-level client message kinds, keyed by both casings, mapped to the handler suffix.
CLIENT_KINDS = {
    "setup": "setup",
    "client_content": "client_content",
    "clientContent": "client_content",
    "realtime_input": "realtime_input",
    "realtimeInput": "realtime_input",
    "tool_response": "tool_response",
    "toolResponse": "tool_response",
    "context_update": "context_update",
    "contextUpdate": "context_update",
}

INPUT_RATE = 16_000
OUTPUT_RATE = 24_000


class ProtocolError(Exception):
    """A client frame the engine refuses; the connection closes with `code` and `reason`."""

    def __init__(self, code: int, reason: str, why: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.why = why  # for the log: the real service's reason often does not name the field
        # Close reasons must fit a control frame (123 bytes).
        self.reason = reason.encode()[:123].decode(errors="ignore")


def camel(name: str) -> str:
    """snake_case → camelCase, the spelling JSON clients send."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def snake(name: str) -> str:
    """camelCase → snake_case."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def field(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """`obj[name]` under either casing (`name` given in snake_case)."""
    if name in obj:
        return obj[name]
    return obj.get(camel(name), default)


def has(obj: dict[str, Any], name: str) -> bool:
    """True when the message has the field under either spelling."""
    return name in obj or camel(name) in obj


def parse_client_frame(raw: str | bytes) -> tuple[str, dict[str, Any]]:
    """(kind, body) for one client frame, or ProtocolError (1007) when it is not a valid message."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(CLOSE_INVALID_DATA, "frame is not UTF-8 JSON") from None
    try:
        message = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProtocolError(CLOSE_INVALID_DATA, f"invalid JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(message, dict):
        raise ProtocolError(CLOSE_INVALID_DATA, "a client message must be a JSON object")
    unknown = [key for key in message if key not in CLIENT_KINDS]
    if unknown:
        raise ProtocolError(CLOSE_INVALID_DATA, f"unknown field {unknown[0]!r} in client message")
    if len(message) != 1:
        raise ProtocolError(CLOSE_INVALID_DATA, "a client message must set exactly one of "
                            "setup, client_content, realtime_input, tool_response")
    (key, body), = message.items()
    if not isinstance(body, dict):
        raise ProtocolError(CLOSE_INVALID_DATA, f"{key} must be an object")
    return CLIENT_KINDS[key], body


def decode_b64(data: Any, what: str) -> bytes:
    """Bytes of a base64 field; the connection is closed with 1007 when it is not base64."""
    if not isinstance(data, str):
        raise ProtocolError(CLOSE_INVALID_DATA, f"{what} must be a base64 string")
    try:
        padded = data + "=" * (-len(data) % 4)
        if "-" in data or "_" in data:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(CLOSE_INVALID_DATA, f"{what} is not valid base64") from None


def jpeg_comment(data: bytes) -> str:
    """The text of a JPEG's COM segment (how tests caption a video frame), "" when it has none;
    ProtocolError (1007) when the bytes are not a JPEG."""
    if data[:2] != b"\xff\xd8":
        raise ProtocolError(CLOSE_INVALID_DATA, "video frame is not a JPEG image")
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xFE:
            return data[pos + 4:pos + 2 + length].decode("utf-8", errors="replace").strip()
        if marker == 0xDA:  # start of scan: the headers are over
            break
        pos += 2 + length
    return ""


def content_text(content: Any) -> list[str]:
    """The text parts of one Content dict, in order."""
    if not isinstance(content, dict):
        raise ProtocolError(CLOSE_INVALID_DATA, "each turn must be a Content object")
    parts = content.get("parts") or []
    if not isinstance(parts, list):
        raise ProtocolError(CLOSE_INVALID_DATA, "Content.parts must be a list")
    texts = []
    for part in parts:
        if not isinstance(part, dict):
            raise ProtocolError(CLOSE_INVALID_DATA, "each part must be an object")
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
    return texts


# ---- server frames -------------------------------------------------------------------------------

def setup_complete(session_id: str) -> dict[str, Any]:
    """The setupComplete message that opens the session."""
    return {"setupComplete": {"sessionId": session_id}}


def text_delta(text: str) -> dict[str, Any]:
    """A model turn carrying one piece of answer text."""
    return {"serverContent": {"modelTurn": {"role": "model", "parts": [{"text": text}]}}}


def audio_chunk(pcm: bytes) -> dict[str, Any]:
    """A model turn carrying one chunk of 24 kHz PCM speech."""
    data = base64.b64encode(pcm).decode("ascii")
    return {"serverContent": {"modelTurn": {"role": "model", "parts": [
        {"inlineData": {"mimeType": f"audio/pcm;rate={OUTPUT_RATE}", "data": data}}]}}}


def input_transcription(text: str) -> dict[str, Any]:
    """The transcription of what the learner said."""
    return {"serverContent": {"inputTranscription": {"text": text}}}


def output_transcription(text: str) -> dict[str, Any]:
    """The transcription of what the model is saying."""
    return {"serverContent": {"outputTranscription": {"text": text}}}


def generation_complete() -> dict[str, Any]:
    """The model has generated its whole answer (playback may still be going)."""
    return {"serverContent": {"generationComplete": True}}


def turn_complete() -> dict[str, Any]:
    """The end of the model's turn."""
    return {"serverContent": {"turnComplete": True}}


def interrupted() -> dict[str, Any]:
    """The model stopped because the learner interrupted: the client drops what it buffered."""
    return {"serverContent": {"interrupted": True}}


def tool_call(calls: list[dict[str, Any]]) -> dict[str, Any]:
    """A request to run these function calls."""
    return {"toolCall": {"functionCalls": calls}}


def tool_call_cancellation(ids: list[str]) -> dict[str, Any]:
    """The calls with these ids are cancelled: their answers are no longer wanted."""
    return {"toolCallCancellation": {"ids": ids}}


def api_of(path: str) -> tuple[str, str]:
    """(gemini | vertex, API version) of a served path, for the refusals' wording."""
    if "aiplatform" in path:
        return "vertex", path.split("aiplatform.", 1)[1].split(".", 1)[0]
    return "gemini", path.split("generativelanguage.", 1)[1].split(".", 1)[0]


def go_away(seconds: float) -> dict[str, Any]:
    """The warning that the connection will close after this many seconds."""
    return {"goAway": {"timeLeft": f"{seconds:g}s"}}


def resumption_update(handle: str | None) -> dict[str, Any]:
    """A new resumption handle, or that the session cannot be resumed right now."""
    if handle is None:
        return {"sessionResumptionUpdate": {"resumable": False}}
    return {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}


@dataclass
class Usage:
    text_in: int = 0
    audio_in: int = 0
    text_out: int = 0
    audio_out: int = 0
    video_in: int = 0

    def frame(self) -> dict[str, Any]:
        """The usageMetadata message: prompt and response tokens, by modality."""
        prompt = [{"modality": m, "tokenCount": n}
                  for m, n in (("TEXT", self.text_in), ("AUDIO", self.audio_in), ("VIDEO", self.video_in)) if n]
        response = [{"modality": m, "tokenCount": n}
                    for m, n in (("TEXT", self.text_out), ("AUDIO", self.audio_out)) if n]
        prompt_total = self.text_in + self.audio_in + self.video_in
        response_total = self.text_out + self.audio_out
        return {"usageMetadata": {
            "promptTokenCount": prompt_total,
            "responseTokenCount": response_total,
            "totalTokenCount": prompt_total + response_total,
            "promptTokensDetails": prompt,
            "responseTokensDetails": response,
        }}
