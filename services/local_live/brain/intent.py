"""What the learner is asking, in English, Japanese or romaji.

Rules, not a model: each intent has English patterns with a slot for the term and Japanese
keywords; the term is taken from quotes, from the slot, or from the Japanese text around the
keyword. A question with no term ("and its reading?") leaves `terms` empty so the tutor can
use the topic of the conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.local_live.brain.lexicon import (
    JP_RUN,
    entity_type_in,
    has_japanese,
    level_in,
    normalise,
    romaji_to_hiragana,
)

KINDS = (
    "greeting", "thanks", "help", "meaning", "translate", "reading", "kanji_info", "kanji_for",
    "example", "level", "compare", "progress", "plan", "review", "learned", "offtopic", "unknown",
    "grammar", "recall_first", "simpler",
)


@dataclass
class Intent:
    kind: str
    terms: list[str] = field(default_factory=list)
    aspect: str = ""  # kanji_info: strokes | readings | meaning | all
    level: str = ""  # N5..N1 named in the question
    entity_type: str = ""  # words | kanji | sentences | kana
    period: str = ""  # plan: today | evening | tomorrow | week | hours
    hours: int = 0
    followup: bool = False  # the question refers back ("and its reading?")
    # the term before trailing particles were stripped (こんにちは → こんにち): a dictionary word
    # wins over the stripped form, so the tutor looks these up first
    alternates: list[str] = field(default_factory=list)
    guessed: bool = False  # no question word: a bare Japanese message taken as "what does it mean?"

    @property
    def term(self) -> str:
        """The first term the question is about; empty when it names none."""
        return self.terms[0] if self.terms else ""


_QUOTED = re.compile(r"[「『\"“]([^」』\"”]{1,40})[」』\"”]|(?<![A-Za-z])'([^']{1,40})'")
_TERM = (r"[\"“'「『]?(?P<term>[^\s\"”'」』?？!！,、。.](?:[^\s\"”」』?？!！,、。.]{0,38}[^\s\"”'」』?？!！,、。.])?)"
         r"[\"”'」』]?")

# Japanese grammar around the term: cut the term at the first of these.
_JP_MARKERS = (
    "ってどういう", "ってなに", "って何", "ってなん", "って", "とは", "の意味", "の読み", "はどう", "はなんて",
    "は何", "はなに", "はなん", "の画数", "を使", "の例", "のレベル", "は日本語", "は英語", "という",
    "の漢字", "の訓読み", "の音読み", "の使い方", "の書き方", "を英語", "を日本語", "はＮ", "はN", "のJLPT",
    "の級", "と同じ", "の違い", "ってN", "はいつ", "の発音",
)
_JP_TRAILING = ("ですか", "ですか", "でしょうか", "か", "は", "を", "の", "って", "が", "も", "よ", "ね")
_JP_NOT_TERMS = {
    "意味", "読み方", "読み", "漢字", "画数", "レベル", "例文", "違い", "進捗", "復習", "予定", "今日の復習",
    "何", "なに", "なん", "どういう", "教えて", "ください", "ですか", "英語", "日本語", "使い方", "例",
    "音読み", "訓読み", "発音", "書き方", "何画", "どう", "すみません", "ねえ", "あの", "じゃあ", "では",
    "それ", "これ", "その", "この", "あれ", "それは", "これは", "ちょっと", "級", "何級",
}
_LEADING_FILLERS = ("ねえ", "あの", "すみません", "ちょっと", "じゃあ", "では", "それで", "あと", "それから")

_EN_STOP = {
    "it", "this", "that", "its", "the", "a", "an", "one", "mean", "means", "word", "kanji", "me", "you",
    "is", "of", "for", "in", "and", "to", "do", "does", "how", "what", "japanese", "english", "they",
    "them", "these", "those", "about", "with", "using", "sentence", "example", "reading", "level",
    "jlpt", "please", "character", "there",
}


def _jp_term(text: str) -> str:
    """The term inside a Japanese question: the first Japanese run, cut before the grammar."""
    return _jp_term_and_raw(text)[0]


def _jp_term_and_raw(text: str) -> tuple[str, str]:
    """(term, the term before trailing particles were stripped)."""
    for run in JP_RUN.findall(text):
        for filler in _LEADING_FILLERS:
            if run.startswith(filler) and len(run) > len(filler):
                run = run[len(filler):]
        cut = len(run)
        for marker in _JP_MARKERS:
            at = run.find(marker, 1)
            if 0 < at < cut:
                cut = at
        if run.endswith("意味") and len(run) > 2 and cut == len(run):
            cut = len(run) - 2  # 食べる意味: a question without particles
        term = run[:cut]
        raw = term
        changed = True
        while changed and len(term) > 1:
            changed = False
            for tail in _JP_TRAILING:
                if term.endswith(tail) and len(term) > len(tail) and term not in _JP_NOT_TERMS:
                    # Only trailing particles are grammar; "ねこ" must keep its "こ".
                    if cut == len(run) or tail in ("は", "を", "って"):
                        term, changed = term[: -len(tail)], True
                        break
        if term and term not in _JP_NOT_TERMS:
            return term, raw
    return "", ""


def _alternates(text: str, term: str) -> list[str]:
    """Japanese runs in the text that start with the term and are longer: the forms before a
    trailing particle was taken for grammar (こんにちは for こんにち, こんばんは for こんばん)."""
    if not term or not has_japanese(term):
        return []
    out = []
    for run in JP_RUN.findall(text):
        _, raw = _jp_term_and_raw(run)
        for candidate in (raw, run):
            if candidate and candidate != term and candidate.startswith(term) and len(candidate) - len(term) <= 2 \
                    and candidate not in out:
                out.append(candidate)
    return out


def _clean_slot(slot: str) -> str:
    slot = slot.strip(" \"'“”「」『』?？!！.,。、")
    if has_japanese(slot):
        return _jp_term(slot) or JP_RUN.findall(slot)[0]
    if slot.lower() in _EN_STOP:
        return ""
    return slot


def _term_from(text: str, patterns: tuple[re.Pattern[str], ...]) -> str:
    quoted = _QUOTED.search(text)
    if quoted and (quoted.group(1) or quoted.group(2) or "").strip():
        return _clean_slot(quoted.group(1) or quoted.group(2))
    for pattern in patterns:
        match = pattern.search(text)
        if match and match.group("term"):
            term = _clean_slot(match.group("term"))
            if term:
                return term
    if has_japanese(text):
        return _jp_term(text)
    return ""


def _p(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p.replace("{T}", _TERM), re.I) for p in patterns)


_MEANING_EN = _p(r"what(?:'s| is| does)? (?:the )?meaning of {T}", r"what does {T} mean", r"what do(?:es)? {T} means?",
                 r"meaning of {T}", r"define {T}", r"definition of {T}", r"what is {T} in english",
                 r"translate {T}(?! into japanese| to japanese)", r"{T} means\?", r"what'?s {T} in english",
                 r"{T} mean\b", r"^{T} meaning\b", r"what is {T}\?*$", r"what's {T}\?*$")
_TRANSLATE_EN = _p(r"how (?:do|would|can) (?:you|i) say (?P<term>[A-Za-z][A-Za-z' -]{0,30}?) in japanese",
                   r"how (?:do|would|can) (?:you|i) say {T}", r"what(?:'s| is) (?:the )?japanese (?:word )?for {T}",
                   r"japanese (?:word )?for {T}", r"what(?:'s| is) {T} in japanese", r"translate {T} (?:in)?to japanese",
                   r"how (?:do|would) (?:you|i) write {T}")
_READING_EN = _p(r"how (?:do|would|should) (?:you|i|we) (?:read|pronounce|say) {T}", r"how is {T} (?:read|pronounced)",
                 r"reading (?:of|for) {T}", r"pronunciation (?:of|for) {T}", r"read(?:ing)? {T}", r"pronounce {T}",
                 r"furigana (?:of|for) {T}")
_STROKES_EN = _p(r"strokes? (?:are )?(?:in|for|of|does|has) (?:the )?(?:kanji )?{T}", r"stroke count (?:of|for) {T}",
                 r"{T} (?:have|has) how many strokes", r"how many strokes (?:does|is) (?:the )?(?:kanji )?{T}")
_KANJI_READ_EN = _p(r"(?:on|kun)['’]?(?:yomi| reading)s? (?:of|for) (?:the )?(?:kanji )?{T}",
                    r"readings? (?:of|for) (?:the )?kanji {T}", r"kanji {T}")
_KANJI_FOR_EN = _p(r"kanji (?:for|meaning|that means|which means) {T}", r"which kanji (?:means|is) {T}",
                   r"what kanji (?:means|is used for) {T}", r"write {T} in kanji")
_EXAMPLE_EN = _p(r"(?:example|sentence)s? (?:sentence )?(?:with|using|for|of|containing|that uses) {T}",
                 r"use {T} in a sentence", r"how (?:do|to) (?:you |i )?use {T}", r"{T} in a sentence",
                 r"usage of {T}")
_LEVEL_EN = _p(r"what (?:jlpt )?level is {T}", r"which (?:jlpt )?level is {T}", r"(?:jlpt )?level of {T}",
               r"is {T} (?:an? )?n[1-5]", r"what level (?:does )?{T}", r"{T} is what level")
_COMPARE_EN = re.compile(
    r"(?:difference|differences|different|compare|comparison)\s+(?:between\s+)?" + _TERM.replace("term", "a")
    + r"\s*(?:and|vs\.?|versus|with|,)\s*" + _TERM.replace("term", "b"), re.I)
_COMPARE_VS = re.compile(_TERM.replace("term", "a") + r"\s+(?:vs\.?|versus)\s+" + _TERM.replace("term", "b"), re.I)
_COMPARE_JA = re.compile(f"(?P<a>[{JP_RUN.pattern[1:-2]}]+?)と(?P<b>[{JP_RUN.pattern[1:-2]}]+?)"
                         r"(?:の違い|はどう違|の差|って何が違|の使い分け|はどっち)")

_GREETING = re.compile(r"^(?:hi|hello|hey|yo|good (?:morning|evening|afternoon)|konnichiwa|konbanwa|ohayou?"
                       r"|こんにちは|こんばんは|おはよう|やあ|もしもし|はじめまして)\b", re.I)
_GREETING_JA = ("こんにちは", "こんばんは", "おはよう", "はじめまして", "もしもし")
_THANKS = re.compile(r"\b(?:thanks|thank you|thx|arigatou?)\b|ありがと|どうも|サンキュー", re.I)
_HELP = re.compile(r"\bhelp\b|what can you do|how does this work|what do you know|何ができ|使い方を教えて|ヘルプ", re.I)

_PROGRESS = re.compile(r"progress|how am i doing|how (?:far|well) (?:am i|have i)|how many .*(?:learn|know|studied)"
                       r"|my (?:stats|statistics)|進捗|進み具合|どのくらい|どれくらい|何個|いくつ覚え|何語", re.I)
_LEARNED = re.compile(r"(?:which|what|list|show)(?: me)?(?: all)?(?: the)?(?: of)? (?:my )?(?:\w+ )?(?:have i |i've |i have )?"
                      r"(?:learned|learnt|know|mastered)|learned (?:words|kanji|items)|覚えた|習得した|学んだ", re.I)
_DUE = re.compile(r"\bdue\b|\breview|\brevise|\bstudy next|what should i (?:study|practice|practise)|復習|おさらい"
                  r"|勉強すべき|何を勉強|なにを勉強|勉強すれば", re.I)
_PLAN = re.compile(r"schedule|\bplan\b|this evening|tonight|tomorrow|this week|later today|next \d+ hours?|"
                   r"when (?:is|are|will|do)|upcoming|予定|スケジュール|今夜|今晩|夕方|明日|今週|後で|この後|\d+時間", re.I)

_ASPECT_STROKES = re.compile(r"stroke|画数|何画|かくすう", re.I)
_ASPECT_KANJI_READINGS = re.compile(r"on['’]?yomi|kun['’]?yomi|on reading|kun reading|音読み|訓読み", re.I)
_KW_MEANING = re.compile(r"\bmean|meaning|\bdefin|\btranslat|in english|意味|って何|ってなに|ってなん|とは|英語で", re.I)
_KW_TRANSLATE = re.compile(r"in japanese|japanese (?:word )?for|how (?:do|would|can) (?:you|i) say|日本語で", re.I)
_KW_READING = re.compile(r"\bread\b|reading|pronounc|furigana|読み方|読む|読み|よみかた|ふりがな|発音", re.I)
_KW_EXAMPLE = re.compile(r"example|in a sentence|\busage\b|how (?:do|to) (?:you |i )?use|例文|例を|使い方|使った文|の例", re.I)
_KW_LEVEL = re.compile(r"\blevel\b|\bjlpt\b|レベル|何級|級は|(?<![A-Za-z])N[1-5]\s*(?:\?|？|ですか|か)", re.I)
_KW_KANJI_FOR = re.compile(r"kanji (?:for|meaning|that means|which means)|which kanji|what kanji|in kanji|"
                           r"の漢字は|を漢字で|漢字で(?:どう|何)", re.I)
_KW_KANJI = re.compile(r"kanji|漢字", re.I)
_FOLLOWUP = re.compile(r"^(?:and|what about|how about|also|then|so)\b|\b(?:its|it|that one|this one)\b|^それ|^じゃあ|"
                       r"^では|^あと|^それから|^で、|それの|その", re.I)
_WHAT_ABOUT = re.compile(r"^(?:and |so )?(?:what|how) about " + _TERM + r"|^" + f"(?P<jp>[{JP_RUN.pattern[1:-2]}]+?)"
                         r"(?:は[?？]?|はどう[?？]?|も[?？]?)$", re.I)

_PERIODS = (
    ("evening", re.compile(r"evening|tonight|今夜|今晩|夕方|夜", re.I)),
    ("tomorrow", re.compile(r"tomorrow|明日", re.I)),
    ("week", re.compile(r"this week|next (?:7|seven) days|week|今週|一週間", re.I)),
    ("today", re.compile(r"today|今日|きょう", re.I)),
)
_HOURS = re.compile(r"next (\d{1,3}) hours?|(\d{1,3})\s*時間", re.I)


# The words the patterns above key on: a learner's misspelling of one of them ("waht dose 泳ぐ
# meen") is read as the word (difflib similarity), so the question is still understood.
_VOCAB = ("what", "does", "mean", "meaning", "means", "meanings", "stroke", "strokes", "example", "examples",
          "sentence", "reading", "pronounce", "pronounced", "level", "kanji", "difference", "between", "english",
          "japanese", "how", "read", "which", "define", "definition", "translate", "count")
_KEEP = frozenset({"do", "is", "a", "an", "the", "in", "of", "to", "and", "it", "me", "my", "you", "i", "for", "with",
                   "say", "use", "are", "was", "at", "on", "be", "hot", "red", "new", "now", "who", "why", "when",
                   "many", "much", "have", "has", "word", "words", "give", "tell", "like", "know", "this", "that",
                   "your", "from", "please", "about", "there", "these", "those", "can", "could", "would", "should",
                   "did", "done", "made", "make", "need", "want", "mine", "where", "her", "him", "them",
                   "then", "than", "ready", "real", "dear", "near", "meal", "team", "leave", "level", "lever"})


def fix_typos(text: str) -> str:
    """The message with common misspellings of the question words repaired."""
    import difflib

    def repair(match: re.Match[str]) -> str:
        word = match.group(0)
        low = word.lower()
        if low in _KEEP or low in _VOCAB or len(low) < 2:
            return word
        close = difflib.get_close_matches(low, _VOCAB, n=1, cutoff=0.8)
        if not close and not (romaji_to_hiragana(low) and len(low) > 4):  # "benkyo" is romaji, not a typo
            close = difflib.get_close_matches(low, _VOCAB, n=1, cutoff=0.75)
        return close[0] if close else word

    return re.sub(r"[A-Za-z]+", repair, text)


# Grammar the dictionary cannot answer: a pattern (〜ながら), a form, a particle question.
_GRAMMAR_EN = re.compile(
    r"\b(?:grammar|conjugat\w*|particles?|keigo|tense|(?:te|masu|ta|nai|dictionary|plain|polite|passive|causative|"
    r"potential|volitional|conditional|imperative|negative|past|humble|honorific)[- ]forms?|te-form|volitional|"
    r"passive|causative|conditional|make (?:a |the )?(?:verb|adjective) (?:negative|past|polite))\b", re.I)
_GRAMMAR_JA = re.compile(r"文法|活用|助詞|敬語|〜|～|(?:て|た|ない|ます|受身|使役|可能|意向|条件)形")
_PARTICLE_PAIR = re.compile(r"(?:^|[\s「『\"'])([はがにでをへとものや])(?:[」』\"'])?\s*(?:and|vs\.?|or|versus|と)\s*"
                            r"(?:[「『\"'])?([はがにでをへとものや])(?:$|[\s」』\"'?？のは])")
_GRAMMAR_TERM = re.compile(r"[〜～]\s*([ぁ-んァ-ヶー一-龯]+)")


def grammar_point(text: str) -> str:
    """The grammar point a question is about ("〜ながら", "は / が", "te-form"), or ""."""
    pair = _PARTICLE_PAIR.search(text)
    if pair:
        return f"{pair.group(1)} / {pair.group(2)}"
    term = _GRAMMAR_TERM.search(text)
    if term:
        return "〜" + term.group(1)
    match = _GRAMMAR_EN.search(text) or _GRAMMAR_JA.search(text)
    return match.group(0) if match else ""


def _period(text: str) -> tuple[str, int]:
    match = _HOURS.search(text)
    if match:
        return "hours", max(1, min(168, int(match.group(1) or match.group(2))))
    for name, pattern in _PERIODS:
        if pattern.search(text):
            return name, {"evening": 24, "tomorrow": 48, "week": 168, "today": 24}[name]
    return "", 24


_SIMPLER = re.compile(r"\b(?:more simply|simpler|in simple (?:terms|words)|plain english|simplify|eli5)\b|"
                      r"もっと簡単|簡単に言|やさしく言|わかりやすく", re.I)
_RECALL_FIRST = re.compile(r"(?:first|earlier|previous|last) (?:word|thing|kanji|term|question)s? (?:did )?i (?:asked?|looked)|"
                           r"what (?:words?|kanji) (?:did|have) i ask|最初に(?:聞いた|質問した)|さっき聞いた", re.I)
_PARTS = re.compile(r"(?<=[?？。!！])\s*|\s+(?:and also|also|and then|then)\s+(?=(?:what|how|which|is|can|give)\b)", re.I)
_ASPECTS = (
    ("meaning", re.compile(r"\bmean|meaning|\bdefin|in english|意味", re.I)),
    ("level", re.compile(r"\blevel\b|\bjlpt\b|レベル|何級", re.I)),
    ("reading", re.compile(r"\bread\b|reading|pronounc|読み方|読む|読み|よみかた", re.I)),
    ("strokes", re.compile(r"stroke|画数|何画", re.I)),
    ("example", re.compile(r"example|in a sentence|例文", re.I)),
)
_AND_TERMS = re.compile(f"(?P<a>[{JP_RUN.pattern[1:-2]}]+)\\s*(?:and|&|、|,)\\s*(?P<b>[{JP_RUN.pattern[1:-2]}]+)")


def recognise_all(raw_text: str, last_kind: str = "") -> list[Intent]:
    """Every question in one message, in order: "What does 泳ぐ mean and what level is it?" is a
    meaning and a level question about 泳ぐ; "what does 水 mean? and 雨?" two meaning questions. A
    part without a term of its own is about the term of the part before it."""
    text = fix_typos(normalise(raw_text))
    parts = [p for p in _PARTS.split(text) if p and p.strip(" ?？。!！")]
    intents: list[Intent] = []
    for part in parts or [text]:
        kind_before = intents[-1].kind if intents else last_kind
        intent = recognise(part, kind_before)
        if intents and intent.kind in ("offtopic", "unknown") and intents[-1].terms:
            continue  # "…, please" / a fragment
        if intents and not intent.terms and intents[-1].terms and intent.kind in (*_LOOKUP, "kanji_info"):
            intent.terms = list(intents[-1].terms)
            intent.followup = False
        intents.append(intent)
    # one part asking for more than one aspect of the same term
    out: list[Intent] = []
    for intent in intents:
        out.append(intent)
        if intent.kind not in (*_LOOKUP, "kanji_info") or not intent.terms or intent.kind == "compare":
            continue
        pair = _two_meanings(intent, text) if intent.kind == "meaning" and len(parts) == 1 else None
        if pair:
            out[-1:] = pair
            continue
        out += _other_aspects(intent, text, out)
    if len(parts) == 1 and len(out) > 1 and len({tuple(i.terms) for i in out}) == 1:
        # one question, several aspects: answer them in the order the learner asked
        def asked_at(i: Intent) -> int:
            pattern = dict(_ASPECTS).get(_aspect_of(i))
            match = pattern.search(text) if pattern else None
            return match.start() if match else len(text)
        out.sort(key=asked_at)
    return out or [Intent("unknown")]


def _two_meanings(intent: Intent, text: str) -> list[Intent] | None:
    """"水と雨の意味" asks for two meanings: one intent per term, or None when it is one term."""
    pair = _AND_TERMS.search(text)
    if not pair:
        return None
    a, b = _clean_slot(pair.group("a")), _clean_slot(pair.group("b"))
    if a and b and intent.term in (a, b):
        return [Intent("meaning", [a], level=intent.level), Intent("meaning", [b], level=intent.level)]
    return None


def _other_aspects(intent: Intent, text: str, out: list[Intent]) -> list[Intent]:
    """The aspects of the same term the message asks about besides the intent's own."""
    asked = intent.kind if intent.kind != "kanji_info" else (intent.aspect or "all")
    extras: list[Intent] = []
    for aspect, pattern in _ASPECTS:
        if aspect == asked or aspect == "example" or not pattern.search(text):
            continue
        if any(i.terms == intent.terms and _aspect_of(i) == aspect for i in out + extras):
            continue
        if aspect == "strokes" and not is_single_kanji_text(intent.term):
            continue
        if aspect == "meaning" and asked == "all":
            continue
        kind = {"strokes": "kanji_info"}.get(aspect, aspect)
        extras.append(Intent(kind, list(intent.terms), aspect="strokes" if aspect == "strokes" else "",
                             level=intent.level, alternates=list(intent.alternates)))
    return extras


