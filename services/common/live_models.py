"""The Gemini Live model registry: the single source of what each model family accepts, refuses,
how long its sessions last and what it costs.

Read by the gateway (config validation, the LiveConnectConfig it asks for, prices), by the local
Live engine (it refuses what the family refuses, with the real close codes and wording) and by the
cost table in docs/live-models.md. Facts as Google's model pages and Live API guides gave them in
autumn 2026 (sources in docs/live-models.md); re-check the model pages before a release.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# ---- refusals as the real service words them --------------------------------------------------------

CLOSE_INVALID_ARGUMENT = 1007
CLOSE_NOT_FOUND = 1008
NON_AUDIO_REQUEST = "Cannot extract voices from a non-audio request."
INVALID_ARGUMENT = "Request contains an invalid argument."

BLOCKING = "BLOCKING"
NON_BLOCKING = "NON_BLOCKING"
SCHEDULINGS = ("INTERRUPT", "WHEN_IDLE", "SILENT")
DEFAULT_SCHEDULING = "WHEN_IDLE"

# The local engine's only model that accepts anything (today's permissive double); never a real backend.
PERMISSIVE_MODEL = "kotoba-local-permissive"


class LiveRefusal(Exception):
    """What the real service does with a setup it refuses: close with `code` and `reason`."""

    def __init__(self, code: int, reason: str, why: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.why = why  # for logs only: the real service does not say which field was wrong


def not_found(name: str, api_version: str = "v1beta") -> LiveRefusal:
    """The refusal the real service sends for a model it does not serve on this API version."""
    return LiveRefusal(CLOSE_NOT_FOUND, f"models/{name} is not found for API version {api_version}, "
                       "or is not supported for bidiGenerateContent", "unknown or retired model")


# ---- what a family is ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens. `source` says where the figures come from; `known=False`
    means no price was found and the figures are an assumption (stated in `source`)."""

    text_in: float
    audio_in: float
    video_in: float
    text_out: float
    audio_out: float
    source: str
    known: bool = True


@dataclass(frozen=True)
class Limits:
    """Session rules, in seconds of model time (the local engine can run its clock faster)."""

    connection_s: float = 600.0  # a connection lasts about 10 minutes
    go_away_before_s: float = 60.0  # goAway{timeLeft} this long before the close
    audio_session_s: float = 900.0  # without context-window compression
    audio_video_session_s: float = 120.0  # without context-window compression
    handle_ttl_s: float = 7200.0
    hard_deadline_s: float | None = None  # reported beyond the docs: 3.8 ends at 58:00 even compressed


FLASH_25_PRICES = Prices(text_in=0.50, audio_in=3.00, video_in=3.00, text_out=2.00, audio_out=12.00,
                         source="2.5 Flash Live, third-party copy of Google's pricing page")


@dataclass(frozen=True)
class Family:
    key: str
    title: str
    names: tuple[str, ...]  # Gemini Developer API names; the first is the one to pick
    vertex_names: tuple[str, ...]
    status: str  # preview | GA | stable | local
    output: frozenset[str]  # modalities it can answer in (one per session)
    function_modes: frozenset[str]
    default_function_mode: str
    affective_dialog: bool = False  # v1alpha `enableAffectiveDialog`
    proactive_audio: bool = False  # `proactivity.proactiveAudio` may be set
    proactivity_always_on: bool = False  # setting it false is an error
    thinking: str = "none"  # budget | level | none
    default_thinking_level: str = ""
    google_search: bool = True
    video_input: bool = True
    limits: Limits = field(default_factory=Limits)
    prices: Prices = FLASH_25_PRICES
    notes: str = ""
    permissive: bool = False  # accepts anything; the local engine only

    @property
    def audio_only(self) -> bool:
        """The family answers in speech only (its text comes from the output transcription)."""
        return self.output == frozenset({"AUDIO"})

    @property
    def all_names(self) -> tuple[str, ...]:
        """Every name of the family on either API, Gemini names first."""
        return self.names + tuple(n for n in self.vertex_names if n not in self.names)


