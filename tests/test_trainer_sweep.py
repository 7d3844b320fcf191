"""``python -m trainer.sweep``: grids of tiny models on a synthetic version, resuming, budgets, errors."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from bench.train_gpu import write_synthetic_version
from metrics.store import connect
from pipelines.config import load_config
from planner.fit import read_metrics
from tests.trainer_fixtures import one_torch_thread
from trainer import sweep
from trainer.config import build_config
from trainer.loop import Trainer
from trainer.model import GPT, count_params

# Rows of 33 tokens (32 targets) and two rows a step: 64 tokens a step, so budgets 100 and 256 are 2 and 4 steps.
SEQ_LEN, VOCAB, ROWS = 33, 64, 64
GRID_TOML = """
tokens = [100, 256]
warmup_frac = 0.25
lr_width = 16

[[sizes]]
n_layers = 1
d_model = 16
n_heads = 2

[[sizes]]
n_layers = 1
d_model = 32
n_heads = 2

[[sizes]]
n_layers = 2
d_model = 32
n_heads = 2

[settings]
batch_size = 2
eval_rows = 4
ckpt_every = 2
log_every = 2

[settings.optim]
lr = 0.02
"""


one_thread = pytest.fixture(scope="module", autouse=True)(one_torch_thread)


def _home(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_synthetic_version(root / "data", ROWS, SEQ_LEN, VOCAB)
    (root / "grid.toml").write_text(GRID_TOML, encoding="utf-8")
    return root


def _checkpoint_files(run_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in (run_dir / "checkpoints").rglob("*")}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[sweep.PointResult], str]:
    """One full sweep of the grid file, through the command line."""
    home = _home(tmp_path_factory.mktemp("sweep"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert sweep.main(["--home", str(home), "--grid", str(home / "grid.toml")]) == 0
    results = sweep.run_sweep(home, grid=home / "grid.toml", echo=lambda _: None)
    return home, results, out.getvalue()


def test_grid_trains_one_completed_run_per_point_with_metrics_rows(swept) -> None:
    home, results, output = swept
    assert [r.point.index for r in results] == list(range(1, 7))
    assert len({r.point.run_dir for r in results}) == 6
    for r in results:
        info = json.loads((r.point.run_dir / "run.json").read_text())
        assert r.point.run_dir.parent == home / "runs"
        assert info["status"] == "completed" and info["final_step"] == r.point.config.max_steps
        assert r.point.config.max_steps == {100: 2, 256: 4}[r.point.token_budget]
        assert r.result.tokens_trained == 64 * r.point.config.max_steps  # synthetic rows have no padding
        assert r.point.params == info["params"]
        assert r.point.config.optim.warmup_steps == max(1, round(0.25 * r.point.config.max_steps))
        assert r.point.config.optim.lr == {16: 0.02, 32: 0.0141}[r.point.config.model.d_model]
    # What `planner fit HOME/metrics` reads: one completed run per point with params, tokens and loss.
    runs = read_metrics(home / "metrics")
    assert sorted(runs.n.tolist()) == sorted(r.point.params for r in results)
    assert sorted(runs.d.tolist()) == sorted(r.result.tokens_trained for r in results)
    version = sweep.resolve_data(home, None).name
    summary = json.loads(sweep.summary_path(home, sweep.load_grid(home / "grid.toml"), version).read_text())
    assert summary["complete"] and [p["run_dir"] for p in summary["points"]] == [str(r.point.run_dir) for r in results]
    assert all(p["status"] in ("trained", "already done") for p in summary["points"])
    assert summary["fit"] == f"planner fit {home / 'metrics'}"
    lines = output.splitlines()
    assert sum(line.startswith("[") for line in lines) == 6 and "[6/6]" in output and "trained" in output
    assert f"planner fit {home / 'metrics'}" in output
    assert "1x16" in output and "2x32" in output and "eta" in output


def test_rerun_trains_nothing(swept) -> None:
    home, results, _ = swept
    assert all(r.status == "already done" and r.result.steps_run == 0 for r in results)
    before = {r.point.index: _checkpoint_files(r.point.run_dir) for r in results}
    again = sweep.run_sweep(home, grid=home / "grid.toml", echo=lambda _: None)
    assert [r.result.params_sha256 for r in again] == [r.result.params_sha256 for r in results]
    assert {r.point.index: _checkpoint_files(r.point.run_dir) for r in again} == before


class Killed(BaseException):
    """Stands in for a kill: like KeyboardInterrupt, it is not an Exception."""


def test_interrupted_sweep_resumes_only_the_missing_points(tmp_path: Path, monkeypatch) -> None:
    home = _home(tmp_path / "home")
    grid = sweep.load_grid(home / "grid.toml")
    save = Trainer._save

    def save_then_die(self: Trainer) -> None:
        save(self)
        if self.progress.step == 2 and self.config.max_steps == 4 and self.config.model.d_model == 32:
            raise Killed  # point 4 (1x32, 256 tokens) dies after its step-2 checkpoint

    monkeypatch.setattr(Trainer, "_save", save_then_die)
    with pytest.raises(Killed):
        sweep.run_sweep(home, grid=grid, echo=lambda _: None)
    monkeypatch.setattr(Trainer, "_save", save)

    summary_file = next((home / "runs").glob("sweep-grid-*.json"))
    statuses = [p["status"] for p in json.loads(summary_file.read_text())["points"]]
    assert statuses == ["trained"] * 3 + ["pending"] * 3

    results = sweep.run_sweep(home, grid=grid, echo=lambda _: None)
    assert [r.status for r in results] == ["already done"] * 3 + ["resumed", "trained", "trained"]
    assert results[3].result.steps_run == 2
    assert any(e["kind"] == "resume" for e in results[3].result.events)
    statuses = [p["status"] for p in json.loads(summary_file.read_text())["points"]]
    assert statuses == [r.status for r in results]


def test_parallel_workers_match_sequential_points(swept, tmp_path: Path, monkeypatch) -> None:
    """The GPU path (one spawned worker per device) on CPU: same points, same weights as in-process."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as in-process: one thread keeps the arithmetic identical
    home = _home(tmp_path / "home")
    points = sweep.plan(sweep.load_grid(home / "grid.toml"), home, sweep.resolve_data(home, None), "cpu")[:3]
    done: dict[int, str] = {}
    sweep._run_parallel(points, ["", ""], lambda p, result, _: done.setdefault(p.index, result.params_sha256))
    _, sequential, _ = swept
    assert done == {r.point.index: r.result.params_sha256 for r in sequential[:3]}