_LOOKUP = ("meaning", "reading", "level", "example", "translate", "kanji_for", "compare")


def _aspect_of(intent: Intent) -> str:
    if intent.kind == "kanji_info":
        return {"strokes": "strokes", "readings": "reading", "meaning": "meaning"}.get(intent.aspect, "all")
    return intent.kind


def is_single_kanji_text(term: str) -> bool:
    """True when the term is exactly one CJK ideograph."""
    return len(term) == 1 and bool(re.match("[\u3400-\u4dbf\u4e00-\u9fff]", term))


@dataclass
class _Message:
    """One learner message as the recognisers see it: normalised text and what it names."""

    text: str
    last_kind: str

    def __post_init__(self) -> None:
        self.lowered = self.text.lower()
        self.level = level_in(self.text)
        self.entity = entity_type_in(self.text)
        self.followup = bool(_FOLLOWUP.search(self.text))

    def lexical(self, kind: str, patterns: tuple[re.Pattern[str], ...], **extra: str) -> Intent:
        """An intent about the term the patterns find (a follow-up when there is none)."""
        term = _term_from(self.text, patterns)
        return Intent(kind, [term] if term else [], level=self.level, entity_type=self.entity,
                      followup=self.followup or not term, alternates=_alternates(self.text, term), **extra)


