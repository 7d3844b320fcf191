"""The real server: `python -m dashboard` binds to loopback only, serves health, and renders in Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dashboard.__main__ import command
from tests.dashboard_fixtures import HOSTILE_TEXT, make_populated

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
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


@pytest.fixture(scope="module")
def server(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, int]]:
    home = make_populated(built, tmp_path_factory.mktemp("dash") / "home")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dashboard", "--home", str(home), "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while health(port) != "ok":
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not come up: {proc.communicate()[0].decode()[-2000:]}")
        time.sleep(0.3)
    yield proc, port
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_listens_on_loopback_only_by_default(server: tuple[subprocess.Popen, int]) -> None:
    proc, port = server
    assert health(port) == "ok"
    listening = [c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening and {a.ip for a in listening} == {"127.0.0.1"} and port in {a.port for a in listening}


def test_command_line_flags() -> None:
    args = command(8600, "0.0.0.0")
    flags = dict(zip(args[5::2], args[6::2], strict=False))
    assert flags["--server.address"] == "0.0.0.0" and flags["--server.port"] == "8600"
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    result = subprocess.run([sys.executable, "-m", "dashboard", "--home", "/nonexistent/home"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "is not a directory" in result.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (Debian: apt-get install chromium chromium-driver); "
                                            ".ci/run installs it")
def test_every_page_renders_in_chromium(server: tuple[subprocess.Popen, int], tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    _, port = server
    targets = [tmp_path]
    if os.environ.get("TOKENMILL_SCREENSHOTS"):
        targets.append((ROOT / os.environ["TOKENMILL_SCREENSHOTS"]).resolve())
    dialogs: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        for path, marker in PAGES.items():
            page.goto(f"http://127.0.0.1:{port}/{path}")
            page.get_by_text(marker, exact=True).first.wait_for(timeout=90_000)
            page.locator(".vega-embed canvas, .vega-embed svg").first.wait_for(timeout=90_000)
            # Streamlit shows its status widget while a script run is in progress.
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                   timeout=90_000)
            assert page.locator('[data-testid="stException"]').count() == 0, path
            body = page.inner_text("body")
            assert "Traceback" not in body and "Error" not in body, path
            for folder in targets:
                folder.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(folder / f"dashboard-{path or 'data'}.png"))
            assert (tmp_path / f"dashboard-{path or 'data'}.png").stat().st_size > 10_000
        # The hostile document is shown as text: its markup creates no element and runs no script.
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_label("Text contains", exact=True).fill("not bold")
        page.get_by_label("Text contains", exact=True).press("Enter")
        page.get_by_text("**not bold**", exact=False).first.wait_for(timeout=60_000)
        assert HOSTILE_TEXT.split("</div>")[0] in page.inner_text("body")
        assert page.locator("h1", has_text="big").count() == 0 and page.locator("img[src=x]").count() == 0
        browser.close()
    assert not dialogs
