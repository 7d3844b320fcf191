"""Every dashboard page through Streamlit's AppTest, on a populated home and on an empty one."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from metrics import MetricRow, MetricsStore, catalog, connect
from planner.cli import main as planner
from tests.dashboard_fixtures import (
    HOSTILE_ID,
    HOSTILE_TEXT,
    make_populated,
    write_broken_version,
    write_unannotated_version,
)

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
PAGES = ["pages/data.py", "pages/training.py", "pages/planning.py"]
INJECTIONS = ["x' OR 1=1 --", "'; DROP TABLE metrics; --", "%", "_", "\" OR \"\"=\"", "run-a') UNION SELECT 1 --"]


@pytest.fixture(scope="module")
def home(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_populated(built, tmp_path_factory.mktemp("dash") / "home")


def open_page(monkeypatch: pytest.MonkeyPatch, home: Path, page: str) -> AppTest:
    monkeypatch.setenv("TOKENMILL_HOME", str(home))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page != PAGES[0]:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


def texts(at: AppTest) -> str:
    return " ".join(str(e.value) for e in [*at.markdown, *at.info, *at.caption, *at.code])


@pytest.mark.parametrize("page", PAGES)
def test_empty_home_guides_without_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, page: str) -> None:
    at = open_page(monkeypatch, tmp_path, page)
    assert not at.error
    assert at.info, "an empty home must say what is missing"
    # The guidance names the command that fills this page, rooted in this home.
    command = {"pages/data.py": "pipelines.build", "pages/training.py": "python -m trainer",
               "pages/planning.py": "planner"}[page]
    assert command in texts(at) and str(tmp_path) in texts(at)
    assert not charts(at)


def test_data_page(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    at = open_page(monkeypatch, home, PAGES[0])
    headers = [h.value for h in at.header]
    assert headers == ["Versions and lineage", "Funnel", "Languages", "Duplicates and PII", "Quality signals",
                       "Tokens and shards", "Documents"]
    # funnel, drop reasons, 2 language charts, clusters, PII, quality deciles, signal histogram, tokens per doc
    assert len(charts(at)) == 9
    assert len(at.get("download_button")) >= len(charts(at))
    # the thresholds of the selected signal (q_word_count) come from this version's config
    assert "quality.min_words" in texts(at)
    # the child version's config diff shows the one changed setting
    at.selectbox(key="version").select(at.selectbox(key="version").options[0]).run()
    assert not at.exception
    assert "-child" in at.selectbox(key="version").value
    diff = at.dataframe[1].value
    assert list(diff["key"]) == ["config.langid.threshold"]


def test_document_viewer_escapes_and_filters(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    at = open_page(monkeypatch, home, PAGES[0])
    at.text_input(key="doc_search").input("not bold").run()
    assert not at.exception
    # Hostile id and text are shown verbatim in text/code elements and never reach a Markdown element.
    assert [c.value for c in at.code if "script" in c.value] == [HOSTILE_TEXT]
    assert any(HOSTILE_ID in t.value for t in at.text)
    assert all("<script>" not in m.value and "onerror" not in m.value for m in at.markdown)
    at.radio(key="doc_kind").set_value("rejected").run()
    reason = at.selectbox(key="doc_reason").options[1]
    at.text_input(key="doc_search").input("").run()
    at.selectbox(key="doc_reason").select(reason).run()
    shown = [t.value for t in at.text]
    assert shown and all(t.endswith(f": {reason}") for t in shown)


FILTERS = {PAGES[0]: "doc_search", PAGES[1]: "run_filter", PAGES[2]: "plan_filter"}


@pytest.mark.parametrize("page", PAGES)
def test_injection_through_every_filter(monkeypatch: pytest.MonkeyPatch, home: Path, page: str) -> None:
    rows_before = connect(home).execute("SELECT count(*) FROM metrics").fetchone()[0]
    at = open_page(monkeypatch, home, page)
    for attempt in INJECTIONS:
        at.text_input(key=FILTERS[page]).input(attempt).run()
        assert not at.exception, (attempt, [e.value for e in at.exception])
        if page == PAGES[0]:
            # A search term is matched literally, never as SQL or a LIKE pattern ('%' finds only texts with '%').
            assert all(attempt.lower() in c.value.lower() for c in at.code), attempt
            if "'" in attempt:
                assert any(c.value == "No document matches." for c in at.caption), attempt
        elif page == PAGES[1]:
            assert at.dataframe[0].value.empty
            assert any("No run name matches" in i.value for i in at.info)
        else:
            assert any("No plan id matches" in i.value for i in at.info)
    assert connect(home).execute("SELECT count(*) FROM metrics").fetchone()[0] == rows_before


def test_training_page(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    at = open_page(monkeypatch, home, PAGES[1])
    table = at.dataframe[0].value
    assert set(table["run"]) == {"run-a", "run-b", "run-live", "run-failed"}
    assert dict(zip(table["run"], table["status"], strict=True))["run-live"] == "running"
    # The running run is preselected and its curves refresh live.
    assert "run-live" in at.multiselect(key="runs").value
    assert any(c.value.startswith("Live: refreshed") for c in at.caption)
    assert len(charts(at)) == len(at.multiselect(key="curves").value) == 7
    at.multiselect(key="runs").set_value(["run-a", "run-b"]).run()
    at.radio(key="x_axis").set_value("wall").run()
    at.toggle(key="log_y").set_value(True).run()
    at.toggle(key="log_x").set_value(True).run()
    assert not at.exception
    assert not any(c.value.startswith("Live:") for c in at.caption), "finished runs are not polled"
    events = at.dataframe[1].value
    assert set(events["kind"]) == {"spike_skip", "rollback", "checkpoint"}
    # Each chart layers the faint raw line, the EMA line and the event rules.
    spec = charts(at)[0].proto.spec
    assert '"opacity":0.25' in spec.replace(" ", "") and '"rule"' in spec and '"log"' in spec


def test_planning_page(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    at = open_page(monkeypatch, home, PAGES[2])
    assert [h.value for h in at.header] == ["Scaling-law fits", "Compute-optimal frontiers", "Plans"]
    estimates = at.dataframe[1].value
    assert list(estimates["parameter"]) == ["E", "A", "B", "alpha", "beta"]
    assert estimates["ci95 lo"].notna().all()
    # loss curves with bands, IsoFLOP, two frontier charts, memory breakdown, plan comparison
    assert len(charts(at)) == 6
    assert '"area"' in charts(at)[0].proto.spec and '"area"' in charts(at)[1].proto.spec
    assert len(at.get("download_button")) >= len(charts(at))
    assert at.selectbox(key="plan").value == "plan-1e22"
    at.selectbox(key="plan").select("plan-6e21").run()
    assert not at.exception
    assert any(m.value == "128 × h100" for m in at.metric)


def test_planning_page_with_a_plan_made_without_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Once one plan has a layout, a plan without --gpus has NaN in its layout columns; it is the newest, so
    # the page opens on it.
    assert planner(["--compute", "6e21", "--gpus", "128", "--home", str(tmp_path)]) == 0
    assert planner(["--compute", "1e21", "--home", str(tmp_path)]) == 0
    at = open_page(monkeypatch, tmp_path, PAGES[2])
    assert any("No layout (plan made without --gpus)" in i.value for i in at.info)
    assert any(m.value == "- × -" for m in at.metric)
    planned = next(p for p in at.selectbox(key="plan").options if p != at.selectbox(key="plan").value)
    at.selectbox(key="plan").select(planned).run()
    assert not at.exception
    assert not any("No layout" in i.value for i in at.info)
    assert any(m.value == "128 × h100" for m in at.metric)


def test_data_page_of_a_version_built_without_langid_or_quality(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    version = write_unannotated_version(tmp_path)
    assert catalog.languages(tmp_path, version, "docs") == []
    at = open_page(monkeypatch, tmp_path, PAGES[0])
    assert at.selectbox(key="doc_lang").options == ["(any)"]
    assert [t.value for t in at.text] == ["doc-a"]
    at.radio(key="doc_kind").set_value("rejected").run()
    assert not at.exception
    assert [t.value for t in at.text] == ["doc-b · dedup: duplicate"]


def shown(at: AppTest) -> dict[str, list]:
    """Everything a page shows apart from its warnings, comparable between two renders."""
    return {"headers": [h.value for h in at.header], "tables": [d.value.to_dict("records") for d in at.dataframe],
            "metrics": [(m.label, m.value) for m in at.metric], "texts": [t.value for t in at.text],
            "elements": [str(e.value) for e in [*at.markdown, *at.info, *at.caption, *at.code, *at.success]],
            "controls": [(s.key, s.options, s.value) for s in at.selectbox],
            "charts": [c.proto.spec for c in charts(at)]}


def test_data_page_names_broken_versions_and_shows_the_good_one_as_before(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    good = write_unannotated_version(tmp_path)
    before = open_page(monkeypatch, tmp_path, PAGES[0])
    assert not before.warning
    write_broken_version(tmp_path, "vbad-json", b'{"version": "vbad-json", "counts": {')
    write_broken_version(tmp_path, "vbad-gone", None)
    at = open_page(monkeypatch, tmp_path, PAGES[0])
    assert shown(at) == shown(before)
    assert list(at.dataframe[0].value["version"]) == [good] and at.selectbox(key="version").options == [good]
    [warning] = [w.value for w in at.warning]
    assert warning.startswith("Not in the versions table: ")
    assert "- `vbad-gone`: manifest.json is missing" in warning
    assert "- `vbad-json`: manifest.json is not valid JSON (" in warning
    # Under the section header, above the table it is about.
    types = [element.type for element in at.main.children.values()]
    at_warning = types.index("warning")
    assert types[at_warning - 1:at_warning + 2] == ["header", "warning", "dataframe"]


def test_data_page_with_only_broken_versions_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_broken_version(tmp_path, "vbad", b"[1, 2]")
    (tmp_path / "data" / "LATEST").write_text("vbad\n", encoding="utf-8")
    at = open_page(monkeypatch, tmp_path, PAGES[0])
    [warning] = [w.value for w in at.warning]
    assert "- `vbad` (LATEST): manifest.json is not a dataset manifest (a JSON array, not an object)" in warning
    assert "No readable dataset version" in texts(at) and "No dataset version yet" not in texts(at)
    # Once the build's own metrics name it, it can be picked, and the page says why its manifest is not used.
    MetricsStore(tmp_path).append([MetricRow("pipeline", "vbad", "input", "in", 2)])
    at = open_page(monkeypatch, tmp_path, PAGES[0])
    assert at.selectbox(key="version").value == "vbad"
    assert any("has pipeline metrics but an unusable manifest (manifest.json is not a dataset manifest" in w.value
               for w in at.warning)


def test_data_page_lineage_marks_an_unreadable_parent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    good = write_unannotated_version(tmp_path)
    path = tmp_path / "data" / "versions" / good / "manifest.json"
    path.write_text(path.read_text(encoding="utf-8").replace('"parent": null', '"parent": "vbad"'), encoding="utf-8")
    write_broken_version(tmp_path, "vbad", b"\xff")
    at = open_page(monkeypatch, tmp_path, PAGES[0])
    assert f"`{good}` ← `vbad` (unreadable)" in texts(at)
    assert "- `vbad`: manifest.json is not UTF-8 (" in at.warning[0].value
