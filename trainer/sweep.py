"""``python -m trainer.sweep``: train a grid of model sizes x token budgets on one dataset version.

Every point is an ordinary trainer run under ``HOME/runs/`` with its ``run`` rows in the metrics store, so
``planner fit HOME/metrics`` fits a scaling law to the finished grid. Running the sweep again trains only
what is missing: ``train`` returns the recorded result of a completed run and resumes an unfinished one.
On CPU the points run one after another in this process; with CUDA devices, one worker process per
device (pinned with ``CUDA_VISIBLE_DEVICES``) takes points from a shared queue. See docs/trainer.md, "Sweeps".
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import nnls

from pipelines import shards
from trainer import checkpoint
from trainer.checkpoint import CheckpointError
from trainer.config import ConfigError, ModelConfig, TrainConfig, build_config, out_of_memory
from trainer.data import DataError, manifest_vocab_size, no_shards, resolve_data
from trainer.loop import RunResult, SpikeGuardGaveUp, train
from trainer.model import GPT, count_params, flops_per_token
from trainer.telemetry import format_eta, write_json_atomic


class GridError(ValueError):
    """A sweep grid that cannot be run: an unknown key, a wrong type, no sizes or no token budgets."""


@dataclass(frozen=True)
class Grid:
    """Model sizes x token budgets, plus trainer settings every point shares."""

    name: str
    sizes: tuple[dict[str, Any], ...]  # [model] tables: n_layers, d_model, n_heads (any model setting)
    tokens: tuple[int, ...]  # training tokens per point, turned into max_steps
    settings: dict[str, Any] = field(default_factory=dict)  # as in a trainer --config file
    warmup_frac: float = 0.1  # warmup steps as a fraction of each point's max_steps
    # 0: every size trains at settings.optim.lr. Otherwise that lr is the one for this width, and a size of
    # width d trains at lr * sqrt(lr_width / d): wider models need smaller steps (docs/trainer.md, "Sweeps").
    lr_width: int = 0


# Settings the sweep decides per point, so a grid may not set them.
RESERVED = {
    "home": "the sweep's --home", "data": "the sweep's --data", "out": "the sweep names each run",
    "max_steps": "derived from the token budget", "preset": "sweeps start from the tiny preset's defaults",
}
RESERVED_OPTIM = {"warmup_steps": "derived from warmup_frac"}
GRID_KEYS = ("sizes", "tokens", "settings", "warmup_frac", "lr_width")

# CPU budgets: see docs/trainer.md, "Sweeps", for why these shapes and settings. Two rows a step, since at
# these token counts more, smaller steps beat fewer, larger ones; the spike guard starts watching at step
# 200, since gradient norms rise naturally while a small model leaves its initialisation.
_CPU_SETTINGS: dict[str, Any] = {"batch_size": 2, "eval_rows": 64, "eval_every": 500, "ckpt_every": 200,
                                 "log_every": 100, "optim": {"lr": 0.02}, "guard": {"window": 200}}


def _one_layer(*widths: int) -> tuple[dict[str, Any], ...]:
    return tuple({"n_layers": 1, "d_model": d, "n_heads": 1 if d < 16 else 2} for d in widths)


BUDGETS: dict[str, Grid] = {
    "demo": Grid("demo", sizes=_one_layer(4, 8, 12, 16), tokens=(100_000, 200_000, 400_000),
                 settings=_CPU_SETTINGS, lr_width=16),
    "tiny": Grid("tiny", sizes=_one_layer(4, 8, 16, 32), tokens=(400_000, 800_000, 1_600_000),
                 settings=_CPU_SETTINGS, lr_width=16),
    # For GPUs and a real dataset of billions of tokens: 30M to 540M parameters at a 50k vocabulary, 20 points,
    # about 40 H100-hours at 40% MFU (docs/trainer.md). Not run on CPU.
    "small": Grid(
        "small",
        sizes=(
            {"n_layers": 6, "d_model": 384, "n_heads": 6},
            {"n_layers": 8, "d_model": 512, "n_heads": 8},
            {"n_layers": 12, "d_model": 768, "n_heads": 12},
            {"n_layers": 16, "d_model": 1024, "n_heads": 16},
            {"n_layers": 24, "d_model": 1280, "n_heads": 20},
        ),
        tokens=(500_000_000, 1_000_000_000, 2_000_000_000, 4_000_000_000),
        settings={"batch_size": 16, "grad_accum": 8, "compile": True, "eval_rows": 512, "eval_every": 1000,
                  "ckpt_every": 1000, "log_every": 50, "keep_every": 1_000_000, "optim": {"lr": 6e-4}},
        lr_width=768,
    ),
}


@dataclass(frozen=True)
class Point:
    """One run of the grid, fully resolved."""

    index: int  # 1-based, in grid order: sizes outer, token budgets inner
    shape: dict[str, Any]
    token_budget: int
    config: TrainConfig
    params: int
    non_embedding_params: int
    tokens: int  # planned: max_steps x tokens per step (tokens_trained leaves out padding and skipped steps)
    flops: float  # planned training FLOPs

    @property
    def run_dir(self) -> Path:
        return Path(str(self.config.out))

    @property
    def label(self) -> str:
        return f"{self.config.model.n_layers}x{self.config.model.d_model}"


@dataclass(frozen=True)
class PointResult:
    point: Point
    status: str  # trained | resumed | already done
    result: RunResult
    seconds: float


# ----------------------------------------------------------------------------------------------- grids


def _check_keys(where: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in table:
        if key not in known:
            raise GridError(f"{where}: unknown key {key!r}; known: {', '.join(known)}")


def _positive_ints(where: str, values: Any) -> tuple[int, ...]:
    if not isinstance(values, list | tuple) or not values:
        raise GridError(f"{where}: expected a non-empty list of token counts, got {values!r}")
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise GridError(f"{where}: expected positive whole numbers of tokens, got {value!r}")
    return tuple(values)


def check_grid(grid: Grid) -> None:
    """Refuse what cannot run, naming the key: reserved settings, bad shapes, bad token budgets."""
    for key, why in RESERVED.items():
        if key in grid.settings:
            raise GridError(f"{grid.name}: settings.{key} cannot be set in a grid ({why})")
    for key, why in RESERVED_OPTIM.items():
        if key in grid.settings.get("optim", {}):
            raise GridError(f"{grid.name}: settings.optim.{key} cannot be set in a grid ({why})")
    if not grid.sizes:
        raise GridError(f"{grid.name}: sizes is empty")
    _positive_ints(f"{grid.name}: tokens", grid.tokens)
    if not 0.0 <= grid.warmup_frac < 1.0:
        raise GridError(f"{grid.name}: warmup_frac must be in [0, 1), got {grid.warmup_frac!r}")
    if grid.lr_width < 0:
        raise GridError(f"{grid.name}: lr_width must be a width (or 0 for one lr for all), got {grid.lr_width!r}")
    for number, shape in enumerate(grid.sizes, start=1):
        if not isinstance(shape, dict):
            raise GridError(f"{grid.name}: sizes[{number}] must be a table of model settings, got {shape!r}")
        try:
            build_config("tiny", None, grid.settings, {"model": shape})
        except ConfigError as exc:
            raise GridError(f"{grid.name}: sizes[{number}]: {exc}") from exc


def load_grid(path: str | os.PathLike[str]) -> Grid:
    """A grid from TOML: ``tokens = [...]``, ``[[sizes]]`` tables, optional ``[settings]`` and ``warmup_frac``."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GridError(f"grid {path}: {exc}") from exc
    _check_keys(f"grid {path}", data, GRID_KEYS)
    for key in ("sizes", "tokens"):
        if key not in data:
            raise GridError(f"grid {path}: missing {key!r}")
    if not isinstance(data["sizes"], list):
        raise GridError(f"grid {path}: sizes must be an array of tables ([[sizes]])")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise GridError(f"grid {path}: settings must be a table ([settings])")
    warmup, lr_width = data.get("warmup_frac", 0.1), data.get("lr_width", 0)
    if not isinstance(warmup, int | float) or isinstance(warmup, bool):
        raise GridError(f"grid {path}: warmup_frac must be a number, got {warmup!r}")
    if not isinstance(lr_width, int) or isinstance(lr_width, bool):
        raise GridError(f"grid {path}: lr_width must be a whole number, got {lr_width!r}")
    grid = Grid(path.stem, tuple(data["sizes"]), _positive_ints(f"grid {path}: tokens", data["tokens"]),
                settings, float(warmup), lr_width)
    check_grid(dataclasses.replace(grid, name=f"grid {path}"))
    return grid


