"""The shipped default model in tests: its modalities in a registry of their own.

Other tests register toy modalities under the shipped names (e.g. a 2x2 ``tok_minilm_global``); the shipped bundle
brings its own definitions and refuses a different one already registered, so tests that load it (directly or
through the command line) run with those names removed and get the old registry back afterwards.
"""

from __future__ import annotations

import json

import pytest

from polymodal import modalities
from polymodal.pipeline.demo import DEFAULT_MODEL


def shipped_registry():
    """Body of a fixture: skips without the shipped model; yields its folder."""
    if not (DEFAULT_MODEL / "pipeline.json").is_file():
        pytest.skip(f"the shipped model is absent from {DEFAULT_MODEL}")
    saved = dict(modalities._REGISTRY)
    for name in json.loads((DEFAULT_MODEL / "pipeline.json").read_text())["modalities"]:
        modalities._REGISTRY.pop(name, None)
    try:
        yield DEFAULT_MODEL
    finally:
        modalities._REGISTRY.clear()
        modalities._REGISTRY.update(saved)