def _about_the_conversation(m: _Message) -> Intent | None:
    if _RECALL_FIRST.search(m.text):
        return Intent("recall_first", followup=True)
    if _SIMPLER.search(m.text):
        return Intent("simpler", followup=True)
    return None


def _grammar(m: _Message) -> Intent | None:
    point = grammar_point(m.text)
    if point and not (_KW_EXAMPLE.search(m.text) and point.startswith("〜")):
        return Intent("grammar", [point])
    return None


def _comparison(m: _Message) -> Intent | None:
    # Questions about a term come first: "what does 復習 mean" is not a review request.
    for pattern in (_COMPARE_EN, _COMPARE_VS, _COMPARE_JA):
        match = pattern.search(m.text)
        if match:
            terms = [_clean_slot(match.group("a")), _clean_slot(match.group("b"))]
            terms = [t for t in terms if t]
            if len(terms) == 2:
                return Intent("compare", terms, level=m.level)
    return None


def _kanji_question(m: _Message) -> Intent | None:
    if _ASPECT_STROKES.search(m.text):
        return m.lexical("kanji_info", _STROKES_EN + _KANJI_READ_EN, aspect="strokes")
    if _KW_KANJI_FOR.search(m.text):
        return m.lexical("kanji_for", _KANJI_FOR_EN)
    if _ASPECT_KANJI_READINGS.search(m.text):
        return m.lexical("kanji_info", _KANJI_READ_EN + _READING_EN, aspect="readings")
    return None


