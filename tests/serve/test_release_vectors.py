"""A released 4M-21 model served: its global vectors (tok_dinov2_global, 768 wide) are inputs as in the library, a
JSON list of floats; a wrong width or a non-finite value is one line and a 400; a path in the field is never read.
The model is the tiny 4M-21 fixture with its fixture tokenizers (`tests/pipeline/test_official.py`)."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient

from polymodal.pipeline import Pipeline
from polymodal.serve import JobQueue, create_app
from polymodal.serve import requests as req

from ..conftest import fixtures_dir

GLOBAL = "tok_dinov2_global"
TEXT = "text_tokenizer_4m_wordpiece_30k.json"


@pytest.fixture(scope="module")
def release() -> Pipeline:
    return Pipeline.from_pretrained(fixtures_dir("ml4m-4m21-tiny"), text_tokenizer=fixtures_dir(
        "ml4m-text-tokenizer", TEXT), tokenizers={GLOBAL: fixtures_dir("ml4m-4m21-tiny-tokenizers", GLOBAL)})


@pytest.fixture
def client(release):
    app = create_app(release, queue=JobQueue(start=False))  # jobs stay queued: the requests' checks are tested
    yield TestClient(app)
    app.state.queue.stop()


def vector(width: int = 768, seed: int = 0) -> list[float]:
    return torch.randn(width, generator=torch.Generator().manual_seed(seed)).tolist()


def test_a_global_vector_is_a_condition_as_in_the_library(release, client):
    v = vector()
    r = client.post("/api/generate", json={"inputs": {"dinov2_global": v}, "targets": ["caption"]})
    assert r.status_code == 202, r.text
    conds, _, kinds = req.conditions(release, req.user_inputs(release, {"inputs": {GLOBAL: v}}))
    assert torch.equal(conds[GLOBAL], release.conditions({GLOBAL: torch.tensor(v)})[GLOBAL])
    assert conds[GLOBAL].shape == (1, 16) and kinds[GLOBAL] == "vector"


@pytest.mark.parametrize(("value", "message"), [
    (vector(767), f"{GLOBAL}: send a vector of 768 numbers, got 767"),
    ([1.0, "2"], f"{GLOBAL}: send a vector as a list of numbers"),
])
def test_a_vector_of_another_width_is_one_line(client, value, message):
    r = client.post("/api/generate", json={"inputs": {GLOBAL: value}, "targets": ["caption"]})
    assert (r.status_code, r.json()) == (400, {"error": message})


def test_non_finite_values_are_refused(release, client):
    r = client.post("/api/generate", content=json.dumps({"inputs": {GLOBAL: [float("nan")] * 768},
                                                          "targets": ["caption"]}).encode())
    assert r.status_code == 400 and "NaN is not a JSON number" in r.json()["error"]  # the body parser's refusal
    with pytest.raises(req.RequestError) as e:  # values reaching the check some other way than JSON text
        req.user_inputs(release, {"inputs": {GLOBAL: [1.0, float("inf"), *vector(766)]}})
    assert (e.value.status, str(e.value)) == (400, f"{GLOBAL}: the vector holds 1 NaN or infinite value(s); send "
                                                   "finite numbers")


def test_a_path_in_the_vector_field_is_refused_unread(client, secret):
    for path in (secret.files["rgb"], secret.missing["rgb"]):
        r = client.post("/api/generate", json={"inputs": {GLOBAL: str(path)}, "targets": ["caption"]})
        assert (r.status_code, r.json()) == (400, {"error": f"{GLOBAL}: send a vector as a list of numbers"})
    assert secret.watch.hits == []


def test_a_map_domain_is_refused_without_loading_its_tokenizer(release, client):
    """Depth is not taken by the demo (a JSON list holds no map): refused before its tokenizer is looked up (the
    fixture release has none for depth here: a lookup would answer that it is not in the Hub cache)."""
    r = client.post("/api/generate", json={"inputs": {"depth": [1.0, 2.0]}, "targets": ["caption"]})
    assert r.status_code == 400 and r.json()["error"].startswith("tok_depth@224: this demo does not take it")
    assert "tok_depth@224" not in release.tokenizers.loaded
