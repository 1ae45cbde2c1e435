"""Redaction patterns on their worst inputs: the patterns before issue 15 (stdlib `re`) against today's
(services/common/redact.py, `regex` engine), side by side.

    .venv/bin/python -m bench.redact [--json]

Each pattern applied to learner text is timed (best of 3) on every input of ADVERSARIAL (10 kB each, the
same corpus tests/fuzz/test_fuzz_redact.py guards with), and the table shows each pattern's worst input.
The old phone pattern is exponential, so it runs on 22 digits only (40 would take days); the row says so.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from services.common import redact

SIZE = 10_000
# Long runs of the characters each pattern keys on: where backtracking hides.
ADVERSARIAL = {
    "digits+letter": "1" * SIZE + "a",
    "fullwidth digits+letter": "１" * SIZE + "a",
    "digit groups+letter": "1-" * (SIZE // 2) + "a",
    "spaced digits+colon": "1 " * (SIZE // 2) + ":",
    "parens": "(1)" * (SIZE // 3) + "a",
    "slashes": "1/" * (SIZE // 2) + "a",
    "word run without @": "a" * SIZE,
    "at signs": "a@" * (SIZE // 2),
    "dots after at": "a@" + "b." * (SIZE // 2),
    "name cues": "名前は" * (SIZE // 3) + "「",
    "english name cues": "my name is " * (SIZE // 11),
    "password cues": "password is " * (SIZE // 12),
    "ja password cues": "パスワードは" * (SIZE // 6) + "「",
    "capitalised words": "Abc " * (SIZE // 4) + "1",
    "number then capitals": "1 " + "Abc " * (SIZE // 4),
    "kanji then digits": "県" * SIZE + "1-",
    "prefectures": "東京都" * (SIZE // 3) + "1",
    "chome": "1丁目" * (SIZE // 3),
}

# The patterns as they were before issue 15 (services/conversations/redact.py at main before the fix).
_D = "[0-9０-９]"
OLD = {
    "email": re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE),
    "number": re.compile(rf"(?<![A-Za-z0-9_０-９/.])(?:\+|＋)?\(?{_D}+\)?(?:[ \-.‐－ー()（）]{{0,2}}{_D}+\)?)+"
                         r"(?![A-Za-z0-9_０-９:/])"),
    "name_en": re.compile(r"(?i)\b(my name is|my name's|i'm called|i am called|call me)(\s+)"
                          r"([^\s.,!?;:\"'()]+(?:\s+(?-i:[A-Z])[^\s.,!?;:\"'()]*){0,2})"),
    "name_ja": re.compile(r"((?:私|わたし|僕|ぼく|俺|おれ|あたし)の(?:名前|なまえ)は|(?:名前|なまえ)は)(\s*)"
                          r"([^\s、。！？!?,.「」]+?)(?=です|だよ|だ|と申します|といいます|って|[\s、。！？!?,.]|$)"),
}
# The old number pattern doubles per digit: 22 digits already take ~0.5 s.
OLD_LIMITS = {"number": {"digits+letter": "1" * 22 + "a", "fullwidth digits+letter": "１" * 22 + "a"}}
OLD_SKIP_S = 20.0  # an input the old pattern would not finish on in reasonable time is not run


def best_of(pattern, text: str, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        pattern.sub("", text)
        best = min(best, time.perf_counter() - started)
    return best


def worst(pattern, inputs: dict[str, str], runs: int = 3) -> tuple[str, float, int]:
    timings = {kind: best_of(pattern, text, runs) for kind, text in inputs.items()}
    kind = max(timings, key=timings.__getitem__)
    return kind, timings[kind], len(inputs[kind])


def measure() -> list[dict]:
    rows = []
    for name, pattern in redact.PATTERNS.items():
        new_kind, new_s, new_len = worst(pattern, ADVERSARIAL)
        row = {"pattern": name, "new_worst_input": new_kind, "new_chars": new_len, "new_ms": new_s * 1000}
        if name in OLD:
            inputs = {**ADVERSARIAL, **OLD_LIMITS.get(name, {})}
            if name == "number":  # the 10 kB digit runs would never finish: only the 22-digit stand-ins
                inputs = {k: v for k, v in inputs.items() if "digit" not in k or len(v) < 100}
            old_kind, old_s, old_len = worst(OLD[name], inputs, runs=1)
            same = best_of(pattern, inputs[old_kind]) if old_kind in inputs else new_s
            row |= {"old_worst_input": old_kind, "old_chars": old_len, "old_ms": old_s * 1000,
                    "new_ms_on_old_worst": same * 1000, "ratio": old_s / max(same, 1e-9)}
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = measure()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| pattern | old: worst input (chars) | old ms | new ms, same input | old/new | new: worst input (chars) "
          "| new ms |")
    print("|---|---|---:|---:|---:|---|---:|")
    for r in rows:
        old = (f"{r['old_worst_input']} ({r['old_chars']}) | {r['old_ms']:.1f} | {r['new_ms_on_old_worst']:.2f} | "
               f"{r['ratio']:.0f}x" if "old_ms" in r else "— (new pattern) | — | — | —")
        print(f"| {r['pattern']} | {old} | {r['new_worst_input']} ({r['new_chars']}) | {r['new_ms']:.2f} |")
    digits = "1" * 40 + "a"
    started = time.perf_counter()
    redact.redact_text(digits)
    print(f"\nredact_text(40 digits + 'a'): {(time.perf_counter() - started) * 1000:.2f} ms "
          f"(old number pattern: ~{rows_old_number_estimate(rows):.0f} s, doubling per digit)")
    return 0


def rows_old_number_estimate(rows: list[dict]) -> float:
    """40 digits from the measured 22: the old pattern doubles per digit."""
    number = next(r for r in rows if r["pattern"] == "number")
    return number["old_ms"] / 1000 * 2 ** (40 - 22) if number.get("old_worst_input", "").endswith("letter") else 0.0


if __name__ == "__main__":
    sys.exit(main())
