"""The trainer as a process: SIGKILL at random moments then resume bit-exactly, and DDP with torchrun."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metrics.store import connect
from tests.trainer_fixtures import SUBPROCESS_ENV, dataset_home, fresh_home

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dataset_home(tmp_path_factory)


def _command(home: Path, out: Path, *extra: str) -> list[str]:
    """With dropout, whose random masks must resume exactly too."""
    return [sys.executable, "-m", "trainer", "--home", str(home), "--out", str(out), "--max-steps", "60",
            "--device", "cpu", "--set", "ckpt_every=7", "--set", "log_every=5", "--set", "model.dropout=0.1", *extra]


def _sha(out: Path) -> str:
    return json.loads((out / "run.json").read_text())["params_sha256"]


def _checkpoint_steps(out: Path) -> list[int]:
    folder = out / "checkpoints"
    return sorted(int(p.name[5:]) for p in folder.glob("step-*")) if folder.is_dir() else []


def _start_and_kill(command: list[str], out: Path, rng: random.Random, after_step: int) -> float:
    """Start the trainer, wait for a checkpoint past ``after_step``, SIGKILL it a random moment later."""
    proc = subprocess.Popen(command, cwd=ROOT, env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(s > after_step for s in _checkpoint_steps(out)):
            assert proc.poll() is None, "trainer exited before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        delay = rng.uniform(0.0, 1.0)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL, "trainer finished before the kill: nothing was tested"
    finally:
        if proc.poll() is None:
            proc.kill()
    return delay


def test_sigkill_at_random_moments_then_resume_is_bit_identical(data_home: Path, tmp_path: Path) -> None:
    home = fresh_home(data_home, tmp_path)
    clean, killed = home / "runs" / "clean", home / "runs" / "killed"
    subprocess.run(_command(home, clean), cwd=ROOT, env=SUBPROCESS_ENV, check=True, capture_output=True)

    rng = random.Random()
    first = _start_and_kill(_command(home, killed), killed, rng, after_step=0)
    reached = max(_checkpoint_steps(killed))
    second = _start_and_kill(_command(home, killed), killed, rng, after_step=reached)
    done = subprocess.run(_command(home, killed), cwd=ROOT, env=SUBPROCESS_ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    info = json.loads((killed / "run.json").read_text())
    assert info["status"] == "completed" and info["final_step"] == 60
    assert [e["kind"] for e in info["events"]].count("resume") >= 2
    assert _sha(killed) == _sha(clean), f"kills after {first:.3f}s and {second:.3f}s past a checkpoint"
    assert not list((killed / "checkpoints").glob(".*")), "temporary checkpoint directories left behind"


# On CPU even where torch sees GPUs. Dropout on: N ranks must draw the masks one process accumulating N
# micro-batches draws (distinct per micro-batch), or their losses differ.
COMMON = ["--max-steps", "12", "--device", "cpu", "--set", "log_every=4", "--set", "batch_size=4",
          "--set", "ckpt_every=5", "--set", "model.dropout=0.1"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _losses(home: Path, run: str) -> list[float]:
    rows = connect(home).execute("SELECT arg_max(value, ts) FROM train_scalars WHERE run = ? AND name = 'loss' "
                                 "GROUP BY step ORDER BY step", [run]).fetchall()
    return [v for (v,) in rows]


@pytest.fixture(scope="module")
def one_process(data_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process, two micro-batches of 4 rows: the same global batch as two ranks of 4 rows each."""
    home = fresh_home(data_home, tmp_path_factory.mktemp("one"))
    one = subprocess.run([sys.executable, "-m", "trainer", "--home", str(home), *COMMON, "--set", "grad_accum=2",
                          "--out", str(home / "runs" / "one")], cwd=ROOT, env=SUBPROCESS_ENV, capture_output=True,
                         text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    return home


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_gloo_processes_match_one_process(parallel: str, one_process: Path, data_home: Path,
                                              tmp_path: Path) -> None:
    home = fresh_home(data_home, tmp_path)
    run = subprocess.run([*TORCHRUN, "-m", "trainer", "--home", str(home), *COMMON, "--set", f"parallel={parallel}",
                          "--out", str(home / "runs" / parallel)], cwd=ROOT, env=SUBPROCESS_ENV, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    two = json.loads((home / "runs" / parallel / "run.json").read_text())
    one = json.loads((one_process / "runs" / "one" / "run.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["tokens_trained"] == one["tokens_trained"]
    assert two["final_loss"] == pytest.approx(one["final_loss"], rel=1e-4)
    assert len(_losses(home, parallel)) == 12  # rank 0 alone writes metrics
    assert _losses(home, parallel) == pytest.approx(_losses(one_process, "one"), rel=1e-4)
    # Checkpoints hold full (unsharded) state, so a run can resume on a different number of processes.
    assert (home / "runs" / parallel / "checkpoints" / "step-00000012" / "state.pt").is_file()


def test_fsdp_spike_before_the_first_periodic_checkpoint_rolls_back_to_step_0(data_home: Path,
                                                                             tmp_path: Path) -> None:
    home = fresh_home(data_home, tmp_path)
    out = home / "runs" / "fsdp-spike"
    spiky = ["--set", "ckpt_every=10", "--set", "guard.window=3", "--set", "guard.k=1.0", "--set",
             "guard.min_rel_std=0.005", "--set", "optim.lr=0.01", "--set", "optim.warmup_steps=2",
             "--inject-fault", "bad_batch@6-8"]
    run = subprocess.run([*TORCHRUN, "-m", "trainer", "--home", str(home), *COMMON, "--set", "parallel=fsdp", *spiky,
                          "--out", str(out)], cwd=ROOT, env=SUBPROCESS_ENV, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "completed" and info["final_step"] == 12
    rollbacks = [e for e in info["events"] if e["kind"] == "rollback"]
    assert len(rollbacks) == 1 and "back to step-00000000" in rollbacks[0]["detail"], info["events"]


def _slow_second_rank(rank: int, port: int, argv: list[str], delay: float, report: Path) -> None:
    """One of two gloo ranks running the trainer CLI in-process; rank 1 lags before every checkpoint lookup and
    evaluation, so rank 0 has published its checkpoints by the time rank 1 looks at the run directory. Each rank
    reports how many DDP wrappers were still alive when the process group was destroyed."""
    import gc as collector
    import os
    import time as clock

    import torch as torch_module
    from torch.nn.parallel import DistributedDataParallel

    from trainer import checkpoint, cli, loop

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch_module.set_num_threads(1)
    destroy = loop.dist.destroy_process_group

    def reporting_destroy() -> None:
        alive = sum(isinstance(o, DistributedDataParallel) for o in collector.get_objects())
        (report / f"rank{rank}.json").write_text(json.dumps({"ddp_alive_at_destroy": alive}))
        destroy()

    loop.dist.destroy_process_group = reporting_destroy
    if rank == 1:
        load_latest, evaluate = checkpoint.load_latest, loop.Trainer.evaluate

        def late_load(*args, **kwargs):  # type: ignore[no-untyped-def]
            clock.sleep(delay)
            return load_latest(*args, **kwargs)

        def late_evaluate(self):  # type: ignore[no-untyped-def]
            clock.sleep(delay)
            return evaluate(self)

        checkpoint.load_latest = late_load
        loop.Trainer.evaluate = late_evaluate
    sys.exit(cli.main(argv))


def test_two_ranks_one_lagging_take_the_same_decisions_and_exit_cleanly(data_home: Path, tmp_path: Path) -> None:
    """Save decisions that read the disk let a lagging rank skip a save rank 0 makes (the step-0 one, or the
    final one): the ranks then wait in different collectives forever. And a DDP wrapper still alive when the
    process group is destroyed leaves its reducer to destroy the group while holding the GIL, which deadlocks
    against Gloo's worker threads now and then (about one exit in four here)."""
    import multiprocessing
    import socket

    home = fresh_home(data_home, tmp_path)
    out = home / "runs" / "lag"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["--home", str(home), *COMMON, "--set", "parallel=ddp", "--out", str(out)]
    spawn = multiprocessing.get_context("spawn")
    ranks = [spawn.Process(target=_slow_second_rank, args=(rank, port, argv, 1.5, tmp_path)) for rank in (0, 1)]
    for proc in ranks:
        proc.start()
    try:
        deadline = time.monotonic() + 120
        for proc in ranks:
            proc.join(max(deadline - time.monotonic(), 0))
        assert not any(proc.is_alive() for proc in ranks), "the ranks deadlocked"
    finally:
        for proc in ranks:
            if proc.is_alive():
                proc.kill()
                proc.join()
    assert [proc.exitcode for proc in ranks] == [0, 0]
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "completed" and info["final_step"] == 12
    assert "resume" not in [e["kind"] for e in info["events"]]
    assert _checkpoint_steps(out)[-1] == 12
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == {"ddp_alive_at_destroy": 0}
