"""The web app: one HTML page and a small JSON API over a `Pipeline`, jobs through one `JobQueue`.

====================================  ===========================================================================
route                                 answer
====================================  ===========================================================================
``GET /``                             the page (inline CSS and JS: nothing is fetched from the network)
``GET /api/info``                     the model's inputs and outputs, whether retrieval is available
``GET /api/sample?index=N``           a held-out world scene as inputs (image, caption, boxes, metadata)
``POST /api/generate``                ``{"inputs": {...}, "targets": [...], "steps", "temperature", "guidance",
                                      "seed"}`` -> 202 ``{"id", "position"}``
``POST /api/retrieve``                ``{"inputs": {...}, "k"}`` -> 202 ``{"id", "position"}``
``GET /api/jobs/{id}``                state, queue position, step/total, then ``result`` (pictures, texts)
``GET /api/jobs/{id}/download``       the outputs as a zip (`Outputs.save`)
====================================  ===========================================================================

Refusals are ``{"error": message}`` with a 4xx status (400 bad input, 404 unknown job, 409 not finished, 413 too
large, 503 queue full); the request is checked before it is queued, so a bad one never reaches the worker.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..pipeline import Pipeline
from . import requests as req
from .jobs import JobQueue, QueueFull
from .page import PAGE
from .work import (
    RETRIEVAL_MODALITY,
    Gallery,
    check_plan,
    model_info,
    retrieval_unavailable,
    run_generate,
    run_retrieve,
    view,
    world_sample,
    zip_bytes,
)

_TOO_LARGE = (f"the request is over the size limit of {req.MAX_BODY_BYTES // 2**20} MB (an image may be at most "
              f"{req.MAX_IMAGE_BYTES // 2**20} MB)")


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> Any:
    """The JSON body, read chunk by chunk and refused (413) as soon as it passes ``MAX_BODY_BYTES``: a chunked upload
    has no Content-Length to check first, and ``request.body()`` would hold all of it before any check."""
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > req.MAX_BODY_BYTES:
        raise req.RequestError(_TOO_LARGE, 413)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > req.MAX_BODY_BYTES:
            raise req.RequestError(_TOO_LARGE, 413)
    if not raw.strip():
        raise req.RequestError("empty request: send a JSON object with inputs")
    return req.parse_json(bytes(raw))


def create_app(pipe: Pipeline, *, queue: JobQueue | None = None) -> FastAPI:
    """The app over ``pipe``; ``queue`` defaults to a started `JobQueue` (tests pass a stopped one)."""
    app = FastAPI(title="polymodal", docs_url=None, redoc_url=None, openapi_url=None)
    queue = queue if queue is not None else JobQueue()
    app.state.queue, app.state.pipe = queue, pipe
    info = model_info(pipe)
    gallery: list[Gallery] = []
    gallery_lock = threading.Lock()

    def gallery_of() -> Gallery:
        with gallery_lock:
            if not gallery:
                gallery.append(Gallery(pipe))
            return gallery[0]

    @app.exception_handler(req.RequestError)
    async def refused(request: Request, e: req.RequestError) -> JSONResponse:
        return _error(str(e), e.status)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/api/info")
    def get_info() -> dict:
        return info | {"waiting": queue.waiting}

    @app.get("/api/sample")
    def sample(index: str = "0") -> dict:
        # isdecimal, not isdigit: "²" is a digit int() refuses; the length first: int() of 5000 digits refuses too
        if not (index.isdecimal() and len(index) <= 7) or int(index) > 10**6:
            raise req.RequestError("index: must be a whole number from 0 to 1000000")
        return world_sample(pipe, int(index))

    def _queued(kind: str, work) -> JSONResponse:
        try:
            job = queue.submit(kind, work)
        except QueueFull as e:
            return _error(str(e), 503)
        return JSONResponse(queue.status(job), status_code=202)

    @app.post("/api/generate")
    async def post_generate(request: Request) -> JSONResponse:
        body = await _body(request)

        def check():
            values, names, s = req.user_inputs(pipe, body), req.targets(pipe, body), req.settings(body)
            return check_plan(pipe, values, names, s), s

        # Decoding and tokenizing the image take a moment: off the event loop, so other users' polls go on.
        checked, s = await run_in_threadpool(check)

        def work(progress):
            out = run_generate(pipe, checked, s.seed, progress)
            return {"view": view(out), "zip": zip_bytes(out)}

        return _queued("generate", work)

    @app.post("/api/retrieve")
    async def post_retrieve(request: Request) -> JSONResponse:
        why = retrieval_unavailable(pipe)
        if why:
            return _error(f"retrieval is unavailable: {why}", 409)
        body = await _body(request)

        def check():
            values = req.user_inputs(pipe, body)
            k = req.top_k(body)
            conds = req.conditions(pipe, values)
            if RETRIEVAL_MODALITY in conds[0]:  # else queued, then failed with generation's internal advice
                raise req.RequestError(f"{RETRIEVAL_MODALITY}: retrieval predicts it from the other inputs; clear "
                                       "this input")
            return conds, k

        (conds, shown, kinds), k = await run_in_threadpool(check)
        return _queued("retrieve", lambda progress: {"view": run_retrieve(pipe, gallery_of, (conds, shown, kinds),
                                                                          k, progress)})

    def _job(job_id: str):
        job = queue.get(job_id)
        if job is None:
            raise req.RequestError(f"no job {job_id!r} (finished jobs are kept for a while only)", 404)
        return job

    @app.get("/api/jobs/{job_id}")
    def get_job(job_id: str) -> dict:
        job = _job(job_id)
        status = queue.status(job)
        if job.state == "done":
            status["result"] = job.result["view"]
        return status

    @app.get("/api/jobs/{job_id}/download")
    def download(job_id: str) -> Response:
        job = _job(job_id)
        if job.state != "done" or "zip" not in (job.result or {}):
            raise req.RequestError(f"job {job_id} has no outputs to download (it is {job.state})", 409)
        return Response(job.result["zip"], media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="polymodal-{job.id}.zip"'})

    return app
