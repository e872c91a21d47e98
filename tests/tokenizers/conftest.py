"""Tiny tokenizers train faster on one thread (and do not fight other processes for cores)."""

from __future__ import annotations

import pytest

from tests.conftest import single_thread

one_thread = pytest.fixture(autouse=True)(single_thread)