FAMILIES: tuple[Family, ...] = (
    Family(
        key="2.5-native-audio", title="Gemini 2.5 Flash native audio",
        names=("gemini-2.5-flash-native-audio-preview-12-2025",),
        vertex_names=("gemini-live-2.5-flash-native-audio",),
        status="preview (Gemini API); GA (Vertex)",
        output=frozenset({"AUDIO"}), function_modes=frozenset({BLOCKING, NON_BLOCKING}),
        default_function_mode=BLOCKING, affective_dialog=True, proactive_audio=True, thinking="budget",
        notes="affective dialog is a v1alpha flag on the Gemini API"),
    Family(
        key="3.1-flash-live", title="Gemini 3.1 Flash Live",
        names=("gemini-3.1-flash-live-preview",), vertex_names=(), status="preview (March 2026)",
        output=frozenset({"AUDIO"}), function_modes=frozenset({BLOCKING}), default_function_mode=BLOCKING,
        thinking="level", default_thinking_level="MINIMAL",
        prices=Prices(**{**FLASH_25_PRICES.__dict__, "known": False,
                         "source": "no official price found; 2.5 Flash Live prices assumed"})),
    Family(
        key="3.8-live", title="Gemini 3.8 Live",
        names=("gemini-3.8-live",), vertex_names=(), status="stable (September 2026)",
        output=frozenset({"AUDIO"}), function_modes=frozenset({BLOCKING, NON_BLOCKING}),
        default_function_mode=NON_BLOCKING, proactive_audio=True, proactivity_always_on=True,
        limits=Limits(hard_deadline_s=58 * 60.0),
        prices=Prices(text_in=0.75, audio_in=0.75, video_in=0.75, text_out=4.50, audio_out=4.50,
                      source="third-party gateway listing, one price for every modality"),
        notes="affective dialog removed; thinking_level not accepted"),
    Family(
        key="3.8-live-extended-thinking", title="Gemini 3.8 Live, extended thinking",
        names=("gemini-3.8-live-extended-thinking",), vertex_names=(), status="stable (September 2026)",
        output=frozenset({"AUDIO"}), function_modes=frozenset({NON_BLOCKING}),
        default_function_mode=NON_BLOCKING, proactive_audio=True, proactivity_always_on=True,
        limits=Limits(hard_deadline_s=58 * 60.0),
        prices=Prices(text_in=0.75, audio_in=0.75, video_in=0.75, text_out=4.50, audio_out=4.50, known=False,
                      source="no price found for the variant; 3.8 Live's third-party listing assumed"),
        notes="accepts only NON_BLOCKING tools"),
    Family(
        key="half-cascade", title="Gemini Live 2.5 Flash / 2.0 Flash Live (half-cascade)",
        names=("gemini-live-2.5-flash-preview", "gemini-live-2.5-flash", "gemini-2.0-flash-live-001"),
        vertex_names=("gemini-live-2.5-flash", "gemini-2.0-flash-live-001"), status="GA (Vertex), preview",
        output=frozenset({"TEXT", "AUDIO"}), function_modes=frozenset({BLOCKING}), default_function_mode=BLOCKING,
        notes="TEXT or AUDIO, one per session; 2.0's own price is not in the facts (2.5's used)"),
    Family(
        key="local-permissive", title="Local engine, permissive (tests and demos only)",
        names=(PERMISSIVE_MODEL,), vertex_names=(PERMISSIVE_MODEL,), status="local",
        output=frozenset({"TEXT", "AUDIO"}), function_modes=frozenset({BLOCKING, NON_BLOCKING}),
        default_function_mode=BLOCKING, affective_dialog=True, proactive_audio=True, thinking="any",
        permissive=True, notes="accepts every setup, no session limits; refused by real backends"),
)

RETIRED: Mapping[str, str] = {
    "gemini-2.5-flash-native-audio-preview-09-2025":
        "deprecated 2026-03-19; use gemini-2.5-flash-native-audio-preview-12-2025",
    "kotoba-local-live": f"the permissive local model is now called {PERMISSIVE_MODEL}",
}

# Production defaults: generally available / stable models. Audio-only, so text mode needs the
# transcription pattern (see live_connect_config).
DEFAULT_MODELS = {"gemini": "gemini-3.8-live", "vertex": "gemini-live-2.5-flash-native-audio",
                  # Locally a strict text-capable family: the gateway still asks for TEXT in text mode.
                  "local": "gemini-live-2.5-flash-preview"}

_BY_KEY = {f.key: f for f in FAMILIES}


def bare_name(model: str) -> str:
    """`models/X`, `publishers/google/models/X`, `projects/…/models/X` → X."""
    return model.rsplit("models/", 1)[-1].strip()


