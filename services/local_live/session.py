"""One Live session's state: what setup asked for, the conversation, and usage so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.common import live_models as lm
from services.local_live.brain.context import Learner, declared_names
from services.local_live.brain.memory import Memory
from services.local_live.protocol import CLOSE_INVALID_DATA, ProtocolError, content_text
from services.local_live.protocol import field as get
from services.local_live.tokens import text_tokens


@dataclass
class SessionState:
    session_id: str
    model: str = ""
    modalities: tuple[str, ...] = ("TEXT",)
    system_instruction: str = ""
    learner: Learner = field(default_factory=Learner)
    declared: dict[str, dict[str, Any]] = field(default_factory=dict)
    input_transcription: bool = False
    output_transcription: bool = False
    resumption: bool = False
    resume_handle: str = ""
    auto_activity: bool = True  # server-side VAD; off when the client sends activity_start/end
    speech_language: str = ""
    memory: Memory = field(default_factory=Memory)
    turns: int = 0  # completed turns on this connection
    family: lm.Family = field(default_factory=lambda: lm.family("local-permissive"))
    behaviours: dict[str, str] = field(default_factory=dict)  # function name -> BLOCKING | NON_BLOCKING
    compression: bool = False  # contextWindowCompression set: no audio/video session limit
    started_at: float = 0.0  # model clock, when the conversation (not this connection) began
    saw_video: bool = False  # a video frame arrived: the shorter audio+video session limit applies
    lineage: str = ""  # the id of the conversation's first connection, kept across resumptions
    caption: str = ""  # the test caption of the last video frame (JPEG COM segment)
    # Tokens the conversation has accumulated, by modality: Live bills them again on every turn.
    context: dict[str, int] = field(default_factory=lambda: {"TEXT": 0, "AUDIO": 0, "VIDEO": 0})
    window: tuple[int, int] | None = None  # compression (trigger, target) tokens

    @property
    def audio_out(self) -> bool:
        """The session answers in speech."""
        return "AUDIO" in self.modalities

    @property
    def language(self) -> str:
        """The language the answers are in: the speech language set up, else the learner's."""
        return self.speech_language or self.learner.language

    def apply_setup(self, setup: dict[str, Any], api: str = "gemini", api_version: str = "v1beta") -> None:
        """Read setup as the family of its model would: what it refuses closes the connection
        with the real code and wording (services/common/live_models.py)."""
        model = get(setup, "model", "")
        if not isinstance(model, str):
            raise ProtocolError(CLOSE_INVALID_DATA, "setup.model must be a string")
        self.model = model
        generation = get(setup, "generation_config") or {}
        if not isinstance(generation, dict):
            raise ProtocolError(CLOSE_INVALID_DATA, "setup.generationConfig must be an object")
        _check_modalities(generation)
        try:
            self.family = lm.lookup(model, api, api_version)
            self.modalities = lm.check_setup(self.family, setup, api_version)
        except lm.LiveRefusal as exc:
            raise ProtocolError(exc.code, exc.reason, exc.why) from None
        self.behaviours = lm.function_behaviours(get(setup, "tools"), self.family)
        self._apply_compression(get(setup, "context_window_compression"))
        speech = get(generation, "speech_config") or get(setup, "speech_config") or {}
        if isinstance(speech, dict) and isinstance(get(speech, "language_code"), str):
            self.speech_language = "ja" if get(speech, "language_code").lower().startswith("ja") else "en"
        self.set_system_instruction(get(setup, "system_instruction"))
        self.set_tools(get(setup, "tools"))
        self.input_transcription = isinstance(get(setup, "input_audio_transcription"), dict)
        self.output_transcription = isinstance(get(setup, "output_audio_transcription"), dict)
        self._apply_resumption(get(setup, "session_resumption"))
        realtime = get(setup, "realtime_input_config") or {}
        detection = get(realtime, "automatic_activity_detection") if isinstance(realtime, dict) else None
        if isinstance(detection, dict) and get(detection, "disabled") is True:
            self.auto_activity = False

    def _apply_compression(self, compression: Any) -> None:
        """contextWindowCompression: a sliding window lifts the audio session limit."""
        self.compression = isinstance(compression, dict)
        if self.compression:
            sliding = get(compression, "sliding_window") or {}
            try:
                trigger = int(get(compression, "trigger_tokens") or 32_000)
                target = int(get(sliding, "target_tokens") or trigger // 2) if isinstance(sliding, dict) else trigger // 2
            except (TypeError, ValueError):
                raise ProtocolError(CLOSE_INVALID_DATA, "contextWindowCompression token counts must be integers") from None
            self.window = (trigger, target)

    def _apply_resumption(self, resumption: Any) -> None:
        """sessionResumption: handles are issued; a handle given here resumes that conversation."""
        if resumption is None:
            return
        if not isinstance(resumption, dict):
            raise ProtocolError(CLOSE_INVALID_DATA, "setup.sessionResumption must be an object")
        self.resumption = True
        handle = get(resumption, "handle") or ""
        if not isinstance(handle, str):
            raise ProtocolError(CLOSE_INVALID_DATA, "sessionResumption.handle must be a string")
        self.resume_handle = handle

    def set_system_instruction(self, value: Any) -> None:
        """Take a (new) system instruction: the learner context the tutor reads comes from it."""
        if value is None:
            return
        if isinstance(value, str):
            text = value
        elif isinstance(value, dict):
            text = "\n".join(content_text(value))
        else:
            raise ProtocolError(CLOSE_INVALID_DATA, "systemInstruction must be a Content object")
        self.system_instruction = text
        self.learner = Learner.from_system_instruction(text)

    def set_tools(self, value: Any) -> None:
        """Take the (new) function declarations: the only functions the tutor may call."""
        if value is None:
            return
        if not isinstance(value, list):
            raise ProtocolError(CLOSE_INVALID_DATA, "setup.tools must be a list")
        self.declared = declared_names(value)

    def bill_context(self, usage: Any) -> None:
        """Add what the context holds (and the system instruction) to this turn's prompt, then keep
        this turn's input and output in it. The sliding window, when set, trims media before text."""
        if self.family.permissive:
            return  # the permissive double bills each turn's new input only
        new = {"TEXT": usage.text_in, "AUDIO": usage.audio_in, "VIDEO": usage.video_in}
        usage.text_in += self.context["TEXT"] + text_tokens(self.system_instruction)
        usage.audio_in += self.context["AUDIO"]
        usage.video_in += self.context["VIDEO"]
        for modality, tokens in new.items():
            self.context[modality] += tokens
        self.context["TEXT"] += usage.text_out
        self.context["AUDIO"] += usage.audio_out
        if self.window and sum(self.context.values()) > self.window[0]:
            excess = sum(self.context.values()) - self.window[1]
            for modality in ("VIDEO", "AUDIO", "TEXT"):
                cut = min(excess, self.context[modality])
                self.context[modality] -= cut
                excess -= cut

    # What a resumption handle keeps: the conversation, not the connection's settings (the new
    # connection sends its own setup, as with Gemini).
    def snapshot(self) -> dict[str, Any]:
        """The session as a resumption handle stores it: memory, turn count, start time, context sizes."""
        return {"memory": self.memory.to_dict(), "turns": self.turns, "started_at": self.started_at,
                "context": dict(self.context),
                "saw_video": self.saw_video, "lineage": self.lineage or self.session_id}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue a conversation from a resumption snapshot."""
        self.memory = Memory.from_dict(snapshot.get("memory", {}))
        # The session limits count from the conversation's start, across resumptions.
        self.started_at = snapshot.get("started_at", self.started_at)
        self.saw_video = bool(snapshot.get("saw_video"))
        self.lineage = snapshot.get("lineage", self.lineage)
        self.context.update(snapshot.get("context", {}))


def _check_modalities(generation: dict[str, Any]) -> None:
    """responseModalities must be a list naming TEXT and/or AUDIO."""
    modalities = get(generation, "response_modalities") or []
    if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
        raise ProtocolError(CLOSE_INVALID_DATA, "generationConfig.responseModalities must be a list of strings")
    unknown = [m for m in modalities if m.upper() not in ("TEXT", "AUDIO")]
    if unknown:
        raise ProtocolError(CLOSE_INVALID_DATA, f"unsupported response modality {unknown[0]}")
