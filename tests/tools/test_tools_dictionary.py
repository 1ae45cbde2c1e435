"""Dictionary tools against the tools server over the fixture seed data (moto server)."""

from __future__ import annotations

import grpc
import pytest

from kotoba.v1 import tools_pb2 as t
from services.seed.load import FIXTURE_DIR
from services.seed.reader import iter_items

ITEMS = {it["id"]: it for it in iter_items(FIXTURE_DIR)}
WORDS = [it for it in ITEMS.values() if it["type"] == "word"]


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_search_exact_by_written_reading_and_romaji(tools_env):
    md = tools_env.md("demo-n5")
    word = next(w for w in WORDS if w["kanji"] and w["romaji"])
    for query in (word["written"], word["reading"], word["romaji"]):
        reply = tools_env.stub.SearchWords(t.SearchWordsRequest(query=query), metadata=md)
        assert reply.items[0].id == word["id"] or word["id"] in [i.id for i, m in zip(
            reply.items, reply.matched_by, strict=True) if m == "exact"]
        assert reply.matched_by[0] == "exact"


def test_search_meaning_exact_prefix_and_degraded_fallback(tools_env):
    md = tools_env.md("demo-n5")
    word = next(w for w in WORDS if w["meanings"] and w["meanings"][0].startswith("to "))
    reply = tools_env.stub.SearchWords(t.SearchWordsRequest(query=word["meanings"][0][3:], limit=50), metadata=md)
    assert word["id"] in [i.id for i in reply.items]
    # Prefix of a reading: every word whose reading starts with it, exact first.
    stem = word["reading"][:2]
    expected = {w["id"] for w in WORDS if w["reading"].startswith(stem)}
    reply = tools_env.stub.SearchWords(t.SearchWordsRequest(query=stem, limit=50), metadata=md)
    assert expected <= {i.id for i in reply.items}
    assert set(reply.matched_by) <= {"exact", "prefix"}
    assert list(reply.matched_by) == sorted(reply.matched_by, key=lambda m: m != "exact")
    # Retrieval is down in this environment: answers still come, flagged degraded.
    assert reply.degraded is (len(reply.items) < 50)


def test_search_level_filter_limit_cap_and_bad_input(tools_env):
    md = tools_env.md("demo-n5")
    reply = tools_env.stub.SearchWords(t.SearchWordsRequest(query="a", level="n5", limit=500), metadata=md)
    assert len(reply.items) <= 50 and all(i.level == "N5" for i in reply.items)
    code, message = _code(lambda: tools_env.stub.SearchWords(t.SearchWordsRequest(query="a", level="N7"), metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "level" in message
    code, message = _code(lambda: tools_env.stub.SearchWords(t.SearchWordsRequest(query="  "), metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "query" in message
    code, _ = _code(lambda: tools_env.stub.SearchWords(t.SearchWordsRequest(query="x", limit=-1), metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_word_details_by_id_and_written(tools_env):
    md = tools_env.md("demo-n4")
    word = next(w for w in WORDS if w["kanji"] and w["examples"])
    by_id = tools_env.stub.GetWordDetails(t.GetWordDetailsRequest(id=word["id"]), metadata=md)
    assert by_id.word.id == word["id"] and list(by_id.word.meanings) == word["meanings"]
    assert [k.id for k in by_id.kanji] == [f"kanji:{c}" for c in word["kanji"] if f"kanji:{c}" in ITEMS]
    assert [e.id for e in by_id.examples] == [e for e in word["examples"] if e in ITEMS][:3]
    by_written = tools_env.stub.GetWordDetails(t.GetWordDetailsRequest(written=word["written"]), metadata=md)
    same_written = {w["id"] for w in WORDS if w["written"] == word["written"] or w["reading"] == word["written"]}
    assert {by_written.word.id, *(h.id for h in by_written.homographs)} == same_written
    code, message = _code(lambda: tools_env.stub.GetWordDetails(
        t.GetWordDetailsRequest(id="word:存在しない:そんざいしない"), metadata=md))
    assert code == grpc.StatusCode.NOT_FOUND and "存在しない" in message
    code, _ = _code(lambda: tools_env.stub.GetWordDetails(t.GetWordDetailsRequest(), metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_kanji_and_sentence_details(tools_env):
    md = tools_env.md("demo-n4")
    kanji = next(k for k in ITEMS.values() if k["type"] == "kanji" and k["words"])
    reply = tools_env.stub.GetKanjiDetails(t.GetKanjiDetailsRequest(character=kanji["written"]), metadata=md)
    assert reply.kanji.id == kanji["id"] and list(reply.kanji.onyomi) == kanji["onyomi"]
    assert reply.kanji.strokes == kanji["strokes"]
    assert [w.id for w in reply.words] == [w for w in kanji["words"] if w in ITEMS][:5]
    code, message = _code(lambda: tools_env.stub.GetKanjiDetails(t.GetKanjiDetailsRequest(character="食べ"),
                                                                 metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "one kanji" in message
    missing = next(c for c in "龘靐齉麤" if f"kanji:{c}" not in ITEMS)
    code, message = _code(lambda: tools_env.stub.GetKanjiDetails(t.GetKanjiDetailsRequest(character=missing),
                                                                 metadata=md))
    assert code == grpc.StatusCode.NOT_FOUND and missing in message

    sentence = next(s for s in ITEMS.values() if s["type"] == "sentence" and s["words"])
    reply = tools_env.stub.GetSentenceDetails(t.GetSentenceDetailsRequest(id=sentence["id"]), metadata=md)
    assert reply.sentence.translation == sentence["translation"] and reply.sentence.romaji == sentence["romaji"]
    assert [w.id for w in reply.words] == [w for w in sentence["words"] if w in ITEMS]
    code, _ = _code(lambda: tools_env.stub.GetSentenceDetails(t.GetSentenceDetailsRequest(id="sentence:99999"),
                                                              metadata=md))
    assert code == grpc.StatusCode.NOT_FOUND
