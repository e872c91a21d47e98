"""Values, never paths: no field of a request, in any modality and on either route, makes the server open a file.

Each class of the leak (issue 16) is sent twice, naming a file that exists and one that does not: the answer is a
4xx, the same for both (so a request cannot tell whether a file exists), holds nothing of the file, and the server
never opened, stat'ed or image-opened anything in the files' folder (`conftest.FileWatch`). The library keeps
reading paths for its own users (``paths=True``, the default); the server's one conversion uses ``paths=False``.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from polymodal.pipeline import Pipeline, PipelineError

ROUTES = ("/api/generate", "/api/retrieve")
# How a path can be dressed as a det/metadata/palette value: the JSON text of a string (what the page's text box
# sends), the string itself, a one-item list of it (the pipeline took a list of strings as a batch of them).
FORMS = {"json-string": lambda p: json.dumps(str(p)), "string": str, "list": lambda p: [str(p)],
         "json-list": lambda p: json.dumps([str(p)])}


def _post(client: TestClient, route: str, inputs: dict):
    body = {"inputs": inputs, "targets": ["depth"], "steps": 2} if route.endswith("generate") else \
        {"inputs": inputs, "k": 2}
    return client.post(route, json=body)


def _ask_both(client: TestClient, secret, route: str, field: str, dress, kind: str | None = None) -> tuple:
    """(answer for the existing file, answer for the missing one) of ``field`` given a file of ``kind`` (default:
    the field's own), each as (status, body with the path blanked)."""
    out = []
    for paths in (secret.files, secret.missing):
        path = paths[kind or field]
        r = _post(client, route, {field: dress(path)})
        out.append((r.status_code, r.text.replace(json.dumps(str(path))[1:-1], "PATH").replace(path.name, "NAME")))
    return tuple(out)


def _refused_alike(secret, there: tuple, missing: tuple) -> None:
    assert 400 <= there[0] < 500, there
    assert there == missing  # existence of the file cannot be told
    assert "error" in json.loads(there[1])
    assert not [m for m in secret.marks if m in there[1]]
    assert secret.watch.hits == []


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("field", ["det", "metadata", "color_palette"])
def test_a_json_path_as_boxes_metadata_or_palette_is_refused_unread(stopped_app, secret, route, field, form):
    there, missing = _ask_both(TestClient(stopped_app), secret, route, field, FORMS[form])
    _refused_alike(secret, there, missing)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("field", ["rgb", "tok_rgb@pt", "canny_edge", "depth", "tok_minilm_global"])
def test_a_file_path_in_an_image_or_vector_field_is_refused_unread(stopped_app, secret, route, field):
    client = TestClient(stopped_app)
    for dress in (str, lambda p: "data:image/png;base64," + str(p), lambda p: [str(p)], lambda p: "file://" + str(p)):
        there, missing = _ask_both(client, secret, route, field, dress, kind="rgb")
        _refused_alike(secret, there, missing)


def test_a_relative_path_that_is_also_valid_base64_is_decoded_not_opened(stopped_app, secret, monkeypatch):
    """``scenepng`` is 8 base64 characters and a file in the working folder: bytes, never a file name."""
    (secret.root / "scenepng").write_bytes(secret.files["rgb"].read_bytes())
    monkeypatch.chdir(secret.root)
    secret.watch.hits.clear()  # the two lines above are the test's own reads
    r = _post(TestClient(stopped_app), "/api/generate", {"rgb": "scenepng"})
    assert r.status_code == 400 and "not an image that can be read" in r.json()["error"], r.text
    assert secret.watch.hits == []


def test_every_request_reaches_the_pipeline_values_only(stopped_app, monkeypatch):
    """Both routes convert inputs through `Pipeline.prepare(..., paths=False)`, and only through it."""
    seen = []
    real = Pipeline.prepare

    def prepare(self, values, **kw):
        seen.append(kw.get("paths", True))
        return real(self, values, **kw)

    monkeypatch.setattr(Pipeline, "prepare", prepare)
    client = TestClient(stopped_app)
    for route in ROUTES:
        r = _post(client, route, {"caption": "a red cube", "det": [{"class": "cube", "box": [0.1, 0.1, 0.5, 0.5]}]})
        assert r.status_code == 202, r.text
    assert seen == [False, False]


def test_the_library_reads_paths_unless_told_values_only(serve_pipe, secret):
    """The option itself, every input domain: ``paths=False`` opens nothing (images and vectors refuse a string,
    a det/metadata/palette string is text); the default still reads the ``.json`` a user names (what
    `Outputs.save` writes), which is what makes this test able to fail."""
    default = serve_pipe.prepare({"det": str(secret.files["det"])}, notify=lambda m: None)
    assert [b.label for b in default[1]["det"][0]] == ["zebracorn"] and secret.watch.hits
    secret.watch.hits.clear()
    for name in serve_pipe.inputs:
        base = name.split("@")[0].removeprefix("tok_")
        path = secret.files.get(base, secret.files["rgb"])
        try:
            _, shown, _ = serve_pipe.prepare({name: str(path)}, notify=lambda m: None, paths=False)
        except PipelineError as e:
            assert "file paths are not read" in str(e), (name, e)
        else:
            assert name in ("caption", "det", "metadata", "color_palette"), name
            assert "zebracorn" not in str(shown) and "SECRET_FIELD_7" not in str(shown)
        assert secret.watch.hits == [], name
