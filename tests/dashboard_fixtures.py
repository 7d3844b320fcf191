"""Trainer and planner rows written exactly as docs/metrics.md specifies, for dashboard tests and the bench.

The real trainer and planner write these rows themselves; the dashboard must not depend on either being
installed or finished, so tests and ``bench/dashboard.py`` synthesise runs, fits and plans here through the
public :class:`metrics.MetricsStore`, one part per ``log_every`` steps as the trainer does.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from metrics import MetricRow, MetricsStore
from planner.laws import HOFFMANN2022

START = datetime(2026, 11, 1, tzinfo=UTC)


def _run_rows(run: str, info: dict[str, str | float]) -> list[MetricRow]:
    rows = []
    for name, value in info.items():
        if isinstance(value, str):
            rows.append(MetricRow("trainer", run, "run", name, 0.0, key=value))
        else:
            rows.append(MetricRow("trainer", run, "run", name, float(value)))
    return rows


def write_run(home: str | Path, run: str, steps: int, *, data_version: str = "v0", preset: str = "tiny",
              status: str = "completed", log_every: int = 50, seed: int = 0, params: float = 1.2e6,
              events: dict[int, tuple[str, str]] | None = None, start: datetime = START,
              seconds_per_step: float = 0.5) -> float:
    """One training run: ``steps`` steps of the seven train scalars, eval every 10 flushes, run metadata,
    ``events`` {step: (kind, detail)}; returns the final loss. Parts are flushed every ``log_every`` steps
    with the wall-clock time the flush would have had, so wall-time axes have something to interpolate."""
    store = MetricsStore(home)
    rng = np.random.default_rng(seed)
    events = events or {}
    tokens_per_step = 8 * 256
    store.append(_run_rows(run, {"data_version": data_version, "preset": preset, "precision": "bf16",
                                 "device": "cpu", "status": "running", "params": params,
                                 "non_embedding_params": params * 0.8, "layers": 4, "d_model": 128, "heads": 4,
                                 "seq_len": 256, "vocab": 8192, "max_steps": steps,
                                 "tokens_planned": steps * tokens_per_step}), ts=start)
    step_index = np.arange(1, steps + 1)
    loss = 2.5 + 6.5 * np.exp(-step_index / max(steps / 6, 1)) + rng.normal(0, 0.05, steps)
    for step, (kind, _) in events.items():
        if kind in ("spike_skip", "rollback"):
            loss[step - 1] += 3.0
    warmup = max(steps // 20, 1)
    lr = np.where(step_index < warmup, 6e-4 * step_index / warmup,
                  6e-4 * 0.5 * (1 + np.cos(np.pi * np.clip(step_index - warmup, 0, None) / max(steps - warmup, 1))))
    grad_norm = np.abs(1.0 + rng.normal(0, 0.2, steps))
    tokens_per_s = tokens_per_step / seconds_per_step * (1 + rng.normal(0, 0.02, steps))
    for first in range(0, steps, log_every):
        last = min(first + log_every, steps)
        rows: list[MetricRow] = []
        for i in range(first, last):
            step = i + 1
            for name, series in (("loss", loss), ("lr", lr), ("grad_norm", grad_norm),
                                 ("tokens_per_s", tokens_per_s)):
                rows.append(MetricRow("trainer", run, "train", name, float(series[i]), step=step))
            rows.append(MetricRow("trainer", run, "train", "loss_scale", 65536.0, step=step))
            rows.append(MetricRow("trainer", run, "train", "mfu", float(tokens_per_s[i] * 6 * params / 1e12),
                                  step=step))
            rows.append(MetricRow("trainer", run, "train", "tokens_seen", float(step * tokens_per_step), step=step))
            if step in events:
                kind, detail = events[step]
                rows.append(MetricRow("trainer", run, "event", kind, float(loss[i]), key=detail, step=step))
        if (first // log_every) % 10 == 9 or last == steps:
            rows.append(MetricRow("trainer", run, "eval", "val_loss", float(loss[last - 1] + 0.1), step=last))
        store.append(rows, ts=start + timedelta(seconds=last * seconds_per_step))
    final = float(loss[-1])
    end = start + timedelta(seconds=steps * seconds_per_step + 1)
    if status != "running":
        store.append(_run_rows(run, {"status": status, "final_step": steps, "final_loss": final,
                                     "first_loss": float(loss[0]), "tokens_trained": steps * tokens_per_step}),
                     ts=end)
    return final


SWEEP = [(n, d) for n in (2e6, 5e6, 1.2e7, 3e7) for d in (4e7, 1e8, 2.5e8)]


def write_fit(home: str | Path, fit_id: str = "fit-sweep", seed: int = 0) -> dict[str, float]:
    """A Chinchilla fit over a 4 x 3 sweep whose losses follow a known law plus noise; returns that law."""
    law = {"E": 1.9, "A": 420.0, "B": 380.0, "alpha": 0.33, "beta": 0.29}
    rng = np.random.default_rng(seed)
    rows = [MetricRow("planner", fit_id, "fit", name, value) for name, value in law.items()]
    rows.append(MetricRow("planner", fit_id, "fit", "n_points", float(len(SWEEP))))
    for name, value in law.items():
        rows.append(MetricRow("planner", fit_id, "fit", "ci95_lo", value * 0.9, key=name))
        rows.append(MetricRow("planner", fit_id, "fit", "ci95_hi", value * 1.1, key=name))
    rows.append(MetricRow("planner", fit_id, "fit", "form", 0.0, key="chinchilla"))
    rows.append(MetricRow("planner", fit_id, "fit", "input", 0.0, key=str(home)))
    for index, (n, d) in enumerate(SWEEP):
        loss = law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"]
        loss *= math.exp(rng.normal(0, 0.01))
        rows += [MetricRow("planner", fit_id, "fit_point", "params", n, step=index),
                 MetricRow("planner", fit_id, "fit_point", "tokens", d, step=index),
                 MetricRow("planner", fit_id, "fit_point", "loss", loss, step=index)]
    MetricsStore(home).append(rows, ts=START + timedelta(days=1))
    return law


def write_plan(home: str | Path, plan_id: str, compute: float, gpus: int, *, fit: str = "hoffmann2022",
               zero: int = 1, tp: int = 8, pp: int = 4) -> None:
    """A plan as ``planner --compute C --gpus G`` records it, sized with Hoffmann 2022."""
    n, d = HOFFMANN2022.optimal(compute)
    dp = max(gpus // (tp * pp), 1)
    numbers = {"compute": compute, "gpus": gpus, "params": n, "tokens": d, "loss": HOFFMANN2022.loss(n, d),
               "days": compute / (gpus * 989e12 * 0.42) / 86400, "gpu_hours": compute / (989e12 * 0.42) / 3600,
               "mfu": 0.42, "hfu": 0.55, "memory_gb_per_gpu": 61.5, "step_time_s": 9.8, "layers": 64,
               "d_model": 8192, "heads": 64, "ffn": 32768, "vocab": 128000, "dp": dp, "tp": tp, "pp": pp,
               "micro_batch": 1, "grad_accum": 16, "zero": zero}
    rows = [MetricRow("planner", plan_id, "plan", name, float(value)) for name, value in numbers.items()]
    for name, value in (("law", "chinchilla"), ("gpu", "h100"), ("recompute", "selective"), ("fit", fit)):
        rows.append(MetricRow("planner", plan_id, "plan", name, 0.0, key=value))
    MetricsStore(home).append(rows, ts=START + timedelta(days=2, minutes=gpus))


def populate(home: str | Path, data_version: str = "v0") -> None:
    """Three finished runs (one with spike, skip and rollback events), one running, one failed, a fit
    and two plans: enough for every chart on the Training and Planning pages."""
    write_run(home, "run-a", 600, data_version=data_version, seed=1,
              events={200: ("spike_skip", "loss 9.1 > mean + 6 sd"), 350: ("rollback", "to step 300"),
                      300: ("checkpoint", "step-300")})
    write_run(home, "run-b", 400, data_version=data_version, seed=2, preset="small", params=5e6)
    write_run(home, "run-live", 150, data_version=data_version, seed=3, status="running",
              start=datetime.now(UTC) - timedelta(minutes=2))
    write_run(home, "run-failed", 80, data_version=data_version, seed=4, status="failed",
              events={80: ("nan", "non-finite gradients")})
    write_fit(home)
    write_plan(home, "plan-6e21", 6e21, 128, fit="fit-sweep")
    write_plan(home, "plan-1e22", 1e22, 256, zero=3)


HOSTILE_ID = "<img src=x onerror=alert(1)>"
HOSTILE_TEXT = "<script>alert('xss')</script> **not bold** [link](javascript:alert(1)) </div><h1>big</h1>"


def make_populated(built: Path, target: Path) -> Path:
    """A copy of a real pipeline build (``built``) plus :func:`populate`'s runs, fit and plans, a kept
    document whose id and text are hostile HTML/Markdown, and a child version with one changed setting."""
    import json
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.copytree(built, target)
    version = (target / "data" / "LATEST").read_text(encoding="utf-8").strip()
    populate(target, version)
    folder = target / "data" / "versions" / version
    pq.write_table(pa.table({"id": [HOSTILE_ID], "text": [HOSTILE_TEXT], "lang": ["en"], "quality_score": [0.99]}),
                   folder / "docs" / "zz-hostile.parquet")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest.update(version=f"{version}-child", parent=version, created_at="2099-01-01T00:00:00+00:00")
    manifest["config"]["langid"]["threshold"] = 0.75
    child = target / "data" / "versions" / f"{version}-child"
    child.mkdir()
    (child / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return target


def write_unannotated_version(home: Path, version: str = "v-dedup") -> str:
    """A published version built with ``--stages dedup`` only: its documents have no ``lang`` or
    ``quality_score`` column, as the pipeline writes an annotation only when its stage ran."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = home / "data" / "versions" / version
    for sub in ("docs", "rejected"):
        (folder / sub).mkdir(parents=True)
    common = {"source": ["corpus.jsonl"], "dup_cluster": ["doc-a"]}
    pq.write_table(pa.table({"id": ["doc-a"], "text": ["kept text"], **common, "position": [0],
                             "dup_cluster_size": [2]}), folder / "docs" / "part-0.parquet")
    pq.write_table(pa.table({"id": ["doc-b"], "text": ["kept text"], **common, "position": [1],
                             "dup_cluster_size": [2], "stage": ["dedup"], "reason": ["duplicate"]}),
                   folder / "rejected" / "part-0.parquet")
    manifest = {"version": version, "parent": None, "created_at": "2026-01-01T00:00:00+00:00",
                "config": {"stages": ["dedup"]}, "counts": {"input": 2, "kept": 1, "rejected": 1, "dead_letter": 0},
                "shards": []}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (home / "data" / "LATEST").write_text(version + "\n", encoding="utf-8")
    return version


def write_broken_version(home: Path, version: str, manifest: bytes | None) -> Path:
    """A version directory damaged after publishing: ``manifest`` as its manifest.json's bytes, or none."""
    folder = home / "data" / "versions" / version
    (folder / "docs").mkdir(parents=True)
    if manifest is not None:
        (folder / "manifest.json").write_bytes(manifest)
    return folder
