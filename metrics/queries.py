"""Read-side queries over the metrics store: what the dashboard's pages ask, as parameterised SQL.

Every function takes a DuckDB connection that has the store's views (:func:`metrics.connect` or
:meth:`Snapshot.cursor`) and returns a pandas DataFrame or plain values. User input only ever reaches
SQL as a bound parameter, never through string formatting.

Long series are reduced before they leave this module (:func:`downsample`): the browser gets at most a
few thousand points per curve however many steps a run logged.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy.signal import lfilter

from metrics.store import SCHEMA, VIEWS, literal_path, readable_parts, store_dir

# Pipeline stages in build order; stages the pipeline adds later sort after these, by name.
STAGE_ORDER = ["read", "input", "langid", "quality", "dedup", "pii", "tokenize", "pack", "output"]
TRAIN_SCALARS = ["loss", "val_loss", "lr", "grad_norm", "loss_scale", "tokens_per_s", "mfu", "tokens_seen"]
EVENT_KINDS = ["spike_skip", "rollback", "nan", "resume", "checkpoint", "fault_injected"]


class Snapshot:
    """An in-memory copy of the store that loads only the parts it has not seen yet.

    Parts are immutable once renamed into place, so a part read once never needs reading again; a
    refresh globs the folders and inserts the new files. Nothing here opens a database file or holds a
    lock a writer could wait on: parts are read with ``read_parquet`` into a private in-memory database.
    Safe to share between threads: each caller queries through its own :meth:`cursor`.
    """

    def __init__(self, home: str | os.PathLike[str]):
        self.root = store_dir(home)
        self._con = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        columns = ", ".join(f"{f.name} {_duck_type(f.type)}" for f in SCHEMA)
        self._con.execute(f"CREATE TABLE metrics ({columns})")
        for name, sql in VIEWS.items():
            self._con.execute(f"CREATE VIEW {name} AS {sql}")

    def refresh(self) -> int:
        """Load parts written since the last refresh; returns how many were new."""
        with self._lock:
            current = {str(p) for p in self.root.glob("*/part-*.parquet")}
            if not self._seen <= current:
                # Writers never delete parts, but a person can (`make clean`): start over rather than
                # keep showing rows that are gone.
                self._con.execute("DELETE FROM metrics")
                self._seen.clear()
            new = current - self._seen
            loadable = readable_parts(new)
            if loadable:
                names = ", ".join(f.name for f in SCHEMA)
                self._con.execute(
                    f"INSERT INTO metrics SELECT {names} FROM read_parquet(?, union_by_name = true)",
                    [[literal_path(p) for p in loadable]],
                )
            # An unreadable part counts as seen too: it stays unreadable, and one warning about it is enough.
            self._seen.update(new)
            return len(new)

    @property
    def parts(self) -> int:
        return len(self._seen)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()


def _duck_type(arrow_type: object) -> str:
    return {"timestamp[us, tz=UTC]": "TIMESTAMPTZ", "string": "VARCHAR", "int64": "BIGINT",
            "double": "DOUBLE"}[str(arrow_type)]


def has_rows(con: duckdb.DuckDBPyConnection, source: str) -> bool:
    return con.execute("SELECT count(*) > 0 FROM (SELECT 1 FROM metrics WHERE source = ? LIMIT 1)",
                       [source]).fetchone()[0]


# ---------------------------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------------------------

# A version built twice has two sets of rows; the newest build's are the truth.
_NEWEST_BUILD = "ts = (SELECT max(ts) FROM pipeline_counts WHERE version = $version)"


def pipeline_versions(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Dataset versions with pipeline rows, newest build first."""
    return con.execute(
        "SELECT version, max(ts) AS built FROM pipeline_counts GROUP BY version ORDER BY built DESC, version"
    ).df()


def _stage_sort(frame: pd.DataFrame) -> pd.DataFrame:
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    key = frame["stage"].map(lambda s: (rank.get(s, len(rank)), s))
    return frame.assign(_k=key).sort_values("_k").drop(columns="_k").reset_index(drop=True)