# ----------------------------------------------------------------------------------------------- planning


def model_size(model: ModelConfig) -> tuple[int, int]:
    """(params, non_embedding_params) exactly as the trainer reports them, without allocating weights."""
    with torch.device("meta"):
        counts = count_params(GPT(model))
    return counts["params"], counts["non_embedding_params"]


def _count_label(count: int) -> str:
    """1234567 -> '1.23M': short enough for run names and table cells."""
    for unit, scale in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if count >= scale:
            return f"{count / scale:.3g}{unit}"
    return str(count)


def _settings_digest(config: TrainConfig) -> str:
    """Changes when any setting that shapes the run changes, so a changed grid never reuses a stale run."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("home", "data", "out")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def size_lr(grid: Grid, lr: float, width: int) -> float:
    """The learning rate of a size of this width (to three significant digits, so the summary reads cleanly)."""
    return float(f"{lr * math.sqrt(grid.lr_width / width):.3g}") if grid.lr_width else lr


def plan(grid: Grid, home: Path, version_dir: Path, device: str) -> list[Point]:
    """Resolve every point of ``grid`` against a dataset version: shapes, max_steps, warmup, run directory."""
    manifest = shards.read_manifest(version_dir)
    version = manifest["version"]
    if not manifest.get("shards") or not manifest.get("seq_len"):  # a version built without the pack stage
        raise no_shards(version)
    vocab, seq_len = manifest_vocab_size(manifest, version_dir), manifest["seq_len"]
    shared = {**grid.settings, "home": str(home), "data": str(version_dir)}
    if shared.get("device", "auto") == "auto":
        shared["device"] = device
    points = []
    for shape in grid.sizes:
        base = build_config("tiny", None, shared, {"model": shape})
        tokens_per_step = base.batch_size * base.grad_accum * (seq_len - 1)
        model = dataclasses.replace(base.model, vocab_size=base.model.vocab_size or vocab,
                                    seq_len=base.model.seq_len or seq_len)
        params, non_embedding = model_size(model)
        lr = size_lr(grid, base.optim.lr, model.d_model)
        for budget in grid.tokens:
            steps = math.ceil(budget / tokens_per_step)
            warmup = max(1, round(grid.warmup_frac * steps))
            config = build_config("tiny", None, shared, {"model": shape, "max_steps": steps,
                                                         "optim": {"lr": lr, "warmup_steps": warmup}})
            name = (f"sweep-{model.n_layers}x{model.d_model}-{_count_label(budget)}-{version}-seed{config.seed}-"
                    f"{_settings_digest(config)}")
            config = dataclasses.replace(config, out=str(home / "runs" / name))
            tokens = steps * tokens_per_step
            points.append(Point(len(points) + 1, dict(shape), budget, config, params, non_embedding, tokens,
                                flops_per_token(model, non_embedding) * tokens))
    return points


# ----------------------------------------------------------------------------------------------- running


def _prior(point: Point) -> str:
    """What an earlier attempt left: 'completed', 'started' (a checkpoint past step 0 to resume) or 'new'."""
    info = point.run_dir / "run.json"
    if info.is_file():
        recorded = json.loads(info.read_text(encoding="utf-8"))
        if recorded.get("status") == "completed" and recorded.get("final_step") == point.config.max_steps:
            return "completed"
    return "started" if any(step > 0 for step in checkpoint.steps(point.run_dir)) else "new"


def _status(result: RunResult, prior: str) -> str:
    if result.steps_run == 0:
        return "already done"
    return "resumed" if prior == "started" else "trained"


class PointOutOfMemory(Exception):
    """A point's micro-batch did not fit on its device (a plain message: it crosses from a spawned worker)."""


