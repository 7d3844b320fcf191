"""What a run tells the world: metrics-store rows (docs/metrics.md), ``run.json``, the console line, MFU.

Only rank 0 reports. Step rows are buffered and written as one Parquet part every ``log_every`` steps
and at exit, so a live run is visible on the dashboard without a part file per step.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from metrics.store import MetricRow, MetricsStore, connect

# Dense bf16/fp16 tensor-core peaks (FLOP/s) by device-name fragment, from the vendors' data sheets.
# Checked in order, so the more specific names come first.
GPU_PEAK_BF16 = (
    ("H200", 989.4e12), ("H100 PCIe", 756.0e12), ("H100", 989.4e12), ("H800", 989.4e12), ("GH200", 989.4e12),
    ("A100", 312.0e12), ("A800", 312.0e12), ("L40S", 362.0e12), ("L4", 121.0e12), ("A10G", 70.0e12),
    ("A10", 125.0e12), ("RTX 4090", 165.2e12), ("RTX 3090", 71.0e12), ("V100", 125.0e12), ("T4", 65.0e12),
)

_cpu_peak: float | None = None


def peak_flops(device: torch.device, precision: str, override: float = 0.0) -> float:
    """Peak FLOP/s of one device: the data-sheet figure on CUDA (halved for fp32, which runs as TF32);
    on CPU, a measured fp32 matmul rate, since CPUs publish no figure and MFU needs some denominator."""
    global _cpu_peak
    if override > 0:
        return override
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for fragment, flops in GPU_PEAK_BF16:
            if fragment in name:
                return flops / 2 if precision == "fp32" else flops
        return 0.0
    if _cpu_peak is None:
        # A private generator: drawing from the global one would shift the training RNG of the first run in a
        # process only (the result is cached), so a run would depend on whether another ran before it.
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(512, 512, generator=gen), torch.randn(512, 512, generator=gen)
        a @ b
        reps, start = 20, time.perf_counter()
        for _ in range(reps):
            a @ b
        _cpu_peak = reps * 2 * 512**3 / (time.perf_counter() - start)
    return _cpu_peak


def memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class Reporter:
    """Buffers trainer rows for the metrics store and prints the progress line; a no-op off rank 0."""

    def __init__(self, home: Path, run_id: str, enabled: bool):
        self.store = MetricsStore(home)
        self.run_id = run_id
        self.enabled = enabled
        self.rows: list[MetricRow] = []

    def _row(self, stage: str, name: str, value: float, key: str = "", step: int | None = None) -> None:
        if self.enabled:
            self.rows.append(MetricRow("trainer", self.run_id, stage, name, float(value), key, step))

    def scalars(self, step: int, values: dict[str, float], stage: str = "train") -> None:
        for name, value in values.items():
            self._row(stage, name, value, step=step)

    def event(self, step: int, kind: str, detail: str, loss: float = 0.0) -> None:
        self._row("event", kind, loss if loss == loss else 0.0, detail, step)

    def run_info(self, strings: dict[str, str], numbers: dict[str, float]) -> None:
        for name, text in strings.items():
            self._row("run", name, 0.0, text)
        for name, value in numbers.items():
            self._row("run", name, value)

    def flush(self) -> None:
        if self.rows:
            self.store.append(self.rows)
            self.rows = []

    def console(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)


def recorded_run_dir(home: Path, run_id: str) -> str | None:
    """The directory the metrics store gives trainer run ``run_id`` (its newest ``run_dir`` row): "" when the
    store holds rows of that run but no directory (rows written before runs recorded theirs), None when it
    holds no rows of that run."""
    with connect(home) as con:
        rows, run_dir = con.execute(
            "SELECT count(*), arg_max(key, ts) FILTER (WHERE stage = 'run' AND name = 'run_dir') FROM metrics "
            "WHERE source = 'trainer' AND run = ?", [run_id]).fetchone()
    if not rows:
        return None
    return run_dir or ""


def format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
