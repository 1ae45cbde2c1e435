"""Text preparation for speech and audio helpers: pure functions, no models."""

from __future__ import annotations

import numpy as np
import pytest

from services.local_live.voice.audio import float_to_pcm16, pcm16_to_float, resample
from services.local_live.voice.stt import prompt_from_vocabulary
from services.local_live.voice.text import (
    Span,
    int_to_kanji,
    number_to_kanji,
    prepare_japanese,
    romaji_to_kana,
    split_sentences,
    split_spans,
)


@pytest.mark.parametrize(("word", "kana"), [
    ("neko", "ねこ"), ("Neko", "ねこ"), ("kawaii", "かわいい"), ("shinbun", "しんぶん"),
    ("konnichiwa", "こんにちわ"), ("onna", "おんな"), ("gakkou", "がっこう"), ("gakkō", "がっこう"),
    ("matcha", "まっちゃ"), ("ten'in", "てんいん"), ("kyou", "きょう"),
])
def test_romaji_becomes_hiragana(word: str, kana: str) -> None:
    assert romaji_to_kana(word) == kana


@pytest.mark.parametrize("word", ["cat", "dog", "like", "rice", "is", "I", "a", "the"])
def test_english_words_are_not_taken_for_romaji(word: str) -> None:
    assert romaji_to_kana(word) is None


@pytest.mark.parametrize(("n", "kanji"), [
    (0, "〇"), (1, "一"), (10, "十"), (11, "十一"), (23, "二十三"), (100, "百"), (1000, "千"),
    (2024, "二千二十四"), (10000, "一万"), (12345, "一万二千三百四十五"), (100_000_000, "一億"),
])
def test_int_to_kanji(n: int, kanji: str) -> None:
    assert int_to_kanji(n) == kanji


def test_decimals_and_grouping() -> None:
    assert number_to_kanji("23.5") == "二十三点五"
    assert number_to_kanji("1,000") == "千"


@pytest.mark.parametrize(("text", "expected"), [
    ("10月4日に行きます。", "十月四日に行きます。"),  # Kokoro alone says じゅうつき
    ("23.5度です", "二十三点五度です"),
    ("１０００円", "千円"),
    ("N5のことば", "エヌ五のことば"),
    ("JLPTを受けます", "ジェーエルピーティーを受けます"),
    ("neko は かわいい", "ねこは かわいい"),
])
def test_prepare_japanese(text: str, expected: str) -> None:
    assert prepare_japanese(text) == expected


def test_japanese_answer_routes_english_words_to_the_english_voice() -> None:
    assert split_spans("「猫」は英語で cat です。", "ja") == [
        Span("ja", "「猫」は英語で"), Span("en", "cat"), Span("ja", "です。")]
    assert split_spans("This is a pen と言います", "ja") == [Span("en", "This is a pen"), Span("ja", "と言います")]


def test_english_answer_routes_japanese_runs_to_the_japanese_voice() -> None:
    assert split_spans("The word 猫 (ねこ) means cat.", "en") == [
        Span("en", "The word"), Span("ja", "猫"), Span("ja", "ねこ"), Span("en", ") means cat.")]
    assert split_spans("It is 10月 in Japanese.", "en") == [
        Span("en", "It is"), Span("ja", "十月"), Span("en", "in Japanese.")]
    assert split_spans("What does neko mean?", "en") == [Span("en", "What does neko mean?")]


def test_split_sentences() -> None:
    assert split_sentences("こんにちは。元気ですか？はい！", "ja") == ["こんにちは。", "元気ですか？", "はい！"]
    assert split_sentences("Hello there. How are you? Fine!", "en") == ["Hello there.", "How are you?", "Fine!"]
    long = "今日は、" + "とても暑いので、" * 10 + "家にいます。"
    pieces = split_sentences(long, "ja")
    assert len(pieces) > 1 and "".join(pieces) == long and all(len(p) <= 60 for p in pieces)


def test_prompt_is_one_sentence_not_a_word_list() -> None:
    assert prompt_from_vocabulary(["ねこ", "いぬ"], "ja") == "今日は「ねこ」や「いぬ」について話します。"
    assert prompt_from_vocabulary(["neko", "inu", "kawaii"], "en") == (
        "The student asks what Japanese words like neko, inu and kawaii mean.")
    assert prompt_from_vocabulary([], "ja").endswith("。")


def test_resample_keeps_duration_and_tone() -> None:
    t = np.arange(22050) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = resample(tone, 22050, 24000)
    assert len(out) == 24000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1  # 1 s of audio: bin index == Hz
    down = resample(out, 24000, 16000)
    assert len(down) == 16000 and abs(int(np.argmax(np.abs(np.fft.rfft(down)))) - 440) <= 1


def test_pcm16_round_trip() -> None:
    audio = np.array([0.0, 0.5, -0.5, 1.0, -1.0], np.float32)
    assert np.allclose(pcm16_to_float(float_to_pcm16(audio)), audio, atol=1e-4)
