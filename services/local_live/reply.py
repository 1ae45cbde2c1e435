"""One model turn: (transcribe) → think, calling tools through toolCall → stream the answer.

Runs as its own task so the connection keeps reading; cancelling it is how an interruption
stops a stale answer mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from services.common import live_models as lm
from services.local_live import protocol as p
from services.local_live.brain.context import TurnInput
from services.local_live.brain.lexicon import has_japanese
from services.local_live.brain.memory import Memory
from services.local_live.brain.tutor import Call, Tutor
from services.local_live.session import SessionState
from services.local_live.tokens import audio_tokens, text_tokens

if TYPE_CHECKING:
    from services.local_live.connection import Connection

log = logging.getLogger(__name__)
_ids = itertools.count(1)
_NEEDS_SPACE = re.compile(r"[\x21-\x7e”’]$")
_WHAT_SHOWN = re.compile(r"what (do|can) you see|what am i showing|what (is|'s) (this|in the (picture|image|frame|video))"
                         r"|何が見え|何を見せ|これは何", re.IGNORECASE)
# Said while a NON_BLOCKING call runs, so the learner hears the model is on it.
HOLDING = {"en": "Let me check that.", "ja": "ちょっと調べますね。"}
# The strongest scheduling among one batch's responses wins.
_SCHEDULING_RANK = {"SILENT": 0, "WHEN_IDLE": 1, "INTERRUPT": 2}


def transcription_prompt(memory: Memory, language: str) -> str:
    """The Whisper prompt for the learner's next utterance: the conversation's topic, written the way
    the learner would say it in that language.

    Measured on espeak-ng English questions (see docs/local-live.md): with the topic in Japanese
    script ("…words like 泳ぐ mean") "What does sushi mean?" came out as "What does 泳ぐ mean?" and
    "oyogu" itself was still misheard; with the topic in romaji ("…like oyogu mean") nothing was
    forced and "oyogu"/"kawaii" were heard right. A fixed list of level words was forced instead
    (kawaii → gakkou), so only the topic goes in. Japanese questions were heard right either way.
    """
    from services.local_live.voice import prompt_from_vocabulary

    topic = memory.topic
    if topic and language != "ja" and has_japanese(topic):
        topic = _romaji_for(topic, memory.topic_items)
    return prompt_from_vocabulary([topic] if topic else [], language)


def _romaji_for(term: str, items: list[dict[str, Any]]) -> str:
    """Romaji for a Japanese topic: the item's own romaji, else its kana reading romanised."""
    import jaconv

    for item in items:
        if item.get("written") == term or item.get("reading") == term:
            if item.get("romaji"):
                return str(item["romaji"])
            term = item.get("reading") or term
            break
    romaji = jaconv.kana2alphabet(jaconv.kata2hira(term))
    return romaji if romaji.isascii() else ""  # kanji with no known reading: no prompt word


