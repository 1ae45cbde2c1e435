"""`kotoba eval answers` end to end through the gateway with the local engine (the shipped set)."""

from __future__ import annotations

import json
import subprocess
import sys

from services.evaluation.answers import load_set


def test_eval_set_is_well_formed():
    questions = load_set()
    assert len(questions) >= 60
    cats = {q.category for q in questions}
    for needed in ("meaning", "reading", "kanji_strokes", "kanji_readings", "kanji_meanings", "example",
                   "jlpt_level", "comparison", "progress", "plan", "due", "greeting", "help", "off_topic"):
        assert needed in cats
    assert {q.language for q in questions} >= {"en", "ja"}
    assert any("romaji" in q.id for q in questions)
    assert any(isinstance(f, dict) and "dynamic" in f for q in questions for f in q.facts)


def test_eval_answers_through_the_gateway(stack):
    out = subprocess.run([sys.executable, "-m", "services.cli", "eval", "answers", "--url", stack.url,
                          "--user", "demo-n4", "--json", "--concurrency", "2", "--min-pass-rate", "0"],
                         env=stack.env(), capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    failed = [(o["id"], o["missing"], o["error"], o["answer"][:300]) for o in report["outcomes"] if not o["passed"]]
    print(f"eval answers: {report['passed']}/{report['total']} = {report['pass_rate']:.1%} in {report['seconds']}s")
    for f in failed:
        print("FAIL", f)
    assert report["pass_rate"] >= 0.95, failed


def test_scorer_facts():
    from services.evaluation.answers import _number, fact_matches, score

    assert fact_matches("Swim", "It means to swim.") and not fact_matches("swim", "to run")
    assert fact_matches({"regex": r"N\d"}, "level N5") and fact_matches({"any": ["x", "およぐ"]}, "およぐ")
    assert score("You learned 12 of 120 words", [_number(12)]) == []
    assert score("You learned 120 words", [_number(12)]) != []
    assert score("1,234 words", [_number(1234)]) == []