def supported_names(api: str = "gemini") -> list[str]:
    """Every model name the registry serves on this API (Gemini or Vertex)."""
    names: list[str] = []
    for family in FAMILIES:
        for name in family.vertex_names if api == "vertex" else family.names:
            if name not in names:
                names.append(name)
    return names


def family(key: str) -> Family:
    """The family registered under this key."""
    return _BY_KEY[key]


def find(model: str, api: str = "gemini") -> Family | None:
    """The family serving `model` on `api` (gemini | vertex), or None when unknown or retired there."""
    name = bare_name(model)
    for fam in FAMILIES:
        if name in (fam.vertex_names if api == "vertex" else fam.names):
            return fam
    return None


def lookup(model: str, api: str = "gemini", api_version: str = "v1beta") -> Family:
    """The family serving this model name; refused like the real service when there is none."""
    fam = find(model, api)
    if fam is None:
        raise not_found(bare_name(model), api_version)
    return fam


def validate(model: str, backend: str) -> Family:
    """The family for a configured model, or ValueError naming it and the supported ones."""
    name = bare_name(model)
    api = "vertex" if backend == "vertex" else "gemini"
    fam = find(name, api)
    if fam is not None and (not fam.permissive or backend == "local"):
        return fam
    allowed = [n for n in supported_names(api) if backend == "local" or n != PERMISSIVE_MODEL]
    if name in RETIRED:
        problem = f"{name!r} is retired ({RETIRED[name]})"
    elif fam is not None:
        problem = f"{name!r} exists only in the local engine"
    else:
        problem = f"unknown Live model {name!r} for the {backend} backend"
    raise ValueError(f"{problem}; supported: {', '.join(allowed)}")


# ---- setup checks (the local engine refuses exactly these) -------------------------------------------

def _get(obj: Any, name: str) -> Any:
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    head, *rest = name.split("_")
    return obj.get(head + "".join(p[:1].upper() + p[1:] for p in rest))


def function_behaviours(tools: Any, fam: Family) -> dict[str, str]:
    """name -> BLOCKING | NON_BLOCKING for every declared function (the family's default where unset)."""
    out: dict[str, str] = {}
    for tool in tools if isinstance(tools, list) else []:
        for decl in _get(tool, "function_declarations") or []:
            if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                behaviour = str(decl.get("behavior") or "").upper()
                out[decl["name"]] = behaviour if behaviour in (BLOCKING, NON_BLOCKING) else fam.default_function_mode
    return out


def check_setup(fam: Family, setup: Mapping[str, Any], api_version: str = "v1beta") -> tuple[str, ...]:
    """The response modalities the session gets, or LiveRefusal as the real service would close."""
    generation = _get(setup, "generation_config") or {}
    asked = _get(generation, "response_modalities")
    modalities = tuple(str(m).upper() for m in asked) if isinstance(asked, list) and asked else ()
    if fam.permissive:
        return modalities or ("TEXT",)
    modalities = _check_modalities(fam, modalities)
    _check_affective_dialog(fam, setup, generation, api_version)
    _check_proactivity(fam, _get(setup, "proactivity"))
    _check_thinking(fam, _get(generation, "thinking_config"))
    _check_tools(fam, _get(setup, "tools"))
    return modalities


def _refuse(what: str, status: str = INVALID_ARGUMENT) -> LiveRefusal:
    return LiveRefusal(CLOSE_INVALID_ARGUMENT, status, what)


def _check_modalities(fam: Family, modalities: tuple[str, ...]) -> tuple[str, ...]:
    """One output modality the family has (its default when none is asked)."""
    if not modalities:
        modalities = ("TEXT",) if "TEXT" in fam.output else ("AUDIO",)
    if len(set(modalities)) > 1:
        raise _refuse("TEXT and AUDIO together")
    if modalities[0] not in fam.output:
        if modalities[0] == "TEXT":
            raise _refuse("TEXT on an audio-only model", NON_AUDIO_REQUEST)
        raise _refuse(f"modality {modalities[0]}")
    return modalities


def _check_affective_dialog(fam: Family, setup: Mapping[str, Any], generation: Any, api_version: str) -> None:
    if _get(generation, "enable_affective_dialog") is not None or _get(setup, "enable_affective_dialog") is not None:
        if not fam.affective_dialog:
            raise _refuse("affective dialog")
        if api_version == "v1beta":
            raise _refuse("affective dialog needs v1alpha")