def funnel(con: duckdb.DuckDBPyConnection, version: str) -> pd.DataFrame:
    """Per stage: documents in, kept, rejected, in build order."""
    frame = con.execute(
        f"""
        SELECT stage,
               sum(n) FILTER (WHERE name = 'in')::BIGINT AS "in",
               sum(n) FILTER (WHERE name = 'kept')::BIGINT AS kept,
               coalesce(sum(n) FILTER (WHERE name = 'rejected'), 0)::BIGINT AS rejected
        FROM pipeline_counts WHERE version = $version AND {_NEWEST_BUILD} AND name IN ('in', 'kept', 'rejected')
        GROUP BY stage
        """,
        {"version": version},
    ).df()
    return _stage_sort(frame)


def drop_reasons(con: duckdb.DuckDBPyConnection, version: str) -> pd.DataFrame:
    """Per stage and reason: documents dropped, in build order, largest first within a stage."""
    frame = con.execute(
        f"""
        SELECT stage, reason, sum(n)::BIGINT AS n FROM pipeline_counts
        WHERE version = $version AND {_NEWEST_BUILD} AND name = 'rejected'
        GROUP BY stage, reason ORDER BY n DESC, reason
        """,
        {"version": version},
    ).df()
    return _stage_sort(frame) if len(frame) else frame


def dead_letters(con: duckdb.DuckDBPyConnection, version: str) -> int:
    row = con.execute(
        f"SELECT coalesce(sum(n), 0) FROM pipeline_counts WHERE version = $version AND {_NEWEST_BUILD} "
        "AND name = 'dead_letter'",
        {"version": version},
    ).fetchone()
    return int(row[0])


