"""End-to-end trainer runs (in-process, tiny preset, CPU) on a real dataset version of the sample corpus."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from metrics.store import MetricRow, MetricsStore, connect
from tests.trainer_fixtures import dataset_home, fresh_home, one_torch_thread
from trainer import RunResult, SpikeGuardGaveUp, build_config, loop, telemetry, train
from trainer.checkpoint import CheckpointError
from trainer.cli import main as cli_main
from trainer.data import TokenData, resolve_data

# On CPU even where torch sees a GPU (device auto would take it): the expectations are CPU arithmetic.
BASE = {"device": "cpu", "max_steps": 200, "log_every": 20, "eval_every": 100, "ckpt_every": 50,
        "guard": {"window": 50}}
FAULT_STEP = 120


one_thread = pytest.fixture(scope="module", autouse=True)(one_torch_thread)


@pytest.fixture(scope="module")
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dataset_home(tmp_path_factory)


def _run(home: Path, out: Path, **overrides: object) -> RunResult:
    settings = {**BASE, **overrides, "guard": {**BASE["guard"], **overrides.get("guard", {})}}  # type: ignore[dict-item]
    return train(build_config("tiny", None, {"home": str(home), "out": str(out), **settings}))


@pytest.fixture(scope="module")
def clean(data_home: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    home = fresh_home(data_home, tmp_path_factory.mktemp("clean"))
    return _run(home, home / "runs" / "clean")


def _kinds(result: RunResult) -> list[tuple[int, str]]:
    return [(e["step"], e["kind"]) for e in result.events if e["kind"] != "checkpoint"]


# ---------------------------------------------------------------------------------------- learning


def test_tiny_loss_falls_well_below_unigram_entropy(clean: RunResult, data_home: Path) -> None:
    data = TokenData(resolve_data(data_home, None), seed=0, eval_rows=32)
    unigram = data.unigram_entropy()
    data.close()
    assert clean.status == "completed" and clean.final_step == 200
    assert clean.first_loss == pytest.approx(math.log(1024), abs=0.3)  # a fresh model is near uniform
    assert clean.final_loss < unigram - 0.8, (clean.final_loss, unigram)
    assert _kinds(clean) == []  # no false alarms from the spike guard on a healthy run


def test_run_json_and_metrics_rows(clean: RunResult) -> None:
    info = json.loads((clean.run_dir / "run.json").read_text())
    assert info["status"] == "completed" and info["final_step"] == 200
    assert info["params_sha256"] == clean.params_sha256 and len(clean.params_sha256) == 64
    assert info["config"]["model"]["vocab_size"] == 1024 and info["config"]["model"]["seq_len"] == 128
    assert len(info["data"]["manifest_sha256"]) == 64 and info["data"]["version"].startswith("v")
    assert info["final_loss"] == pytest.approx(clean.final_loss)
    assert info["first_loss"] == pytest.approx(clean.first_loss)

    home = clean.run_dir.parents[1]
    parts = list((home / "metrics" / "trainer").glob("part-*.parquet"))
    assert 200 // 20 <= len(parts) <= 200 // 20 + 3  # one part per log interval, plus start and end
    con = connect(home)
    run_rows = dict(con.execute(
        "SELECT name, arg_max(value, ts) FROM metrics WHERE run = ? AND stage = 'run' GROUP BY name", ["clean"]
    ).fetchall())
    status = con.execute("SELECT arg_max(key, ts) FROM metrics WHERE run = 'clean' AND name = 'status'").fetchone()
    assert status == ("completed",)
    assert run_rows["params"] == clean.params and run_rows["non_embedding_params"] == clean.non_embedding_params
    assert run_rows["final_loss"] == pytest.approx(clean.final_loss)
    assert run_rows["final_step"] == 200 and run_rows["max_steps"] == 200
    # Every row of every step is real: 200 steps x 8 rows x up to 127 targets each.
    assert run_rows["tokens_trained"] == clean.tokens_trained
    assert 0.9 * 200 * 8 * 127 < clean.tokens_trained <= 200 * 8 * 127
    names = {n for (n,) in con.execute("SELECT DISTINCT name FROM train_scalars WHERE run = 'clean'").fetchall()}
    assert {"loss", "lr", "grad_norm", "loss_scale", "tokens_per_s", "mfu", "tokens_seen"} <= names
    steps = con.execute("SELECT min(step), max(step), count(DISTINCT step) FROM train_scalars "
                        "WHERE run = 'clean' AND name = 'loss'").fetchone()
    assert steps == (1, 200, 200)
    val = con.execute("SELECT step, value FROM metrics WHERE run = 'clean' AND stage = 'eval' ORDER BY step").fetchall()
    assert [s for s, _ in val] == [100, 200] and val[-1][1] == pytest.approx(clean.final_loss)


def test_rerun_of_completed_run_trains_nothing(clean: RunResult) -> None:
    parts = sorted((clean.run_dir.parents[1] / "metrics").rglob("part-*"))
    again = _run(clean.run_dir.parents[1], clean.run_dir)
    assert again.steps_run == 0 and again.params_sha256 == clean.params_sha256
    assert sorted((clean.run_dir.parents[1] / "metrics").rglob("part-*")) == parts


def test_clip_rate_is_over_the_steps_of_its_window(data_home: Path, tmp_path: Path) -> None:
    """Windows shorter than log_every: the run's last one, and the first one after a resume."""
    home = fresh_home(data_home, tmp_path)
    out = home / "runs" / "clipped"
    _run(home, out, max_steps=7, log_every=5, optim={"grad_clip": 1e-6})  # every gradient is clipped
    _run(home, out, max_steps=9, log_every=5, optim={"grad_clip": 1e-6})  # resumes at step 7
    rates = connect(home).execute("SELECT step, value FROM metrics WHERE run = 'clipped' AND name = 'clip_rate' "
                                  "ORDER BY step").fetchall()
    assert rates == [(5, 1.0), (7, 1.0), (9, 1.0)]


