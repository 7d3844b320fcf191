"""The append-only metrics store and its DuckDB views (metrics.store)."""

from __future__ import annotations

import os
import shutil
import warnings
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from metrics import SCHEMA, MetricRow, MetricsStore, connect, store_dir
from metrics.queries import Snapshot

TS = datetime(2024, 5, 1, 12, 30, 0, tzinfo=UTC)

PIPELINE_ROWS = [
    MetricRow("pipeline", "v1", "langid", "in", 100),
    MetricRow("pipeline", "v1", "langid", "kept", 90),
    MetricRow("pipeline", "v1", "langid", "rejected", 10, key="lang_score_below_threshold"),
    MetricRow("pipeline", "v1", "read", "dead_letter", 3, key="broken JSON"),
    MetricRow("pipeline", "v1", "quality", "word_count", 42, key="100-200"),
    MetricRow("pipeline", "v1", "quality", "word_count", 7, key="200-400"),
]

TRAINER_ROWS = [
    MetricRow("trainer", "run-a", "train", "loss", 3.5, step=10),
    MetricRow("trainer", "run-a", "train", "loss", 2.25, step=20),
    MetricRow("trainer", "run-a", "train", "lr", 1e-3, step=20),
    MetricRow("trainer", "run-a", "eval", "loss", 2.5, step=20),  # not a train scalar
]


def _files(home: Path) -> list[Path]:
    return sorted(p for p in store_dir(home).rglob("*") if p.is_file())


def test_append_writes_one_part_by_rename(tmp_path: Path) -> None:
    path = MetricsStore(tmp_path).append(PIPELINE_ROWS, ts=TS)
    assert path is not None
    assert path.parent == store_dir(tmp_path) / "pipeline"
    assert path.name.startswith("part-20240501T123000")
    assert path.suffix == ".parquet"
    assert _files(tmp_path) == [path]  # no leftover .tmp
    table = pq.read_table(path)
    assert table.schema.equals(SCHEMA)
    assert table.num_rows == len(PIPELINE_ROWS)


def test_append_nothing(tmp_path: Path) -> None:
    assert MetricsStore(tmp_path).append([]) is None
    assert MetricsStore(tmp_path).append(iter(())) is None
    assert not store_dir(tmp_path).exists()


def test_append_accepts_generators(tmp_path: Path) -> None:
    path = MetricsStore(tmp_path).append(r for r in TRAINER_ROWS)
    assert path is not None
    assert pq.read_table(path).num_rows == len(TRAINER_ROWS)


def test_mixed_sources_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        MetricsStore(tmp_path).append([PIPELINE_ROWS[0], TRAINER_ROWS[0]])
    assert _files(tmp_path) == []


def test_unknown_source_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        MetricsStore(tmp_path).append([MetricRow("dashboard", "r", "s", "n", 1.0)])


def test_connect_empty_home(tmp_path: Path) -> None:
    con = connect(tmp_path)
    for view in ("metrics", "pipeline_counts", "pipeline_distributions", "train_scalars", "planner_results"):
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)
    # The empty views still have the documented columns.
    cols = [d[0] for d in con.execute("SELECT * FROM pipeline_counts").description]
    assert cols == ["ts", "version", "stage", "name", "reason", "n"]


def test_pipeline_views(tmp_path: Path) -> None:
    MetricsStore(tmp_path).append(PIPELINE_ROWS, ts=TS)
    con = connect(tmp_path)
    counts = con.execute(
        "SELECT version, stage, name, reason, n FROM pipeline_counts ORDER BY stage, name"
    ).fetchall()
    assert counts == [
        ("v1", "langid", "in", "", 100),
        ("v1", "langid", "kept", "", 90),
        ("v1", "langid", "rejected", "lang_score_below_threshold", 10),
        ("v1", "read", "dead_letter", "broken JSON", 3),
    ]
    dists = con.execute(
        "SELECT version, stage, name, bucket, n FROM pipeline_distributions ORDER BY bucket"
    ).fetchall()
    assert dists == [("v1", "quality", "word_count", "100-200", 42), ("v1", "quality", "word_count", "200-400", 7)]
    (ts,) = con.execute("SELECT DISTINCT ts FROM pipeline_counts").fetchone()
    assert ts == TS
    assert con.execute("SELECT count(*) FROM train_scalars").fetchone() == (0,)


def test_train_scalars(tmp_path: Path) -> None:
    MetricsStore(tmp_path).append(TRAINER_ROWS, ts=TS)
    con = connect(tmp_path)
    rows = con.execute("SELECT run, step, name, value FROM train_scalars ORDER BY name, step").fetchall()
    assert rows == [("run-a", 10, "loss", 3.5), ("run-a", 20, "loss", 2.25), ("run-a", 20, "lr", 1e-3)]
    assert con.execute("SELECT count(*) FROM pipeline_counts").fetchone() == (0,)


def test_planner_results(tmp_path: Path) -> None:
    MetricsStore(tmp_path).append([MetricRow("planner", "plan-1", "fit", "alpha", 0.34, key="tokens")])
    con = connect(tmp_path)
    assert con.execute("SELECT run, stage, name, key, value FROM planner_results").fetchall() == [
        ("plan-1", "fit", "alpha", "tokens", 0.34)
    ]


