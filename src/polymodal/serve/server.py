"""Running the app: `serve` (the `polymodal serve` command) and `ServerThread` (a real server in a thread, for the
browser test and the load benchmark)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from pathlib import Path

import torch

from ..pipeline.demo import load_demo_pipeline
from .app import create_app


def url_of(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(model: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 8000, threads: int = 1,
          device: str = "cpu", text_tokenizer: str | Path | None = None, tokenizers=()) -> None:
    """Load ``model`` (default: the shipped default bundle) and serve the demo until Ctrl-C."""
    import uvicorn

    if not 0 <= port <= 65535:  # before the model loads; bind() would raise OverflowError
        raise ValueError(f"--port must be from 0 to 65535, got {port}")
    torch.set_num_threads(max(1, threads))
    pipe = load_demo_pipeline(model, device, text_tokenizer=text_tokenizer, tokenizers=tokenizers)
    app = create_app(pipe)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    # Bound here, before the address is printed: a port in use is one clear line (exit 2), not an address
    # printed for a server that never listened.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        app.state.queue.stop()
        # A name that does not resolve, or an address that is not this machine's: the host is wrong, not the port.
        flag = "--host" if isinstance(e, socket.gaierror) or e.errno == errno.EADDRNOTAVAIL else "--port"
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror}); choose another {flag}") from None
    port = sock.getsockname()[1]  # --port 0: the free port the system chose
    print(f"polymodal serve: {url_of(host, port)} (model {model or 'default'}; Ctrl-C stops)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("polymodal serve: warning: listening beyond this machine; the demo has no login", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        app.state.queue.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerThread:
    """``with ServerThread(app) as url:`` a uvicorn server on a free loopback port, stopped on exit."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None):
        import uvicorn

        self.app, self.host, self.port = app, host, port or free_port(host)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="polymodal-serve-http", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        end = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError(f"the server did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        return url_of(self.host, self.port)

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.queue.stop()
