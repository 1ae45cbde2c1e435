"""The Live model registry: names, refusals, the connect config per family and mode, the gateway's
model validation, and the session cost table of docs/live-models.md."""

from __future__ import annotations

import json

import pytest
from google import genai
from google.genai import _common, types
from google.genai import _live_converters as converters

from services.common import live_models as lm
from services.common.config import ConfigError
from services.gateway.config import GatewayConfig

REAL = [f for f in lm.FAMILIES if not f.permissive]
DECL = types.FunctionDeclaration(name="get_word_details", description="Word details.")


def setup_frame(model: str, cfg: types.LiveConnectConfig) -> dict:
    """The setup message exactly as the google-genai client serialises it for the Gemini API."""
    client = genai.Client(api_key="x")
    frame = _common.convert_to_dict(converters._LiveConnectParameters_to_mldev(
        api_client=client._api_client,
        from_object=types.LiveConnectParameters(model=model, config=cfg).model_dump(exclude_none=True)))
    return json.loads(json.dumps(_common.encode_unserializable_types(frame)))["setup"]  # as on the wire


def test_every_name_belongs_to_one_family_and_none_is_retired():
    names = [n for f in lm.FAMILIES for n in f.names]
    assert len(names) == len(set(names))
    assert not set(names) & set(lm.RETIRED)
    assert lm.find("models/gemini-3.8-live").key == "3.8-live"
    assert lm.find("projects/p/locations/l/publishers/google/models/gemini-live-2.5-flash-native-audio",
                   "vertex").key == "2.5-native-audio"
    assert lm.find("gemini-live-2.5-flash-native-audio") is None  # a Vertex name only


@pytest.mark.parametrize("backend", ["gemini", "vertex", "local"])
def test_defaults_are_current_and_production_defaults_generally_available(backend):
    fam = lm.validate(lm.DEFAULT_MODELS[backend], backend)
    assert not fam.permissive
    if backend == "local":
        assert "TEXT" in fam.output  # the gateway still asks for TEXT in text mode
    else:
        assert "GA" in fam.status or "stable" in fam.status


@pytest.mark.parametrize(("model", "backend", "words"), [
    ("gemini-2.5-flash-native-audio-preview-09-2025", "gemini", "retired"),
    ("kotoba-local-live", "local", "retired"),
    ("gemini-9-ultra", "gemini", "unknown Live model"),
    (lm.PERMISSIVE_MODEL, "gemini", "only in the local engine"),
    ("gemini-3.8-live", "vertex", "unknown Live model"),
])
def test_gateway_config_refuses_unknown_and_retired_models(aws_env, model, backend, words):
    env = {**aws_env, "KOTOBA_LIVE_BACKEND": backend, "KOTOBA_LIVE_MODEL": model,
           "GEMINI_API_KEY": "k", "GOOGLE_CLOUD_PROJECT": "p"}
    with pytest.raises(ConfigError) as caught:
        GatewayConfig.from_env(env)
    message = str(caught.value)
    assert caught.value.variable == "KOTOBA_LIVE_MODEL" and model in message and words in message
    assert "supported:" in message and lm.supported_names("vertex" if backend == "vertex" else "gemini")[0] in message


def test_gateway_prices_follow_the_family_unless_overridden(aws_env):
    cfg = GatewayConfig.from_env({**aws_env, "KOTOBA_LIVE_BACKEND": "gemini", "GEMINI_API_KEY": "k",
                                  "KOTOBA_LIVE_MODEL": "gemini-3.8-live", "KOTOBA_PRICE_TEXT_IN_PER_M": "1"})
    assert cfg.live.family.key == "3.8-live"
    assert (cfg.prices.text_in, cfg.prices.audio_out) == (1.0, 4.50)


@pytest.mark.parametrize("fam", REAL + [lm.family("local-permissive")], ids=lambda f: f.key)
@pytest.mark.parametrize("mode", ["text", "audio"])
def test_the_connect_config_of_every_family_and_mode_is_one_the_family_accepts(fam, mode):
    cfg = lm.live_connect_config(fam.names[0], mode, system_instruction="Tutor.",
                                 tools=[types.Tool(function_declarations=[DECL])], handle=None,
                                 compression=(25_600, 12_800), affective_dialog=True, proactive_audio=True,
                                 google_search=True, function_mode=lm.BLOCKING)
    setup = setup_frame(fam.names[0], cfg)
    modalities = lm.check_setup(fam, setup, "v1alpha")
    assert modalities == (lm.answer_modality(fam, mode),)
    transcribed = "outputAudioTranscription" in setup
    assert transcribed == (modalities == ("AUDIO",))
    assert lm.text_from_transcription(fam, mode) == (mode == "text" and modalities == ("AUDIO",))


