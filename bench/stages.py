"""Per-stage throughput inside Beam against the raw library on the same documents.

For each stage a Beam pipeline runs in-process (one worker) on the build's runner (``LocalRunner``: an
FnApiRunner whose bundles, like the build's workers', end without waiting for Beam's state sampler): it
reads the benchmark JSONL with the pipeline's own reader (``ReadInputs``), applies the stage's DoFn
exactly as ``pipelines.build`` wires it, and counts the outputs. The same pipeline without the stage (read + count)
is timed too and subtracted, which leaves the stage's own cost inside Beam ("marginal"); the
non-subtracted figure is reported as well. Stages that read what an earlier stage wrote (quality reads
``lang``) get that earlier stage in both pipelines, so the difference is still only the stage.

The raw ceiling is the plain library on the same texts in a Python loop: fastText ``predict``, datasketch
``MinHash.update_batch`` over the same shingles, HF ``encode_batch_fast`` in batches of the same size (its
ids read; every tokenize measurement on one thread, as the build's workers encode). The
"our function" column runs our plain stage code without Beam, which separates the cost of our own
per-document work from Beam's per-element overhead. Every figure is the best (least time) of
``repeats`` runs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsSingleton

from pipelines import bpe, packed
from pipelines import transforms as T
from pipelines.config import BuildConfig
from pipelines.runner import LocalRunner

TARGET_RATIO = 0.7
_NAMESPACE = "bench"


def _record_count(n: int) -> None:
    Metrics.counter(_NAMESPACE, "outputs").inc(n)


Graph = Callable[[beam.PCollection, beam.Pipeline], list[beam.PCollection]]


def run_pipeline(path: Path, build: Graph | None, config: BuildConfig) -> tuple[Timing, int]:
    """Time read → (stage) → count in-process; also return the number counted.

    A stage's outputs (kept and rejected) are counted separately rather than flattened first: on the
    FnApiRunner a Flatten of two outputs of one DoFn costs ~35 µs per element, which is the harness's
    cost, not the stage's (in the build, kept documents flow straight on and only rejects are flattened).
    """
    pipeline = beam.Pipeline(runner=LocalRunner(), options=PipelineOptions(["--direct_num_workers=1"]))
    batches, _, _ = pipeline | "Inputs" >> beam.Create([str(path)]) | "Read" >> T.ReadInputs(config.input, spread=False)
    docs = batches | "Docs" >> beam.FlatMap(lambda batch: batch)
    outputs = [docs] if build is None else build(docs, pipeline)
    for i, out in enumerate(outputs):
        _ = out | f"Count{i}" >> beam.combiners.Count.Globally() | f"Record{i}" >> beam.Map(_record_count)
    holder = {}

    def go() -> None:
        holder["result"] = pipeline.run()
        holder["result"].wait_until_finish()

    timing = measure(go)
    query = MetricsFilter().with_namespace(_NAMESPACE).with_name("outputs")
    counters = holder["result"].metrics().query(query)["counters"]
    return timing, sum(c.committed or c.attempted or 0 for c in counters)


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float  # this process's CPU time (all threads): less sensitive to other tenants of the machine


def measure(fn: Callable[[], object]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def best(timings: list[Timing]) -> Timing:
    return Timing(min(t.wall for t in timings), min(t.cpu for t in timings))


# ------------------------------------------------------------------------------------ stage graphs


def _stage(stage_factory: Callable[[], T.DocStage], name: str):
    def build(docs: beam.PCollection, _pipeline: beam.Pipeline) -> list[beam.PCollection]:
        out = docs | f"Stage[{name}]" >> beam.ParDo(T.ApplyStage(stage_factory())).with_outputs(
            "rejected", main="kept"
        )
        return [out.kept, out.rejected]

    return build


class _AnnotateLang(beam.DoFn):
    """Sets ``lang``/``lang_score`` on every document and drops none, so the next stage sees all."""

    def __init__(self, config: BuildConfig):
        self.stage = T.LangIdStage(config.langid)

    def setup(self) -> None:
        self.stage.setup()

    def process(self, doc: dict):
        doc = dict(doc)
        self.stage.apply(doc)
        yield doc


def _with_lang(config: BuildConfig) -> Graph:
    def build(docs: beam.PCollection, _pipeline: beam.Pipeline) -> list[beam.PCollection]:
        return [docs | "AnnotateLang" >> beam.ParDo(_AnnotateLang(config))]

    return build


def _chain(prefix: Graph, graph: Graph) -> Graph:
    def build(docs: beam.PCollection, pipeline: beam.Pipeline) -> list[beam.PCollection]:
        (annotated,) = prefix(docs, pipeline)
        return graph(annotated, pipeline)

    return build


def _dedup_keys(config: BuildConfig):
    def build(docs: beam.PCollection, _pipeline: beam.Pipeline) -> list[beam.PCollection]:
        keys = docs | "DedupKeys" >> beam.ParDo(T.DedupKeys(config.dedup)).with_outputs(
            "bucket", "member", main="sig"
        )
        return [keys.sig]

    return build


def _encode(config: BuildConfig, payload_path: Path):
    size = config.tokenizer.batch_size

    def build(docs: beam.PCollection, pipeline: beam.Pipeline) -> list[beam.PCollection]:
        # Read while the pipeline runs, as the build's trained tokenizer is made: Beam pickles a Create's
        # values into the graph and bz2-compresses them whenever a worker sets the stage up (~55 ms for
        # the ~600 KB JSON, per run), a cost the build never pays.
        tokenizer = (pipeline | "TokenizerPath" >> beam.Create([str(payload_path)])
                     | "Tokenizer" >> beam.Map(_read_text))
        encoded = (
            docs
            | "PackDocs" >> beam.Map(packed.pack)
            | "Batch" >> beam.BatchElements(min_batch_size=size, max_batch_size=size)
            | "Encode" >> beam.ParDo(T.Encode(), AsSingleton(tokenizer)).with_outputs("tokens", main="docs")
        )
        return [encoded.docs]

    return build


# ------------------------------------------------------------------------------------ raw ceilings


def raw_langid(texts: list[str]) -> Callable[[], object]:
    import fasttext

    from pipelines.langid import bundled_model_path

    model = fasttext.load_model(str(bundled_model_path()))

    def run() -> None:
        for text in texts:
            model.predict(text.replace("\n", " "), k=1)

    return run


def raw_minhash(texts: list[str], config: BuildConfig) -> Callable[[], object]:
    from datasketch import MinHash

    from pipelines import dedup
    from pipelines.dedup import DATASKETCH_SCHEME, normalize, shingle_occurrences

    cfg = config.dedup
    # The same shingle hash as the pipeline (datasketch's default is SHA-1).
    hash_name = getattr(dedup, "SHINGLE_HASH", "sha1")
    extra = {}
    if hash_name == "xxh32":
        import xxhash

        extra["hashfunc"] = xxhash.xxh32_intdigest
    # Building the permutations once and copying the empty sketch is the fastest plain use (passing
    # ``permutations=`` to the constructor measured slower); normalisation and shingles are the same.
    template = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme=DATASKETCH_SCHEME, **extra)

    def run() -> None:
        for text in texts:
            m = template.copy()
            m.update_batch(shingle_occurrences(normalize(text), cfg.ngram))
            m.hashvalues  # noqa: B018

    return run


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def raw_encode(texts: list[str], payload: str, batch: int, read_ids: bool = True) -> Callable[[], object]:
    """The tokenizer's batch encoding, each encoding's ids read: they are its result, as the MinHash loop
    reads its hash values (``encode_batch_fast`` returns encodings whose ids stay in Rust until read).
    With ``read_ids=False``, the encodings are dropped unread (for reference only)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(payload)

    def run() -> None:
        for i in range(0, len(texts), batch):
            encodings = tokenizer.encode_batch_fast(texts[i : i + batch], add_special_tokens=False)
            if read_ids:
                for encoding in encodings:
                    encoding.ids  # noqa: B018

    return run


