"""Text normalisation shared by the lexical index and the query parser.

Scripts: Japanese spans are tokenised with fugashi/unidic-lite (surface and
lemma, so 食べました finds 食べる); Latin text is split into lowercase words
with a light English stemmer; romaji is compared through a "loose key" that
forgets long vowels, spaces and hyphens (tōkyō = toukyou = tokyo).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

import jaconv

from services.common.japanese import JAPANESE_RUN, fold_macrons

JA_SPAN = JAPANESE_RUN
LATIN_WORD = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*")


def normalise(text: str) -> str:
    """NFKC (full-width Latin → ASCII, half-width kana → full), lowercase Latin, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def hira(text: str) -> str:
    """Katakana in the text written as hiragana."""
    return jaconv.kata2hira(text)


def romaji_key(text: str) -> str:
    """Loose romaji: no macrons, long vowels folded, no spaces/hyphens/apostrophes."""
    text = fold_macrons(text.lower())
    text = re.sub(r"[^a-z]", "", text)
    text = re.sub(r"(?<=[aeiou])h(?![aeiouy])", "", text)  # "oh" long vowel spelling
    for long, short in (("ou", "o"), ("oo", "o"), ("uu", "u"), ("aa", "a"), ("ii", "i"), ("ee", "e"),
                        ("ei", "e")):
        text = text.replace(long, short)
    return text


_STOP_EN = frozenset("""
a an the of to in on at for by with and or is are was be been it its this that these those as from
do does did i you me my we he she they them his her our your their what which who whom how why when
where can could would should will shall may might must not no yes please tell show give find
""".split())


def stem(word: str) -> str:
    """A deliberately light English stemmer: plural and -ing/-ed endings only."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed") and not word.endswith("eed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def english_tokens(text: str, keep_stopwords: bool = False) -> list[str]:
    """Stemmed English words of the text, stop words left out unless asked for."""
    words = LATIN_WORD.findall(normalise(text).replace("’", "'").replace("'s ", " "))
    return [stem(w) for w in words if keep_stopwords or w not in _STOP_EN]


def meaning_key(text: str) -> str:
    """Meaning compared as a whole: "to eat" = "eat" = "Eat."; parenthesised notes dropped."""
    text = re.sub(r"\([^)]*\)", " ", normalise(text))
    words = LATIN_WORD.findall(text)
    while words and words[0] in ("to", "a", "an", "the"):
        words = words[1:]
    return " ".join(stem(w) for w in words)


_tagger_local = threading.local()


def _tagger():
    tagger = getattr(_tagger_local, "tagger", None)
    if tagger is None:
        import fugashi

        tagger = _tagger_local.tagger = fugashi.Tagger()
    return tagger


@lru_cache(maxsize=65536)
def japanese_tokens(text: str) -> tuple[str, ...]:
    """Surface forms and lemmas (hiragana-folded) of the Japanese spans in `text`."""
    out: list[str] = []
    for span in JA_SPAN.findall(text):
        for word in _tagger()(span):
            surface = word.surface
            out.append(hira(surface))
            lemma = getattr(word.feature, "lemma", None)
            if lemma:
                lemma = lemma.split("-", 1)[0]
                if lemma and lemma != surface:
                    out.append(hira(lemma))
    return tuple(out)
