"""`kotoba chat --model NAME`: a learner-facing conversation through a private gateway on another
Live model family, and a refusal naming the supported models for a name the registry lacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(180)


def test_kotoba_chat_with_a_chosen_model(stack):
    out = subprocess.run([sys.executable, "-m", "services.cli", "chat", "--model", "kotoba-local-permissive",
                          "--user", "demo-n4", "--json", "What does 泳ぐ mean?"], env=stack.env(),
                         capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stderr[-2000:]
    turn = json.loads(out.stdout.splitlines()[0])
    assert "swim" in turn["answer"]


def test_kotoba_chat_refuses_an_unknown_model_and_lists_the_supported_ones(stack):
    out = subprocess.run([sys.executable, "-m", "services.cli", "chat", "--model", "gemini-9-ultra", "hi"],
                         env=stack.env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "gemini-9-ultra" in out.stderr and "gemini-live-2.5-flash-preview" in out.stderr
