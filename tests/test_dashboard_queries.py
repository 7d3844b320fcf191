"""metrics.queries and metrics.catalog: the dashboard's read side, against a real build and contract rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from metrics import MetricRow, MetricsStore, catalog, connect, queries
from tests.dashboard_fixtures import HOSTILE_TEXT, make_populated, write_run, write_unannotated_version

INJECTIONS = ["x' OR 1=1 --", "'; DROP TABLE metrics; --", "%", "run-a' --", "\\", "\x00"]


@pytest.fixture(scope="module")
def home(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_populated(built, tmp_path_factory.mktemp("dash") / "home")


@pytest.fixture(scope="module")
def version(home: Path) -> str:
    return catalog.latest(home)


def test_funnel_and_reasons_match_the_manifest(home: Path, version: str) -> None:
    con = connect(home)
    m = catalog.manifest(home, version)
    funnel = queries.funnel(con, version)
    assert list(funnel["stage"]) == [s for s in queries.STAGE_ORDER if s in m["stages"]]
    for row in funnel.itertuples():
        stage = m["stages"][row.stage]
        assert (row._2, row.kept, row.rejected) == (stage["in"], stage["kept"], sum(stage["rejected"].values()))
    reasons = queries.drop_reasons(con, version)
    expected = {(s, r): n for s, v in m["stages"].items() for r, n in v["rejected"].items()}
    assert dict(zip(zip(reasons["stage"], reasons["reason"], strict=True), reasons["n"], strict=True)) == expected
    assert queries.dead_letters(con, version) == m["counts"]["dead_letter"]
    for stage, names in m["distributions"].items():
        for name, buckets in names.items():
            if name == "tokens":
                continue
            got = queries.distribution(con, version, stage, name)
            assert dict(zip(got["bucket"], got["n"], strict=True)) == buckets


def test_a_rebuilt_version_counts_once(home: Path, version: str, tmp_path: Path) -> None:
    store = MetricsStore(tmp_path)
    for _ in range(2):
        store.append([MetricRow("pipeline", version, "input", "in", 10), MetricRow("pipeline", version, "input",
                                                                                     "kept", 9)])
    funnel = queries.funnel(connect(tmp_path), version)
    assert (funnel["in"].tolist(), funnel["kept"].tolist()) == ([10], [9])


def test_snapshot_matches_connect_and_loads_only_new_parts(home: Path, tmp_path: Path) -> None:
    snapshot = queries.Snapshot(home)
    assert snapshot.refresh() == snapshot.parts > 0
    assert snapshot.refresh() == 0
    fresh, cached = connect(home), snapshot.cursor()
    assert queries.runs(fresh).equals(queries.runs(cached))
    assert queries.plans(fresh).equals(queries.plans(cached))
    empty = queries.Snapshot(tmp_path)
    assert empty.refresh() == 0 and queries.runs(empty.cursor()).empty
    write_run(tmp_path, "late", 20, log_every=10)
    assert empty.refresh() == 4 and list(queries.runs(empty.cursor())["run"]) == ["late"]
    shutil.rmtree(tmp_path / "metrics")
    write_run(tmp_path, "after-clean", 10, log_every=10)
    assert empty.refresh() == 3 and list(queries.runs(empty.cursor())["run"]) == ["after-clean"]


def test_runs_table(home: Path) -> None:
    table = queries.runs(connect(home)).set_index("run")
    assert table.loc["run-a", "status"] == "completed" and table.loc["run-failed", "status"] == "failed"
    assert table.loc["run-live", "status"] == "running"
    assert table.loc["run-a", "steps"] == 600 and table.loc["run-a", "events"] == 3
    assert table.loc["run-b", "preset"] == "small"
    # A finished run shows its recorded final_loss; a running one its latest logged loss.
    final = connect(home).execute("SELECT arg_max(value, step) FROM train_scalars WHERE run = 'run-live' "
                                  "AND name = 'loss'").fetchone()[0]
    assert table.loc["run-live", "final_loss"] == pytest.approx(final)
    assert list(queries.runs(connect(home), "RUN-A")["run"]) == ["run-a"]


def test_ema_is_tensorboards_debiased_average() -> None:
    values = np.array([1.0, 3.0, 2.0, 5.0])
    expected, last, weight = [], 0.0, 0.0
    for v in values:
        last, weight = last * 0.7 + 0.3 * v, weight * 0.7 + 0.3
        expected.append(last / weight)
    assert queries.ema(values, 0.7) == pytest.approx(expected)
    assert queries.ema(values, 0.0) == pytest.approx(values)
    with pytest.raises(ValueError):
        queries.ema(values, 1.0)
    # A NaN step is skipped: it carries the previous average and does not poison the rest of the curve.
    gappy = queries.ema(np.array([np.nan, 1.0, np.nan, 3.0]), 0.7)
    assert np.isnan(gappy[0]) and gappy[2] == gappy[1] == 1.0
    assert gappy[3] == pytest.approx(queries.ema(np.array([1.0, 3.0]), 0.7)[1])


def test_downsample_with_non_finite_values() -> None:
    y = np.sin(np.arange(10_000) / 50.0)
    y[::7] = np.nan
    y[4321] = 9.0
    keep = queries.downsample(np.arange(10_000.0), y, 200)
    assert len(keep) <= 202 and 4321 in keep and {0, 9_999} <= set(keep)
    assert np.isfinite(y[keep[1:-1]]).all()


def test_downsampling_bounds_points_and_keeps_spikes(tmp_path: Path) -> None:
    write_run(tmp_path, "long", 20_000, log_every=1000, events={12_345: ("spike_skip", "big")})
    con = connect(tmp_path)
    curve = queries.series(con, ["long"], "loss", points=500)
    assert len(curve) <= 502
    raw = con.execute("SELECT max(value), min(value) FROM train_scalars WHERE name = 'loss'").fetchone()
    assert curve["value"].max() == raw[0] and curve["value"].min() == raw[1]
    assert 12_345 in set(curve["step"]) and curve["step"].is_monotonic_increasing
    assert curve["step"].iloc[0] == 1 and curve["step"].iloc[-1] == 20_000
    wall = queries.series(con, ["long"], "loss", x_axis="wall", points=500)
    # 0.5 s per step in the fixture: step 20,000 was flushed 10,000 s after the run started.
    assert wall["x"].is_monotonic_increasing and wall["x"].iloc[-1] == pytest.approx(10_000 / 60, rel=0.01)


def test_series_overlays_runs_and_keeps_the_newest_value_per_step(home: Path, tmp_path: Path) -> None:
    curve = queries.series(connect(home), ["run-a", "run-b"], "loss", smoothing=0.9)
    assert set(curve["run"]) == {"run-a", "run-b"}
    assert queries.series(connect(home), ["run-a"], "val_loss")["step"].tolist()[-1] == 600
    store = MetricsStore(tmp_path)
    store.append([MetricRow("trainer", "r", "train", "loss", 5.0, step=1)])
    store.append([MetricRow("trainer", "r", "train", "loss", 4.0, step=1)])  # after a rollback
    assert queries.series(connect(tmp_path), ["r"], "loss")["value"].tolist() == [4.0]
    with pytest.raises(ValueError):
        queries.series(connect(home), ["run-a"], "loss", x_axis="epoch")


def test_planner_results(home: Path) -> None:
    con = connect(home)
    plans = queries.plans(con).set_index("id")
    assert list(plans.index) == ["plan-1e22", "plan-6e21"]
    assert plans.loc["plan-6e21", "gpus"] == 128 and plans.loc["plan-6e21", "gpu"] == "h100"
    assert plans.loc["plan-1e22", "zero"] == 3 and plans.loc["plan-6e21", "fit"] == "fit-sweep"
    fits = queries.fits(con).set_index("id")
    assert fits.loc["fit-sweep", "form"] == "chinchilla" and fits.loc["fit-sweep", "alpha"] == 0.33
    assert "ci95_lo" not in fits.columns
    intervals = queries.fit_intervals(con, "fit-sweep").set_index("parameter")
    assert intervals.loc["E", "lo"] == pytest.approx(1.71) and intervals.loc["E", "hi"] == pytest.approx(2.09)
    points = queries.fit_points(con, "fit-sweep")
    assert len(points) == 12 and (points["compute"] == 6 * points["params"] * points["tokens"]).all()


@pytest.mark.parametrize("attempt", INJECTIONS)
def test_injection_is_data_not_sql(home: Path, version: str, attempt: str) -> None:
    con = connect(home)
    total = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
    assert queries.runs(con, attempt).empty
    assert queries.series(con, [attempt, "run-a' OR '1'='1"], "loss").empty
    assert queries.series(con, ["run-a"], attempt).empty
    assert queries.events(con, [attempt]).empty
    assert queries.run_info(con, attempt) == {}
    assert queries.funnel(con, attempt).empty and queries.drop_reasons(con, attempt).empty
    assert queries.distribution(con, version, attempt, attempt).empty
    assert queries.plans(con, attempt).empty and queries.fit_points(con, attempt).empty
    assert queries.fit_intervals(con, attempt).empty
    texts = catalog.sample_documents(home, version, "docs", contains=attempt, limit=500)["text"]
    assert all(attempt.lower() in t.lower() for t in texts)
    assert catalog.sample_documents(home, version, "rejected", reason=attempt, lang=attempt).empty
    with pytest.raises(catalog.CatalogError):
        catalog.signal_histogram(home, version, attempt)
    with pytest.raises(catalog.CatalogError):
        catalog.manifest(home, attempt)
    assert con.execute("SELECT count(*) FROM metrics").fetchone()[0] == total


@pytest.mark.parametrize("name", ["../../etc", "..", "/etc/passwd", "v1/../v2", ".hidden", ""])
def test_version_names_cannot_leave_the_home(home: Path, name: str) -> None:
    with pytest.raises(catalog.CatalogError):
        catalog.manifest(home, name)
    with pytest.raises(catalog.CatalogError):
        catalog.sample_documents(home, name)


def test_versions_lineage_and_config_diff(home: Path, version: str) -> None:
    table = catalog.versions(home)
    assert list(table["version"]) == [f"{version}-child", version]
    assert table.set_index("version").loc[version, "latest"]
    m = catalog.manifest(home, version)
    assert table.set_index("version").loc[version, "tokens"] == sum(s["tokens"] for s in m["shards"])
    chain = catalog.lineage(home, f"{version}-child")
    assert [c["version"] for c in chain] == [f"{version}-child", version] and all(c["present"] for c in chain)
    diff = catalog.config_diff(home, version, f"{version}-child")
    assert diff.to_dict("records") == [{"key": "config.langid.threshold", version: json.dumps(
        m["config"]["langid"]["threshold"]), f"{version}-child": "0.75"}]


def test_config_diff_with_a_version_built_without_the_tokenizer_stage(tmp_path: Path, home: Path,
                                                                      version: str) -> None:
    # A build whose --stages leave out tokenize writes "tokenizer": null.
    untokenized = tmp_path / "data" / "versions" / f"{version}-untokenized"
    untokenized.mkdir(parents=True)
    m = catalog.manifest(home, version)
    (untokenized / "manifest.json").write_text(json.dumps({**m, "tokenizer": None, "shards": []}), encoding="utf-8")
    shutil.copytree(home / "data" / "versions" / version, tmp_path / "data" / "versions" / version)
    diff = catalog.config_diff(tmp_path, version, untokenized.name).set_index("key")
    assert diff.loc["tokenizer.sha256", untokenized.name] == "null"
    assert diff.loc["tokenizer.sha256", version] == json.dumps(m["tokenizer"]["sha256"])


def test_every_threshold_setting_exists_in_a_real_config(home: Path, version: str) -> None:
    m = catalog.manifest(home, version)
    signals = set(catalog.signal_columns(home, version))
    for signal, settings in catalog.THRESHOLDS.items():
        assert signal in signals, signal
        assert len(catalog.thresholds(m, signal)) == len(settings), signal


def test_signal_histogram_counts_every_applicable_document(home: Path, version: str) -> None:
    hist = catalog.signal_histogram(home, version, "q_word_count", bins=25)
    assert len(hist) <= 25 and (hist["hi"] > hist["lo"]).all()
    folder = catalog.data_root(home) / "versions" / version
    import duckdb

    counts = duckdb.connect().execute(
        "SELECT count(*) FILTER (WHERE q_word_count >= 0) FROM read_parquet(?, union_by_name = true)",
        [[str(p) for p in (folder / "rejected").glob("*.parquet")]]).fetchone()[0]
    assert hist["rejected"].sum() == counts
    assert hist["kept"].sum() == catalog.manifest(home, version)["counts"]["kept"]


def test_sample_documents_filters(home: Path, version: str) -> None:
    reason = catalog.reasons(home, version)[0]
    rejected = catalog.sample_documents(home, version, "rejected", reason=reason, limit=500)
    assert len(rejected) and set(rejected["reason"]) == {reason}
    english = catalog.sample_documents(home, version, "docs", lang="en", limit=500)
    assert len(english) and set(english["lang"]) == {"en"}
    assert catalog.sample_documents(home, version, "docs", contains="NOT BOLD")["text"].tolist() == [HOSTILE_TEXT]
    page1 = catalog.sample_documents(home, version, limit=5)
    page2 = catalog.sample_documents(home, version, limit=5, offset=5)
    assert not set(page1["id"]) & set(page2["id"])
    with pytest.raises(ValueError):
        catalog.sample_documents(home, version, limit=10_000)


def test_documents_of_a_version_built_without_langid_or_quality(tmp_path: Path) -> None:
    version = write_unannotated_version(tmp_path)
    assert catalog.languages(tmp_path, version, "docs") == catalog.languages(tmp_path, version, "rejected") == []
    docs = catalog.sample_documents(tmp_path, version, "docs")
    assert list(docs.columns) == ["id", "lang", "quality_score", "text"] and list(docs["id"]) == ["doc-a"]
    assert docs["lang"].isna().all() and docs["quality_score"].isna().all()
    rejected = catalog.sample_documents(tmp_path, version, "rejected", reason="duplicate")
    assert list(rejected.columns) == ["id", "lang", "quality_score", "stage", "reason", "text"]
    assert list(rejected["id"]) == ["doc-b"]
    # No document has a language, so a language filter matches none.
    assert catalog.sample_documents(tmp_path, version, "docs", lang="en").empty


def test_scalar_names_lists_documented_curves_first(tmp_path: Path) -> None:
    write_run(tmp_path, "r", 20, log_every=10)
    MetricsStore(tmp_path).append([MetricRow("trainer", "r", "train", "clip_rate", 0.1, step=10),
                                   MetricRow("trainer", "other", "train", "memory_gb", 3.0, step=10)])
    names = queries.scalar_names(connect(tmp_path), ["r"])
    assert names == ["loss", "val_loss", "lr", "grad_norm", "loss_scale", "tokens_per_s", "mfu", "tokens_seen",
                     "clip_rate"]
    assert queries.scalar_names(connect(tmp_path), ["x' OR 1=1 --"]) == []