def _check_proactivity(fam: Family, proactivity: Any) -> None:
    if isinstance(proactivity, dict) and _get(proactivity, "proactive_audio") is not None:
        if not fam.proactive_audio:
            raise _refuse("proactive audio")
        if fam.proactivity_always_on and _get(proactivity, "proactive_audio") is False:
            raise _refuse("proactivity=false on an always-on model")


def _check_thinking(fam: Family, thinking: Any) -> None:
    """A thinking level or budget only where the family thinks that way."""
    if isinstance(thinking, dict):
        if _get(thinking, "thinking_level") is not None and fam.thinking != "level":
            raise _refuse("thinking level")
        if _get(thinking, "thinking_budget") is not None and fam.thinking != "budget":
            raise _refuse("thinking budget")


def _check_tools(fam: Family, tools: Any) -> None:
    """Function behaviours the family takes, and Google Search only where it has it."""
    for name, behaviour in function_behaviours(tools, fam).items():
        if behaviour not in fam.function_modes:
            raise _refuse(f"{behaviour} function {name}")
    if not fam.google_search and any(_get(t, "google_search") is not None for t in tools or []):
        raise _refuse("google search")


# ---- what the gateway asks for -----------------------------------------------------------------------

def answer_modality(fam: Family, mode: str) -> str:
    """The modality to request: voice mode always AUDIO; text mode TEXT where the family has it,
    else AUDIO whose output transcription is shown as the text (the audio is dropped)."""
    if mode == "audio" or "TEXT" not in fam.output:
        return "AUDIO"
    return "TEXT"


def text_from_transcription(fam: Family, mode: str) -> bool:
    """True when the learner's text must be taken from outputTranscription (text mode, audio-only model)."""
    return mode != "audio" and answer_modality(fam, mode) == "AUDIO"


def live_connect_config(model: str, mode: str, *, system_instruction: Any = None, tools: Iterable[Any] = (),
                        handle: str | None = None, compression: tuple[int, int] | None = None,
                        affective_dialog: bool = False, proactive_audio: bool = False,
                        google_search: bool = False, backend: str = "gemini",
                        function_mode: str | None = None) -> Any:
    """The LiveConnectConfig for `mode` (text | audio) on `model`'s family; features the family lacks
    are left out rather than sent (sending them closes the session with 1007).

    `function_mode` (BLOCKING | NON_BLOCKING) asks for that behaviour where the family takes it; the
    family's only mode otherwise. A behaviour is written on the declarations only where it differs from
    the family's default, so the setup stays what each family already expects."""
    from google.genai import types

    fam = find(model, "vertex" if backend == "vertex" else "gemini")
    if fam is None:
        raise not_found(bare_name(model))
    modality = answer_modality(fam, mode)
    tool_list = [t for t in tools]
    behaviour = function_mode if function_mode in fam.function_modes else fam.default_function_mode
    if len(fam.function_modes) == 1:
        behaviour = next(iter(fam.function_modes))
    if behaviour != fam.default_function_mode or fam.function_modes == frozenset({NON_BLOCKING}):
        tool_list = [_with_behaviour(t, behaviour) for t in tool_list]
    if google_search and fam.google_search:
        tool_list.append(types.Tool(google_search=types.GoogleSearch()))
    cfg = types.LiveConnectConfig(
        response_modalities=[types.Modality(modality)],
        system_instruction=system_instruction,
        tools=tool_list or None,
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig() if modality == "AUDIO" else None,
        session_resumption=types.SessionResumptionConfig(handle=handle),
    )
    if compression is not None:
        cfg.context_window_compression = types.ContextWindowCompressionConfig(
            trigger_tokens=compression[0], sliding_window=types.SlidingWindow(target_tokens=compression[1]))
    if affective_dialog and fam.affective_dialog:
        cfg.enable_affective_dialog = True  # Gemini API: only on a v1alpha client
    if proactive_audio and fam.proactive_audio and not fam.proactivity_always_on:
        cfg.proactivity = types.ProactivityConfig(proactive_audio=True)
    return cfg


def _with_behaviour(tool: Any, behaviour: str) -> Any:
    from google.genai import types

    if isinstance(tool, types.Tool) and tool.function_declarations:
        return tool.model_copy(update={"function_declarations": [
            d.model_copy(update={"behavior": types.Behavior(behaviour)}) for d in tool.function_declarations]})
    if isinstance(tool, dict):
        key = "function_declarations" if "function_declarations" in tool else "functionDeclarations"
        if key in tool:
            return {**tool, key: [{**d, "behavior": behaviour} for d in tool[key]]}
    return tool