def _timed_train(config: TrainConfig) -> tuple[RunResult, float]:
    started = time.perf_counter()
    try:
        result = train(config)
    except torch.OutOfMemoryError:
        # CUDA's own message is a page of allocator statistics; the run is already recorded as failed.
        raise PointOutOfMemory(f"run {Path(str(config.out)).name} ran "
                               f"{out_of_memory(config, how='{key} = {value}')}, in the grid's [settings]") from None
    return result, time.perf_counter() - started


def _claim_device(slots: Any) -> None:
    """Worker initializer: pin this process to one GPU before torch touches CUDA."""
    os.environ["CUDA_VISIBLE_DEVICES"] = slots.get()


def _run_sequential(points: list[Point], done: Callable[[Point, RunResult, float], None]) -> None:
    for point in points:
        done(point, *_timed_train(point.config))


def _run_parallel(points: list[Point], devices: list[str], done: Callable[[Point, RunResult, float], None]) -> None:
    """One spawned worker per device; each point is an independent single-device run."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked into a child
    slots = context.Queue()
    for device in devices:
        slots.put(device)
    with ProcessPoolExecutor(len(devices), mp_context=context, initializer=_claim_device,
                             initargs=(slots,)) as pool:
        futures = {pool.submit(_timed_train, point.config): point for point in points}
        for future in as_completed(futures):
            done(futures[future], *future.result())


def summary_path(home: Path, grid: Grid, version: str) -> Path:
    return home / "runs" / f"sweep-{grid.name}-{version}.json"


def _point_json(point: Point, outcome: PointResult | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "index": point.index, "shape": point.shape, "token_budget": point.token_budget,
        "max_steps": point.config.max_steps, "tokens_planned": point.tokens, "lr": point.config.optim.lr,
        "warmup_steps": point.config.optim.warmup_steps, "run": point.run_dir.name, "run_dir": str(point.run_dir),
        "params": point.params, "non_embedding_params": point.non_embedding_params, "status": "pending",
    }
    if outcome is not None:
        r = outcome.result
        entry.update(status=outcome.status, final_loss=r.final_loss, tokens_trained=r.tokens_trained,
                     final_step=r.final_step, params_sha256=r.params_sha256, seconds=round(outcome.seconds, 2))
    return entry


def write_summary(path: Path, grid: Grid, version_dir: Path, points: list[Point],
                  outcomes: dict[int, PointResult]) -> None:
    """Every point's run and result so far, rewritten atomically after each point."""
    home = path.parent.parent
    write_json_atomic(path, {
        "sweep": grid.name, "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {"version": shards.read_manifest(version_dir)["version"], "path": str(version_dir)},
        "grid": {"sizes": list(grid.sizes), "tokens": list(grid.tokens), "settings": grid.settings,
                 "warmup_frac": grid.warmup_frac, "lr_width": grid.lr_width},
        "complete": len(outcomes) == len(points),
        "points": [_point_json(p, outcomes.get(p.index)) for p in points],
        "fit": f"planner fit {home / 'metrics'}",
    })