def test_device_auto_in_a_grid_takes_the_gpus(tmp_path: Path, monkeypatch) -> None:
    """`device = "auto"` (the trainer's default) in a grid is the same as leaving it out: with CUDA devices,
    one worker per device, each point set to cuda (and so named as an explicit cuda point is)."""
    home = _home(tmp_path / "home")
    (home / "auto.toml").write_text(GRID_TOML.replace("[settings]", '[settings]\ndevice = "auto"'), encoding="utf-8")
    seen: dict[str, object] = {}

    class Started(Exception):
        pass

    def run_parallel(points, devices, done) -> None:
        seen.update(devices=devices, configs=[p.config for p in points])
        raise Started

    monkeypatch.setattr(sweep, "cuda_devices", lambda: ["0", "1"])
    monkeypatch.setattr(sweep, "_run_parallel", run_parallel)
    with pytest.raises(Started):
        sweep.run_sweep(home, grid=home / "auto.toml", echo=lambda _: None)
    explicit = sweep.plan(sweep.load_grid(home / "grid.toml"), home, sweep.resolve_data(home, None), "cuda")
    assert seen == {"devices": ["0", "1"], "configs": [p.config for p in explicit]}


# (sizes, token budgets, largest/smallest params) at least: tiny is the rule; demo must still feed a
# 5-parameter fit (5 runs) with several sizes and budgets.
@pytest.mark.parametrize(("budget", "min_sizes", "min_tokens", "min_ratio"), [("tiny", 4, 3, 8.0), ("demo", 3, 2, 4.0)])
def test_cpu_budgets_cover_enough_sizes_and_tokens(budget: str, min_sizes: int, min_tokens: int,
                                                   min_ratio: float) -> None:
    grid = sweep.BUDGETS[budget]
    sweep.check_grid(grid)
    assert len(grid.sizes) >= min_sizes and len(set(grid.tokens)) >= min_tokens
    assert len(grid.sizes) * len(grid.tokens) >= 5
    # At the vocabulary and row length of the default build (what `make demo` trains on).
    build = load_config()
    models = [build_config("tiny", None, grid.settings, {"model": {
        **shape, "vocab_size": build.tokenizer.vocab_size, "seq_len": build.pack.seq_len}}).model
        for shape in grid.sizes]
    params = [sweep.model_size(model)[0] for model in models]
    assert max(params) >= min_ratio * min(params)
    assert params == sorted(params)
    # Counted without allocating weights, yet exactly as the trainer counts a real model.
    assert count_params(GPT(models[-1]))["params"] == params[-1]


