"""Peer comparison: datatrove's filters + MinHash signatures vs our quality + dedup + pii, same documents.

datatrove is installed into its own venv, ``bench/.peer-venv`` (gitignored), with
``pip install "datatrove[processing]" orjson xxhash spacy``. The documents are the benchmark corpus split
into two JSONL files. datatrove runs GopherRepetitionFilter → GopherQualityFilter →
C4QualityFilter(filter_no_terminal_punct=False) → FineWebQualityFilter → PIIFormatter →
MinhashDedupSignature (its default MinhashConfig) under ``LocalPipelineExecutor(tasks=2, workers=2)``; our
side is ``python -m pipelines.build --stages quality,dedup,pii`` on DirectRunner multi_processing with 2
workers on the same two files. Both are timed wall-clock as whole processes, with peak RSS of the tree.

What each side does is not identical. Ours computes the same published rule families (Gopher, C4,
FineWeb) once per document, scrubs more PII types, and runs the whole of near-duplicate detection
(signatures, LSH buckets, verification, connected components, keeper choice) and writes Parquet outputs;
datatrove's step here stops at writing signatures (its bucket/cluster/filter steps would come after).
So the comparison is conservative for us.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import corpus as corpus_mod
from bench import e2e
from bench.report import table

PEER_VENV = Path(__file__).resolve().parent / ".peer-venv"
PEER_PACKAGES = ["datatrove[processing]", "orjson", "xxhash", "spacy"]

DATATROVE_SCRIPT = r"""
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.filters import (GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter,
                                        FineWebQualityFilter)
from datatrove.pipeline.formatters import PIIFormatter
from datatrove.pipeline.dedup import MinhashDedupSignature


def main():
    inputs, work = sys.argv[1], sys.argv[2]
    pipeline = [
        JsonlReader(inputs, text_key="text", id_key="id"),
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
        PIIFormatter(),
        MinhashDedupSignature(output_folder=f"{work}/signatures"),
    ]
    start = time.perf_counter()
    LocalPipelineExecutor(pipeline=pipeline, tasks=2, workers=2, logging_dir=f"{work}/logs").run()
    wall = time.perf_counter() - start
    steps = []
    try:
        with open(f"{work}/logs/stats.json") as handle:
            stats = json.load(handle)
        for step in stats:
            name = step.get("name", "?")
            time_stats = step.get("time_stats") or {}
            steps.append({"name": name, "total": time_stats.get("total"), "n": time_stats.get("n"),
                          "mean": time_stats.get("mean"), "stats": step.get("stats", {})})
    except (OSError, ValueError) as err:
        steps = [{"name": f"stats unavailable: {err}"}]
    print("PEER_RESULT " + json.dumps({"wall": wall, "steps": steps}))


if __name__ == "__main__":  # datatrove starts workers with forkserver
    main()
"""


def ensure_venv() -> tuple[Path | None, str]:
    """The peer venv's python, installing it when missing; (None, why) when that is not possible."""
    python = PEER_VENV / "bin" / "python"
    if python.is_file() and _imports(python):
        return python, "existing"
    try:
        if not python.is_file():
            subprocess.run(
                [sys.executable, "-m", "venv", str(PEER_VENV)], check=True, capture_output=True, timeout=300
            )
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"could not create {PEER_VENV}: {err}"
    if done.returncode != 0 or not _imports(python):
        return None, f"pip install {' '.join(PEER_PACKAGES)} failed: {done.stderr.strip()[-800:]}"
    return python, "installed"


def _imports(python: Path) -> bool:
    probe = subprocess.run(
        [str(python), "-c", "import datatrove, spacy, orjson, xxhash"], capture_output=True, timeout=300
    )
    return probe.returncode == 0


