"""How fast this machine lets an end-to-end build go: a floor under its wall time, measured in the same run.

The throughput target (docs/s per core) is absolute; what a 2-core build can reach depends on the
machine it runs on. This section measures, next to the end-to-end builds, the two costs no
implementation of the pipeline on this runner avoids:

* **fixed**: the wall time of the same build command on ``FIXED_DOCS`` documents of the same corpus:
  Beam's start-up and graph translation, every fused stage's per-stage cost, tokenizer training on a
  tiny sample, publishing. An under-estimate of the fixed part of a larger build (its tokenizer trains
  on up to 4,000 documents).
* **per-document work**: the CPU seconds the per-document libraries need for the N-document build's
  documents. Each is measured in this process on documents drawn evenly from that build's corpus (best
  of ``repeats``; CPU time) and multiplied by how many documents reached the stage in that build's
  manifest: fastText ``predict`` (langid, every document), our quality rules (no library to compare
  with), datasketch MinHash over the pipeline's shingles (dedup) and ``encode_batch_fast`` on one thread,
  as the build's workers run it (tokenize). Reading, PII, packing, writing and the runner's per-element cost
  count as zero.

floor = fixed + per-document work / cores, as if every core were busy from the first second to the last.
The floor's docs/s per core is the most any build on this machine and runner could show; when it is
below the target, the target cannot be met here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench import e2e

if TYPE_CHECKING:
    from pipelines.transforms import DocStage

FIXED_DOCS = 100
SAMPLE_DOCS = 1000
# Manifest stage → how the floor names the library work it stands for.
WORK = {
    "langid": "fastText predict",
    "quality": "quality rules (our code)",
    "dedup": "datasketch MinHash",
    "tokenize": "tokenizers encode_batch_fast",
}


@dataclass(frozen=True)
class StageCost:
    measured_docs: int
    cpu_s: float

    @property
    def per_doc_s(self) -> float:
        return self.cpu_s / self.measured_docs if self.measured_docs else 0.0


@dataclass(frozen=True)
class Floor:
    run: e2e.BuildRun
    fixed_s: float
    costs: dict[str, StageCost]

    def stage_docs(self, stage: str) -> int:
        return self.run.stages.get(stage, {}).get("in", 0)

    def work_cpu_s(self) -> float:
        return sum(self.stage_docs(s) * cost.per_doc_s for s, cost in self.costs.items())

    @property
    def floor_s(self) -> float:
        return self.fixed_s + self.work_cpu_s() / e2e.CORES

    @property
    def docs_per_core(self) -> float:
        return self.run.docs / self.floor_s / e2e.CORES


def sample_documents(path: Path, total: int, n: int = SAMPLE_DOCS) -> list[dict]:
    """``n`` documents spread evenly over a ``total``-line JSONL corpus, as the build's reader names them."""
    from bench import stages

    return stages.load_docs(path, every=max(1, total // n), limit=n)


def _kept(docs: list[dict], stage: DocStage) -> list[dict]:
    kept = []
    for doc in docs:
        doc = dict(doc)
        if stage.apply(doc) is None:
            kept.append(doc)
    return kept


def stage_costs(docs: list[dict], repeats: int = 2) -> dict[str, StageCost]:
    """CPU seconds per stage's library work on ``docs``, each stage on the documents the one before kept."""
    from bench import stages as S
    from pipelines import bpe
    from pipelines import transforms as T
    from pipelines.config import BuildConfig

    config = BuildConfig()

    def cpu(fn: Callable[[], object]) -> float:
        return S.best([S.measure(fn) for _ in range(repeats)]).cpu

    langid_stage = T.LangIdStage(config.langid)
    langid_stage.setup()
    quality_stage = T.QualityStage(config.quality)
    quality_stage.setup()
    after_langid = _kept(docs, langid_stage)
    after_quality = _kept(after_langid, quality_stage)
    texts = [d["text"] for d in after_quality]
    payload = S.train_tokenizer(after_quality, config)
    with bpe.tokenizers_parallelism(False):  # as a multi-process build's workers encode
        encode_cpu_s = cpu(S.raw_encode(texts, payload, config.tokenizer.batch_size))
    return {
        "langid": StageCost(len(docs), cpu(S.raw_langid([d["text"] for d in docs]))),
        "quality": StageCost(len(after_langid), cpu(S.plain_stage(after_langid, quality_stage))),
        "dedup": StageCost(len(texts), cpu(S.raw_minhash(texts, config))),
        "tokenize": StageCost(len(texts), encode_cpu_s),
    }


def run(
    corpora: dict[int, Path],
    results: list[e2e.BuildRun],
    fixed_corpus: Path,
    timeout: float | None = None,
    log: Callable[[str], None] = print,
) -> list[Floor]:
    """One ``FIXED_DOCS`` build, then each successful build's per-document work on its own corpus."""
    ok = [r for r in results if r.returncode == 0]
    if not ok:
        return []
    log(f"  floor: building {FIXED_DOCS} documents for the fixed cost ...")
    (fixed,) = e2e.run({FIXED_DOCS: fixed_corpus}, timeout=timeout, log=log)
    if fixed.returncode != 0:
        raise RuntimeError(f"the {FIXED_DOCS}-document build failed (exit {fixed.returncode}):\n{fixed.tail}")
    floors = []
    for r in ok:
        log(f"  floor: library work on {SAMPLE_DOCS:,} documents of the {r.docs:,}-document corpus ...")
        costs = stage_costs(sample_documents(corpora[r.docs], r.docs))
        floors.append(Floor(r, fixed.wall_s, costs))
    return floors


def tables(floors: list[Floor]) -> str:
    from bench.report import table

    if not floors:
        return "No successful build to compare with."
    target = e2e.TARGET_DOCS_PER_CORE
    rows = []
    for f in floors:
        rows.append(
            [
                f.run.docs,
                f.run.wall_s,
                f.fixed_s,
                f.work_cpu_s(),
                f.floor_s,
                f.docs_per_core,
                f.run.docs_per_s / e2e.CORES,
                f"{f.floor_s / f.run.wall_s:.2f}",
                "yes" if f.docs_per_core >= target else "no",
            ]
        )
    summary = table(
        [
            "docs",
            "build wall s",
            f"fixed s ({FIXED_DOCS}-doc build)",
            "library work CPU s",
            f"floor s (fixed + work / {e2e.CORES} cores)",
            "floor docs/s per core",
            "build docs/s per core",
            "floor / build wall",
            f"{target:.0f}/core possible here",
        ],
        rows,
    )
    largest = floors[-1]
    rows = [
        [
            stage,
            WORK[stage],
            f"{cost.measured_docs:,}",
            f"{cost.per_doc_s * 1e3:.2f}",
            largest.stage_docs(stage),
            largest.stage_docs(stage) * cost.per_doc_s,
        ]
        for stage, cost in largest.costs.items()
    ]
    detail = table(
        [
            "stage",
            "library work",
            "documents measured",
            "CPU ms per document",
            f"documents in, {largest.run.docs:,}-doc build",
            "CPU s",
        ],
        rows,
    )
    return f"{summary}\n\nThe per-document work behind the {largest.run.docs:,}-document row:\n\n{detail}"