def test_small_budget_is_a_valid_grid() -> None:
    sweep.check_grid(sweep.BUDGETS["small"])


@pytest.mark.parametrize(("text", "named"), [
    (GRID_TOML.replace("warmup_frac", "warmpu_frac"), "'warmpu_frac'"),
    (GRID_TOML.replace("d_model = 16", "width = 16"), "'model.width'"),
    (GRID_TOML.replace("eval_rows", "max_steps"), "settings.max_steps"),
    (GRID_TOML.replace("tokens = [100, 256]", "tokens = [100, -1]"), "-1"),
    (GRID_TOML.replace("[settings]", "[settings]\nbogus = 1"), "'bogus'"),
    ("tokens = [100]\n", "'sizes'"),
])
def test_bad_grid_exits_2_naming_the_key(tmp_path: Path, capsys, text: str, named: str) -> None:
    home = _home(tmp_path / "home")
    (home / "bad.toml").write_text(text, encoding="utf-8")
    assert sweep.main(["--home", str(home), "--grid", str(home / "bad.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sweep: error: ") and "\n" not in err and named in err
    assert not (home / "runs").exists()


def test_missing_data_exits_2(tmp_path: Path, capsys) -> None:
    assert sweep.main(["--home", str(tmp_path), "--budget", "demo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sweep: error: dataset") and "\n" not in err
    home = _home(tmp_path / "home")
    assert sweep.main(["--home", str(home), "--budget", "demo", "--data", "v-nope"]) == 2
    assert "v-nope" in capsys.readouterr().err


def test_metrics_rows_name_the_sweep_runs(swept) -> None:
    home, results, _ = swept
    con = connect(home)
    names = {row[0] for row in con.execute(
        "SELECT DISTINCT run FROM metrics WHERE source = 'trainer' AND stage = 'run' AND name = 'status' "
        "AND key = 'completed'").fetchall()}
    assert names == {r.result.run_id for r in results}


def test_a_point_out_of_memory_ends_in_one_line_naming_the_run_and_the_grid_settings(
        tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA out-of-memory (raised here by the model's forward on CPU) was a page of allocator statistics and
    a traceback; the sweep now names the point's run and what to change in the grid."""
    import torch

    home = _home(tmp_path / "home")

    def exhausted(*_: object, **__: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(GPT, "forward", exhausted)
    with contextlib.redirect_stdout(io.StringIO()):
        assert sweep.main(["--home", str(home), "--grid", str(home / "grid.toml")]) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    first = sweep.plan(sweep.load_grid(home / "grid.toml"), home, sweep.resolve_data(home, None), "cpu")[0]
    assert err.splitlines()[-1] == (
        f"sweep: error: run {first.run_dir.name} ran out of memory on cpu with a micro-batch of 2 sequence(s): "
        "lower batch_size and raise grad_accum by the same factor to keep the global batch "
        "(batch_size = 1 grad_accum = 2), in the grid's [settings]")
    assert json.loads((first.run_dir / "run.json").read_text(encoding="utf-8"))["status"] == "failed"
