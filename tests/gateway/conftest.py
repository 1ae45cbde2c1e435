"""Gateway tests use the session-wide `stack` fixture from tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.browser import write_mic_wav
from tests.support.kotoba_stack import Stack


@pytest.fixture
def token(stack: Stack):
    return stack.token




@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory) -> Path:
    """The browser tests' fake microphone: a spoken question."""
    return write_mic_wav(tmp_path_factory.mktemp("mic"))