def test_text_mode_on_an_audio_only_model_asks_for_audio_with_transcription():
    cfg = lm.live_connect_config("gemini-2.5-flash-native-audio-preview-12-2025", "text")
    assert cfg.response_modalities == [types.Modality.AUDIO] and cfg.output_audio_transcription is not None
    cfg = lm.live_connect_config("gemini-live-2.5-flash-preview", "text")
    assert cfg.response_modalities == [types.Modality.TEXT] and cfg.output_audio_transcription is None


def test_features_are_left_out_where_the_family_lacks_them():
    tools = [types.Tool(function_declarations=[DECL])]
    on_31 = lm.live_connect_config("gemini-3.1-flash-live-preview", "audio", tools=tools,
                                   affective_dialog=True, proactive_audio=True)
    assert on_31.enable_affective_dialog is None and on_31.proactivity is None
    on_25 = lm.live_connect_config("gemini-2.5-flash-native-audio-preview-12-2025", "audio",
                                   affective_dialog=True, proactive_audio=True)
    assert on_25.enable_affective_dialog is True and on_25.proactivity.proactive_audio is True
    extended = lm.live_connect_config("gemini-3.8-live-extended-thinking", "audio", tools=tools)
    assert extended.tools[0].function_declarations[0].behavior == types.Behavior.NON_BLOCKING
    plain = lm.live_connect_config("gemini-3.8-live", "audio", tools=tools)
    assert plain.tools[0].function_declarations[0].behavior is None  # NON_BLOCKING is already its default
    pinned = lm.live_connect_config("gemini-3.8-live", "audio", tools=tools, function_mode=lm.BLOCKING)
    assert pinned.tools[0].function_declarations[0].behavior == types.Behavior.BLOCKING
    on_25 = lm.live_connect_config("gemini-2.5-flash-native-audio-preview-12-2025", "audio", tools=tools,
                                   function_mode=lm.BLOCKING)
    assert on_25.tools[0].function_declarations[0].behavior is None  # its default: left unwritten
    only_nb = lm.live_connect_config("gemini-3.8-live-extended-thinking", "audio", tools=tools,
                                     function_mode=lm.BLOCKING)
    assert only_nb.tools[0].function_declarations[0].behavior == types.Behavior.NON_BLOCKING
    assert lm.function_behaviours([{"functionDeclarations": [{"name": "f"}]}], lm.family("3.8-live")) == {
        "f": lm.NON_BLOCKING}
    assert len(lm.live_connect_config("gemini-3.8-live", "text", tools=tools).tools) == 1  # search off by default


@pytest.mark.parametrize(("setup", "reason"), [
    ({"generationConfig": {"responseModalities": ["TEXT"]}}, lm.NON_AUDIO_REQUEST),
    ({"generationConfig": {"responseModalities": ["TEXT", "AUDIO"]}}, lm.INVALID_ARGUMENT),
    ({"generationConfig": {"responseModalities": ["AUDIO"], "thinkingConfig": {"thinkingLevel": "LOW"}}},
     lm.INVALID_ARGUMENT),
    ({"generationConfig": {"responseModalities": ["AUDIO"]}, "proactivity": {"proactiveAudio": False}},
     lm.INVALID_ARGUMENT),
])
def test_check_setup_refuses_with_the_real_wording(setup, reason):
    with pytest.raises(lm.LiveRefusal) as caught:
        lm.check_setup(lm.family("3.8-live"), setup)
    assert (caught.value.code, caught.value.reason) == (1007, reason)


def test_not_found_wording():
    refusal = lm.not_found("gemini-x", "v1alpha")
    assert refusal.code == 1008
    assert refusal.reason == "models/gemini-x is not found for API version v1alpha, or is not supported for bidiGenerateContent"


def test_session_cost_matches_the_facts_and_prices_text_on_audio_models_honestly():
    native, half = lm.family("2.5-native-audio"), lm.family("half-cascade")
    # facts/gemini-live.md: 300 s of audio in and 150 s out on 2.5 ≈ $0.0675 (no context, no prompt).
    flat = lm.SessionAssumptions(system_tokens=0, rebill_context=False)
    assert lm.session_cost(native, "audio", flat) == pytest.approx(0.0675)
    # Text on an audio-only model is billed as audio out: far dearer than text on a text-capable model.
    assert lm.session_cost(native, "text") > 5 * lm.session_cost(half, "text")
    assert lm.session_tokens(native, "text").text_out == 0
    # Re-billing the accumulated context costs more than the flat estimate, and the cap bounds it.
    rebilled = lm.session_cost(native, "audio")
    assert rebilled > lm.session_cost(native, "audio", lm.SessionAssumptions(rebill_context=False))
    per_turn_prompt = lm.session_tokens(native, "audio")
    assert per_turn_prompt.text_in + per_turn_prompt.audio_in <= 10 * 25_600


def test_cost_table_lists_every_real_family_and_marks_assumed_prices():
    table = lm.cost_table()
    for fam in REAL:
        assert f"`{fam.names[0]}`" in table
    assert "kotoba-local-permissive" not in table
    assert table.count("(assumed)") == 3 * sum(not f.prices.known for f in REAL)