# ------------------------------------------------------------------------------------ plain stage code


def plain_stage(docs: list[dict], *stages: T.DocStage) -> Callable[[], object]:
    for stage in stages:
        stage.setup()

    def run() -> None:
        for doc in docs:
            doc = dict(doc)
            for stage in stages:
                stage.apply(doc)

    return run


def _plain_dedup_keys(docs: list[dict], config: BuildConfig) -> Callable[[], object]:
    fn = T.DedupKeys(config.dedup)

    def run() -> None:
        fn.start_bundle()
        for doc in docs:
            for _ in fn.process(doc):
                pass
        for _ in fn.finish_bundle():
            pass

    return run


def _plain_encode(docs: list[dict], payload: str, batch: int) -> Callable[[], object]:
    fn = T.Encode()

    def run() -> None:
        packed_docs = [packed.pack(doc) for doc in docs]  # as the build hands documents to Encode
        for i in range(0, len(packed_docs), batch):
            for _ in fn.process(packed_docs[i : i + batch], payload):
                pass

    return run


# ------------------------------------------------------------------------------------ the benchmark


@dataclass
class StageResult:
    stage: str
    docs: int
    raw: Timing | None  # the plain library loop
    plain: Timing  # our stage code without Beam
    beam: Timing  # read + (prefix) + stage + count
    base: Timing  # the same pipeline without the stage: read + (prefix) + count
    read: Timing  # read + count

    def marginal(self, clock: str = "wall") -> float:
        return max(1e-9, getattr(self.beam, clock) - getattr(self.base, clock))

    def inclusive(self, clock: str = "wall") -> float:
        """Stage plus read + count (a prefix stage, when there is one, is still taken out)."""
        return getattr(self.beam, clock) - getattr(self.base, clock) + getattr(self.read, clock)

    def rate(self, seconds: float) -> float:
        return self.docs / seconds


