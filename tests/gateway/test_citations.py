"""services.gateway.citations: citations leave the text and become sources, also when split
across streamed deltas."""

from __future__ import annotations

import pytest

from services.gateway.citations import CitationStream, Source, strip_citations, tool_status

ANSWER = ["泳ぐ (およぐ, oyogu) means “to swim”. ", "It's a JLPT N5 word. ", "[word:泳ぐ:およぐ, kanji:泳]"]


def _stream(deltas):
    s = CitationStream()
    text = "".join(s.feed(d) for d in deltas) + s.close()
    return text, s.sources


def test_whole_text():
    text, sources = strip_citations("".join(ANSWER))
    assert text == "泳ぐ (およぐ, oyogu) means “to swim”. It's a JLPT N5 word."
    assert sources == [Source("word:泳ぐ:およぐ", "word"), Source("kanji:泳", "kanji")]
    assert sources[0].as_dict() == {"id": "word:泳ぐ:およぐ", "kind": "word"}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11])
def test_any_split_of_the_stream_gives_the_same_result(size):
    whole = "".join(ANSWER)
    deltas = [whole[i:i + size] for i in range(0, len(whole), size)]
    assert _stream(deltas) == strip_citations(whole)


def test_text_is_released_as_soon_as_it_cannot_be_a_citation():
    s = CitationStream()
    assert s.feed("It means “to swim”.") == "It means “to swim”."
    assert s.feed(" [wo") == ""  # could still be a citation: held back
    assert s.feed("rd:泳ぐ:およぐ]") == ""
    assert s.feed(" Next.") == " Next."
    assert [x.id for x in s.sources] == ["word:泳ぐ:およぐ"]


def test_brackets_that_are_not_citations_pass_through():
    for text in ("see [1] and [sic]", "a [note: this] b", "[word] x", "[word:]", "x [", "[kanji:水 and more]"):
        assert strip_citations(text) == (text, []), text


def test_citation_in_the_middle_and_repeats():
    text, sources = strip_citations("A [kanji:水] B [kanji:水, sentence:00012].")
    assert text == "A B."
    assert [s.id for s in sources] == ["kanji:水", "sentence:00012"]
    assert [s.kind for s in sources] == ["kanji", "sentence"]


def test_unfinished_citation_at_the_end_is_shown_not_lost():
    s = CitationStream()
    assert s.feed("Done. [word:猫") == "Done."
    assert s.close() == " [word:猫"
    assert s.sources == []


def test_newlines_are_never_held():
    assert strip_citations("a\n[word:猫:ねこ]\nb") == ("a\n\nb", [Source("word:猫:ねこ", "word")])


def test_tool_status_in_learner_words():
    assert tool_status("get_kanji_details", {"character": "水"}) == "looking up the kanji 水…"
    assert tool_status("get_word_details", {"written": "泳ぐ"}) == "looking up 泳ぐ…"
    assert tool_status("search_dictionary", {"query": "swim"}, "ja") == "「swim」を調べています…"
    assert tool_status("get_user_progress", {}) == "checking your progress…"
    assert tool_status("get_user_plan", {}, "ja") == "復習の予定を確認しています…"
    assert "_" not in tool_status("something_new", {"x": 1})