def _version(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "from importlib.metadata import version; print(version('datatrove'))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout.strip() or "?"


def split_input(path: Path, folder: Path, parts: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    size = -(-len(lines) // parts)
    files = []
    for i in range(parts):
        target = folder / f"part-{i}.jsonl"
        target.write_text("".join(lines[i * size : (i + 1) * size]), encoding="utf-8")
        files.append(target)
    return files


def run(peer: str, eval_dir: str, docs: int, cache: Path) -> str:
    if peer != "datatrove":
        return f"## Peer\n\nSKIPPED: unknown peer {peer!r}"
    python, how = ensure_venv()
    if python is None:
        return f"## Peer: datatrove\n\nSKIPPED: {how}"
    path = corpus_mod.ensure_corpus(eval_dir, docs, cache)
    work = Path(tempfile.mkdtemp(prefix="tokenmill-peer-"))
    try:
        files = split_input(path, work / "input")
        script = work / "peer_datatrove.py"
        script.write_text(DATATROVE_SCRIPT, encoding="utf-8")
        print(f"  datatrove {_version(python)} ({how}): {docs:,} documents ...", flush=True)
        theirs = e2e.run_tree(
            [str(python), str(script), str(work / "input"), str(work / "dt")],
            work / "datatrove.log",
            timeout=1800,
        )
        result = _parse(theirs.tail)
        print("  tokenmill quality,dedup,pii ...", flush=True)
        ours = e2e.run_build(
            ",".join(str(f) for f in files),
            docs,
            work,
            extra=["--stages", "quality,dedup,pii"],
            name="ours",
            timeout=1800,
        )
        return _tables(docs, _version(python), theirs, result, ours)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _parse(tail: str) -> dict:
    for line in reversed(tail.splitlines()):
        if line.startswith("PEER_RESULT "):
            return json.loads(line.removeprefix("PEER_RESULT "))
    return {}


def _tables(docs: int, version: str, theirs: e2e.TreeRun, result: dict, ours: e2e.BuildRun) -> str:
    head = (
        f"## Peer: datatrove {version} vs tokenmill, {docs:,} documents, 2 cores, same two JSONL files\n\n"
        "datatrove: GopherRepetition → GopherQuality → C4Quality(filter_no_terminal_punct=False) → "
        "FineWebQuality → PIIFormatter → MinhashDedupSignature, LocalPipelineExecutor(tasks=2). "
        "tokenmill: `pipelines.build --stages quality,dedup,pii`, DirectRunner multi_processing, 2 workers "
        "(full near-dedup clustering and Parquet output included)."
    )
    if theirs.returncode != 0:
        return f"{head}\n\ndatatrove failed (exit {theirs.returncode}):\n\n```\n{theirs.tail[-1500:]}\n```"
    if ours.returncode != 0:
        return f"{head}\n\ntokenmill failed (exit {ours.returncode}):\n\n```\n{ours.tail[-1500:]}\n```"
    rows = [
        [
            "datatrove",
            theirs.wall_s,
            docs / theirs.wall_s,
            f"{theirs.cpu_s / theirs.wall_s:.2f}",
            f"{theirs.peak_rss / 2**30:.2f}",
            "1.00x",
        ],
        [
            "tokenmill",
            ours.wall_s,
            docs / ours.wall_s,
            f"{ours.cpu_s / ours.wall_s:.2f}",
            f"{ours.peak_rss / 2**30:.2f}",
            f"{theirs.wall_s / ours.wall_s:.1f}x",
        ],
    ]
    parts = [
        head,
        table(["pipeline", "wall s", "docs/s", "cores busy", "peak RSS GiB", "speed vs datatrove"], rows),
    ]
    steps = [s for s in result.get("steps", []) if s.get("total") is not None]
    if steps:
        step_rows = []
        for step in steps:
            n = step.get("n") or 0
            per_doc = step["total"] / docs * 1000 if docs else None
            name = "".join(c for c in step["name"] if c.isascii()).strip(" -") or step["name"]
            step_rows.append([name, step["total"], per_doc, n])
        parts.append(
            "datatrove's own per-step time (summed over its 2 tasks):\n\n"
            + table(["step", "total s", "ms per input doc", "calls"], step_rows)
        )
    kept = ours.counts.get("kept")
    parts.append(f"tokenmill kept {kept:,} of {docs:,} documents." if kept is not None else "")
    return "\n\n".join(p for p in parts if p)
