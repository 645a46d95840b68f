"""Progress of long work: no display by default; a download reports its bytes; rich's bars
on a terminal only, gone when the work ends."""

from __future__ import annotations

import io
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kbuild_py import progress
from kbuild_py.seams.http import UrllibHttp

BODY = bytes(range(256)) * 12_000  # ~3 MB: several 1 MiB reads


class FakeTask:
    def __init__(self, log: list, description: str, total, unit: str) -> None:
        self.log = log
        log.append(("start", description, total, unit))

    def advance(self, amount: float = 1) -> None:
        self.log.append(("advance", amount))

    def update(self, *, total=None, completed=None, description=None) -> None:
        self.log.append(("update", total, completed, description))


class FakeDisplay:
    def __init__(self) -> None:
        self.log: list = []

    @contextmanager
    def task(self, description, total, unit):
        yield FakeTask(self.log, description, total, unit)
        self.log.append(("end", description))


def test_no_display_by_default_tasks_cost_nothing() -> None:
    assert progress._display is None
    with progress.task("x", 3) as t:
        t.advance()
        t.update(total=4, description="y")


@contextmanager
def served(body: bytes):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_download_reports_its_bytes_against_the_content_length(tmp_path: Path) -> None:
    display = FakeDisplay()
    previous = progress.install(display)
    try:
        with served(BODY) as url:
            UrllibHttp().download(f"{url}/pool/linux-image.deb", tmp_path / "k.deb", timeout=30)
    finally:
        progress.install(previous)
    assert display.log[0] == ("start", "download linux-image.deb", len(BODY), "bytes")
    assert sum(e[1] for e in display.log if e[0] == "advance") == len(BODY)
    assert display.log[-1] == ("end", "download linux-image.deb")
    assert (tmp_path / "k.deb").read_bytes() == BODY


def test_rich_display_draws_bars_and_removes_them_when_done() -> None:
    from kbuild_py.report.progress import RichDisplay, _Amount

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    display = RichDisplay(out)
    with display.task("download linux-image-6.1.0-57-amd64.deb", 70_000_000, "bytes") as t:
        t.advance(35_000_000)
        with display.task("image kmod-py/kernel:6.1.0-57-amd64", 15, "steps") as s:
            s.update(completed=8)
            bars = display._progress
            assert bars is not None
            bars.refresh()
            drawn = out.getvalue()
            amounts = [str(_Amount().render(task)) for task in bars.tasks]
    assert "download linux-image-6.1.0-57-amd64.deb" in drawn and "8/15" in drawn
    assert amounts == ["35.0 MB/70.0 MB", "8/15"]
    assert display._progress is None  # stopped with the last task (transient: bars erased)


def test_cli_shows_no_bars_off_a_terminal(capsys) -> None:
    from kbuild_py.cli.base import showing_progress

    with showing_progress():
        assert progress._display is None  # pytest's captured stderr is no terminal