def test_event_log_of_a_resumed_run_keeps_the_checkpoint_it_resumed(data_home: Path, tmp_path: Path) -> None:
    home = fresh_home(data_home, tmp_path)
    out = home / "runs" / "resumed"
    _run(home, out, max_steps=2)
    result = _run(home, out, max_steps=4)  # resumes from the step-2 checkpoint
    assert [(e["step"], e["kind"]) for e in result.events] == [
        (0, "checkpoint"), (2, "checkpoint"), (2, "resume"), (4, "checkpoint")]
    assert json.loads((out / "run.json").read_text())["events"] == result.events
    rows = connect(home).execute("SELECT step FROM metrics WHERE run = 'resumed' AND stage = 'event' "
                                 "AND name = 'checkpoint' ORDER BY step").fetchall()
    assert rows == [(0,), (2,), (4,)]  # logged to the store once, when written


# ------------------------------------------------------------------------------------------ run ids


def test_a_run_id_the_store_gives_another_directory_is_a_clear_error(data_home: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The id is the run directory's name: a fresh run in /y/same after /x/same would have mixed both
    runs' losses into one series. Nothing is written: no directory, no metrics rows."""
    home = fresh_home(data_home, tmp_path)
    first = _run(home, tmp_path / "x" / "same", max_steps=2)
    MetricsStore(home).append([MetricRow("trainer", "legacy", "train", "loss", 7.0, step=1)])  # no run_dir row
    parts = sorted((home / "metrics").rglob("part-*"))
    capsys.readouterr()
    for out, owner in ((tmp_path / "y" / "same", str(first.run_dir.resolve())),
                       (tmp_path / "y" / "legacy", "a run directory it did not record")):
        assert cli_main(["--home", str(home), "--out", str(out), "--device", "cpu", "--max-steps", "2"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"trainer: error: run id {out.name!r} is taken") and err.count("\n") == 1
        assert owner in err and "pick another --out name" in err
        assert not out.exists()
    assert sorted((home / "metrics").rglob("part-*")) == parts


def test_a_run_recorded_without_its_directory_starts_again_in_its_own(data_home: Path, tmp_path: Path) -> None:
    """Rows written before runs recorded run_dir, and the run's directory with its run.json but no checkpoint
    (killed before its first): starting it again there is not a new run under a taken id."""
    home = fresh_home(data_home, tmp_path)
    out = tmp_path / "x" / "old"
    out.mkdir(parents=True)
    (out / "run.json").write_text(json.dumps({"status": "running"}), encoding="utf-8")
    MetricsStore(home).append([MetricRow("trainer", "old", "train", "loss", 7.0, step=1)])
    assert _run(home, out, max_steps=2).steps_run == 2


def test_out_of_memory_names_the_micro_batch_to_lower(data_home: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA out-of-memory (raised here by the model's forward on CPU) ends in one line that says what to change,
    and the run is recorded as failed."""
    home = fresh_home(data_home, tmp_path)

    def exhausted(*_: object, **__: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(loop.GPT, "forward", exhausted)
    for batch, remedy in ((4, "(--set batch_size=2 --set grad_accum=2)"), (1, "shrink it or seq_len")):
        out = tmp_path / f"oom{batch}"
        assert cli_main(["--home", str(home), "--out", str(out), "--device", "cpu", "--max-steps", "2",
                         "--set", f"batch_size={batch}", "--set", "grad_accum=1"]) == 1
        [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trainer: error:")]
        assert error.startswith(f"trainer: error: out of memory on cpu with a micro-batch of {batch} sequence(s)")
        assert error.endswith(remedy)
        assert json.loads((out / "run.json").read_text(encoding="utf-8"))["status"] == "failed"


def test_a_resumed_run_keeps_writing_its_series(data_home: Path, tmp_path: Path) -> None:
    """Resuming is not a new run under a taken id, in its directory or in one it was moved to."""
    home = fresh_home(data_home, tmp_path)
    out, moved = tmp_path / "x" / "kept", tmp_path / "y" / "kept"
    _run(home, out, max_steps=2)
    assert _run(home, out, max_steps=4).steps_run == 2
    moved.parent.mkdir()
    out.rename(moved)
    result = _run(home, moved, max_steps=6)
    assert result.run_id == "kept" and result.steps_run == 2
    con = connect(home)
    steps = con.execute("SELECT DISTINCT step FROM train_scalars WHERE run = 'kept' AND name = 'loss' ORDER BY step")
    assert [s for (s,) in steps.fetchall()] == [1, 2, 3, 4, 5, 6]
    assert con.execute("SELECT DISTINCT run FROM metrics WHERE source = 'trainer'").fetchall() == [("kept",)]
    recorded = con.execute("SELECT arg_max(key, ts) FROM metrics WHERE run = 'kept' AND name = 'run_dir'")
    assert recorded.fetchone() == (str(moved.resolve()),)


# ------------------------------------------------------------------------------------------ devices


class _Stop(Exception):
    """Raised where the trainer would first put weights on the (stubbed) GPU."""


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_cuda_is_selected_as_an_indexed_device(device: str, data_home: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`--device cuda`, and the default `auto` on a machine with a GPU, reach torch.cuda.set_device with an
    index (a bare "cuda" is refused there before any CUDA work). There is no GPU here: torch's CUDA calls are
    stubbed (set_device's own checks are real) and the trainer is stopped where it would build the model."""
    selected: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch._C, "_cuda_setDevice", selected.append, raising=False)

    def stop(*_: object) -> None:
        raise _Stop

    monkeypatch.setattr(loop, "GPT", stop)
    home = fresh_home(data_home, tmp_path)
    with pytest.raises(_Stop):
        loop.Trainer(build_config("tiny", None, {"home": str(home), "device": device}))
    assert selected == [0]


def test_auto_device_without_cuda_is_cpu(data_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    home = fresh_home(data_home, tmp_path)
    settings = {"home": str(home), "max_steps": 2, "eval_rows": 8}
    result = train(build_config("tiny", None, settings))  # no device: the default, auto
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["config"]["device"] == "cpu" and info["precision"] == "fp32"
    assert "fp32 on cpu (--device auto)" in capsys.readouterr().err
    # The same directory as an explicit --device cpu, so the same command finds the run again.
    explicit = build_config("tiny", None, {**settings, "device": "cpu"})
    assert result.run_dir.name == loop.default_run_dir(home, explicit, info["data"]["version"]).name


def test_dropout_run_does_not_depend_on_what_ran_before_it(data_home: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The first CPU run in a process measures a matmul peak for MFU; the same run again (an in-process sweep
    point, or the command line) must still train the same weights."""
    monkeypatch.setattr(telemetry, "_cpu_peak", None)
    home = fresh_home(data_home, tmp_path)
    first = _run(home, home / "runs" / "first", max_steps=3, model={"dropout": 0.1})
    second = _run(home, home / "runs" / "second", max_steps=3, model={"dropout": 0.1})
    assert first.params_sha256 == second.params_sha256


# -------------------------------------------------------------------------------------------- data


def test_data_stream_splits_ranks_covers_epochs_and_holds_out_validation(data_home: Path) -> None:
    data = TokenData(resolve_data(data_home, None), seed=3, eval_rows=32)
    try:
        assert len(data.val_rows) == 32 and not set(data.val_rows) & set(data.train_rows)
        n = len(data.train_rows)
        epoch = [data.stream_row(i) for i in range(n)]
        assert sorted(epoch) == sorted(int(r) for r in data.train_rows)  # every row once per epoch
        assert [data.stream_row(i) for i in range(n, n + 50)] != epoch[:50]  # a fresh order next epoch
        # Two ranks with one micro-batch each read disjoint rows whose union is one rank's two micro-batches.
        ranks = [data.train_micro_batch(64, rank, 0, 1, 4).inputs for rank in (0, 1)]
        alone = [data.train_micro_batch(64, 0, j, 2, 4).inputs for j in (0, 1)]
        assert torch.equal(torch.cat(ranks), torch.cat(alone))
        assert not any(torch.equal(a, b) for a in ranks[0] for b in ranks[1])
        again = TokenData(resolve_data(data_home, None), seed=3, eval_rows=32)
        assert [again.stream_row(i) for i in range(5000, 5010)] == [data.stream_row(i) for i in range(5000, 5010)]
        again.close()
        batch = data.batch([int(data.train_rows[0])])
        real = int(data.real_len[int(data.train_rows[0])])
        assert (batch.targets[0, real - 1:] == -100).all() and (batch.targets[0, : real - 1] != -100).all()
        # Document segments for masking: position p belongs to the piece whose cumulative length exceeds p.
        rows = [int(r) for r in data.train_rows[:20]]
        segments = data.batch(rows, with_segments=True).segments
        for i, row in enumerate(rows):
            ends = torch.tensor(data._doc_lengths(row)).cumsum(0)
            expected = torch.bucketize(torch.arange(127), ends, right=True)
            assert torch.equal(segments[i], expected)
        assert any(len(data._doc_lengths(r)) > 1 for r in rows)  # the check saw real boundaries
    finally:
        data.close()


# ------------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize(("fault", "kind"), [("bad_batch", "spike_skip"), ("nan", "nan")])
def test_injected_fault_is_detected_and_survived(fault: str, kind: str, clean: RunResult, data_home: Path,
                                                 tmp_path: Path) -> None:
    home = fresh_home(data_home, tmp_path)
    result = _run(home, home / "runs" / fault, inject_faults=[f"{fault}@{FAULT_STEP}"])
    assert _kinds(result) == [(FAULT_STEP, "fault_injected"), (FAULT_STEP, kind)]
    assert result.status == "completed" and result.final_step == 200
    assert abs(result.final_loss - clean.final_loss) <= 0.05 * clean.final_loss
    events = connect(home).execute("SELECT step, name FROM metrics WHERE stage = 'event' AND name <> 'checkpoint'")
    assert sorted(events.fetchall()) == [(FAULT_STEP, "fault_injected"), (FAULT_STEP, kind)]


def test_persistent_spike_rolls_back_and_skips_the_data(clean: RunResult, data_home: Path, tmp_path: Path) -> None:
    home = fresh_home(data_home, tmp_path)
    result = _run(home, home / "runs" / "spiky", inject_faults=[f"bad_batch@{FAULT_STEP}-{FAULT_STEP + 9}"])
    kinds = _kinds(result)
    # Three bad batches in a row (persist = 3), then back to the step-100 checkpoint, past the bad window.
    assert kinds[:6] == [(120, "fault_injected"), (120, "spike_skip"), (121, "fault_injected"),
                         (121, "spike_skip"), (122, "fault_injected"), (122, "rollback")]
    assert kinds[6:] == []
    rollback = next(e for e in result.events if e["kind"] == "rollback")
    assert "step-00000100" in rollback["detail"]
    assert result.status == "completed" and result.final_step == 200
    assert abs(result.final_loss - clean.final_loss) <= 0.05 * clean.final_loss


def test_guard_gives_up_after_max_rollbacks(data_home: Path, tmp_path: Path) -> None:
    home = fresh_home(data_home, tmp_path)
    with pytest.raises(SpikeGuardGaveUp, match="max_rollbacks = 0"):
        _run(home, home / "runs" / "doomed", inject_faults=["bad_batch@40-60"],
             guard={"window": 20, "max_rollbacks": 0})
    info = json.loads((home / "runs" / "doomed" / "run.json").read_text())
    assert info["status"] == "failed" and info["events"][-1]["kind"] == "failed"
    status = connect(home).execute("SELECT arg_max(key, ts) FROM metrics WHERE name = 'status'").fetchone()
    assert status == ("failed",)


# ------------------------------------------------------------------------------------------- fp16


def test_fp16_loss_scaling_grows_backs_off_and_skips(data_home: Path, tmp_path: Path) -> None:
    home = fresh_home(data_home, tmp_path)
    result = _run(home, home / "runs" / "fp16", precision="fp16", max_steps=40, inject_faults=["nan@30"],
                  scaler={"growth_interval": 10})
    assert result.status == "completed" and math.isfinite(result.final_loss)
    assert result.final_loss < result.first_loss - 0.5
    nan = [e for e in result.events if e["kind"] == "nan"]
    assert len(nan) == 1 and nan[0]["step"] == 30 and "fp16" in nan[0]["detail"]
    scales = dict(connect(home).execute(
        "SELECT step, value FROM train_scalars WHERE name = 'loss_scale' ORDER BY step").fetchall())
    # Logged scale is the one the step ran with: x2 after every 10 good steps, halved by the overflow.
    assert scales[1] == 2.0**16 and scales[11] == 2.0**17 and scales[30] == 2.0**18 and scales[31] == 2.0**17
    assert json.loads((home / "runs" / "fp16" / "run.json").read_text())["skipped_steps"] == 1


def test_fp16_resumes_a_checkpoint_without_scaler_state(data_home: Path, tmp_path: Path) -> None:
    home = fresh_home(data_home, tmp_path)
    out = home / "runs" / "switch"
    _run(home, out, max_steps=2)  # fp32: no loss scaler
    result = _run(home, out, max_steps=4, precision="fp16")
    assert result.status == "completed" and result.final_step == 4 and math.isfinite(result.final_loss)
    resume = next(e for e in result.events if e["kind"] == "resume")
    assert "fresh fp16 loss scaler" in resume["detail"]


# ------------------------------------------------------------------------------------- checkpoints


def test_corrupt_newest_checkpoint_falls_back_and_retrains_identically(clean: RunResult, data_home: Path,
                                                                      tmp_path: Path) -> None:
    home = fresh_home(data_home, tmp_path)
    out = home / "runs" / "copy"
    shutil.copytree(clean.run_dir, out)
    state = out / "checkpoints" / "step-00000200" / "state.pt"
    data = bytearray(state.read_bytes())
    data[-100] ^= 0x01
    state.write_bytes(bytes(data))
    result = _run(home, out)
    assert result.steps_run == 50  # from step 150, the newest checkpoint that verifies
    resume = next(e for e in result.events if e["kind"] == "resume")
    assert "step-00000150" in resume["detail"] and "corrupt step-00000200" in resume["detail"]
    assert result.params_sha256 == clean.params_sha256


# ------------------------------------------------------------------------------------- bad inputs


def test_missing_data_version_is_a_clear_error(data_home: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    home = fresh_home(data_home, tmp_path)
    assert cli_main(["--home", str(home), "--data", "v0000nosuch", "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "dataset v0000nosuch not found" in err and "versions under" in err and "pipelines.build" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["--home", str(empty), "--max-steps", "1"]) == 2
    assert "no versions under" in capsys.readouterr().err


def test_checksum_mismatch_is_a_clear_error(data_home: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    version = resolve_data(data_home, None)
    copy = tmp_path / "data" / "versions" / version.name
    shutil.copytree(version, copy)
    shard = sorted((copy / "shards").glob("*.arrow"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    assert cli_main(["--home", str(tmp_path), "--data", str(copy), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "failed verification" in err and shard.name in err and "sha256" in err


def test_incompatible_checkpoint_is_a_clear_error_and_leaves_the_run_alone(
        clean: RunResult, capsys: pytest.CaptureFixture[str]) -> None:
    home = clean.run_dir.parents[1]
    recorded = (clean.run_dir / "run.json").read_bytes()
    args = ["--home", str(home), "--out", str(clean.run_dir), "--max-steps", "200", "--set", "model.d_model=32"]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "was made for a different run" in err and "--out" in err
    # The directory is another run's: its record and its metrics are not this command's to mark failed.
    assert (clean.run_dir / "run.json").read_bytes() == recorded
    status = connect(home).execute("SELECT arg_max(key, ts) FROM metrics WHERE run = 'clean' AND name = 'status'")
    assert status.fetchone() == ("completed",)


def test_no_verifying_checkpoint_leaves_the_run_alone(clean: RunResult, data_home: Path, tmp_path: Path) -> None:
    home = fresh_home(data_home, tmp_path)
    out = home / "runs" / "ruined"
    shutil.copytree(clean.run_dir, out)
    for state in out.glob("checkpoints/*/state.pt"):
        state.write_bytes(b"not a checkpoint")
    recorded = (out / "run.json").read_bytes()
    with pytest.raises(CheckpointError, match="verifies"):
        _run(home, out)
    assert (out / "run.json").read_bytes() == recorded
    assert not list(home.glob("metrics/**/part-*"))
