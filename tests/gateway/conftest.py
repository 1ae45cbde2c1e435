"""Gateway tests use the session-wide `stack` fixture from tests/conftest.py."""

from __future__ import annotations

import pytest

from tests.support.kotoba_stack import Stack


@pytest.fixture
def token(stack: Stack):
    return stack.token


