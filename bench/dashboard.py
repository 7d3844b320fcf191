"""``python -m bench.dashboard``: each dashboard page's queries over a store of 1,000,000 metric rows.

Writes four training runs through :class:`metrics.MetricsStore` exactly as the trainer does (seven train
scalars per step, one part per ``--log-every`` steps, events and eval rows), a pipeline version, a fit and
plans, then times what each page asks on every rerun, against the dashboard's incremental in-memory
snapshot and against a fresh :func:`metrics.connect` over its parts. Target: under 1 s per page.
``--data-home`` also times the Data page's manifest and Parquet reads on a real build's home.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from bench.report import table
from dashboard import analysis
from metrics import MetricRow, MetricsStore, catalog, connect, queries
from tests.dashboard_fixtures import write_fit, write_plan, write_run

TRAIN_NAMES = 7  # loss, lr, grad_norm, tokens_per_s, loss_scale, mfu, tokens_seen
RUNS = 4
OVERLAY = 3  # runs drawn together on the Training page
TRAINING_CURVES = ["loss", "val_loss", "lr", "grad_norm", "loss_scale", "tokens_per_s", "mfu"]


def populate(home: Path, rows: int, log_every: int) -> None:
    steps = rows // (RUNS * TRAIN_NAMES)
    for i in range(RUNS):
        events = {steps // 3: ("spike_skip", "loss spike"), steps // 2: ("rollback", "to last checkpoint")}
        write_run(home, f"run-{i}", steps, log_every=log_every, seed=i, events=events,
                  status="running" if i == 0 else "completed")
    version = "vbench"
    counts = [MetricRow("pipeline", version, stage, name, n, key=key) for stage, name, key, n in (
        ("input", "in", "", 100_000), ("input", "kept", "", 99_000), ("input", "rejected", "empty", 1_000),
        ("langid", "in", "", 99_000), ("langid", "kept", "", 90_000),
        ("langid", "rejected", "lang_score_below_threshold", 9_000),
        ("quality", "in", "", 90_000), ("quality", "kept", "", 70_000),
        ("quality", "rejected", "gopher_min_words", 20_000), ("dedup", "in", "", 70_000),
        ("dedup", "kept", "", 60_000), ("dedup", "rejected", "near_duplicate", 10_000))]
    counts += [MetricRow("pipeline", version, "langid", "lang", 1000 + i, key=f"l{i}") for i in range(100)]
    counts += [MetricRow("pipeline", version, "dedup", "cluster_size", 100, key=str(i)) for i in range(1, 50)]
    MetricsStore(home).append(counts)
    write_fit(home)
    for gpus in (64, 128, 256, 512):
        write_plan(home, f"plan-{gpus}", 6e21, gpus)


def data_page(con: duckdb.DuckDBPyConnection) -> int:
    version = queries.pipeline_versions(con)["version"].iloc[0]
    frames = [queries.funnel(con, version), queries.drop_reasons(con, version)]
    queries.dead_letters(con, version)
    for stage, name in (("langid", "lang"), ("langid", "rejected_lang"), ("dedup", "cluster_size"),
                        ("pii", "replaced"), ("pii", "docs_with"), ("quality", "quality_score"),
                        ("tokenize", "tokens_per_doc")):
        frames.append(queries.distribution(con, version, stage, name))
    return sum(len(f) for f in frames)


def training_page(con: duckdb.DuckDBPyConnection, x_axis: str = "step") -> int:
    runs = list(queries.runs(con)["run"])[:OVERLAY]
    points = len(queries.events(con, runs))
    points += sum(len(f) for f in queries.curves(con, runs, TRAINING_CURVES, x_axis=x_axis).values())
    queries.run_info(con, runs[0])
    return points


def planning_page(con: duckdb.DuckDBPyConnection) -> int:
    fits = queries.fits(con)
    fit = fits["id"].iloc[0]
    frames = [fits, queries.fit_intervals(con, fit), queries.fit_points(con, fit), queries.plans(con)]
    return sum(len(f) for f in frames)


def catalog_reads(home: Path) -> int:
    version = catalog.latest(home)
    m = catalog.manifest(home, version)
    catalog.versions(home)
    catalog.lineage(home, version)
    catalog.config_diff(home, version, version)
    hist = catalog.signal_histogram(home, version, "q_word_count", 40)
    catalog.thresholds(m, "q_word_count")
    catalog.signal_columns(home, version)
    catalog.reasons(home, version)
    catalog.languages(home, version, "docs")
    docs = catalog.sample_documents(home, version, "rejected", limit=10)
    return len(hist) + len(docs)


def timed(fn: Callable[[], int], repeats: int) -> tuple[float, int]:
    """Best wall time of ``repeats`` calls, and what the last call returned."""
    best, out = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="training metric rows (default 1,000,000)")
    parser.add_argument("--log-every", type=int, default=100, help="steps per part, as the trainer flushes")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--data-home", help="a home with a built dataset version, for the Data page's file reads")
    parser.add_argument("--keep", help="write the store here (kept) instead of a temporary folder")
    args = parser.parse_args(argv)

    home = Path(args.keep or tempfile.mkdtemp(prefix="tokenmill-dash-bench-"))
    try:
        start = time.perf_counter()
        populate(home, args.rows, args.log_every)
        write_s = time.perf_counter() - start
        parts = queries.home_summary(home)
        total = connect(home).execute("SELECT count(*) FROM metrics").fetchone()[0]
        print(f"store: {total:,} rows in {sum(parts.values()):,} parts ({parts}), written in {write_s:.1f} s")

        snapshot = queries.Snapshot(home)
        load_s, _ = timed(lambda: snapshot.refresh() or 1, 1)
        MetricsStore(home).append([MetricRow("trainer", "run-0", "train", "loss", 1.0, step=10**9)])
        refresh_s, _ = timed(lambda: snapshot.refresh(), 1)
        noop_s, _ = timed(lambda: snapshot.refresh(), args.repeats)

        rows = [["snapshot: first load (once per server)", f"{load_s:.3f}", "-", "-"],
                ["snapshot: refresh, 1 new part", f"{refresh_s:.3f}", "-", "-"],
                ["snapshot: refresh, nothing new", f"{noop_s:.3f}", "-", "-"]]
        pages: list[tuple[str, Callable[[duckdb.DuckDBPyConnection], int]]] = [
            ("Data (metrics queries)", data_page),
            ("Training (3 runs x 7 curves, step axis)", training_page),
            ("Training (3 runs x 7 curves, wall-time axis)", lambda c: training_page(c, "wall")),
            ("Planning (fits, points, intervals, plans)", planning_page),
        ]
        for label, page in pages:
            snap_s, points = timed(lambda page=page: page(snapshot.cursor()), args.repeats)
            # One timing is enough to show what re-reading every part on each rerun would cost.
            glob_s, _ = timed(lambda page=page: page(connect(home)), 1)
            rows.append([label, f"{snap_s:.3f}", f"{glob_s:.3f}", f"{points:,}"])
        points = queries.fit_points(snapshot.cursor(), "fit-sweep")
        law = analysis.law_of(queries.fits(snapshot.cursor()).iloc[0])
        boot_s, _ = timed(lambda: len(analysis.bootstrap_laws(law, points)), args.repeats)
        rows.append([f"Planning: {analysis.BOOTSTRAP} bootstrap refits for the band (cached per fit)",
                     f"{boot_s:.3f}", "-", "-"])
        if args.data_home:
            data_s, _ = timed(lambda: catalog_reads(Path(args.data_home)), args.repeats)
            docs = catalog.versions(Path(args.data_home))["input"].iloc[0]
            rows.append([f"Data: manifest and Parquet reads ({docs:,} input documents)", f"{data_s:.3f}", "-", "-"])
        print()
        print(table([f"what (snapshot: best of {args.repeats})", "snapshot s", "fresh glob s", "rows returned"], rows))
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
