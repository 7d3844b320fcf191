"""``python -m bench.train_gpu``: tokens/s and MFU of the real trainer for small, medium and 1b on one GPU.

Each preset trains through ``trainer.train`` (bf16 autocast, ``torch.compile``, sequence 2048) on a
synthetic dataset version of uniformly random tokens (vocabulary 50,304, GPT-2's padded to a multiple of
64), written with ``pipelines.shards`` so it passes the same checksum verification as a built one. The
figures are the trainer's own per-step ``tokens_per_s`` and ``mfu`` rows from the metrics store, median
over the steps after the first ``--warmup`` (compilation and allocator warm-up). MFU counts 6N + 12·L·h·s
FLOPs per token against the GPU's data-sheet dense bf16 peak (trainer/telemetry.py).
Target (issue 4): MFU at least 45% for 1b on an H100/H200-class GPU.

Without CUDA it exits with status 2 and says so; ``--device cpu`` with small settings smoke-tests the
script itself (e.g. ``--device cpu --presets tiny --seq-len 128 --precision fp32 --no-compile``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from metrics.store import connect
from pipelines import shards
from trainer import build_config, train

MICRO_BATCH = {"tiny": 8, "small": 16, "medium": 8, "1b": 8}


def write_synthetic_version(data_dir: Path, rows: int, seq_len: int, vocab: int, seed: int = 0) -> str:
    """A complete dataset version of random tokens (one document per row), published through LATEST."""
    name = f"synthetic-{vocab}-{seq_len}-{rows}"
    version_dir = data_dir / shards.VERSIONS / name
    if (version_dir / shards.MANIFEST).is_file():
        shards.write_latest(data_dir, name)
        return name
    rng = np.random.default_rng(seed)
    # Ids 0 and 1 are EOS and padding in built versions; random rows use neither, so every token is real.
    packed = [shards.PackedRow(rng.integers(2, vocab, seq_len, dtype=np.uint32), (seq_len,), (f"r{i}",))
              for i in range(rows)]
    payload = shards.encode_shard(packed, shards.shard_schema(seq_len, eos_id=0, pad_id=1))
    (version_dir / "shards").mkdir(parents=True, exist_ok=True)
    shard = version_dir / "shards" / "shard-00000-of-00001.arrow"
    shard.write_bytes(payload)
    manifest = {
        "version": name, "parent": None, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {"synthetic": True, "seed": seed}, "code_version": "bench.train_gpu", "inputs": [],
        "counts": {"input": rows, "kept": rows, "rejected": 0, "dead_letter": 0}, "seq_len": seq_len,
        "tokenizer": {"sha256": "", "vocab_size": vocab, "eos_id": 0, "pad_id": 1},
        "shards": [{"path": "shards/" + shard.name, "sha256": hashlib.sha256(payload).hexdigest(), "rows": rows,
                    "tokens": rows * seq_len}],
    }
    (version_dir / shards.MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    shards.write_latest(data_dir, name)
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="small,medium,1b")
    parser.add_argument("--seq-len", type=int, default=2048, help="tokens the model sees per row")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=15, help="steps left out of the medians")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--home", help="workspace (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench.train_gpu: no CUDA device visible to torch "
              f"({torch.__version__}); nothing measured. Run it on a GPU machine.", file=sys.stderr)
        return 2
    if args.warmup >= args.steps:
        parser.error("--warmup must be smaller than --steps")
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="train-gpu-bench-"))
    presets = [p for p in args.presets.split(",") if p]
    rows_needed = max(MICRO_BATCH.get(p, 8) for p in presets) * args.steps
    # Rows are seq_len + 1 tokens: the model reads the first seq_len and predicts the last seq_len.
    write_synthetic_version(home / "data", rows_needed + 64, args.seq_len + 1, args.vocab)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    results = []
    for preset in presets:
        run = f"bench-{preset}-{args.precision}-{args.seq_len}"
        config = build_config(preset, None, {
            "home": str(home), "out": str(home / "runs" / run), "device": args.device,
            "precision": args.precision, "compile": not args.no_compile, "max_steps": args.steps,
            "batch_size": MICRO_BATCH.get(preset, 8), "grad_accum": 1, "log_every": 5,
            "ckpt_every": 10 * args.steps, "eval_every": 10 * args.steps, "eval_rows": 8,
            "optim": {"warmup_steps": 5},
        })
        result = train(config)
        con = connect(home)
        scalars = con.execute(
            "SELECT name, list(value ORDER BY step) FROM train_scalars WHERE run = ? AND step > ? "
            "AND name IN ('tokens_per_s', 'mfu', 'memory_gb') GROUP BY name", [run, args.warmup]
        ).fetchall()
        values = {name: statistics.median(v) for name, v in scalars}
        results.append((preset, result.params, config.batch_size, values))
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    print(f"\n{device_name}, {args.precision}, compile={not args.no_compile}, sequence {args.seq_len}, "
          f"{args.steps} steps (median after {args.warmup}), torch {torch.__version__}\n")
    print("| preset | params | micro-batch | tokens/s | MFU | peak memory GB |")
    print("|---|---:|---:|---:|---:|---:|")
    for preset, params, batch, v in results:
        print(f"| {preset} | {params / 1e6:,.1f}M | {batch} | {v.get('tokens_per_s', 0):,.0f} | "
              f"{100 * v.get('mfu', 0):.1f}% | {v.get('memory_gb', 0):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