def _aspect_question(m: _Message) -> Intent | None:
    text = m.text
    if _KW_EXAMPLE.search(text):
        return m.lexical("example", _EXAMPLE_EN)
    if _KW_LEVEL.search(text) and not _PROGRESS.search(text) and not _OWN_LEVEL.search(m.lowered):
        return m.lexical("level", _LEVEL_EN)
    if _KW_READING.search(text) and not _DUE.search(text):
        return m.lexical("reading", _READING_EN)
    if _KW_TRANSLATE.search(text) and not _KW_MEANING.search(text.replace("日本語で", "")):
        return m.lexical("translate", _TRANSLATE_EN)
    return None


def _meaning_question(m: _Message) -> Intent | None:
    if _KW_KANJI.search(m.text) and re.search(r"about|tell|info|について|教えて", m.lowered):
        term = _term_from(m.text, _KANJI_READ_EN)
        if term:
            return Intent("kanji_info", [term], aspect="all", level=m.level)
    if _KW_MEANING.search(m.text):
        intent = m.lexical("meaning", _MEANING_EN)
        if _KW_KANJI.search(m.text) and intent.term and len(intent.term) == 1:
            return Intent("kanji_info", intent.terms, aspect="meaning", level=m.level)
        return intent
    return None


def _study_data(m: _Message) -> Intent | None:
    """The learner's own data: how many are due, what was learned, progress, the schedule."""
    text, lowered = m.text, m.lowered
    if re.search(r"復習|review|\bdue\b", text, re.I) and re.search(r"何個|いくつ|how many", text, re.I) \
            and not re.search(r"learn|覚え|習得", text, re.I):
        return Intent("review", period=_period(text)[0])
    if _LEARNED.search(text) and not re.search(r"how many|何個|いくつ|何語|どのくらい|どれくらい", lowered):
        return Intent("learned", level=m.level, entity_type=m.entity)
    if _PROGRESS.search(text) or re.search(r"\bmy\b.*\blevel\b|level am i|私のレベル", lowered):
        return Intent("progress", level=m.level, entity_type=m.entity)
    return _schedule(m)