def test_step_nullable(tmp_path: Path) -> None:
    MetricsStore(tmp_path).append(PIPELINE_ROWS[:1])
    con = connect(tmp_path)
    assert con.execute("SELECT step FROM metrics").fetchall() == [(None,)]


def test_two_appends_both_visible(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path)
    first = store.append(PIPELINE_ROWS[:2], ts=TS)
    second = store.append(PIPELINE_ROWS[2:4], ts=TS)  # same timestamp: names must still differ
    third = store.append(TRAINER_ROWS)
    assert len({first, second, third}) == 3
    con = connect(tmp_path)
    assert con.execute("SELECT count(*) FROM pipeline_counts").fetchone() == (4,)
    assert con.execute("SELECT count(*) FROM metrics").fetchone() == (2 + 2 + len(TRAINER_ROWS),)
    assert con.execute("SELECT count(*) FROM train_scalars").fetchone() == (3,)


def test_stray_temp_file_ignored(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path)
    store.append(PIPELINE_ROWS, ts=TS)
    folder = store_dir(tmp_path) / "pipeline"
    # What a writer that crashed mid-write leaves behind: a half-written file under the temp name.
    (folder / ".part-20240501T000000000000-deadbeef0000.parquet.tmp").write_bytes(b"PAR1\x00garbage")
    (folder / "notes.txt").write_text("not a part")
    con = connect(tmp_path)
    assert con.execute("SELECT count(*) FROM metrics").fetchone() == (len(PIPELINE_ROWS),)
    assert con.execute("SELECT sum(n) FROM pipeline_counts").fetchone() == (203,)


def test_stray_temp_file_only(tmp_path: Path) -> None:
    folder = store_dir(tmp_path) / "trainer"
    folder.mkdir(parents=True)
    (folder / ".part-x.parquet.tmp").write_bytes(b"garbage")
    con = connect(tmp_path)
    assert con.execute("SELECT count(*) FROM train_scalars").fetchone() == (0,)


def test_home_with_quote_in_path(tmp_path: Path) -> None:
    home = tmp_path / "it's here"
    MetricsStore(home).append(TRAINER_ROWS)
    con = connect(home)
    assert con.execute("SELECT count(*) FROM train_scalars").fetchone() == (3,)


def test_connect_reads_the_parts_present_when_it_was_made(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path)
    store.append(PIPELINE_ROWS[:1])
    con = connect(tmp_path)
    store.append(PIPELINE_ROWS[1:2])
    # The view names its part files (a glob would read the home's own path as a pattern): reconnect to see more.
    assert con.execute("SELECT count(*) FROM metrics").fetchone() == (1,)
    assert connect(tmp_path).execute("SELECT count(*) FROM metrics").fetchone() == (2,)


def _count(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(*) FROM metrics").fetchone()[0]


def _snapshot_count(home: Path) -> int:
    snapshot = Snapshot(home)
    snapshot.refresh()
    return _count(snapshot.cursor())


@pytest.mark.parametrize("name, sibling", [("h*", "hx"), ("h?", "hy"), ("h[1]", "h1")])
def test_glob_syntax_in_the_home_is_read_literally(tmp_path: Path, name: str, sibling: str) -> None:
    home = tmp_path / name
    MetricsStore(home).append(TRAINER_ROWS)
    # A copy of the home (the same part names) next to it, which its path would match as a pattern, plus more.
    shutil.copytree(home, tmp_path / sibling)
    MetricsStore(tmp_path / sibling).append(PIPELINE_ROWS)
    assert _count(connect(home)) == _snapshot_count(home) == len(TRAINER_ROWS)


def test_append_syncs_the_part_before_the_rename_and_the_folder_after(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def record_replace(src: Path, dst: Path) -> None:
        events.append(("replace", str(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    path = MetricsStore(tmp_path).append(PIPELINE_ROWS, ts=TS)
    assert path is not None
    assert events == [("fsync", str(path.parent / f".{path.name}.tmp")), ("replace", str(path)),
                      ("fsync", str(path.parent))]


def test_an_unreadable_part_is_skipped_with_a_warning(tmp_path: Path) -> None:
    MetricsStore(tmp_path).append(TRAINER_ROWS)
    # What a rename that reached the disk before the data leaves after a power cut.
    empty = store_dir(tmp_path) / "planner" / "part-20240501T000000000000-deadbeef0000.parquet"
    empty.parent.mkdir()
    empty.touch()
    with pytest.warns(RuntimeWarning, match=f"skipping unreadable part {empty}"):
        assert _count(connect(tmp_path)) == len(TRAINER_ROWS)
    snapshot = Snapshot(tmp_path)
    with pytest.warns(RuntimeWarning, match="0 bytes"):
        assert snapshot.refresh() == 2
    assert _count(snapshot.cursor()) == len(TRAINER_ROWS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert snapshot.refresh() == 0  # warned once, not on every refresh
