"""The web demo's API, in process (FastAPI's TestClient): generation with progress and a zip, queue positions,
retrieval, and every bad input answered with a 4xx and a message while the server keeps serving."""

from __future__ import annotations

import base64
import io
import time
import zipfile

import pytest
import torch
from fastapi.testclient import TestClient

from polymodal.serve import MAX_IMAGE_BYTES

from .conftest import flat_png, png_url

FAST = {"steps": 2, "temperature": 0.5, "guidance": 1, "seed": 3}


def wait_done(client: TestClient, job: dict, timeout: float = 60) -> dict:
    end = time.monotonic() + timeout
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < end, f"job still {job['state']}"
        time.sleep(0.05)
        job = client.get(f"/api/jobs/{job['id']}").json()
    return job


def test_generate_depth_and_caption_then_download_the_zip(app, serve_pipe):
    client = TestClient(app)
    info = client.get("/api/info").json()
    assert info["inputs"]["rgb"] == "rgb@pt" and info["retrieval"] == "available"
    assert {"depth", "caption"} <= {o["label"] for o in info["outputs"]}
    assert "<title>polymodal demo</title>" in client.get("/").text
    body = {"inputs": {"rgb": png_url()}, "targets": ["depth", "caption"], **FAST}
    r = client.post("/api/generate", json=body)
    assert r.status_code == 202, r.text
    job = wait_done(client, r.json())
    assert job["state"] == "done", job["error"]
    assert job["step"] == job["total"] == 3  # 2 MaskGIT steps for depth, 1 autoregressive step for the caption
    res = job["result"]
    assert [t["label"] for t in res["inputs"]] == ["rgb"]
    assert [t["label"] for t in res["outputs"]] == ["depth", "caption"]
    assert res["outputs"][0]["png"].startswith("data:image/png;base64,")
    assert isinstance(res["outputs"][1]["text"], str) and res["outputs"][1]["png"] is None
    # The same ids as Pipeline.generate with the same inputs and seed.
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(png_url().split(",")[1]))).convert("RGB")
    ref = serve_pipe.generate({"rgb": img}, ["depth", "caption"], steps=2,
                              temperature=0.5, guidance=1, seed=3)
    assert res["outputs"][1]["text"] == ref.values["caption"][0]
    z = client.get(f"/api/jobs/{job['id']}/download")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    names = sorted(zipfile.ZipFile(io.BytesIO(z.content)).namelist())
    assert names == ["outputs/caption.txt", "outputs/grid.png", "outputs/tok_depth_pt.png",
                     "outputs/tokens.safetensors", "outputs/values.safetensors"]
    assert torch.equal(ref.ids["tok_depth@pt"], _tokens(z.content)["tok_depth@pt"])


def test_without_steps_and_temperature_each_target_gets_its_default(app):
    """The page's "Auto" preset sends no steps/temperature: depth from an image is predicted in one step."""
    client = TestClient(app)
    for inputs, total in (({"rgb": png_url()}, 1), ({"caption": "a cube"}, None)):
        body = {"inputs": inputs, "targets": ["depth"], "steps": "", "temperature": None, "seed": 0}
        job = wait_done(client, client.post("/api/generate", json=body).json())
        assert job["state"] == "done", job["error"]
        if total is not None:
            assert job["total"] == total
        else:
            assert job["total"] > 1  # generated: several MaskGIT steps


def _tokens(zip_content: bytes) -> dict:
    from safetensors.torch import load

    return load(zipfile.ZipFile(io.BytesIO(zip_content)).read("outputs/tokens.safetensors"))


def test_a_second_job_waits_with_its_queue_position(stopped_app):
    client = TestClient(stopped_app)
    body = {"inputs": {"caption": "a cube"}, "targets": ["depth"], **FAST}
    first, second = (client.post("/api/generate", json=body).json() for _ in range(2))
    assert (first["position"], second["position"]) == (1, 2)
    assert client.get(f"/api/jobs/{second['id']}").json()["position"] == 2
    assert client.get("/api/info").json()["waiting"] == 2
    stopped_app.state.queue.start()
    assert wait_done(client, second)["state"] == wait_done(client, first)["state"] == "done"
    assert client.get(f"/api/jobs/{first['id']}").json()["position"] == 0