def _schedule(m: _Message) -> Intent | None:
    text, lowered = m.text, m.lowered
    if _DUE.search(text) or (_PLAN.search(text) and re.search(r"schedule|plan|予定|スケジュール", lowered)):
        period, hours = _period(text)
        if _PLAN.search(text) and period != "today" or re.search(r"schedule|plan|予定|スケジュール", lowered):
            return Intent("plan", period=period or "today", hours=hours)
        return Intent("review", period=period)
    return None


def _social(m: _Message) -> Intent | None:
    if _THANKS.search(m.text) and len(m.text) < 40:
        return Intent("thanks")
    if _GREETING.search(m.lowered) or (m.text.startswith(_GREETING_JA) and len(m.text) < 20):
        return Intent("greeting")
    if _HELP.search(m.text):
        return Intent("help")
    return None


def _what_about(m: _Message) -> Intent | None:
    """"what about 犬?" repeats the last question about another term."""
    what_about = _WHAT_ABOUT.search(m.text)
    if what_about and m.last_kind in ("meaning", "reading", "level", "kanji_info", "example", "translate"):
        term = _clean_slot(what_about.group("term") or what_about.group("jp") or "")
        if term:
            return Intent(m.last_kind, [term], level=m.level, entity_type=m.entity, followup=True,
                          guessed=m.last_kind == "meaning", alternates=_alternates(m.text, term))
    return None


