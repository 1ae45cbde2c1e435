"""Offline summaries (issue 16): topics are the items discussed, key points are sentences."""

from __future__ import annotations

from services.conversations.summarise import offline_summary


def test_topics_are_the_cited_items_not_retrieval_hits():
    summary = offline_summary({
        "question": "What does おめでとう mean?",
        "answer": "おめでとう means “Congratulations!; an auspicious occasion!”. It's a JLPT N3 word. "
                  "[word:おめでとう:おめでとう, sentence:00042]",
        "retrievedItemIds": ["word:めでたい:めでたい", "word:祝う:いわう"],
    })
    assert summary["topics"] == ["おめでとう"]
    assert summary["key_points"] == ["おめでとう means “Congratulations!; an auspicious occasion!”.",
                                     "It's a JLPT N3 word."]


def test_sources_field_names_the_topics():
    summary = offline_summary({"question": "how many strokes in 聞? and 水?", "answer": "聞 has 14 strokes. 水 has 4 strokes.",
                               "sources": [{"id": "kanji:聞", "kind": "kanji"}, {"id": "kanji:水", "kind": "kanji"}],
                               "retrievedItemIds": ["word:新聞:しんぶん"]})
    assert summary["topics"] == ["聞", "水"]


def test_key_points_are_never_punctuation():
    for answer in ("Hi! ”.", "“Wow!”. . ! Good.", "[word:猫:ねこ]", "今日は。。 いい天気です。"):
        points = offline_summary({"question": "x", "answer": answer})["key_points"]
        assert all(len(p.strip(".!?。！？”」 ")) >= 2 for p in points), (answer, points)
