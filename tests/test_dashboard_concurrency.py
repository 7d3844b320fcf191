"""Writers never wait on the dashboard: a trainer and a pipeline process append while readers poll."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from metrics import connect, queries

PARTS, ROWS = 60, 200

WRITER = textwrap.dedent("""
    import sys, time
    from metrics import MetricRow, MetricsStore
    home, source, parts, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = MetricsStore(home)
    for part in range(parts):
        if source == "trainer":
            batch = [MetricRow("trainer", "live", "train", "loss", 1.0 / (1 + s), step=part * rows + s)
                     for s in range(rows)]
        else:
            batch = [MetricRow("pipeline", f"v{part}", "input", "in", float(r)) for r in range(rows)]
        store.append(batch)
        time.sleep(0.01)
""")


def test_concurrent_writers_see_no_lock_errors_and_lose_no_rows(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), source, str(PARTS), str(ROWS)],
                                cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for source in ("trainer", "pipeline")]
    snapshot = queries.Snapshot(tmp_path)
    polls, seen = 0, []
    deadline = time.monotonic() + 120
    while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
        # What a dashboard rerun does: load new parts, then query; plus a fresh connection over the glob.
        snapshot.refresh()
        con = snapshot.cursor()
        seen.append(con.execute("SELECT count(*) FROM metrics").fetchone()[0])
        queries.runs(con)
        queries.series(con, ["live"], "loss")
        queries.pipeline_versions(connect(tmp_path))
        polls += 1
    for writer in writers:
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err.decode()
    snapshot.refresh()
    total = 2 * PARTS * ROWS
    assert snapshot.cursor().execute("SELECT count(*) FROM metrics").fetchone()[0] == total
    assert connect(tmp_path).execute("SELECT count(*) FROM metrics").fetchone()[0] == total
    assert polls >= 3 and seen == sorted(seen), "readers polled while writing, and never lost a row they had seen"
    assert queries.series(snapshot.cursor(), ["live"], "loss", points=100_000)["step"].tolist() == list(
        range(PARTS * ROWS))
    assert not list(tmp_path.glob("metrics/*/.*.tmp")), "writers finished every part"
