"""``python -m trainer``: train a GPT on a dataset version, resuming when run again. See docs/trainer.md."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch

from trainer.checkpoint import CheckpointError
from trainer.config import PRESETS, ConfigError, build_config, out_of_memory, parse_set
from trainer.data import DataError
from trainer.loop import SpikeGuardGaveUp, train


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    p.add_argument("--home", help="workspace root (env TOKENMILL_HOME, default .)")
    p.add_argument("--data", help="data dir (its LATEST), version dir, or version name; default HOME/data")
    p.add_argument("--out", help="run directory; default HOME/runs/<preset>-<version>-seed<S>-<config hash>")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--config", help="TOML file of settings (sections [model], [optim], [guard], [scaler])")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (the default: cuda when torch sees a GPU, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"])
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--inject-fault", action="append", default=[], metavar="KIND@STEP",
                   help="bad_batch@S, bad_batch@S-E or nan@S (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set model.d_model=128 --set ckpt_every=10")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    flags: dict[str, Any] = {
        key: value for key, value in {
            "home": args.home, "data": args.data, "out": args.out, "max_steps": args.max_steps, "seed": args.seed,
            "device": args.device, "precision": args.precision, "compile": args.compile,
        }.items() if value is not None
    }
    if args.inject_fault:
        flags["inject_faults"] = list(args.inject_fault)
    try:
        config = build_config(args.preset, args.config, flags, parse_set(args.set))
        result = train(config)
    except (ConfigError, DataError, CheckpointError, SpikeGuardGaveUp) as exc:
        print(f"trainer: error: {exc}", file=sys.stderr)
        return 2
    except torch.OutOfMemoryError:
        # CUDA's own message is a page of allocator statistics; what to change is the micro-batch. The run is
        # already marked failed in its run.json and the metrics store.
        print(f"trainer: error: {out_of_memory(config)}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        print(result.run_dir)
    return 0
