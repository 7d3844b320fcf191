"""``python -m bench``: corpus, per-stage ratios, end-to-end builds and (optionally) a peer comparison."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("stages", "e2e", "tokenizer")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--eval",
        default=str(REPO.parent / "shared" / "eval"),
        help="the shared eval directory (its corpus/ holds the benchmark texts)",
    )
    parser.add_argument(
        "--sizes",
        default="10000,50000,100000",
        help="comma list of end-to-end build sizes in documents (default: 10000,50000,100000)",
    )
    parser.add_argument("--stage-docs", type=int, default=3000, help="documents for the per-stage table")
    parser.add_argument("--repeats", type=int, default=3, help="per-stage measurements: best of this many")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: sizes 2000,5000, 1000 stage documents, 2 repeats"
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma subset of {','.join(SECTIONS)} (default: all)"
    )
    parser.add_argument("--peer", choices=["datatrove"], help="also compare with a peer, in its own venv")
    parser.add_argument("--peer-docs", type=int, default=10000, help="documents for the peer comparison")
    parser.add_argument("--cache", default=str(REPO / "bench-home"), help="where corpora are written")
    parser.add_argument("--out", default=None, help="results directory (default: bench/results)")
    parser.add_argument(
        "--build-timeout",
        type=float,
        default=1800.0,
        help="seconds before an end-to-end build is killed (reported as failed)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = "2000,5000"
        args.stage_docs = min(args.stage_docs, 1000)
        args.repeats = min(args.repeats, 2)
        args.peer_docs = min(args.peer_docs, 1000)
    return args


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)


def machine_load() -> str:
    """Other tenants' load: the 1-minute load average and the busiest other processes now.

    Right after a benchmark the average still counts the benchmark's own threads (a build runs ~3: the
    driver, two workers, the tokenizer's Rayon pool), so the figure taken before a section is the one
    that says whether other jobs shared the machine."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return "load unknown"
    line = f"1-min load average {load:.2f} on {os.cpu_count()} cores"
    try:
        import psutil

        me = os.getpid()
        procs = list(psutil.process_iter(["pid", "name"]))
        for proc in procs:
            try:
                proc.cpu_percent(None)
            except psutil.Error:
                pass
        time.sleep(1.0)
        busy = []
        for proc in procs:
            try:
                if proc.pid != me:
                    pct = proc.cpu_percent(None)
                    if pct >= 20:
                        busy.append(pct)
            except psutil.Error:
                pass
        if busy:
            line += f"; other processes busy now: {len(busy)} using {sum(busy) / 100:.1f} cores"
    except ImportError:
        pass
    return line


def machine_note(before: str) -> str:
    return f"Machine before the run: {before}. After it: {machine_load()} (the average still counts the run itself)."


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _quiet()
    from bench import corpus
    from bench.report import Report

    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        print(f"unknown section(s) {sorted(unknown)}; choose from {','.join(SECTIONS)}", file=sys.stderr)
        return 2
    report = Report(Path(args.out) if args.out else None)
    report.header(sys.argv[1:] if argv is None else argv)
    try:
        info = corpus.describe(args.eval)
    except corpus.EvalMissing as err:
        report.add(f"SKIPPED: {err}")
        report.write()
        return 0
    report.add(
        f"Corpus: {info['unique_chunks']:,} unique ~3 KB chunks (median {info['median_chars']:,} chars) from "
        f"{info['sources']} source texts under {Path(args.eval).resolve() / 'corpus'}; larger corpora repeat "
        "them with seeded line subsets, filler lines and shuffles (bench/corpus.py)."
    )
    cache = Path(args.cache)

    if "stages" in sections:
        from bench import stages

        path = corpus.ensure_corpus(args.eval, args.stage_docs, cache)
        before = machine_load()
        print(f"## per-stage: {args.stage_docs:,} documents, best of {args.repeats} ({before})", flush=True)
        results = stages.run(path, repeats=args.repeats)
        report.add(
            f"## Per stage, inside Beam vs the raw library ({args.stage_docs:,} documents, "
            f"the build's runner in-process, 1 worker, best of {args.repeats})\n\n"
            f"{stages.tables(results)}\n\n{machine_note(before)}"
        )

    if "e2e" in sections:
        from bench import e2e

        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
        corpora = {n: corpus.ensure_corpus(args.eval, n, cache) for n in sizes}
        before = machine_load()
        print(f"## end-to-end: {', '.join(f'{n:,}' for n in sizes)} documents ({before})", flush=True)
        results = e2e.run(corpora, timeout=args.build_timeout)
        report.add(
            "## End to end: `python -m pipelines.build`, all stages, DirectRunner multi_processing, "
            f"2 workers\n\n{e2e.tables(results)}\n\n{machine_note(before)}"
        )
        from bench import floor

        before = machine_load()
        print(f"## what this machine allows ({before})", flush=True)
        fixed_corpus = corpus.ensure_corpus(args.eval, floor.FIXED_DOCS, cache)
        floors = floor.run(corpora, results, fixed_corpus, timeout=args.build_timeout)
        report.add(
            "## What this machine allows: fixed cost plus the libraries' per-document work (bench/floor.py)"
            f"\n\n{floor.tables(floors)}\n\n{machine_note(before)}"
        )

    if "tokenizer" in sections:
        from bench import tokenizer_sample

        sample_sizes = [1000, 2000, 4000, 10000] if not args.quick else [500, 1000, 2000]
        path = corpus.ensure_corpus(args.eval, max(sample_sizes) + tokenizer_sample.HELD_OUT, cache)
        before = machine_load()
        print(f"## tokenizer sample: {', '.join(f'{n:,}' for n in sample_sizes)} documents ({before})", flush=True)
        report.add(
            "## Tokenizer training sample: training time against compression (8,192 vocabulary)\n\n"
            f"{tokenizer_sample.tables(tokenizer_sample.run(path, sample_sizes))}\n\n{machine_note(before)}"
        )

    if args.peer:
        from bench import peer

        print(f"## peer: {args.peer}, {args.peer_docs:,} documents ({machine_load()})", flush=True)
        report.add(peer.run(args.peer, args.eval, args.peer_docs, cache))

    path = report.write()
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
