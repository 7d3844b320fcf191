"""``python -m bench.train_cpu``: trainer throughput against a bare PyTorch loop, same model and batch shape.

The bare loop is what the trainer must not be much slower than: the same ``trainer.model.GPT``, the same
AdamW parameter groups and clipping, the same batches, built before the clock starts,
and nothing else (no data reading, no guard, no metrics, no checkpoints). The trainer runs the real thing
through ``train()``: shard reads, the spike guard, buffered metrics parts, the progress line. Its time is
``RunResult.loop_seconds`` (the step loop only: startup, data verification and the final evaluation are
left out, as the bare loop has none). Two trainer rows: checkpoints and evaluation pushed outside the
measured window, and the tiny preset's defaults (a checkpoint every 50 steps, an evaluation every 100).
Target: ratio at least 0.9 (docs/trainer.md records the measured table).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from pipelines.shards import latest_version
from trainer import build_config, train
from trainer.config import TrainConfig
from trainer.data import TokenData, resolve_data
from trainer.model import GPT, decay_groups

SHAPES = {
    "tiny (2x64)": {},
    "4x256": {"model": {"n_layers": 4, "d_model": 256, "n_heads": 8}},
}


def ensure_data(home: Path) -> None:
    if latest_version(home / "data") is None:
        from pipelines.build import main as build_main

        print(f"building the sample corpus into {home}/data (vocab 1024, rows of 128 tokens) ...", flush=True)
        assert build_main(["--home", str(home), "--runner", "FnApiRunner", "--vocab-size", "1024",
                           "--seq-len", "128"]) == 0


def bare_loop(config: TrainConfig, home: Path, steps: int) -> float:
    """Seconds for ``steps`` plain forward/backward/clip/AdamW steps on batches built before the clock starts.

    The batches are the ones the trainer reads (the same stream positions): one batch repeated would be
    memorised within tens of steps, and the vanishing gradients then run into slow denormal arithmetic.
    """
    data = TokenData(resolve_data(home, None), config.seed, config.eval_rows, verify=False)
    cfg = dataclasses.replace(config.model, vocab_size=data.vocab_size, seq_len=data.seq_len)
    batches = [data.train_micro_batch(i * config.batch_size, 0, 0, 1, config.batch_size) for i in range(steps)]
    data.close()
    torch.manual_seed(config.seed)
    model = GPT(cfg)
    o = config.optim
    optimizer = torch.optim.AdamW(decay_groups(model, o.weight_decay), lr=o.lr, betas=(o.beta1, o.beta2))
    start = time.perf_counter()
    for batch in batches:
        loss = model(batch.inputs, batch.targets) / batch.n_targets
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def trainer_loop(config: TrainConfig, out: Path) -> float:
    result = train(dataclasses.replace(config, out=str(out)))
    assert result.steps_run == config.max_steps
    return result.loop_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_cpu", description=__doc__)
    parser.add_argument("--home", help="workspace with a dataset version (built when missing); default a temp dir")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved measurements of each; the fastest is shown (noise on a shared machine "
                             "only ever slows a run down)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="train-cpu-bench-"))
    ensure_data(home)
    runs = home / "runs" / f"bench-{int(time.time())}"
    tokens_per_step = None
    rows = []
    for label, shape in SHAPES.items():
        base = {"home": str(home), "max_steps": args.steps, **shape}
        quiet = build_config("tiny", None, base, {"ckpt_every": 10 * args.steps, "eval_every": 10 * args.steps})
        default = build_config("tiny", None, base)
        timings: dict[str, list[float]] = {"bare": [], "quiet": [], "default": []}
        for rep in range(args.repeats):
            timings["bare"].append(bare_loop(quiet, home, args.steps))
            timings["quiet"].append(trainer_loop(quiet, runs / f"{label}-quiet-{rep}"))
            timings["default"].append(trainer_loop(default, runs / f"{label}-default-{rep}"))
        tokens_per_step = quiet.batch_size * (TokenData(resolve_data(home, None), 0, 0, verify=False).seq_len - 1)
        bare = min(timings["bare"])
        for kind, name in (("quiet", "trainer, no ckpt/eval in window"), ("default", "trainer, tiny defaults")):
            t = min(timings[kind])
            rows.append((label, name, args.steps * tokens_per_step / bare, args.steps * tokens_per_step / t, bare / t))
    print(f"\n{args.steps} steps x {tokens_per_step} tokens, {torch.get_num_threads()} threads, "
          f"best of {args.repeats}\n")
    print("| model | trainer setting | bare tok/s | trainer tok/s | ratio |")
    print("|---|---|---:|---:|---:|")
    for label, name, bare_tps, trainer_tps, ratio in rows:
        print(f"| {label} | {name} | {bare_tps:,.0f} | {trainer_tps:,.0f} | {ratio:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
