"""Properties of the request parser (Hypothesis): any JSON document, and any string in any field, is either taken
or refused with a 4xx and one line; nothing else escapes (a 5xx), and no file is ever opened.

The parser is tested as the routes use it, without the model: `parse_json`, then `user_inputs`, `targets`,
`settings` and `check_plan` (which turns the inputs into conditions, tokenizers included) for a generation,
`user_inputs`, `top_k` and `conditions` for a retrieval. A few documents also go through the app itself. Strings
include paths to the files of the ``secret`` fixture (as themselves, as JSON text, inside data URLs and lists);
`conftest.FileWatch` records any open or stat of their folder.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from polymodal.serve import JobQueue, create_app
from polymodal.serve import requests as req
from polymodal.serve.work import check_plan
from polymodal.tokenizers.serializers.metadata import FIELDS

from .conftest import png_url

hypothesis = pytest.importorskip("hypothesis", reason="the property tests need hypothesis (the dev extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# The secret files' folder is per test (tmp_path); strategies are built at import, so they carry a placeholder
# that `_real` swaps for the folder of the running test.
ROOT = "/SECRET_ROOT"
NAMES = ("boxes.json", "meta.json", "palette.json", "scene.png", "missing_boxes.json", "missing_scene.png")
CHECK = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])

paths = st.sampled_from(NAMES).map(lambda n: f"{ROOT}/{n}")
path_strings = st.one_of(paths, paths.map(json.dumps), paths.map(lambda p: "data:image/png;base64," + p),
                         paths.map(lambda p: "file://" + p), paths.map(lambda p: json.dumps([p])))
strings = st.one_of(st.text(max_size=30), path_strings)
# Mostly numbers a request could mean (so documents get past the parse into the pipeline), sometimes any at all.
numbers = st.one_of(st.integers(-5, 300), st.floats(-2, 300), st.floats(0, 1), st.integers(-5, 300), st.integers(),
                    st.floats())
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(
        ("inputs", "targets", "class", "box", "colors", "brightness"))), inner, max_size=4)), max_leaves=12)

unit = st.floats(0, 1)
box = st.fixed_dictionaries({"class": st.one_of(st.sampled_from(["cube", "sphere"]), strings),
                             "box": st.one_of(st.lists(unit, min_size=4, max_size=4), st.lists(numbers, max_size=5))})
metadata = st.dictionaries(st.one_of(st.sampled_from([f.name for f in FIELDS]), st.text(max_size=8)),
                           st.one_of(st.integers(0, 255), numbers, strings), max_size=4)
colour = st.one_of(st.lists(st.integers(0, 255), min_size=3, max_size=3), st.lists(numbers, max_size=4))
# Per input: well-formed values first (they reach the tokenizers), then near misses, paths and any document.
values = {
    "rgb": st.one_of(st.just(png_url()), st.binary(max_size=64).map(
        lambda b: "data:image/png;base64," + base64.b64encode(b).decode()), path_strings, strings, documents),
    "canny_edge": st.one_of(st.just(png_url(1, 2)), path_strings, strings),
    "caption": st.one_of(st.text(min_size=1, max_size=40), strings, documents),
    "det": st.one_of(st.lists(box, max_size=3), st.lists(box, max_size=3).map(json.dumps), path_strings, strings,
                     documents),
    "metadata": st.one_of(metadata, metadata.map(json.dumps), path_strings, strings, documents),
    "color_palette": st.one_of(st.lists(colour, max_size=4), st.lists(colour, max_size=4).map(json.dumps),
                               path_strings, strings, documents),
    "depth": st.one_of(st.lists(numbers, max_size=8), path_strings, strings, documents),
    "tok_minilm_global": st.one_of(st.lists(st.floats(-1, 1), min_size=384, max_size=384),
                                   st.lists(numbers, max_size=8), path_strings, strings, documents),
}
some_inputs = st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=3, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: values[k] for k in keys}))
inputs = st.one_of(some_inputs, some_inputs, some_inputs, documents,
                   st.dictionaries(st.text(max_size=12), documents, max_size=3))
OUTPUTS = ("depth", "caption", "det", "tok_minilm_global", "normal", "rgb", "sonar", "")
targets = st.lists(st.sampled_from(OUTPUTS[:5]), min_size=1, max_size=2)
bodies = st.fixed_dictionaries({"inputs": inputs, "targets": st.one_of(
    targets, targets, targets, st.lists(st.one_of(st.sampled_from(OUTPUTS), st.text(max_size=10)), max_size=3),
    st.sampled_from(OUTPUTS), documents)}, optional={
    "steps": st.one_of(st.integers(1, 8), st.sampled_from(["", "2", "nan", "1e400"]), numbers, documents),
    **{k: st.one_of(st.floats(0, 2), st.sampled_from(["", "2", "nan", "1e400"]), numbers, documents)
       for k in ("temperature", "guidance")},
    **{k: st.one_of(st.integers(0, 20), numbers, documents) for k in ("seed", "k")}})


def _real(doc, root: Path):
    """``doc`` with the placeholder folder replaced by this test's secret folder (in every string, keys too)."""
    if isinstance(doc, str):
        return doc.replace(ROOT, str(root))
    if isinstance(doc, list):
        return [_real(x, root) for x in doc]
    if isinstance(doc, dict):
        return {_real(k, root): _real(v, root) for k, v in doc.items()}
    return doc