def _point_line(outcome: PointResult, total: int, eta: float | None) -> str:
    p, r = outcome.point, outcome.result
    left = format_eta(eta) if eta is not None else "?"
    return (f"[{p.index:>{len(str(total))}}/{total}] {p.label:<8} {_count_label(p.params):>6} params x "
            f"{_count_label(p.token_budget):>5} tokens: {outcome.status:<12} loss {r.final_loss:.4f}  "
            f"{r.tokens_trained:,} tokens  {outcome.seconds:6.1f} s | eta {left}")


def grid_table(outcomes: list[PointResult]) -> str:
    """Final loss by model (rows, with params) and token budget (columns)."""
    budgets = sorted({o.point.token_budget for o in outcomes})
    rows: dict[tuple[int, str], dict[int, float]] = {}
    for o in outcomes:
        rows.setdefault((o.point.params, o.point.label), {})[o.point.token_budget] = o.result.final_loss
    lines = [f"{'model':<8} {'params':>7}  " + "  ".join(f"{_count_label(b):>8}" for b in budgets)]
    for (params, label), losses in sorted(rows.items()):
        cells = "  ".join(f"{losses[b]:8.4f}" if b in losses else f"{'-':>8}" for b in budgets)
        lines.append(f"{label:<8} {_count_label(params):>7}  {cells}")
    return "\n".join(lines)


