"""A real dashboard server and a real browser, shared by the server test and the end-to-end chain test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "no Chromium found (Debian: apt-get install chromium chromium-driver); .ci/run installs it"
# page path -> what must be on it once rendered
PAGES = {"": "Funnel", "training": "training loss", "planning": "IsoFLOP view"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


@contextmanager
def dashboard_server(home: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    """``python -m dashboard --home HOME`` on a free port, as a user starts it; stopped on exit."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dashboard", "--home", str(home), "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while health(port) != "ok":
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not come up: {proc.communicate()[0].decode()[-2000:]}")
        time.sleep(0.3)
    try:
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def launch(playwright: Any) -> Any:  # Any: playwright is imported only where a test found it installed
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"])


def render_pages(page: Any, port: int, folders: list[Path], prefix: str = "dashboard",
                 pages: dict[str, str] = PAGES) -> None:
    """Open each page, wait until it has rendered its marker text and a chart, check it shows no error, and
    save ``<prefix>-<page>.png`` into every folder."""
    for path, marker in pages.items():
        page.goto(f"http://127.0.0.1:{port}/{path}")
        page.get_by_text(marker, exact=True).first.wait_for(timeout=90_000)
        page.locator(".vega-embed canvas, .vega-embed svg").first.wait_for(timeout=90_000)
        # Streamlit shows its status widget while a script run is in progress.
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                               timeout=90_000)
        assert page.locator('[data-testid="stException"]').count() == 0, path
        body = page.inner_text("body")
        assert "Traceback" not in body and "Error" not in body, path
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / f"{prefix}-{path or 'data'}.png"))
        assert (folders[0] / f"{prefix}-{path or 'data'}.png").stat().st_size > 10_000
