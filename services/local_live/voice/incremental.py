"""Transcribe an utterance while the learner is still speaking.

Whisper encodes a fixed 30 s window, so every call costs ~0.8 s however little audio it gets
(facts/voice.md), and cutting the window shorter changed transcripts (かわいい → かわい). So the
saving has to come from *when* the decoding happens, not from smaller calls:

- A decode starts when the speaker pauses (``pause_ms`` of unvoiced frames after speech that no
  decode has covered yet) and the shared voice worker is idle. Decoding every chunk instead would
  keep the one worker busy and delay other sessions' final transcripts and answers.
- At the end of speech nothing is left to decode when the latest decode already covers every voiced
  frame (the learner stopped at the pause it was started on: the usual case, since people stop a
  moment before releasing the button). Otherwise only the tail after the last commit is decoded.
- Commits: a decode whose pause turns out to be a sentence break (``commit_pause_ms``) and that
  covers at least ``commit_after_ms`` of new audio is kept for good; its audio is never decoded
  again. Short stretches are not committed but re-decoded whole: Whisper uses the words after a
  break to resolve the ones before it (the espeak clip "What does neko mean? And how do I write it
  in kanji?" came out "What does Nico mean? …" whole but "What does he call me?" + "…" when cut at
  the sentence break), and for short audio the cost of a call hardly depends on its length. For
  long utterances the decoder's tokens do add up, so there the tail-only decode pays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .vad import BYTES_PER_MS, SAMPLE_RATE

log = logging.getLogger(__name__)

Decode = Callable[[bytes], Awaitable[str]]


@dataclass
class _Decode:
    start: int  # byte offsets in the utterance
    cut: int
    voiced_end: int  # end of the last voiced frame this decode heard
    task: asyncio.Task[str]
    text: str | None = None


@dataclass
class StreamingTranscript:
    """One utterance. ``update(audio_so_far)`` as audio arrives (on the event loop), then
    ``await finish(final_audio)`` once for the text.

    ``speculate`` decodes opportunistically (may be skipped when ``may_start()`` is false);
    ``final`` decodes the tail someone is waiting for (it may raise, e.g. VoiceBusyError).
    """

    speculate: Decode
    final: Decode
    language: str
    may_start: Callable[[], bool] = lambda: True
    pause_ms: int = 150
    commit_pause_ms: int = 300
    commit_after_ms: int = 8000
    pad_ms: int = 200
    frame_ms: int = 30
    aggressiveness: int = 2
    decoded: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, "spec"|"final")
    # The utterance's language as an early decode judged it ("" until one ran): the transcript is only
    # worth finishing when it agrees with `language`, else the reply transcribes again in the other one.
    detected: str = ""

    def __post_init__(self) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(self.aggressiveness)
        self._frame_bytes = self.frame_ms * BYTES_PER_MS
        self._audio = bytearray()
        self._classified = 0  # bytes already run through the VAD
        self._voiced_end = 0
        self._breaks: set[int] = set()  # voiced ends followed by a pause of commit_pause_ms or more
        self.committed = 0  # audio before this offset is transcribed for good
        self._committed_voiced = 0
        self._texts: list[str] = []
        self._running: _Decode | None = None
        self._held: _Decode | None = None  # finished, not yet committed or dropped
        self._finished = False

    # -- feeding --------------------------------------------------------------------------------
    def update(self, utterance: bytes) -> None:
        """The utterance so far (from its first byte); only the new suffix is looked at."""
        if self._finished:
            return
        if len(utterance) > len(self._audio):
            self._audio += utterance[len(self._audio):]
        self._classify()
        self._settle()
        self._maybe_start()

    def _classify(self) -> None:
        fb = self._frame_bytes
        pause = self.commit_pause_ms * BYTES_PER_MS
        while self._classified + fb <= len(self._audio):
            start = self._classified
            frame = bytes(self._audio[start:start + fb])
            if self._vad.is_speech(frame, SAMPLE_RATE):
                if self._voiced_end and start - self._voiced_end >= pause:
                    self._breaks.add(self._voiced_end)
                self._voiced_end = start + fb
            self._classified += fb

    def _is_break(self, voiced_end: int) -> bool:
        if voiced_end in self._breaks:
            return True
        # Still silent since then: a break once the silence is long enough.
        return (self._voiced_end == voiced_end
                and self._classified - voiced_end >= self.commit_pause_ms * BYTES_PER_MS)

    # -- deciding -------------------------------------------------------------------------------
    def _settle(self) -> None:
        running = self._running
        if running is not None and running.task.done():
            self._running = None
            if not running.task.cancelled() and running.task.exception() is None:
                running.text = running.task.result()
                self._held = running
        held = self._held
        if held is None:
            return
        long_enough = held.cut - held.start >= self.commit_after_ms * BYTES_PER_MS
        if long_enough and self._is_break(held.voiced_end):
            self._commit(held)
        elif self._voiced_end > held.voiced_end:
            self._held = None  # the speaker went on after a short pause: decode that stretch whole later

    def _commit(self, decode: _Decode) -> None:
        assert decode.text is not None
        self._texts.append(decode.text)
        self.committed = decode.cut
        self._committed_voiced = decode.voiced_end
        self._held = None

    def _covered(self) -> int:
        return self._held.voiced_end if self._held is not None else self._committed_voiced

    def _maybe_start(self) -> None:
        if self._running is not None or self._voiced_end <= self._covered():
            return
        if self._classified - self._voiced_end < self.pause_ms * BYTES_PER_MS or not self.may_start():
            return
        cut = min(len(self._audio), self._voiced_end + self.pad_ms * BYTES_PER_MS)
        audio = bytes(self._audio[self.committed:cut])
        self.decoded.append((self.committed, cut, "spec"))
        task = asyncio.ensure_future(self.speculate(audio))
        task.add_done_callback(_quiet)
        self._running = _Decode(self.committed, cut, self._voiced_end, task)
        # Drop a held result: the new decode starts from the same commit point and hears more.
        self._held = None

    # -- the end --------------------------------------------------------------------------------
    async def settled(self) -> None:
        """Wait for the early decode in flight, if any (its outcome, `detected` included, is then known).
        At the end of speech it holds the one voice worker either way: judging the utterance before it
        finished meant giving it up and queueing a language check and a whole decode behind it."""
        if self._running is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._running.task)

    async def finish(self, final_audio: bytes | None = None) -> str:
        """The whole utterance's text. final_audio: the utterance as the end-pointer cut it (it may be
        shorter than what update() saw, never longer than the stream plus the last chunk)."""
        if final_audio is not None:
            self.update(final_audio)
        self._finished = True
        end = len(final_audio) if final_audio is not None else len(self._audio)
        await self.settled()
        # Frames after `end` are not part of the utterance; nothing voiced lies past it anyway.
        self._settle()
        held = self._held
        if held is not None and held.voiced_end >= self._voiced_end:
            texts = [*self._texts, held.text or ""]
        elif self._voiced_end <= self._committed_voiced:
            texts = list(self._texts)
        else:
            tail = bytes(self._audio[self.committed:end])
            self.decoded.append((self.committed, end, "final"))
            texts = [*self._texts, await self.final(tail)]
        joiner = "" if self.language == "ja" else " "
        return joiner.join(t.strip() for t in texts if t and t.strip()).strip()

    def close(self) -> None:
        """The utterance was abandoned; a decode already on the worker finishes unheard."""
        self._finished = True


def _quiet(task: asyncio.Task[str]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("speculative decode failed", extra={"error": repr(task.exception())})
