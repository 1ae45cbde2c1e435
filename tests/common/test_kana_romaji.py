"""Run-time romaji (services.common.japanese.kana_to_romaji): Hepburn without the build-time GPL converter."""

import pytest

from services.common.japanese import kana_to_romaji


@pytest.mark.parametrize(("kana", "romaji"), [
    ("とうきょう", "toukyou"), ("きって", "kitte"), ("しんぶん", "shinbun"), ("こんにちは", "konnichiha"),
    ("ラーメン", "raamen"), ("パーティー", "paatii"), ("きんえん", "kin'en"), ("ほんや", "hon'ya"),
    ("みんな", "minna"), ("ぎゅうにゅう", "gyuunyuu"), ("ファン", "fan"), ("", ""),
])
def test_hepburn(kana: str, romaji: str) -> None:
    assert kana_to_romaji(kana) == romaji