class _Progress:
    """Collects results, keeps the summary file current and prints a line per point with an overall ETA."""

    def __init__(self, points: list[Point], summary: Path, grid: Grid, version_dir: Path, workers: int,
                 echo: Callable[[str], None]):
        self.points, self.summary, self.grid, self.version_dir, self.echo = points, summary, grid, version_dir, echo
        self.workers = workers
        self.outcomes: dict[int, PointResult] = {}
        self.prior = {p.index: _prior(p) for p in points}
        self.samples: list[tuple[float, float, float]] = []  # (tokens, FLOPs, seconds) of points trained afresh

    def _eta(self) -> float | None:
        """Seconds left, modelling a point's time as a * tokens + b * FLOPs, fitted to the points trained so
        far: a per-token part (data, the softmax over the vocabulary, the optimizer, Python) dominates tiny
        models on CPU, a per-FLOP part (matmuls) dominates large ones."""
        left = [p for p in self.points if p.index not in self.outcomes and self.prior[p.index] != "completed"]
        if not left:
            return 0.0
        if not self.samples:
            return None
        work = np.array([(t, f) for t, f, _ in self.samples])
        scale = work.max(axis=0)  # tokens ~1e6 and FLOPs ~1e12: bring both columns to order one for nnls
        coef, _ = nnls(work / scale, np.array([s for *_, s in self.samples]))
        return float(sum(coef @ (np.array([p.tokens, p.flops]) / scale) for p in left)) / self.workers

    def done(self, point: Point, result: RunResult, seconds: float) -> None:
        outcome = PointResult(point, _status(result, self.prior[point.index]), result, seconds)
        self.outcomes[point.index] = outcome
        if outcome.status == "trained":
            self.samples.append((point.tokens, point.flops, seconds))
        write_summary(self.summary, self.grid, self.version_dir, self.points, self.outcomes)
        self.echo(_point_line(outcome, len(self.points), self._eta()))


def cuda_devices() -> list[str]:
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def run_sweep(home: str | os.PathLike[str] | None = None, budget: str = "tiny",
              grid: Grid | str | os.PathLike[str] | None = None, data: str | None = None,
              echo: Callable[[str], None] = print) -> list[PointResult]:
    """Train every point of ``grid`` (a Grid or a TOML path; default the ``budget`` grid) on one dataset
    version; points already completed are returned as recorded. Results are in grid order."""
    root = shards.workspace_home(home)
    if grid is None:
        if budget not in BUDGETS:
            raise GridError(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
        grid = BUDGETS[budget]
    elif not isinstance(grid, Grid):
        grid = load_grid(grid)
    check_grid(grid)
    version_dir = resolve_data(root, data)
    wanted = grid.settings.get("device", "auto")
    devices = cuda_devices() if wanted == "auto" or wanted.startswith("cuda") else []
    points = plan(grid, root, version_dir, "cuda" if devices else "cpu")
    summary = summary_path(root, grid, version_dir.name)
    summary.parent.mkdir(parents=True, exist_ok=True)
    write_summary(summary, grid, version_dir, points, {})
    sizes, budgets = len(grid.sizes), len(grid.tokens)
    ratio = max(p.params for p in points) / min(p.params for p in points)
    where = f"{len(devices)} CUDA device(s) in parallel" if devices else "cpu, one point at a time"
    echo(f"sweep {grid.name}: {sizes} sizes x {budgets} token budgets = {len(points)} points on {version_dir.name} "
         f"(largest/smallest params {ratio:.1f}x), {where}; summary {summary}")
    progress = _Progress(points, summary, grid, version_dir, max(1, len(devices)), echo)
    if devices:
        _run_parallel(points, devices, progress.done)
    else:
        _run_sequential(points, progress.done)
    outcomes = [progress.outcomes[p.index] for p in points]
    echo("\nfinal loss by model size and tokens:\n" + grid_table(outcomes))
    echo(f"\nfit a scaling law: planner fit {root / 'metrics'}\nsummary: {summary}")
    return outcomes


# ----------------------------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", help="workspace root (env TOKENMILL_HOME, default .)")
    p.add_argument("--data", help="data dir (its LATEST), version dir, or version name; default HOME/data")
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--budget", choices=list(BUDGETS), default="tiny", help="a built-in grid (default tiny)")
    choice.add_argument("--grid", help="TOML file: tokens = [...], [[sizes]] tables, optional [settings]")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        run_sweep(args.home, args.budget, args.grid, args.data)
    except (GridError, ConfigError, DataError, CheckpointError, SpikeGuardGaveUp) as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return 2
    except PointOutOfMemory as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