def distribution(con: duckdb.DuckDBPyConnection, version: str, stage: str, name: str) -> pd.DataFrame:
    """Bucket counts of one distribution (``lang``, ``cluster_size``, ``replaced``, …), numeric buckets in
    numeric order and the rest largest first."""
    frame = con.execute(
        """
        SELECT bucket, sum(n)::BIGINT AS n FROM pipeline_distributions
        WHERE version = $version AND stage = $stage AND name = $name
          AND ts = (SELECT max(ts) FROM pipeline_distributions WHERE version = $version)
        GROUP BY bucket
        """,
        {"version": version, "stage": stage, "name": name},
    ).df()
    numeric = pd.to_numeric(frame["bucket"], errors="coerce")
    if len(frame) and numeric.notna().all():
        return frame.assign(_k=numeric).sort_values("_k").drop(columns="_k").reset_index(drop=True)
    return frame.sort_values(["n", "bucket"], ascending=[False, True]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


def runs(con: duckdb.DuckDBPyConnection, contains: str = "") -> pd.DataFrame:
    """One row per training run: status, data version, preset, steps, final loss, latest tokens/s and MFU.

    ``contains`` filters run names (case-insensitive substring, matched literally: no wildcards).
    A run's status is the key of its newest ``status`` row; a run without a ``final_loss`` row yet shows
    its latest logged loss.
    """
    return con.execute(
        """
        WITH t AS (SELECT * FROM metrics WHERE source = 'trainer'),
        meta AS (
            SELECT run,
                   arg_max(key, ts) FILTER (WHERE name = 'status') AS status,
                   arg_max(key, ts) FILTER (WHERE name = 'data_version') AS data_version,
                   arg_max(key, ts) FILTER (WHERE name = 'preset') AS preset,
                   arg_max(value, ts) FILTER (WHERE name = 'params') AS params,
                   arg_max(value, ts) FILTER (WHERE name = 'max_steps') AS max_steps,
                   arg_max(value, ts) FILTER (WHERE name = 'final_loss') AS final_loss
            FROM t WHERE stage = 'run' GROUP BY run
        ),
        train AS (
            SELECT run, max(step) AS steps,
                   arg_max(value, step) FILTER (WHERE name = 'loss') AS last_loss,
                   arg_max(value, step) FILTER (WHERE name = 'tokens_per_s') AS tokens_per_s,
                   arg_max(value, step) FILTER (WHERE name = 'mfu') AS mfu,
                   min(ts) AS first_ts, max(ts) AS last_ts
            FROM t WHERE stage = 'train' AND name IN ('loss', 'tokens_per_s', 'mfu') GROUP BY run
        ),
        ev AS (SELECT run, count(*) AS events FROM t WHERE stage = 'event' GROUP BY run)
        SELECT coalesce(meta.run, train.run) AS run, coalesce(meta.status, 'unknown') AS status,
               meta.data_version, meta.preset, meta.params, train.steps, meta.max_steps,
               coalesce(meta.final_loss, train.last_loss) AS final_loss, train.tokens_per_s, train.mfu,
               coalesce(ev.events, 0) AS events, train.first_ts AS started, train.last_ts AS updated
        FROM meta FULL OUTER JOIN train ON meta.run = train.run
        LEFT JOIN ev ON ev.run = coalesce(meta.run, train.run)
        -- filtered after aggregating: lower() on a few run names, not on every row
        WHERE contains(lower(coalesce(meta.run, train.run)), lower($q))
        ORDER BY updated DESC NULLS LAST, run
        """,
        {"q": contains},
    ).df()


def scalar_names(con: duckdb.DuckDBPyConnection, runs_: list[str]) -> list[str]:
    """Names of the train and eval scalars the given runs logged: the documented ones first, in
    :data:`TRAIN_SCALARS` order, then any others the trainer added (clip rate, memory, …) by name."""
    found = {r[0] for r in con.execute(
        "SELECT DISTINCT name FROM metrics WHERE source = 'trainer' AND stage IN ('train', 'eval') "
        "AND list_contains($runs, run)", {"runs": list(runs_)}).fetchall()}
    return [n for n in TRAIN_SCALARS if n in found] + sorted(found - set(TRAIN_SCALARS))


def _series_raw(con: duckdb.DuckDBPyConnection, runs_: list[str], names: list[str]) -> dict[str, np.ndarray]:
    """Every logged point of the given names and runs as arrays name (index into ``names``), run (index
    into ``runs_``), step, value; sorted by name, run, step, one point per step.

    Names and runs travel as small integers and are sorted in numpy: sorting hundreds of thousands of
    rows on their strings in SQL costs several times more. A rollback or resume logs some steps twice;
    the newest value is the one the run continued from, so the last row of each step by time is kept.
    """
    cols = con.execute(
        """
        SELECT list_position($names, name)::INTEGER AS name, list_position($runs, run)::INTEGER AS run,
               step, epoch_us(ts) AS t, value FROM metrics
        WHERE source = 'trainer' AND stage IN ('train', 'eval') AND list_contains($names, name)
          AND list_contains($runs, run) AND step IS NOT NULL
        """,
        {"names": list(names), "runs": list(runs_)},
    ).fetchnumpy()
    cols = {k: np.asarray(v) for k, v in cols.items()}
    order = np.lexsort((cols["t"], cols["step"], cols["run"], cols["name"]))
    cols = {k: v[order] for k, v in cols.items() if k != "t"}
    key = np.stack([cols["name"], cols["run"], cols["step"]])
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (key[:, 1:] != key[:, :-1]).any(axis=0)
    return {k: v[last] for k, v in cols.items()}


def _wall_clock(con: duckdb.DuckDBPyConnection, runs_: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per run, (step, seconds since the run's first row) anchors: one per flushed part.

    The trainer flushes many steps per part and every row of a part shares the part's time, so each
    part says "step S was done by time T"; steps in between are interpolated.
    """
    cols = con.execute(
        """
        SELECT list_position($runs, run)::INTEGER AS run, epoch_us(ts) AS t, max(step) AS step FROM metrics
        WHERE source = 'trainer' AND list_contains($runs, run) GROUP BY 1, 2
        """,
        {"runs": list(runs_)},
    ).df()
    anchors = {}
    for code, group in cols.groupby("run"):
        start = group["t"].min()
        timed = group.dropna(subset=["step"]).sort_values("step")
        steps = np.concatenate([[0.0], timed["step"].to_numpy(float)])
        seconds = np.concatenate([[0.0], (timed["t"].to_numpy(float) - start) / 1e6])
        anchors[runs_[int(code) - 1]] = (steps, np.maximum.accumulate(seconds))
    return anchors


def ema(values: np.ndarray, smoothing: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average: weight ``smoothing`` on the past (0 = raw).

    m_i = s m_{i-1} + (1 - s) v_i from m_{-1} = 0, divided by 1 - s^(i+1) so early points are not pulled
    toward zero; run as one IIR filter because a Python loop costs about 0.3 s per million points.
    Non-finite values (a NaN loss) are skipped and carry the previous average, so one bad step does not
    poison the rest of the curve.
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    kept = values[finite]
    smooth = lfilter([1.0 - smoothing], [1.0, -smoothing], kept) / (1.0 - smoothing ** np.arange(1, len(kept) + 1))
    out = np.full(len(values), np.nan)
    out[finite] = smooth
    # carry the last finite average over skipped points
    index = np.where(finite, np.arange(len(values)), -1)
    np.maximum.accumulate(index, out=index)
    return np.where(index >= 0, out[np.maximum(index, 0)], np.nan)


def downsample(x: np.ndarray, y: np.ndarray, points: int) -> np.ndarray:
    """Indices of at most ``points`` samples that keep the line's envelope: bucketed min/max.

    The series is split into ``points // 2`` equal-count buckets; from each the positions of its minimum
    and maximum are kept (in x order), so spikes survive however long the series is. First and last
    points are always kept; non-finite values are never chosen as a bucket's extreme.
    """
    n = len(y)
    if n <= points:
        return np.arange(n)
    buckets = max(points // 2, 1)
    bucket = np.arange(n) * buckets // n
    starts = np.flatnonzero(np.diff(bucket, prepend=-1))
    keep = [np.array([0, n - 1])]
    for reduce in (np.fmin, np.fmax):
        extreme = reduce.reduceat(y, starts)
        hits = np.flatnonzero(y == extreme[bucket])
        # the first hit of each bucket
        keep.append(hits[np.unique(bucket[hits], return_index=True)[1]])
    return np.unique(np.concatenate(keep))


def curves(con: duckdb.DuckDBPyConnection, runs_: list[str], names: list[str], *, x_axis: str = "step",
           smoothing: float = 0.6, points: int = 2000) -> dict[str, pd.DataFrame]:
    """Training scalars for several runs, one frame per name: columns run, step, x, value (raw), smoothed.

    The EMA runs over every logged point, then each run is reduced to at most ``points`` rows with
    :func:`downsample`. ``x_axis`` is ``step`` or ``wall`` (minutes since the run's first row).
    """
    if x_axis not in ("step", "wall"):
        raise ValueError(f"x_axis must be 'step' or 'wall', got {x_axis!r}")
    raw = _series_raw(con, runs_, names)
    clocks = _wall_clock(con, runs_) if x_axis == "wall" and len(raw["step"]) else {}
    # (name, run) groups are contiguous after the sort: split at every change
    bounds = np.flatnonzero(np.diff(raw["name"] * (len(runs_) + 1) + raw["run"], prepend=-1, append=-1))
    groups = {(raw["name"][a], raw["run"][a]): slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)}
    out = {}
    for i, name in enumerate(names, start=1):
        pieces = []
        for j, run in enumerate(runs_, start=1):
            if (i, j) not in groups:
                continue
            steps = raw["step"][groups[i, j]].astype(float)
            values = raw["value"][groups[i, j]].astype(float)
            smooth = ema(values, smoothing)
            x = steps if x_axis == "step" else np.interp(steps, *clocks[run]) / 60.0
            keep = downsample(x, values, points)
            pieces.append(pd.DataFrame({"run": run, "step": steps[keep].astype(np.int64), "x": x[keep],
                                        "value": values[keep], "smoothed": smooth[keep]}))
        out[name] = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame({
            "run": pd.Series(dtype=str), "step": pd.Series(dtype=np.int64), "x": pd.Series(dtype=float),
            "value": pd.Series(dtype=float), "smoothed": pd.Series(dtype=float)})
    return out


def series(con: duckdb.DuckDBPyConnection, runs_: list[str], name: str, *, x_axis: str = "step",
           smoothing: float = 0.6, points: int = 2000) -> pd.DataFrame:
    """One training scalar for several runs (see :func:`curves`)."""
    return curves(con, runs_, [name], x_axis=x_axis, smoothing=smoothing, points=points)[name]


def events(con: duckdb.DuckDBPyConnection, runs_: list[str]) -> pd.DataFrame:
    """Spike, skip, rollback, NaN, resume, checkpoint and injected-fault events of the given runs."""
    return con.execute(
        """
        SELECT run, step, name AS kind, key AS detail, value AS loss, ts FROM metrics
        WHERE source = 'trainer' AND stage = 'event' AND list_contains($runs, run)
        ORDER BY run, step, ts
        """,
        {"runs": list(runs_)},
    ).df()


def run_info(con: duckdb.DuckDBPyConnection, run: str) -> dict[str, str | float]:
    """The newest value of every ``run``-stage row of one run (strings for string rows)."""
    rows = con.execute(
        """
        SELECT name, arg_max(key, ts) AS key, arg_max(value, ts) AS value FROM metrics
        WHERE source = 'trainer' AND stage = 'run' AND run = $run GROUP BY name ORDER BY name
        """,
        {"run": run},
    ).fetchall()
    return {name: key if key else value for name, key, value in rows}


# ---------------------------------------------------------------------------------------------------------
# Planner
# ---------------------------------------------------------------------------------------------------------


def _wide(con: duckdb.DuckDBPyConnection, stage: str, contains: str = "") -> pd.DataFrame:
    """One row per planner ``run`` of ``stage``: numeric names as numbers, string names (key set) as text."""
    long = con.execute(
        """
        SELECT run, name, arg_max(key, ts) AS key, arg_max(value, ts) AS value, max(ts) AS ts
        FROM planner_results
        WHERE stage = $stage AND name NOT IN ('ci95_lo', 'ci95_hi') AND contains(lower(run), lower($q))
        GROUP BY run, name
        """,
        {"stage": stage, "q": contains},
    ).df()
    if long.empty:
        return pd.DataFrame({"id": pd.Series(dtype=str)})
    long = long.assign(cell=[k if k else v for k, v in zip(long["key"], long["value"], strict=True)])
    wide = long.pivot(index="run", columns="name", values="cell")
    wide.columns.name = None
    for column in wide.columns:
        converted = pd.to_numeric(wide[column], errors="coerce")
        if converted.notna().sum() == wide[column].notna().sum():
            wide[column] = converted
    when = long.groupby("run")["ts"].max()
    wide = wide.assign(recorded=when).sort_values("recorded", ascending=False)
    return wide.rename_axis("id").reset_index()


def plans(con: duckdb.DuckDBPyConnection, contains: str = "") -> pd.DataFrame:
    """Every recorded plan, newest first: one column per plan field of docs/metrics.md."""
    return _wide(con, "plan", contains)


def fits(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every recorded fit, newest first: form, input, estimates and n_points."""
    return _wide(con, "fit")


def fit_intervals(con: duckdb.DuckDBPyConnection, fit: str) -> pd.DataFrame:
    """The 95% interval of each fitted parameter: columns parameter, lo, hi."""
    return con.execute(
        """
        SELECT key AS parameter,
               arg_max(value, ts) FILTER (WHERE name = 'ci95_lo') AS lo,
               arg_max(value, ts) FILTER (WHERE name = 'ci95_hi') AS hi
        FROM planner_results WHERE stage = 'fit' AND run = $fit AND name IN ('ci95_lo', 'ci95_hi')
        GROUP BY key ORDER BY key
        """,
        {"fit": fit},
    ).df()


def fit_points(con: duckdb.DuckDBPyConnection, fit: str) -> pd.DataFrame:
    """The (params, tokens, loss) points a fit used, with compute = 6 N D."""
    frame = con.execute(
        """
        SELECT step AS point,
               arg_max(value, ts) FILTER (WHERE name = 'params') AS params,
               arg_max(value, ts) FILTER (WHERE name = 'tokens') AS tokens,
               arg_max(value, ts) FILTER (WHERE name = 'loss') AS loss
        FROM metrics WHERE source = 'planner' AND stage = 'fit_point' AND run = $fit
        GROUP BY step ORDER BY step
        """,
        {"fit": fit},
    ).df()
    return frame.assign(compute=6.0 * frame["params"] * frame["tokens"])


def home_summary(home: str | os.PathLike[str]) -> dict[str, int]:
    """Part files per source: what the store holds, without reading any of them."""
    root = Path(store_dir(home))
    return {source: len(list((root / source).glob("part-*.parquet"))) for source in ("pipeline", "trainer", "planner")}
