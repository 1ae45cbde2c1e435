"""Abuse tests run against the shared Stack (see tests/faults/conftest.py and faultkit.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_KIT = "kotoba_tests_faultkit"
if _KIT not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_KIT, Path(__file__).resolve().parents[1] / "faults" / "faultkit.py")
    sys.modules[_KIT] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_KIT])
faultkit = sys.modules[_KIT]


@pytest.fixture(scope="session")
def kit():
    return faultkit


@pytest.fixture(scope="session")
def stack(request, moto_endpoint, tmp_path_factory):
    return faultkit.shared_stack(request, moto_endpoint, tmp_path_factory)