class Reply:
    def __init__(self, conn: Connection, session: SessionState, turn: TurnInput | None, usage: p.Usage,
                 audio: bytes | None = None, transcript: Any = None) -> None:
        self.conn = conn
        self.session = session
        self.turn = turn
        self.usage = usage
        self.audio = audio
        self.transcript = transcript  # voice.StreamingTranscript fed while the learner spoke, or None
        self.stages: dict[str, float] = {}  # voice turns: seconds after the end of speech, per stage
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.scheduling: dict[str, str] = {}  # call id -> how its NON_BLOCKING result is to be used
        self.detached = False  # spoke its holding sentence; answers when NON_BLOCKING results arrive
        self._task: asyncio.Task[None] | None = None
        self.started = time.monotonic()
        self._language = ""  # the turn's language once known (a spoken turn's own)

    @property
    def done(self) -> bool:
        """The reply finished, failed or was cancelled (or never started)."""
        return self._task is None or self._task.done()

    def start(self) -> None:
        """Start answering in a task of its own, so the connection keeps reading."""
        self._task = asyncio.create_task(self._run(), name=f"reply-{self.conn.conn_id}")

    async def cancel(self) -> list[str]:
        """Stop the reply; the ids of tool calls that were still waiting for a response."""
        pending = [call_id for call_id, fut in self.pending.items() if not fut.done()]
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        return pending

    async def wait(self) -> None:
        """Wait until the reply ends, however it ends."""
        if self._task is not None:
            await asyncio.wait({self._task})  # its end, without taking on its exception or cancellation

    def deliver(self, call_id: str, response: dict[str, Any], scheduling: str = lm.DEFAULT_SCHEDULING) -> bool:
        """Hand a function response to the call waiting for it; False when no call of this reply waits for that id."""
        future = self.pending.get(call_id)
        if future is None or future.done():
            return False
        self.scheduling[call_id] = scheduling if scheduling in _SCHEDULING_RANK else lm.DEFAULT_SCHEDULING
        future.set_result(response if isinstance(response, dict) else {"result": response})
        return True

    # ---- the turn -------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._turn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed send means the socket is gone
            if not self.conn.closed:
                log.exception("reply failed", extra={"conn": self.conn.conn_id})
                await self.conn.close(p.CLOSE_INTERNAL, f"reply failed: {type(exc).__name__}")

    async def _turn(self) -> None:
        turn = self.turn
        if self.audio is not None:
            turn = await self._transcribe(self.audio)
        assert turn is not None
        if self.conn.faults.never_answer:
            await asyncio.Event().wait()  # a stalled model: only an interruption or a close ends it
        # a spoken turn is answered in the language it was spoken in
        self._language = turn.language or self.session.language
        shown = self._what_was_shown(turn)
        if shown is not None:
            await self._stream(shown)
            await self._finish()
            return
        tutor = Tutor(self.session.learner, self.session.declared, self.session.memory,
                      cite=not self.session.audio_out, speech=self.session.audio_out, language=turn.language)
        thought = tutor.think(turn)
        try:
            calls = next(thought)
            while True:
                calls = thought.send(await self._call_tools(calls))
        except StopIteration as done:
            answer = done.value
        log.info("turn answered", extra={"conn": self.conn.conn_id, "intent": answer.intent,
                                         "calls": answer.calls, "detached": self.detached})
        self._stage("answer")
        if self.detached:
            scheduling = max(self.scheduling.values() or [lm.DEFAULT_SCHEDULING], key=_SCHEDULING_RANK.__getitem__)
            if scheduling == "SILENT":  # the results only join the context; the model says nothing
                self.conn.background.discard(self)
                return
            await self.conn.resume_foreground(self, scheduling)
        await self._stream(answer.sentences)
        self._log_stages()
        await self._finish()

    def _log_stages(self) -> None:
        if self.audio is None:
            return
        decodes = [kind for _start, _end, kind in self.transcript.decoded] if self.transcript is not None else []
        log.info("voice turn stages", extra={"conn": self.conn.conn_id, "incremental": self.transcript is not None,
                                             "decodes": ",".join(decodes) or "whole",
                                             **{f"{k}_ms": round(v * 1000) for k, v in self.stages.items()}})

    def _what_was_shown(self, turn: TurnInput) -> list[str] | None:
        """"What do you see?" after video frames: the last frame's test caption (the engine has no
        vision; the caption stands in for what a model would see)."""
        if not self.session.saw_video or not _WHAT_SHOWN.search(turn.text):
            return None
        caption = self.session.caption
        if self.session.language == "ja":
            return [f"「{caption}」が見えます。" if caption else "画像は届きましたが、何が写っているかは分かりません。"]
        return [f"I see {caption}." if caption else "I got the picture, but I can't tell what it shows."]

    async def _finish(self) -> None:
        await self.conn.send(p.generation_complete())
        self.session.turns += 1
        if self.session.resumption:
            await self.conn.send(p.resumption_update(self.conn.issue_handle()))
        self.session.bill_context(self.usage)
        final = p.turn_complete()
        final.update(self.usage.frame())
        await self.conn.send(final)
        await self.conn.turn_finished()

    async def _hold(self) -> None:
        """NON_BLOCKING: the model does not wait for the result. It says it is looking, ends its
        turn (billed on its own), and answers later as the result's scheduling says."""
        await self._stream([HOLDING["ja" if (self._language or self.session.language) == "ja" else "en"]])
        await self._finish()
        self.usage = p.Usage()
        self.detached = True
        self.conn.detach(self)

    async def _transcribe(self, pcm: bytes) -> TurnInput:
        assert self.conn.voice is not None
        early = self.transcript
        if early is not None:
            await early.settled()
        if early is not None and early.detected == early.language:
            # decoded while the learner spoke, in the language they spoke: only the tail is left
            language = early.language
            text = (await early.finish(pcm)).strip()
        else:
            if early is not None:
                early.close()
            prompts = {lang: transcription_prompt(self.session.memory, lang) for lang in ("ja", "en")}
            heard = await self.conn.voice.hear(pcm, self.session.language, prompts)
            language, text = heard.language, heard.text.strip()
        self._stage("transcript")
        if self.session.input_transcription:
            await self.conn.send(p.input_transcription(text))
        turn = TurnInput.from_texts([text], voice=True)
        turn.language = language
        return turn

    def _stage(self, name: str) -> None:
        """Time since the end of speech (this reply starts right at audio_end / the VAD's end), first
        occurrence only: end of speech → transcript → tool call/result → answer → first audio chunk."""
        self.stages.setdefault(name, time.monotonic() - self.started)

    async def _call_tools(self, calls: list[Call]) -> list[dict[str, Any]]:
        """One toolCall frame; waits (as long as it takes) for every id to be answered."""
        loop = asyncio.get_running_loop()
        ids = [f"call-{next(_ids)}-{self.conn.conn_id[:6]}" for _ in calls]
        for call_id in ids:
            self.pending[call_id] = loop.create_future()
        await self.conn.send(p.tool_call([{"id": i, "name": c.name, "args": c.args} for i, c in zip(ids, calls, strict=True)]))
        self._stage("tool_call")
        non_blocking = any(self.session.behaviours.get(c.name) == lm.NON_BLOCKING for c in calls)
        if non_blocking and not self.detached:
            await self._hold()
        results = [await self.pending[i] for i in ids]
        self._stage("tool_result")
        for call_id in ids:
            self.pending.pop(call_id, None)
        self.usage.text_in += sum(text_tokens(str(r)) for r in results)
        return results

    async def _stream(self, sentences: list[str]) -> None:
        faults = self.conn.faults
        if faults.delay_first_token_ms:
            await asyncio.sleep(faults.delay_first_token_ms / 1000)
        drop = faults.drop_mid_turn and faults.drop_mid_turn == self.session.turns + 1
        if self.session.audio_out:
            await self._speak(sentences, drop)
            return
        for index, sentence in enumerate(sentences):
            last = index == len(sentences) - 1
            delta = sentence + ("" if last or not _NEEDS_SPACE.search(sentence) else " ")
            await self.conn.send(p.text_delta(delta))
            self.usage.text_out += text_tokens(delta)
            if drop:
                self.conn.drop()
                await asyncio.Event().wait()
            await asyncio.sleep(0)  # let an interruption in between deltas

    async def _speak(self, sentences: list[str], drop: bool) -> None:
        """Audio sentence by sentence; each sentence's outputTranscription goes out just before its
        first chunk, so the transcript follows the voice instead of running ahead of it."""
        assert self.conn.voice is not None
        sent, spoken = 0, -1
        async for index, chunk in self.conn.voice.speak(sentences, self._language or self.session.language):
            if index != spoken and self.session.output_transcription:
                sentence = sentences[index]
                last = index == len(sentences) - 1
                await self.conn.send(p.output_transcription(
                    sentence + ("" if last or not _NEEDS_SPACE.search(sentence) else " ")))
            spoken = index
            if not sent:
                self._stage("first_audio")
            await self.conn.send(p.audio_chunk(chunk))
            sent += len(chunk)
            self.usage.audio_out = audio_tokens(sent, p.OUTPUT_RATE)
            if drop:
                self.conn.drop()
                await asyncio.Event().wait()