# ---- what a session costs -------------------------------------------------------------------------------

AUDIO_TOKENS_PER_SECOND = 25
SPOKEN_SECONDS_PER_TEXT_TOKEN = 0.25  # ~4 tokens per second of speech (≈150 words a minute)


@dataclass(frozen=True)
class SessionAssumptions:
    minutes: float = 5.0
    turns: int = 10
    system_tokens: int = 1500  # system instruction + learner context, text
    question_tokens: int = 20  # a typed question (text mode)
    answer_tokens: int = 80  # an answer's text (text mode, or the transcript of a spoken one)
    learner_audio_share: float = 1.0  # voice: the microphone streams the whole time (silence is billed)
    answer_audio_s: float = 15.0  # voice: seconds of speech per answer
    rebill_context: bool = True  # every turn bills the accumulated context again (how Live bills)
    context_cap_tokens: int = 25_600  # the gateway's compression trigger caps the re-billed context


@dataclass
class Tokens:
    text_in: float = 0
    audio_in: float = 0
    text_out: float = 0
    audio_out: float = 0

    def cost(self, prices: Prices) -> float:
        """The cost in USD of these tokens at these prices (prices are per million tokens)."""
        return (self.text_in * prices.text_in + self.audio_in * prices.audio_in
                + self.text_out * prices.text_out + self.audio_out * prices.audio_out) / 1_000_000


def session_tokens(fam: Family, mode: str, a: SessionAssumptions = SessionAssumptions()) -> Tokens:
    """Tokens billed for one session of `mode` on `fam` under the assumptions `a`."""
    spoken = answer_modality(fam, mode) == "AUDIO"
    total = Tokens()
    context_text = context_audio = 0.0  # what earlier turns left in the context
    for _ in range(a.turns):
        if mode == "audio":
            new_text, new_audio = 0.0, a.minutes * 60 * a.learner_audio_share / a.turns * AUDIO_TOKENS_PER_SECOND
        else:
            new_text, new_audio = float(a.question_tokens), 0.0
        text_in = a.system_tokens + new_text + (context_text if a.rebill_context else 0)
        audio_in = new_audio + (context_audio if a.rebill_context else 0)
        overflow = text_in + audio_in - a.context_cap_tokens
        if a.rebill_context and overflow > 0:  # the sliding window drops the oldest, audio first
            cut = min(overflow, audio_in - new_audio)
            audio_in -= cut
            text_in -= min(overflow - cut, text_in - a.system_tokens - new_text)
        total.text_in += text_in
        total.audio_in += audio_in
        if spoken:
            seconds = a.answer_audio_s if mode == "audio" else a.answer_tokens * SPOKEN_SECONDS_PER_TEXT_TOKEN
            out = seconds * AUDIO_TOKENS_PER_SECOND
            total.audio_out += out
            context_audio += new_audio + out
        else:
            total.text_out += a.answer_tokens
            context_audio += new_audio
        context_text += new_text + (0 if spoken else a.answer_tokens)
    return total


def session_cost(fam: Family, mode: str, a: SessionAssumptions = SessionAssumptions()) -> float:
    """The cost in USD of a session with this usage on this family, at the family's prices."""
    return session_tokens(fam, mode, a).cost(fam.prices)


def cost_table(a: SessionAssumptions = SessionAssumptions()) -> str:
    """The markdown cost table of docs/live-models.md (`python -m services.common.live_models`)."""
    flat = SessionAssumptions(**{**a.__dict__, "rebill_context": False})
    rows = ["| family | model | text mode asks for | 5-min text | 5-min voice | 5-min voice, context not re-billed | prices |",
            "|---|---|---|---|---|---|---|"]
    for fam in FAMILIES:
        if fam.permissive:
            continue
        mark = "" if fam.prices.known else " (assumed)"
        rows.append(f"| {fam.title} | `{fam.names[0]}` | {answer_modality(fam, 'text')} | "
                    f"${session_cost(fam, 'text', a):.4f}{mark} | ${session_cost(fam, 'audio', a):.4f}{mark} | "
                    f"${session_cost(fam, 'audio', flat):.4f}{mark} | {fam.prices.source} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(cost_table())