def _parse(pipe, raw: str | bytes) -> None:
    """What both routes do with a body before queueing a job; returns quietly or raises `RequestError`."""
    body = req.parse_json(raw)
    values = req.user_inputs(pipe, body)
    check_plan(pipe, values, req.targets(pipe, body), req.settings(body))
    req.conditions(pipe, values, notify=lambda message: None), req.top_k(body)


def _taken_or_refused(pipe, secret, raw) -> None:
    secret.watch.hits.clear()  # the fixture lives across examples: each example answers for its own reads
    try:
        _parse(pipe, raw)
    except req.RequestError as e:
        assert 400 <= e.status < 500 and str(e).strip(), e
        assert "\n" not in str(e), str(e)
        assert not [m for m in secret.marks if m in str(e)], str(e)
    assert secret.watch.hits == []


@CHECK
@given(body=bodies)
def test_any_request_is_taken_or_a_4xx_and_opens_no_file(serve_pipe, secret, body):
    _taken_or_refused(serve_pipe, secret, json.dumps(_real(body, secret.root)))


FIELDS_ALL = (*sorted(values), "tok_rgb@pt", "normal", "semseg")
path_values = st.one_of(path_strings, st.lists(path_strings, min_size=1, max_size=2),
                        st.lists(st.lists(path_strings, min_size=1, max_size=2), min_size=1, max_size=2),
                        st.dictionaries(st.sampled_from(["box", "class", "colors", "brightness"]), path_strings,
                                        min_size=1, max_size=2))


@CHECK
@given(field=st.sampled_from(FIELDS_ALL), value=path_values)
def test_a_path_in_any_field_in_any_form_is_never_opened(serve_pipe, secret, field, value):
    """The search aimed at the leak: one input, a path to the secret folder (existing or not) as itself, JSON text,
    a data URL, a file: URL, inside lists or objects."""
    body = {"inputs": {field: value}, "targets": ["depth" if field == "caption" else "caption"]}
    _taken_or_refused(serve_pipe, secret, json.dumps(_real(body, secret.root)))


@CHECK
@given(doc=documents)
def test_any_json_document_is_taken_or_a_4xx(serve_pipe, secret, doc):
    _taken_or_refused(serve_pipe, secret, json.dumps(_real(doc, secret.root)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200), st.text(alphabet="[]{}\":,0123456789-.eE ",
                                                                               max_size=200)))
def test_any_bytes_parse_or_give_a_400(serve_pipe, secret, raw):
    try:
        req.parse_json(raw)
    except req.RequestError as e:
        assert e.status == 400 and "\n" not in str(e)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(body=bodies, route=st.sampled_from(["/api/generate", "/api/retrieve"]))
def test_through_the_app_every_answer_is_2xx_or_a_4xx_error(serve_pipe, secret, body, route):
    from fastapi.testclient import TestClient

    secret.watch.hits.clear()
    app = create_app(serve_pipe, queue=JobQueue(start=False, max_waiting=10**6))  # jobs wait; the model never runs
    try:
        r = TestClient(app, raise_server_exceptions=False).post(
            route, content=json.dumps(_real(body, secret.root)), headers={"content-type": "application/json"})
    finally:
        app.state.queue.stop()
    assert r.status_code in (202, 400, 409, 413), r.text
    if r.status_code != 202:
        err = r.json()
        assert list(err) == ["error"] and isinstance(err["error"], str) and "\n" not in err["error"]
    assert secret.watch.hits == []
