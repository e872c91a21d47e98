"""Crafted requests found by the audit of session 9 that answered 500 with a traceback in the server's log: a scene
index of digit characters ``int`` refuses (``str.isdigit`` is true for "²" and "①") or of 5000 digits (past
Python's 4300-digit cap on ``int``), and a ``data:`` URL without its comma. Each must be a 400 with one line, like
every other bad field."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from polymodal.serve.requests import RequestError, decode_image


@pytest.mark.parametrize("index", ["²", "①", "1" * 5000, "1000001"])
def test_a_scene_index_int_cannot_read_or_too_large_is_a_400(stopped_app, index):
    with TestClient(stopped_app, raise_server_exceptions=False) as client:
        r = client.get("/api/sample", params={"index": index})
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "index: must be a whole number from 0 to 1000000"}


@pytest.mark.parametrize("index", ["3", "٣", "0003"])  # decimal digits of any script, as int() reads them
def test_decimal_scene_indices_still_answer(stopped_app, index):
    with TestClient(stopped_app) as client:
        r = client.get("/api/sample", params={"index": index})
    assert r.status_code == 200 and r.json()["index"] == 3


@pytest.mark.parametrize("url", ["data:image/png;base64", "data:"])
def test_a_data_url_without_its_comma_is_a_400(stopped_app, url):
    with pytest.raises(RequestError) as e:
        decode_image("rgb", url)
    assert e.value.status == 400
    assert str(e.value) == "rgb: the image is not a data: URL with its data after a comma (data:image/png;base64,...)"
    with TestClient(stopped_app, raise_server_exceptions=False) as client:
        r = client.post("/api/generate", json={"inputs": {"rgb": url}, "targets": ["caption"]})
    assert r.status_code == 400, r.text
    assert r.json()["error"].endswith("is not a data: URL with its data after a comma (data:image/png;base64,...)")


def test_retrieval_from_the_embedding_it_predicts_is_a_400(stopped_app):
    """The gallery search predicts tok_minilm_global: given as an input too, the job used to be queued and then fail
    with generation's internal advice ("pass ModalityTokens whose is_input ..."); now refused before queueing."""
    with TestClient(stopped_app) as client:
        r = client.post("/api/retrieve", json={"inputs": {"tok_minilm_global": [0.1] * 384, "caption": "a cube"}})
        assert r.status_code == 400, r.text
        assert r.json() == {"error": "tok_minilm_global: retrieval predicts it from the other inputs; clear this "
                                     "input"}
        assert stopped_app.state.queue.waiting == 0
        r = client.post("/api/retrieve", json={"inputs": {"caption": "a cube"}})  # without it: queued as before
        assert r.status_code == 202 and stopped_app.state.queue.waiting == 1


def test_a_text_far_past_what_the_model_reads_is_refused_before_tokenizing(stopped_app):
    """A caption of megabytes was tokenized whole in the request check (about 1 s per MB of the worker's time) only
    to be cut at 256 tokens; now a 413 from its length alone. A long but reasonable text still queues."""
    with TestClient(stopped_app) as client:
        r = client.post("/api/generate", json={"inputs": {"caption": "a red cube " * 200_000}, "targets": ["depth"]})
        assert r.status_code == 413, r.text
        assert r.json()["error"].startswith("caption: the text is 2,200,000 characters, over the limit of 20,000")
        assert stopped_app.state.queue.waiting == 0
        r = client.post("/api/generate", json={"inputs": {"caption": "a red cube " * 1000}, "targets": ["depth"]})
        assert r.status_code == 202, r.text
