"""Readings sent with answers (turn_complete.display): dictionary first, analyser second, never the model."""

from __future__ import annotations

import pytest

from services.gateway import furigana


def _joined(pairs):
    return "".join(s for s, _ in pairs)


def test_every_kanji_span_gets_a_reading_and_every_japanese_span_romaji():
    text = "泳ぐ (およぐ) means to swim. 着いたよ！ お茶を飲みます。"
    d = furigana.display(text)
    assert _joined(d["furigana"]) == text and _joined(d["romaji"]) == text
    ruby = {s: r for s, r in d["furigana"] if r}
    assert ruby["泳"] == "およ" and ruby["茶"] == "ちゃ" and ruby["飲"] == "の"  # okurigana left outside
    assert all(not furigana.HAS_KANJI.search(s) for s, r in d["furigana"] if not r)
    romaji = dict(d["romaji"])
    assert romaji["着いたよ！"] == "tsuita yo!"  # kanji included, not just the kana (was "itayo")
    assert romaji["泳ぐ"] == "oyogu" and romaji["およぐ"] == "oyogu"


def test_citations_are_not_read_and_plain_english_has_no_display():
    d = furigana.display("水 means water. [word:水:みず]")
    assert "[word:" not in _joined(d["furigana"])
    assert furigana.display("No Japanese here [word:x:y]") is None
    assert furigana.display("") is None


def test_the_dictionary_reading_wins_over_the_analyser(monkeypatch: pytest.MonkeyPatch):
    furigana._japanese()
    monkeypatch.setattr(furigana, "_words", {"日本語": {"にほんご"}})
    d = furigana.display("日本語")
    assert d["furigana"] == [["日本語", "にほんご"]] and d["romaji"] == [["日本語", "nihongo"]]
