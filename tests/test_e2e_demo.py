"""The whole platform as `make demo` runs it (scripts/demo.sh, its `demo` sweep budget is the shortened chain):
bundled corpus -> dataset version -> sweep of small models -> our scaling law -> a plan -> the dashboard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from metrics import connect
from tests.browser import CHROMIUM, NO_CHROMIUM, ROOT, dashboard_server, launch, render_pages
from tests.conftest import SHARED_EVAL

# The demo budget, as `make demo` trains it: 4 sizes x 3 token budgets, about four minutes on two cores.
POINTS, SIZES = 12, 4
NO_LAYOUT = "no layout fits on 128 H100s for our law's model"
CHINCHILLA_RUNS = SHARED_EVAL / "chinchilla" / "chinchilla_N_D_loss.csv"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """HOME after one run of the demo chain, and what the chain printed (stdout, stderr)."""
    home = tmp_path_factory.mktemp("e2e") / "home"
    # Threads as a user's `make demo` has them, not the one thread of the other subprocess tests: this sweep
    # is the longest thing in the suite, and nothing runs beside it.
    env = {**os.environ, "PY": sys.executable, "SHARED_EVAL": str(SHARED_EVAL)}
    env.pop("SWEEP", None)
    result = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), str(home)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return home, result.stdout, result.stderr


def test_chain_reports_every_step(demo: tuple[Path, str, str]) -> None:
    home, out, _ = demo
    for step in range(1, 6):
        assert f"== [{step}/5]" in out
    assert f"{(home / 'data' / 'LATEST').read_text().strip()}: OK" in out  # the new version verified
    assert f"{sys.executable} -m dashboard --home {home}" in out and "http://127.0.0.1:8501" in out


def test_sweep_runs_are_completed_trainer_runs(demo: tuple[Path, str, str]) -> None:
    home, _, _ = demo
    version = (home / "data" / "LATEST").read_text().strip()
    runs = [json.loads(p.read_text()) for p in sorted((home / "runs").glob("*/run.json"))]
    assert len(runs) == POINTS
    assert all(r["status"] == "completed" and r["data"]["version"] == version for r in runs)
    assert len({r["config"]["model"]["d_model"] for r in runs}) == SIZES


def test_fit_and_plan_use_our_runs(demo: tuple[Path, str, str]) -> None:
    home, out, err = demo
    con = connect(home)
    inputs = dict(con.execute("SELECT run, key FROM planner_results WHERE stage = 'fit' AND name = 'input'"
                              ).fetchall())
    ours = sorted(run for run, source in inputs.items() if source == f"metrics:{home}")
    planned = NO_LAYOUT not in out
    # `planner fit HOME/metrics` records the Chinchilla and the Kaplan form; a plan records the law it fitted.
    assert len(ours) == 2 + planned
    for run in ours:
        points = con.execute("SELECT count(DISTINCT step) FROM planner_results WHERE stage = 'fit_point' "
                             "AND run = ?", [run]).fetchone()[0]
        assert points == POINTS
    published = [run for run, source in inputs.items() if source == str(CHINCHILLA_RUNS)]
    assert len(published) == (2 if CHINCHILLA_RUNS.is_file() else 0)
    plan = dict(con.execute("SELECT name, value FROM planner_results WHERE stage = 'plan' AND key = ''").fetchall())
    words = dict(con.execute("SELECT name, key FROM planner_results WHERE stage = 'plan' AND key != ''").fetchall())
    if not planned:
        # Minutes of CPU training pin no law: when its model does not fit on the cluster, the planner says so
        # (naming the nearest cluster that would do) and the chain goes on without recording a plan.
        assert "planner: error: nothing fits in 80 GB on 128 x H100" in err and not plan
        return
    assert plan["compute"] == 6e21 and plan["gpus"] == 128 and words["gpu"] == "h100"
    assert words["fit"] == str(home)  # planned with the law fitted to our own sweep
    assert plan["params"] > 0 and plan["days"] > 0 and "extrapolation over" in out


def _chart_frame(arrow: bytes) -> pd.DataFrame:
    return pa.ipc.open_stream(arrow).read_pandas()


def test_planning_page_shows_the_sweep(demo: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    home, _, _ = demo
    monkeypatch.setenv("TOKENMILL_HOME", str(home))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/planning.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    # Newest first: the fit of our own sweep is the one the page opens on, drawn with its points.
    fit_id = at.selectbox(key="fit").value
    assert fit_id in {row["id"] for row in at.dataframe[0].value.to_dict("records")
                      if row["input"] == f"metrics:{home}"}
    # The frontier charts' laws, read from the Arrow data Streamlit sends the browser.
    laws = {law for chart in at.get("vega_lite_chart") for dataset in chart.proto.datasets
            for law in _chart_frame(dataset.data.data).get("law", [])}
    assert {"Hoffmann 2022", "Besiroglu 2024"} <= laws
    assert any(law.startswith("fit ") and law.endswith(f"({home.name})") for law in laws)
    if CHINCHILLA_RUNS.is_file():
        assert any(law.endswith("(chinchilla_N_D_loss.csv)") for law in laws)


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_dashboard_renders_the_chain_in_chromium(demo: tuple[Path, str, str], tmp_path: Path) -> None:
    """Every page of the real server on the demo's home; TOKENMILL_SCREENSHOTS=docs/img keeps the tutorial's."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    home, _, _ = demo
    folders = [tmp_path]
    if os.environ.get("TOKENMILL_SCREENSHOTS"):
        folders.append((ROOT / os.environ["TOKENMILL_SCREENSHOTS"]).resolve())
    with dashboard_server(home) as (_, port), sync_api.sync_playwright() as p:
        browser = launch(p)
        render_pages(browser.new_page(viewport={"width": 1400, "height": 1800}), port, folders, prefix="tutorial")
        browser.close()
