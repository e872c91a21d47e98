"""The demo in headless Chromium, as a person uses it: upload an image, ask for depth and a caption, see both; a
non-image file gives a message on the page; retrieval shows matches; a screenshot is saved.

Needs Debian's ``chromium`` and the ``playwright`` package (Playwright drives the system browser; its own browser
download is not used). Without either the test is skipped. The screenshot is written to the test's tmp folder, and
copied to ``$POLYMODAL_ARTIFACTS`` when that is set.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from polymodal.data.world import render_sample
from polymodal.serve import ServerThread

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        except Exception as e:  # noqa: BLE001 - a browser that cannot start here is a skip, not a failure
            pytest.skip(f"Chromium did not start: {e}")
        yield b
        b.close()


def test_generate_and_retrieve_in_the_browser(browser, app, tmp_path):
    scene = tmp_path / "scene.png"
    Image.fromarray(render_sample(1, 4, 64)["rgb"]).save(scene)
    notes = tmp_path / "notes.png"  # a text file with an image's name: the server must still refuse it
    notes.write_text("these are my notes, not a picture")
    with ServerThread(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#out-depth")
        assert page.is_checked("#out-depth") and page.is_checked("#out-caption")
        page.click("#run")  # nothing given yet
        page.wait_for_selector("#error", state="visible")
        assert "empty request" in page.inner_text("#error")
        big = tmp_path / "big.png"
        big.write_bytes(b"\x89PNG" + bytes(5 * 2**20))
        page.set_input_files("#image", str(big))
        page.wait_for_function("document.getElementById('error').textContent.includes('over the limit of 4 MB')")
        page.set_input_files("#image", str(notes))
        page.fill("#steps", "2")
        page.click("#run")
        page.wait_for_selector("#error", state="visible")
        assert "not an image" in page.inner_text("#error")

        page.set_input_files("#image", str(scene))
        page.wait_for_function("document.getElementById('preview').src.startsWith('data:image/png')")
        page.click("#run")
        page.wait_for_selector(".outs figure", timeout=60_000)
        assert page.is_hidden("#error")
        labels = page.locator(".outs figcaption").all_inner_texts()
        assert labels == ["depth", "caption"]
        assert page.locator(".outs figure .text").count() == 1  # the caption as text, not a picture
        assert "Done in" in page.inner_text("#status")
        assert page.is_visible("#download")
        shot = tmp_path / "serve_generate.png"
        page.screenshot(path=str(shot), full_page=True)

        page.click("#retrieve")
        page.wait_for_selector(".matchs figure", timeout=60_000)
        assert page.locator(".matchs figure").count() == 6
        shots = [shot, tmp_path / "serve_retrieve.png"]
        page.screenshot(path=str(shots[1]), full_page=True)
        page.close()
    for s in shots:
        keep(s)


def keep(shot: Path) -> None:
    """A screenshot as an artifact: checked non-trivial, copied to $POLYMODAL_ARTIFACTS when set."""
    assert shot.stat().st_size > 10_000
    out = os.environ.get("POLYMODAL_ARTIFACTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(out) / shot.name)


def test_a_second_user_sees_the_queue_position(browser, stopped_app, tmp_path):
    import httpx

    with ServerThread(stopped_app) as url:
        body = {"inputs": {"caption": "a cube"}, "targets": ["depth"], "steps": 2}
        first = httpx.post(url + "api/generate", json=body).json()  # another user's job, not yet started
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_selector("#out-depth")
        page.fill("#caption", "two red cubes and a person")
        assert page.is_disabled("#out-caption") and not page.is_checked("#out-caption")  # given, so not asked
        page.fill("#steps", "2")
        page.click("#run")
        page.wait_for_function("document.getElementById('status').textContent.includes('position 2')")
        assert "1 job(s) ahead" in page.inner_text("#status")
        page.screenshot(path=str(tmp_path / "serve_queue.png"))
        keep(tmp_path / "serve_queue.png")
        stopped_app.state.queue.start()
        page.wait_for_selector(".outs figure", timeout=60_000)
        assert httpx.get(url + f"api/jobs/{first['id']}").json()["state"] == "done"
        page.close()
