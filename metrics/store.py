"""Append-only Parquet parts under ``<home>/metrics/<source>/`` and the DuckDB views over them.

Every row has the same schema (see :data:`SCHEMA` and docs/metrics.md): a long format where a
measurement is ``(source, run, stage, step, name, key, value)``. Parts are written to a temporary
name, synced to disk and renamed into place, because one half-written file would break every reader;
readers still skip (and warn about) a part they cannot read rather than fail on it.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

SOURCES = ("pipeline", "trainer", "planner")

SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("run", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("step", pa.int64()),
        pa.field("name", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)

# Views are the query surface the dashboard and planner rely on; the SQL lives here so that the
# schema and its readers change together.
VIEWS = {
    "pipeline_counts": (
        "SELECT ts, run AS version, stage, name, key AS reason, value::BIGINT AS n "
        "FROM metrics WHERE source = 'pipeline' AND name IN ('in', 'kept', 'rejected', 'dead_letter')"
    ),
    "pipeline_distributions": (
        "SELECT ts, run AS version, stage, name, key AS bucket, value::BIGINT AS n "
        "FROM metrics WHERE source = 'pipeline' AND name NOT IN ('in', 'kept', 'rejected', 'dead_letter')"
    ),
    "train_scalars": (
        "SELECT ts, run, step, name, value FROM metrics WHERE source = 'trainer' AND stage = 'train'"
    ),
    "planner_results": "SELECT ts, run, stage, step, name, key, value FROM metrics WHERE source = 'planner'",
}


@dataclass(frozen=True)
class MetricRow:
    source: str
    run: str
    stage: str
    name: str
    value: float
    key: str = ""
    step: int | None = None


def store_dir(home: str | os.PathLike[str]) -> Path:
    return Path(home) / "metrics"


class MetricsStore:
    """Writes rows for one workspace home. Cheap to create; holds no open files."""

    def __init__(self, home: str | os.PathLike[str]):
        self.root = store_dir(home)

    def append(self, rows: Iterable[MetricRow], ts: datetime | None = None) -> Path | None:
        """Write ``rows`` as one new part file; returns its path (None when there were no rows)."""
        rows = list(rows)
        if not rows:
            return None
        sources = {r.source for r in rows}
        if len(sources) != 1 or not sources <= set(SOURCES):
            raise ValueError(f"one part holds rows of one source from {SOURCES}, got {sorted(sources)}")
        stamp = ts or datetime.now(UTC)
        table = pa.table(
            {
                "ts": [stamp] * len(rows),
                "source": [r.source for r in rows],
                "run": [r.run for r in rows],
                "stage": [r.stage for r in rows],
                "step": [r.step for r in rows],
                "name": [r.name for r in rows],
                "key": [r.key for r in rows],
                "value": [float(r.value) for r in rows],
            },
            schema=SCHEMA,
        )
        folder = self.root / sources.pop()
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{stamp.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = folder / f".{name}.tmp"
        # Without the syncs a power cut can leave the rename on disk but not the data: a 0-byte part.
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
        final = folder / name
        os.replace(tmp, final)
        fsync_dir(folder)
        return final


def fsync_dir(folder: Path) -> None:
    """Makes a rename or a new file in ``folder`` durable (the file's own fsync does not cover its name)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def readable_parts(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """``paths`` whose Parquet footer reads, sorted; each other one is warned about and left out, so one
    damaged part (a crash can leave a 0-byte one) does not take every other part down with it."""
    out = []
    for path in sorted(str(p) for p in paths):
        try:
            pq.read_metadata(path)
        except (OSError, pa.ArrowException) as exc:
            warnings.warn(f"metrics store: skipping unreadable part {path}: {exc}", RuntimeWarning, stacklevel=2)
        else:
            out.append(path)
    return out


_GLOB_SYNTAX = re.compile(r"([*?\[])")


def literal_path(path: str) -> str:
    """``path`` as DuckDB's read_parquet reads it literally: it globs every path it is given, even one in a
    list, so ``*``, ``?`` and ``[`` (in a home named ``h[1]``, say) each become a one-character class."""
    return _GLOB_SYNTAX.sub(r"[\1]", path)


def connect(home: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the store's views over the parts present now (connect again to
    see later ones); empty views when nothing is stored."""
    con = duckdb.connect(":memory:")
    parts = readable_parts(store_dir(home).glob("*/part-*.parquet"))
    if parts:
        # A view cannot take bound parameters: the paths are SQL string literals, quotes doubled.
        files = ", ".join("'" + literal_path(p).replace("'", "''") + "'" for p in parts)
        con.execute(f"CREATE VIEW metrics AS SELECT * FROM read_parquet([{files}], union_by_name = true)")
    else:
        con.register("metrics", SCHEMA.empty_table())
    for name, sql in VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {sql}")
    return con
