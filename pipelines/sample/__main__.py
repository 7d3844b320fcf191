"""Regenerate the bundled sample corpus: ``python -m pipelines.sample [--out PATH] [--seed N]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.sample import SAMPLE_CORPUS, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.sample", description=__doc__)
    parser.add_argument("--out", type=Path, default=SAMPLE_CORPUS, help="output .jsonl.gz path")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the committed corpus uses 0)")
    args = parser.parse_args(argv)
    counts = generate(args.out, seed=args.seed)
    size = args.out.stat().st_size
    print(json.dumps({"path": str(args.out), "bytes": size, **counts}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
