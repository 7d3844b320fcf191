"""The real server: `python -m dashboard` binds to loopback only, serves health, and renders in Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from dashboard.__main__ import command
from tests.browser import CHROMIUM, NO_CHROMIUM, ROOT, dashboard_server, health, launch, render_pages
from tests.dashboard_fixtures import HOSTILE_TEXT, make_populated


@pytest.fixture(scope="module")
def server(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, int]]:
    with dashboard_server(make_populated(built, tmp_path_factory.mktemp("dash") / "home")) as running:
        yield running


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


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_every_page_renders_in_chromium(server: tuple[subprocess.Popen, int], tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    _, port = server
    targets = [tmp_path]
    if os.environ.get("TOKENMILL_SCREENSHOTS"):
        targets.append((ROOT / os.environ["TOKENMILL_SCREENSHOTS"]).resolve())
    dialogs: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        render_pages(page, port, targets)
        # The hostile document is shown as text: its markup creates no element and runs no script.
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_label("Text contains", exact=True).fill("not bold")
        page.get_by_label("Text contains", exact=True).press("Enter")
        page.get_by_text("**not bold**", exact=False).first.wait_for(timeout=60_000)
        assert HOSTILE_TEXT.split("</div>")[0] in page.inner_text("body")
        assert page.locator("h1", has_text="big").count() == 0 and page.locator("img[src=x]").count() == 0
        browser.close()
    assert not dialogs
