"""Spoken learner questions for judging speech-to-text changes: a tuning half and a held-out half.

Written before the encoder-window change (issue 19) and not edited after it: choices are made on
TUNE only, and HELD_OUT is reported beside it to show they generalise. The audio is the project's
own TTS (Kokoro for Japanese, espeak-ng or Piper for English), made by testaudio.speech_pcm16_16k.
"""

from __future__ import annotations

TUNE: list[tuple[str, str]] = [
    ("ねこはかわいいです。", "ja"),
    ("猫はどういう意味ですか。", "ja"),
    ("泳ぐの意味を教えてください。", "ja"),
    ("聞くという漢字は何画ですか。", "ja"),
    ("今日は何を復習すればいいですか。", "ja"),
    ("ながらを使った例文をください。", "ja"),
    ("私は毎日日本語を勉強しています。猫は可愛いです。明日は雨が降ります。東京タワーに行きます。", "ja"),
    ("明日は雨が降ります。", "ja"),
    ("東京タワーに行きたいです。", "ja"),
    ("食べるの過去形は何ですか。", "ja"),
    ("What does neko mean?", "en"),
    ("How is my N5 progress?", "en"),
    ("What does taberu mean?", "en"),
    ("How many strokes are in the kanji for listen?", "en"),
    ("What should I review today?", "en"),
    ("Give me an example with nagara.", "en"),
    ("What is due this evening?", "en"),
    ("How do I say good morning in Japanese?", "en"),
    ("What does neko mean? And how do I write it in kanji?", "en"),
    ("Can you explain the particle wa?", "en"),
]

HELD_OUT: list[tuple[str, str]] = [
    ("いぬもすきです。", "ja"),
    ("水を飲みながら本を読みます。", "ja"),
    ("駅はどこですか。", "ja"),
    ("先生に質問があります。", "ja"),
    ("昨日友達と映画を見ました。", "ja"),
    ("漢字の書き方を教えてください。", "ja"),
    ("この言葉の読み方は何ですか。", "ja"),
    ("週末は山に登りました。天気がとてもよかったです。頂上で写真を撮りました。", "ja"),
    ("学校まで歩いて十分です。", "ja"),
    ("今晩の復習はいくつありますか。", "ja"),
    ("What does oyogu mean?", "en"),
    ("How many words have I learned?", "en"),
    ("Show me my review plan for tomorrow.", "en"),
    ("What is the difference between wa and ga?", "en"),
    ("How do I write cat in kanji?", "en"),
    ("Please give me an N4 example sentence.", "en"),
    ("What does sushi mean?", "en"),
    ("How do I count to ten in Japanese? I always forget the numbers after five.", "en"),
    ("Which kanji should I study next?", "en"),
    ("Thank you, that was helpful.", "en"),
]
