"""Learner audio and video arriving as realtime_input between turns.

Audio is buffered between manual activity markers, or cut into utterances by server-side VAD; each
utterance becomes a turn. Video frames only add their tokens (and caption) to the next turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from services.common import live_models as lm
from services.local_live import protocol as p
from services.local_live.brain.context import TurnInput
from services.local_live.protocol import ProtocolError
from services.local_live.protocol import Usage as TurnUsage
from services.local_live.protocol import field as get
from services.local_live.tokens import audio_tokens, text_tokens

if TYPE_CHECKING:
    from services.local_live.connection import Connection

# Gemini bills an image at 258 tokens (media resolution default); a video frame is one image.
VIDEO_FRAME_TOKENS = 258


@dataclass
class AudioInput:
    """Learner audio between turns: manual activity markers, or server-side VAD."""

    manual: bool = False  # the client sends activity_start / activity_end
    active: bool = False  # inside activity_start .. activity_end
    buffer: bytearray = field(default_factory=bytearray)
    endpointer: Any = None
    received_bytes: int = 0  # all audio since the last turn, for usage
    any_audio: bool = False  # audio arrived on this connection: the audio session limit applies
    transcript: Any = None  # voice.StreamingTranscript of the utterance being spoken


class MediaInput:
    """What the learner streams on one connection (text, audio, video frames), turned into turns."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.audio = AudioInput()
        self.video_tokens = 0  # frames since the last turn, billed with it

    async def on_realtime_input(self, body: dict[str, Any]) -> None:
        """Handle one realtime_input message: text starts a turn, activity markers and audio end one."""
        if isinstance(get(body, "text"), str):
            text = get(body, "text")
            await self.conn.start_reply(TurnInput.from_texts([text]),
                                        TurnUsage(text_in=text_tokens(text), video_in=self.take_video()))
        if p.has(body, "activity_start"):
            self.audio.manual = self.audio.active = True
            self.audio.buffer.clear()
            self._drop_transcript()
            await self.conn.interrupt()
        if p.has(body, "video"):
            self._video(get(body, "video"))
        for blob in ([get(body, "audio")] if p.has(body, "audio") else []) + list(get(body, "media_chunks") or []):
            if isinstance(blob, dict) and str(get(blob, "mime_type") or "").startswith("image/"):
                self._video(blob)
            else:
                await self._audio(blob)
        if p.has(body, "activity_end"):
            await self._end_activity()
        if get(body, "audio_stream_end") is True:
            await self._end_stream()

    async def _end_activity(self) -> None:
        self.audio.active = False
        await self._end_utterance(bytes(self.audio.buffer))
        self.audio.buffer.clear()

    async def _end_stream(self) -> None:
        """The client paused its microphone: what was said so far is the learner's turn."""
        if self.audio.manual:
            if self.audio.active:
                await self._end_activity()
        elif self.audio.endpointer is not None:
            for event in self.audio.endpointer.flush():
                await self._vad_event(event)

    async def _audio(self, blob: Any) -> None:
        if not isinstance(blob, dict):
            raise ProtocolError(p.CLOSE_INVALID_DATA, "realtime_input.audio must be a Blob object")
        mime = str(get(blob, "mime_type") or "audio/pcm;rate=16000").replace(" ", "").lower()
        if not mime.startswith("audio/pcm") or ("rate=" in mime and "rate=16000" not in mime):
            raise ProtocolError(p.CLOSE_INVALID_DATA, f"unsupported audio {mime!r}: send audio/pcm;rate=16000")
        pcm = p.decode_b64(get(blob, "data"), "audio.data")
        voice = await self.conn.ensure_voice()
        self.audio.received_bytes += len(pcm)
        if not self.audio.any_audio:
            self.audio.any_audio = True
            self.conn.rules.limits_changed()
        session = self.conn.session
        if self.audio.manual or not session or not session.auto_activity:
            if self.audio.active or not self.audio.manual:
                self.audio.buffer += pcm
                if self.audio.active:
                    self._hear(bytes(self.audio.buffer))
            return
        if self.audio.endpointer is None:
            self.audio.endpointer = voice.endpointer()
        for event in self.audio.endpointer.feed(pcm):
            await self._vad_event(event)
        if self.audio.endpointer.in_speech:
            self._hear(self.audio.endpointer.utterance_audio())

    def _hear(self, utterance: bytes) -> None:
        """Transcribe while the learner is still speaking, so only the tail is left at the end."""
        voice, session = self.conn.voice, self.conn.session
        assert voice is not None and session is not None
        if self.audio.transcript is None:
            from services.local_live.reply import transcription_prompt

            self.audio.transcript = voice.stream_transcriber(
                session.language, transcription_prompt(session.memory, session.language))
        if self.audio.transcript is not None:
            self.audio.transcript.update(utterance)

    def _drop_transcript(self) -> None:
        if self.audio.transcript is not None:
            self.audio.transcript.close()
            self.audio.transcript = None

    async def _vad_event(self, event: Any) -> None:
        if event.kind == "speech_start":
            self._drop_transcript()
            await self.conn.interrupt()
        elif event.kind == "speech_end":
            await self._end_utterance(event.audio)

    def _video(self, blob: Any) -> None:
        """One video frame (JPEG, 1 FPS as Gemini expects): billed with the next turn; its test
        caption (a JPEG comment) is what the engine says it was shown."""
        if not isinstance(blob, dict):
            raise ProtocolError(p.CLOSE_INVALID_DATA, "realtime_input.video must be a Blob object")
        session = self.conn.session
        assert session is not None
        if not session.family.video_input:
            raise ProtocolError(lm.CLOSE_INVALID_ARGUMENT, lm.INVALID_ARGUMENT, "video input")
        mime = str(get(blob, "mime_type") or "").lower()
        if mime not in ("image/jpeg", "image/jpg"):
            raise ProtocolError(p.CLOSE_INVALID_DATA, f"unsupported video frame {mime!r}: send image/jpeg")
        caption = p.jpeg_comment(p.decode_b64(get(blob, "data"), "video.data"))
        self.video_tokens += VIDEO_FRAME_TOKENS
        session.caption = caption
        if not session.saw_video:
            session.saw_video = True
            self.conn.rules.limits_changed()

    def take_video(self) -> int:
        """The video tokens since the last turn, billed with the turn starting now."""
        tokens, self.video_tokens = self.video_tokens, 0
        return tokens

    async def _end_utterance(self, pcm: bytes) -> None:
        transcript, self.audio.transcript = self.audio.transcript, None
        if not pcm:
            if transcript is not None:
                transcript.close()
            return
        usage = TurnUsage(audio_in=audio_tokens(self.audio.received_bytes, p.INPUT_RATE), video_in=self.take_video())
        self.audio.received_bytes = 0
        await self.conn.start_reply(None, usage, audio=pcm, transcript=transcript)