def test_retrieval_returns_gallery_matches(app):
    client = TestClient(app)
    r = client.post("/api/retrieve", json={"inputs": {"rgb": png_url(1, 3)}, "k": 4})
    assert r.status_code == 202, r.text
    job = wait_done(client, r.json())
    assert job["state"] == "done", job["error"]
    matches = job["result"]["matches"]
    assert len(matches) == 4 and len({m["key"] for m in matches}) == 4
    assert all(m["png"].startswith("data:image/png") and m["caption"] for m in matches)
    scores = [m["score"] for m in matches]
    assert scores == sorted(scores, reverse=True)


def test_world_sample_gives_inputs(app):
    s = TestClient(app).get("/api/sample?index=2").json()
    assert s["rgb"].startswith("data:image/png") and s["caption"] and isinstance(s["det"], list)
    assert TestClient(app).get("/api/sample?index=../x").status_code == 400


def _b64(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


BAD = [
    ({"inputs": {"rgb": _b64(b"%PDF-1.4 not an image at all")}, "targets": ["depth"]}, 400, "not an image"),
    ({"inputs": {"rgb": _b64(b"\0" * (MAX_IMAGE_BYTES + 10))}, "targets": ["depth"]}, 413, "over the size limit"),
    ({"inputs": {"rgb": _b64(flat_png(5000))}, "targets": ["depth"]}, 413, "over the limit"),
    ({"inputs": {}, "targets": ["depth"]}, 400, "empty request"),
    ({"inputs": {"caption": "  "}, "targets": ["depth"]}, 400, "empty request"),
    ({"inputs": {"caption": "a cube"}, "targets": []}, 400, "choose at least one output"),
    ({"inputs": {"caption": "a cube"}, "targets": ["dept"]}, 400, "unknown modality 'dept'"),
    ({"inputs": {"sonar": "ping"}, "targets": ["depth"]}, 400, "unknown modality 'sonar'"),
    ({"inputs": {"caption": "a cube"}, "targets": ["rgb@pt"]}, 400, "not an output"),
    ({"inputs": {"rgb": "/etc/passwd"}, "targets": ["depth"]}, 400, "not valid base64"),
    ({"inputs": {"det": "/etc/boxes.json"}, "targets": ["depth"]}, 400, "det: not valid JSON"),
    ({"inputs": {"caption": "a cube"}, "targets": ["caption"]}, 400, "given as input and asked as output"),
    ({"inputs": {"caption": "a cube"}, "targets": ["depth"], "steps": 500}, 400, "steps: must be"),
    ({"inputs": {"caption": "a cube"}, "targets": ["depth"], "steps": 40}, 400, "too many"),
    ({"inputs": {"caption": "a cube"}, "targets": ["depth"], "seed": "x"}, 400, "seed: must be"),
    (["not", "an", "object"], 400, "must be a JSON object"),
]


@pytest.mark.parametrize("body, status, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_is_a_4xx_with_a_message(app, body, status, message):
    client = TestClient(app)
    r = client.post("/api/generate", json=body)
    assert r.status_code == status and message in r.json()["error"], r.text
    assert client.get("/api/info").status_code == 200  # still serving


def test_bad_bodies_and_jobs(app):
    client = TestClient(app)
    for content, status, message in ((b"", 400, "empty request"), (b"{nope", 400, "not valid JSON"),
                                     (b" " * (9 * 2**20), 413, "over the size limit")):
        r = client.post("/api/generate", content=content, headers={"content-type": "application/json"})
        assert r.status_code == status and message in r.json()["error"]
    assert client.get("/api/jobs/nope").status_code == 404
    assert "no job" in client.get("/api/jobs/nope/download").json()["error"]
    r = client.post("/api/retrieve", json={"inputs": {}})
    assert r.status_code == 400 and "empty request" in r.json()["error"]


def test_a_world_scene_as_every_input(app):
    client = TestClient(app)
    s = client.get("/api/sample?index=1").json()
    body = {"inputs": {"rgb": s["rgb"], "det": s["det"], "metadata": s["metadata"]},
            "targets": ["depth", "color_palette"], **FAST}
    job = wait_done(client, client.post("/api/generate", json=body).json())
    assert job["state"] == "done", job["error"]
    res = job["result"]
    assert [t["label"] for t in res["inputs"]] == ["rgb", "det", "metadata"]
    palette = res["outputs"][1]
    assert palette["png"] and palette["text"]  # a picture of the swatches and their JSON