def load_docs(path: Path, every: int = 1, limit: int | None = None) -> list[dict]:
    """The documents as the pipeline's reader yields them (same id/text/source/position fields); with
    ``every``/``limit``, every ``every``-th line up to ``limit`` documents."""
    with path.open(encoding="utf-8") as handle:
        lines = itertools.islice(handle, 0, None, every)
        rows = [json.loads(line) for line in itertools.islice(lines, limit)]
    return [
        {"id": r["id"], "text": r["text"], "source": str(path), "position": i + 1} for i, r in enumerate(rows)
    ]


def train_tokenizer(docs: list[dict], config: BuildConfig) -> str:
    from pipelines import bpe

    cfg = config.tokenizer
    texts = [d["text"][: cfg.sample_chars_per_doc] for d in docs[: cfg.sample_docs]]
    return bpe.train_bpe(texts, cfg.vocab_size, cfg.min_frequency).to_str()


def run(path: Path, repeats: int = 3, log: Callable[[str], None] = print) -> list[StageResult]:
    """Each stage's measurements run interleaved (base, Beam, raw, plain; ``repeats`` rounds), best kept."""
    config = BuildConfig()
    docs = load_docs(path)
    texts = [d["text"] for d in docs]
    payload = train_tokenizer(docs, config)
    scratch = Path(tempfile.mkdtemp(prefix="tokenmill-bench-stages-"))
    payload_path = scratch / "tokenizer.json"
    payload_path.write_text(payload, encoding="utf-8")
    try:
        return _run_cases(path, config, docs, texts, payload, payload_path, repeats, log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_cases(path: Path, config: BuildConfig, docs: list[dict], texts: list[str], payload: str,
               payload_path: Path, repeats: int, log: Callable[[str], None]) -> list[StageResult]:
    n = len(docs)
    batch = config.tokenizer.batch_size

    def langid():
        return T.LangIdStage(config.langid)

    def quality():
        return T.QualityStage(config.quality)

    def pii():
        return T.PiiStage(config.pii)

    # The documents with `lang` filled in, for the quality stage's plain-code figure.
    lid = langid()
    lid.setup()
    with_lang = []
    for doc in docs:
        doc = dict(doc)
        lid.apply(doc)
        with_lang.append(doc)

    cases = [
        # name, Beam graph, prefix graph (in both Beam pipelines), raw library loop, plain stage code
        ("langid", _stage(langid, "langid"), None, raw_langid(texts), plain_stage(docs, langid())),
        (
            "dedup signatures",
            _dedup_keys(config),
            None,
            raw_minhash(texts, config),
            _plain_dedup_keys(docs, config),
        ),
        (
            "tokenize",
            _encode(config, payload_path),
            None,
            raw_encode(texts, payload, batch),
            _plain_encode(docs, payload, batch),
        ),
        ("quality", _stage(quality, "quality"), _with_lang(config), None, plain_stage(with_lang, quality())),
        ("pii", _stage(pii, "pii"), None, None, plain_stage(docs, pii())),
    ]

    # Printed beside the tokenizer's ceiling, not compared with: its batch encoding with the ids unread.
    references = {"tokenize": raw_encode(texts, payload, batch, read_ids=False)}
    # Every tokenize measurement encodes on one thread, as a multi-process build's workers do (one per
    # core; pipelines/worker.py) and as the floor measures it.
    settings = {"tokenize": lambda: bpe.tokenizers_parallelism(False)}

    reads = []
    results = []
    for name, graph, prefix, raw, plain in cases:
        full = graph if prefix is None else _chain(prefix, graph)
        timings: dict[str, list[Timing]] = {"beam": [], "base": [], "raw": [], "plain": [], "reference": []}
        for _ in range(repeats):
            with settings.get(name, contextlib.nullcontext)():
                base, count = run_pipeline(path, prefix, config)
                if prefix is None:
                    reads.append(base)
                timings["base"].append(base)
                beam_timing, count = run_pipeline(path, full, config)
                if count != n:
                    raise RuntimeError(f"{name}: the Beam pipeline counted {count} outputs for {n} documents")
                timings["beam"].append(beam_timing)
                if raw is not None:
                    timings["raw"].append(measure(raw))
                timings["plain"].append(measure(plain))
                if name in references:
                    timings["reference"].append(measure(references[name]))
        result = StageResult(
            name,
            n,
            best(timings["raw"]) if raw else None,
            best(timings["plain"]),
            best(timings["beam"]),
            best(timings["base"]),
            best(reads),
        )
        log(
            f"  {name}: Beam {result.beam.wall:.2f} s (without the stage {result.base.wall:.2f} s), "
            f"our code {result.plain.wall:.2f} s" + (f", raw {result.raw.wall:.2f} s" if result.raw else "")
            + (f" ({best(timings['reference']).wall:.2f} s with the ids unread)" if timings["reference"] else "")
        )
        results.append(result)
    return results


def tables(results: list[StageResult]) -> str:
    from bench.report import table

    rows = []
    for r in results:
        if r.raw is None:
            continue
        ratio = r.rate(r.marginal()) / r.rate(r.raw.wall)
        ratio_cpu = r.rate(r.marginal("cpu")) / r.rate(r.raw.cpu)
        rows.append(
            [
                r.stage,
                r.rate(r.raw.wall),
                r.rate(r.plain.wall),
                r.rate(r.marginal()),
                r.rate(r.inclusive()),
                f"{ratio:.2f}",
                f"{ratio_cpu:.2f}",
                "ok" if ratio >= TARGET_RATIO else "missed",
            ]
        )
    first = table(
        [
            "stage",
            "raw library docs/s",
            "our code, no Beam, docs/s",
            "Beam docs/s (marginal)",
            "Beam docs/s (with read+count)",
            "ratio Beam/raw",
            "ratio (CPU time)",
            f"target >= {TARGET_RATIO}",
        ],
        rows,
    )
    rows = []
    for r in results:
        rows.append(
            [
                r.stage,
                r.marginal() / r.docs * 1000,
                r.plain.wall / r.docs * 1000,
                (r.marginal() - r.plain.wall) / r.docs * 1000,
                r.rate(r.marginal()),
                r.rate(r.inclusive()),
            ]
        )
    second = table(
        [
            "stage",
            "Beam ms/doc (marginal)",
            "our code ms/doc (no Beam)",
            "Beam overhead ms/doc",
            "Beam docs/s (marginal)",
            "Beam docs/s (with read+count)",
        ],
        rows,
    )
    return first + "\n\n" + second
