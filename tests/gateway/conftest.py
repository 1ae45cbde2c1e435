"""Gateway tests use the session-wide `stack` fixture from tests/conftest.py."""

from __future__ import annotations

import pytest
from kotoba_stack import Stack


@pytest.fixture
def token(stack: Stack):
    return stack.token


