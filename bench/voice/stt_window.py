"""Speech to text: Whisper's full 30 s encoder window vs a window fitted to the utterance, side by side.

    .venv/bin/python -m bench.voice.stt_window [--runs 1] [--json out.json]

Settings: Whisper's 30 s window without timestamp tokens (before issue 19), windows of twice the
utterance with at least 10 s or 5 s (the default), and the 5 s one with timestamp tokens.
Each question of bench/voice/questions.py (TUNE and HELD_OUT, reported apart) is heard with
SpeechToText.hear() under each setting, settings interleaved per clip so machine load hits them alike.
The session language given is the other one than the clip's half the time ("switch" rows), to
check that the language is still judged right. Errors: Japanese as the character error rate of the kana
readings (pyopenjtalk), English as the word error rate; "exact" = error 0. Time: compute ms per call
(best of --runs), ratio = setting / full window on the same clips.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from dataclasses import dataclass

from bench.voice.questions import HELD_OUT, TUNE
from services.local_live.voice.stt import SpeechToText, SttOptions
from services.local_live.voice.testaudio import speech_pcm16_16k

SETTINGS = {
    "full-30s": SttOptions(min_window_s=None),  # before issue 19
    "fit-10s": SttOptions(min_window_s=10.0),
    "fit-5s": SttOptions(min_window_s=5.0),  # the default since (chosen on TUNE)
    "fit-5s+ts": SttOptions(min_window_s=5.0, timestamps=True),
}


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two token lists."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


def tokens(text: str, language: str) -> list[str]:
    """Kana reading characters (ja) or lower-case words (en), so script and punctuation do not count."""
    if language == "ja":
        import pyopenjtalk

        return list(re.sub(r"[^\u30a0-\u30ff]", "", pyopenjtalk.g2p(text, kana=True, use_vanilla=True)))
    return re.findall(r"[a-z0-9']+", text.lower())


def error_rate(reference: str, heard: str, language: str) -> float:
    """Token edit distance over the reference length."""
    ref = tokens(reference, language)
    return edit_distance(ref, tokens(heard, language)) / max(1, len(ref))


@dataclass
class Result:
    setting: str
    half: str
    text: str
    language: str
    default: str
    heard_language: str
    heard: str
    error: float
    ms: float


def run(runs: int) -> list[Result]:
    """Every clip under every setting (interleaved), the session language alternating."""
    models = {name: SpeechToText(options=options) for name, options in SETTINGS.items()}
    results: list[Result] = []
    for half, questions in (("tune", TUNE), ("held_out", HELD_OUT)):
        for n, (text, language) in enumerate(questions):
            pcm = speech_pcm16_16k(text, language)
            default = language if n % 2 == 0 else ("en" if language == "ja" else "ja")
            for name, stt in models.items():
                times, heard = [], None
                for _ in range(runs):
                    stt.forget_encoding()  # every run pays its own encoder pass
                    start = time.perf_counter()
                    heard = stt.hear(pcm, default)
                    times.append(time.perf_counter() - start)
                assert heard is not None
                results.append(Result(name, half, text, language, default, heard.language, heard.text,
                                      error_rate(text, heard.text, language) if heard.language == language else 1.0,
                                      round(min(times) * 1000, 1)))
    return results


def summarise(results: list[Result]) -> dict:
    """Per half and setting: mean error, exact clips, language right, median ms and the ratio to full."""
    out: dict = {}
    for half in ("tune", "held_out"):
        rows = [r for r in results if r.half == half]
        full = {r.text: r.ms for r in rows if r.setting == "full-30s"}
        out[half] = {}
        for name in SETTINGS:
            mine = [r for r in rows if r.setting == name]
            out[half][name] = {
                "clips": len(mine),
                "mean_error": round(statistics.mean(r.error for r in mine), 3),
                "exact": sum(r.error == 0 for r in mine),
                "language_right": sum(r.heard_language == r.language for r in mine),
                "median_ms": round(statistics.median(r.ms for r in mine), 1),
                "time_ratio_vs_full": round(statistics.median(r.ms / full[r.text] for r in mine), 3),
            }
    return out


def main() -> None:
    """Run, print a table per half and optionally write every transcript as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = run(args.runs)
    summary = summarise(results)
    for half, settings in summary.items():
        print(f"\n{half}: setting | clips | mean error | exact | language right | median ms | time vs full")
        for name, s in settings.items():
            print(f"  {name:15} | {s['clips']} | {s['mean_error']:.3f} | {s['exact']} | {s['language_right']} | "
                  f"{s['median_ms']:.0f} | {s['time_ratio_vs_full']:.2f}x")
    differing = [(r.setting, r.text, r.heard) for r in results
                 if r.setting != "full-30s" and r.error > 0]
    print("\nclips with errors (not full-30s):")
    for setting, text, heard in differing:
        print(f"  {setting}: {text!r} -> {heard!r}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"summary": summary, "results": [r.__dict__ for r in results]}, handle,
                      ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