def _bare_term(m: _Message) -> Intent | None:
    """A bare term ("猫", "oyogu?") is a request for its meaning."""
    text = m.text
    bare = text.strip(" ?？!！.。")
    if has_japanese(bare) and len(bare) <= 12 and JP_RUN.fullmatch(bare):
        return Intent("meaning", [bare], level=m.level, guessed=True, alternates=_alternates(bare, _jp_term(bare)))
    if has_japanese(text):
        term = _jp_term(text)
        return Intent("meaning", [term] if term else [], level=m.level, followup=not term,
                      alternates=_alternates(text, term), guessed=True)
    if re.fullmatch(r"[A-Za-z']{2,20}", bare) and romaji_to_hiragana(bare) and bare.lower() not in _EN_STOP:
        return Intent("meaning", [bare.lower()], level=m.level)
    return None


_OWN_LEVEL = re.compile(r"\bmy\b|\bam i\b|\bi am\b|\bi'm\b|私の|自分")

# Tried in order, the first intent wins: questions about a term before the learner's own data
# ("what does 復習 mean" is not a review request), the bare-term guess last.
_RECOGNISERS = (_about_the_conversation, _grammar, _comparison, _kanji_question, _aspect_question,
                _meaning_question, _study_data, _social, _what_about, _bare_term)


def recognise(raw_text: str, last_kind: str = "") -> Intent:
    """The intent of one learner message. `last_kind` is the previous turn's intent, used for
    "what about X?" follow-ups."""
    text = fix_typos(normalise(raw_text))
    if not text:
        return Intent("unknown")
    message = _Message(text, last_kind)
    for recogniser in _RECOGNISERS:
        intent = recogniser(message)
        if intent is not None:
            return intent
    return Intent("offtopic")
