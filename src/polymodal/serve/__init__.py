"""polymodal.serve: a local web demo of any-to-any generation and retrieval (`polymodal serve`).

    pip install "polymodal[serve]"
    polymodal serve [--model BUNDLE] [--port 8000] [--host 127.0.0.1]

The page takes an uploaded image or a held-out world scene, a caption, boxes or metadata; generates the chosen
outputs with step progress, shows each beside the inputs (the pictures of `polymodal.viz`) and offers them as a
zip; a retrieval view finds the nearest scenes of a small world gallery. Jobs run one at a time, in order; others
wait with their queue position. In Python::

    from polymodal.serve import create_app, ServerThread
    app = create_app(Pipeline.from_pretrained("BUNDLE"))     # a FastAPI app (see `serve.app` for the routes)

Modules: `requests` (checking what is sent), `jobs` (the queue), `work` (what jobs compute), `app` (routes),
`page` (the HTML, CSS and JS, inline), `server` (uvicorn).
"""

from .app import create_app
from .jobs import Job, JobQueue, QueueFull
from .requests import MAX_BODY_BYTES, MAX_IMAGE_BYTES, RequestError
from .server import ServerThread, serve

__all__ = ["MAX_BODY_BYTES", "MAX_IMAGE_BYTES", "Job", "JobQueue", "QueueFull", "RequestError", "ServerThread",
           "create_app", "serve"]
