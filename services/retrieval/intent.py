"""Read what a learner is asking for from the phrasing, in English or Japanese.

"kanji for fire" is about a kanji, "an example with 食べる" wants a sentence,
"how do you read 明日" a reading. Those phrasing words ("kanji", "example",
"mean", "read", 意味, 例文 …) are not content: they are taken out before the
lexical and vector sides see the query, otherwise "kanji for fire" finds the
word 感じ (romaji "kanji") and sentences that mention kanji.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.snapshots.text import JA_SPAN, LATIN_WORD, english_tokens, normalise

# Checked in this order: the first that matches wins.
_INTENTS_EN: tuple[tuple[str, re.Pattern], ...] = (
    ("sentence", re.compile(r"\b(examples?|sentences?|usage|use[ds]? in a|using it)\b")),
    ("kanji", re.compile(r"\b(kanji|kanjis|character|characters)\b")),
    ("kana", re.compile(r"\b(hiragana|katakana|kana)\b")),
    ("word", re.compile(r"\b(words? for|japanese for|how (do|to|would|should|can) (you |i |we )?say|"
                        r"in japanese|vocabulary|vocab)\b")),
    ("reading", re.compile(r"\b(how (do|to|would|should|can) (you |i |we )?(read|pronounce)|reading|readings|"
                           r"pronunciation|pronounced?|read)\b")),
    ("word", re.compile(r"\b(words?|say)\b")),
)
_INTENTS_JA: tuple[tuple[str, re.Pattern], ...] = (
    ("sentence", re.compile(r"例文|使い方|を使った文|の例")),
    ("kanji", re.compile(r"漢字|という字")),
    ("kana", re.compile(r"ひらがな|カタカナ|平仮名|片仮名")),
    ("reading", re.compile(r"読み方|読みます|読む|の読み|よみかた")),
    ("word", re.compile(r"単語|言葉|ことば|日本語で")),
)

# Phrasing words: never content (unless nothing else is left).
_PHRASING_EN = frozenset("""
kanji kanjis character characters example examples sentence sentences usage use used using word words
vocabulary vocab term japanese english hiragana katakana kana say said mean means meaning meanings read
reading readings pronounce pronounced pronunciation translate translation write written spell called some
any another other sample common level jlpt n1 n2 n3 n4 n5 list
""".split())
_NEVER_CONTENT = frozenset("""
word words japanese english kanji kanjis hiragana katakana kana example examples sentence sentences
vocabulary vocab character characters
""".split())
_STOP_EN = frozenset("""
a an the of to in on at for by with and or is are was be it its as from do does did i you me
my we how what which who why when where can could would should will please tell show give find get let
s there like into
""".split())
# Japanese phrasing, longest first; removed before the Japanese spans are read.
_PHRASING_JA = re.compile("(?:は|を|の)?(?:" + "|".join(sorted("""
という漢字 の漢字 漢字 という字 を使った例文 を使う例文 を使った文 の例文 例文 の使い方 使い方 の例
の読み方 読み方 よみかた の読み はどういう意味ですか はどういう意味 ってどういう意味 どういう意味
の意味は何ですか の意味はなんですか の意味は の意味 って何ですか って何 ってなに ってなん とは
は何ですか はなんですか は日本語で を日本語で 日本語で は英語で を英語で 英語で
は何と読みますか はなんと読みますか 何と読みますか なんと読みますか どう読みますか と読みますか どう読む
何と読む なんと読む と読む 読みます 意味 単語 言葉 ことば ひらがなで カタカナで ひらがな カタカナ
平仮名 片仮名 何ですか なんですか ですか 教えてください 教えて ください
""".split(), key=len, reverse=True)) + ")")
_PARTICLES = frozenset("は を の が で と か に も へ や って".split())
_QUOTED = re.compile(r"[\"“”「『']([^\"“”」』']+)[\"“”」』']")


@dataclass
class ParsedQuery:
    raw: str
    text: str  # normalised
    intent: str  # word | kanji | sentence | reading | kana | any
    ja_spans: list[str] = field(default_factory=list)  # Japanese content, phrasing removed
    latin: str = ""  # Latin content phrase (English or romaji), phrasing removed
    latin_tokens: list[str] = field(default_factory=list)  # stemmed, stopwords out, for BM25
    kana_script: str = ""  # hiragana | katakana when the query names one

    @property
    def public_intent(self) -> str:
        """The intent as the API reports it (kana queries report as reading)."""
        # The API knows word/kanji/sentence/reading/any; a kana question is a reading question.
        return "reading" if self.intent == "kana" else self.intent

    @property
    def content(self) -> str:
        """The part of the query worth embedding: its Japanese spans and Latin words."""
        return " ".join([*self.ja_spans, self.latin]).strip() or self.text


def _intent(text: str) -> str:
    for name, pattern in _INTENTS_JA:
        if pattern.search(text):
            for en_name, en_pattern in _INTENTS_EN:
                # English phrasing around Japanese content ("example with 食べる") counts too,
                # and the more specific of the two wins.
                if en_pattern.search(text) and _rank(en_name) < _rank(name):
                    return en_name
            return name
    for name, pattern in _INTENTS_EN:
        if pattern.search(text):
            return name
    return "any"


def _rank(name: str) -> int:
    return next(i for i, (n, _) in enumerate(_INTENTS_EN) if n == name)


def _latin_content(text: str, has_japanese: bool) -> str:
    words = LATIN_WORD.findall(text)
    kept = [w for w in words if w not in _PHRASING_EN]
    while kept and kept[0] in _STOP_EN:
        kept.pop(0)
    while kept and kept[-1] in _STOP_EN:
        kept.pop()
    if not kept and not has_japanese:  # "what is the word for read": the phrasing word is the content
        kept = [w for w in words if w not in _STOP_EN and w not in _NEVER_CONTENT]
    return " ".join(kept)


def parse_query(raw: str) -> ParsedQuery:
    """What a search query asks for: its intent, terms, quoted phrases, level and types."""
    text = normalise(raw)
    intent = _intent(text)
    quoted = [q.strip() for q in _QUOTED.findall(text) if q.strip()]
    source = " ".join(quoted) if quoted else text
    ja_source = _PHRASING_JA.sub(" ", source)
    spans = [s for s in JA_SPAN.findall(ja_source) if s not in _PARTICLES]
    if not spans and JA_SPAN.search(source) and not LATIN_WORD.search(source):
        spans = JA_SPAN.findall(source)  # the query *is* a phrasing word, e.g. 意味 or 漢字
    latin_text = JA_SPAN.sub(" ", source)
    if quoted and LATIN_WORD.search(latin_text):
        latin = " ".join(LATIN_WORD.findall(latin_text))  # a quoted phrase is content as it stands
    else:
        latin = _latin_content(latin_text, bool(spans)) if LATIN_WORD.search(latin_text) else ""
        if intent == "kana" and not latin:  # "hiragana a": the lone letter is the content
            latin = " ".join(w for w in LATIN_WORD.findall(latin_text) if w not in _PHRASING_EN)
    script = ""
    if intent == "kana":
        script = "katakana" if re.search(r"katakana|カタカナ|片仮名", text) else (
            "hiragana" if re.search(r"hiragana|ひらがな|平仮名", text) else "")
    return ParsedQuery(raw=raw, text=text, intent=intent, ja_spans=spans,
                       latin=latin, latin_tokens=english_tokens(latin), kana_script=script)
