"""``mnas dashboard DIR``: the report, served on loopback and rebuilt while the search runs.

It only reads the SQLite store (WAL mode: readers never block the search's writes) and
rebuilds DIR/report/ in a background thread every ``refresh_s`` seconds; the page reloads
itself on the same period.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from search.results.analysis import load_experiment
from search.results.report import write_report


def create_dashboard(directory: Path, refresh_s: float = 10.0) -> FastAPI:
    directory = Path(directory)
    state = {"built": 0.0, "error": None}
    lock = threading.Lock()
    stop = threading.Event()

    def rebuild() -> None:
        with lock:
            try:
                write_report(directory)
                state.update(built=time.time(), error=None)
            except Exception as exc:  # keep serving the last good page
                state["error"] = f"{type(exc).__name__}: {exc}"

    def loop() -> None:
        while not stop.wait(refresh_s):
            rebuild()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        rebuild()
        threading.Thread(target=loop, daemon=True).start()
        yield
        stop.set()

    app = FastAPI(title="mnas dashboard", lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    def page():
        index = directory / "report" / "index.html"
        body = index.read_text() if index.is_file() else f"<p>no report yet: {state['error']}</p>"
        refresh = f'<meta http-equiv="refresh" content="{max(1, int(refresh_s))}">'
        return body.replace("<head>", "<head>" + refresh, 1)

    @app.get("/api/status")
    def status():
        return {**load_experiment(directory)[2], "report_built_at": state["built"], "report_error": state["error"]}

    return app
