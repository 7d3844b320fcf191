"""Thin Beam wrappers around the plain stage functions, and the writers for a version's files.

Everything here is portable-runner safe: no module-level state, models load in ``DoFn.setup``,
all I/O goes through ``apache_beam.io.filesystems``, and nothing collects a dataset on one worker
(only bounded things are: the tokenizer's training sample, per-key statistics, shard descriptions).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsSingleton, TaggedOutput
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from pipelines import bpe, dedup, langid, memory, pack, packed, pii, quality, readers, shards
from pipelines.config import BuildConfig
from pipelines.transit import CheckedCoGroupByKey, CheckedDistinct, CheckedGroupByKey

Doc = dict[str, Any]

# ------------------------------------------------------------------------------------ reading


def _open_raw(path: str):
    # Decompression is ours (readers.py), so the checksum covers the bytes actually on disk.
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


# The text stages run a batch of documents at a time, each stage over the whole batch before the next.
# Run one document at a time through all of them, each stage's working set (fastText's model above all)
# is evicted from the CPU cache by the others: on the benchmark corpus the same work took 2.06 ms per
# document interleaved and 1.51 ms in batches of 16 or more (docs/benchmarks.md).
TEXT_BATCH = 64


class PlanReads(beam.DoFn):
    """An input file → its read units keyed for distribution (main); for a file cut in byte ranges,
    also its digest (tagged), which the planning pass computed."""

    def process(self, path: str) -> Iterator[Any]:
        units, digest = readers.plan_reads(path, _open_raw)
        if digest is not None:
            yield TaggedOutput("inputs", vars(digest))
        for unit in units:
            yield (unit.path, unit.start), unit


class ReadUnits(beam.DoFn):
    """Read units → batches of up to TEXT_BATCH consecutive documents (main), dead letters and the
    unit's digest (tagged)."""

    def __init__(self, config: readers.InputConfig):
        self.config = config

    def process(self, unit: readers.ReadUnit) -> Iterator[Any]:
        digest = readers.FileDigest(unit.path)
        batch: list[Doc] = []
        for item in readers.read_unit(unit, _open_raw, self.config, digest):
            if isinstance(item, readers.Record):
                batch.append({"id": item.id, "text": item.text, "source": item.source, "position": item.position})
                if len(batch) == TEXT_BATCH:
                    yield batch
                    batch = []
            else:
                yield TaggedOutput("dead_letter", {"source": item.source, "position": item.position,
                                                   "error": item.error, "raw": item.raw})
        if batch:
            yield batch
        yield TaggedOutput("inputs", vars(digest))


class ReadInputs(beam.PTransform):
    """Input paths → (batches of documents over all workers, dead letters, per-unit file digests).

    Plain JSONL files are cut into byte ranges that the workers read side by side, and their batches
    stay on the worker that read them, fused with the text stages. Any other file is read whole by one
    worker; with ``spread`` the batches then cross a shuffle to reach every worker (it costs a trip of
    every document through the runner, so it is only asked for when some input cannot be cut).
    """

    def __init__(self, config: readers.InputConfig, spread: bool):
        super().__init__()
        self.config, self.spread = config, spread

    def expand(self, paths: beam.PCollection):
        planned = paths | "Plan" >> beam.ParDo(PlanReads()).with_outputs("inputs", main="units")
        read = (
            planned.units
            | "Distribute" >> CheckedGroupByKey("read/units")
            | "Units" >> beam.FlatMap(lambda keyed: keyed[1])
            | "Parse" >> beam.ParDo(ReadUnits(self.config)).with_outputs("dead_letter", "inputs", main="batches")
        )
        batches = read.batches | "Spread" >> Spread() if self.spread else read.batches
        digests = (planned.inputs, read.inputs) | "Digests" >> beam.Flatten()
        return batches, read.dead_letter, digests


class Spread(beam.PTransform):
    """Batches of documents made on one worker → the same batches spread over all workers.

    Each batch is packed in transit (see pipelines/packed.py) and the shuffle is checked (transit.py).
    """

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        return (
            batches
            | "Pack" >> beam.Map(lambda batch: ((batch[0]["source"], batch[0]["position"]), packed.pack(batch)))
            | "Group" >> CheckedGroupByKey("spread")
            | "Unpack" >> beam.FlatMap(lambda keyed: [packed.unpack(blob) for blob in keyed[1]])
        )


# ------------------------------------------------------------------------------------ text stages


class DocStage:
    """A stage's per-document step: annotate ``doc`` in place, return a drop reason or None."""

    name = ""

    def setup(self) -> None:
        pass

    def apply(self, doc: Doc) -> str | None:
        raise NotImplementedError


class InputCheck(DocStage):
    name = "input"

    def __init__(self, config: readers.InputConfig):
        self.config = config

    def apply(self, doc: Doc) -> str | None:
        return readers.input_reason(doc["text"], self.config)


class LangIdStage(DocStage):
    name = "langid"

    def __init__(self, config: langid.LangIdConfig):
        self.config = config
        self.identifier = langid.LanguageIdentifier(config)

    def setup(self) -> None:
        self.identifier.load()

    def apply(self, doc: Doc) -> str | None:
        doc["lang"], doc["lang_score"] = self.identifier.predict(doc["text"])
        return langid.langid_reason(doc["lang"], doc["lang_score"], self.config)


class QualityStage(DocStage):
    name = "quality"

    def __init__(self, config: quality.QualityConfig):
        self.config = config
        self.classifier = quality.QualityClassifier(config.classifier_model) if config.classifier_model else None

    def setup(self) -> None:
        if self.classifier is not None:
            self.classifier.load()

    def apply(self, doc: Doc) -> str | None:
        signals = quality.quality_signals(doc["text"], doc.get("lang"), self.classifier)
        doc.update(signals)
        doc["quality_score"] = quality.quality_score(signals)
        return quality.quality_reason(signals, doc.get("lang"), self.config)


class PiiStage(DocStage):
    name = "pii"

    def __init__(self, config: pii.PiiConfig):
        self.config = config

    def apply(self, doc: Doc) -> str | None:
        doc["text"], counts = pii.scrub_pii(doc["text"], self.config)
        for kind, count in counts.items():
            doc[f"pii_{kind}"] = count
        return None


def apply_stages(stages: list[DocStage], docs: list[Doc]) -> tuple[list[Doc], list[Doc]]:
    """Runs each stage over all surviving documents before the next stage; returns (kept, rejected).

    The documents are copied first (Beam elements are immutable by contract); a rejected document
    carries the ``stage`` and ``reason`` that dropped it.
    """
    kept, rejected = [dict(doc) for doc in docs], []
    for stage in stages:
        survivors = []
        for doc in kept:
            reason = stage.apply(doc)
            if reason is None:
                survivors.append(doc)
            else:
                doc["stage"], doc["reason"] = stage.name, reason
                rejected.append(doc)
        kept = survivors
    return kept, rejected


class ReleasingDoFn(beam.DoFn):
    """A DoFn that allocates a lot per bundle and hands the freed memory back when the bundle ends."""

    def finish_bundle(self) -> None:
        memory.release_free_memory()


class ApplyStages(ReleasingDoFn):
    """Batches of documents → kept documents (main) and rejected ones (tagged), one at a time."""

    def __init__(self, stages: list[DocStage]):
        self.stages = stages

    def setup(self) -> None:
        for stage in self.stages:
            stage.setup()

    def process(self, batch: list[Doc]) -> Iterator[Any]:
        kept, rejected = apply_stages(self.stages, batch)
        yield from kept
        for doc in rejected:
            yield TaggedOutput("rejected", doc)


class ApplyStage(ApplyStages):
    """One stage over single documents."""

    def __init__(self, stage: DocStage):
        super().__init__([stage])

    def process(self, doc: Doc) -> Iterator[Any]:
        return super().process([doc])


def run_stages(batches: beam.PCollection, stages: list[DocStage]) -> tuple[beam.PCollection, beam.PCollection]:
    """Batches of documents through ``stages`` (see TEXT_BATCH) → (kept, rejected) documents."""
    label = f"Stages[{','.join(stage.name for stage in stages)}]"
    out = batches | label >> beam.ParDo(ApplyStages(stages)).with_outputs("rejected", main="kept")
    return out.kept, out.rejected


def run_stage(docs: beam.PCollection, stage: DocStage) -> tuple[beam.PCollection, beam.PCollection]:
    out = docs | f"Stage[{stage.name}]" >> beam.ParDo(ApplyStage(stage)).with_outputs("rejected", main="kept")
    return out.kept, out.rejected


# ------------------------------------------------------------------------------------ dedup


class DedupKeys(beam.DoFn):
    """Per document: its signature (main) and its (score, exact key), each with the document's place in
    the input (see :func:`_first_copy`); per bundle: its documents' LSH and exact bucket entries, one list
    per bucket group (tagged ``bucket``).

    A document has 21 bucket entries; emitted one by one they were ~1.3 million records at 100k
    documents, each handled by Beam in the worker and decoded and re-encoded by the runner. Gathered per
    bundle and bucket group they are at most ``dedup.BUCKET_GROUPS`` records per bundle. A bundle
    is a worker's whole share of the stage here, so the gathered entries leave whenever
    ``HELD_ENTRIES`` of them (~80 MB) are held: memory stays bounded however large the input.
    """

    HELD_ENTRIES = 1 << 20

    def __init__(self, config: dedup.DedupConfig):
        self.config = config
        self.signer = dedup.Signer(config)

    def start_bundle(self) -> None:
        self.buckets: dict[int, list[bytes]] = defaultdict(list)
        self.held = 0

    def _gathered(self) -> list[tuple[int, list[bytes]]]:
        gathered, self.buckets, self.held = list(self.buckets.items()), defaultdict(list), 0
        return gathered

    def process(self, doc: Doc) -> Iterator[Any]:
        doc_id = doc["id"]
        place = (doc["source"], doc["position"])
        normalized = dedup.normalize(doc["text"])
        exact = dedup.normalized_key(normalized)
        yield TaggedOutput("member", (doc_id, (place, float(doc.get("quality_score") or 0.0), exact)))
        keys = [b"x" + exact.encode()] if self.config.exact else []
        if self.config.near:
            signature = self.signer.signature_of_normalized(normalized)
            yield (doc_id, (place, dedup.signature_bytes(signature)))
            keys += [b"b" + key for key in dedup.band_keys(signature, self.config.bands, self.config.rows)]
        for key in keys:
            self.buckets[dedup.bucket_group(key)].append(dedup.bucket_entry(key, doc_id))
        self.held += len(keys)
        if self.held >= self.HELD_ENTRIES:
            for group_entries in self._gathered():
                yield TaggedOutput("bucket", group_entries)

    def finish_bundle(self) -> Iterator[TaggedOutput]:
        for group_entries in self._gathered():
            yield TaggedOutput("bucket", GlobalWindows.windowed_value(group_entries))


def _first_copy(values: Iterable[tuple]) -> tuple:
    """Of the values the copies of one id sent, the first copy's (by source, then position), less its place.

    Ids should be unique, but when they are not, the first copy is the one that stands for the id in the
    clustering and is kept if its cluster keeps it; the others are rejected as ``duplicate_id``
    (:func:`_apply_cluster`). Taking whichever copy's value arrived first made the result depend on the
    runner's order, and let a later copy's text cluster the first one away.
    """
    return min(values)[1:]


def _pair_with_first_signature(item: tuple[str, dict[str, list]]) -> Iterator[tuple[str, tuple]]:
    doc_id, groups = item
    if groups["sig"]:
        (signature,) = _first_copy(groups["sig"])
        for other in groups["edge"]:
            yield other, (doc_id, signature)


def _verified(threshold: float) -> Callable[[tuple[str, dict[str, list]]], Iterator[tuple[str, str]]]:
    def verify(item: tuple[str, dict[str, list]]) -> Iterator[tuple[str, str]]:
        doc_id, groups = item
        if not groups["sig"]:
            return
        signature = dedup.signature_from_bytes(*_first_copy(groups["sig"]))
        for other, other_signature in groups["edge"]:
            if dedup.estimated_jaccard(signature, dedup.signature_from_bytes(other_signature)) >= threshold:
                yield other, doc_id

    return verify


def _both_ways(edge: tuple[str, str]) -> Iterator[tuple[str, str]]:
    yield edge
    yield edge[1], edge[0]


def _larger_first(edge: tuple[str, str]) -> tuple[str, str]:
    return (edge[0], edge[1]) if edge[0] > edge[1] else (edge[1], edge[0])


class ConnectedComponents(beam.PTransform):
    """Edges (a, b) → (node, smallest node of its component) for every node on an edge.

    Each step reads its groups as sets, so duplicate edges need no Distinct between steps (one shuffle
    per step instead of two): a step emits at most one edge per distinct edge it received, so copies
    never accumulate from round to round.
    """

    def __init__(self, rounds: int):
        super().__init__()
        self.rounds = rounds

    def expand(self, edges: beam.PCollection) -> beam.PCollection:
        for r in range(self.rounds):
            edges = (
                edges
                | f"LargeStarEmit{r}" >> beam.FlatMap(_both_ways)
                | f"LargeStarGroup{r}" >> CheckedGroupByKey(f"dedup/large-star-{r}")
                | f"LargeStar{r}" >> beam.FlatMap(lambda kv: dedup.large_star(kv[0], kv[1]))
                | f"SmallStarEmit{r}" >> beam.Map(_larger_first)
                | f"SmallStarGroup{r}" >> CheckedGroupByKey(f"dedup/small-star-{r}")
                | f"SmallStar{r}" >> beam.FlatMap(lambda kv: dedup.small_star(kv[0], kv[1]))
            )
        # In a converged star forest every edge is (leaf, root); min() settles any stragglers safely.
        return (
            edges
            | "Leaf" >> beam.Map(_larger_first)
            | "GroupRoots" >> CheckedGroupByKey("dedup/roots")
            | "Root" >> beam.MapTuple(lambda leaf, roots: (leaf, min(roots)))
        )


Member = tuple[float, str, str]  # (quality score, id, exact key)


def _with_roots(item: tuple[str, dict[str, list]]) -> Iterator[tuple[str, Member]]:
    doc_id, groups = item
    roots = groups["root"]
    if not groups["info"]:
        return
    score, exact = _first_copy(groups["info"])
    if roots and groups["is_root"]:
        # Both a leaf and a root: the component did not converge within cc_rounds.
        yield TaggedOutput("unconverged", (("dedup", "cc_unconverged", ""), 1))
    if roots or groups["is_root"]:
        yield (roots[0] if roots else doc_id), (score, doc_id, exact)


def _cluster_decisions(exact_only: bool) -> Callable[[tuple[str, Iterable[Member]]], Iterator[tuple[str, dict]]]:
    def decide(item: tuple[str, Iterable[Member]]) -> Iterator[tuple[str, dict]]:
        root, members = item
        members = sorted(set(members), key=lambda m: m[1])
        if not exact_only:
            yield from _decisions(root, members)
            return
        # No signature verifies exact-only edges, and a later copy of an id links the id to its own
        # exact key: a cluster is the members that share one (as it always is when ids are unique).
        classes: dict[str, list[Member]] = defaultdict(list)
        for member in members:
            classes[member[2]].append(member)
        for same in classes.values():
            yield from _decisions(same[0][1], same)

    return decide


def _decisions(root: str, members: list[Member]) -> Iterator[tuple[str, dict]]:
    """One cluster's members, by id → each one's decision."""
    keeper = dedup.choose_keeper([(score, doc_id) for score, doc_id, _ in members])
    keeper_exact = next(exact for _, doc_id, exact in members if doc_id == keeper)
    for _, doc_id, exact in members:
        reason = None
        if doc_id != keeper:
            reason = "exact_duplicate" if exact == keeper_exact else "near_duplicate"
        yield doc_id, {"dup_cluster": root, "dup_cluster_size": len(members), "reason": reason}


def _apply_cluster(item: tuple[str, dict[str, list]]) -> Iterator[Any]:
    doc_id, groups = item
    decision = groups["cluster"][0] if groups["cluster"] else None
    # Input ids should be unique; if they are not, every copy is still accounted for (see _first_copy).
    docs = sorted(map(packed.unpack, groups["doc"]), key=lambda d: (d["source"], d["position"]))
    for copy_index, doc in enumerate(docs):
        doc["dup_cluster"] = decision["dup_cluster"] if decision else doc_id
        doc["dup_cluster_size"] = decision["dup_cluster_size"] if decision else 1
        reason = "duplicate_id" if copy_index else (decision["reason"] if decision else None)
        if reason is None:
            yield doc
        else:
            doc["stage"], doc["reason"] = "dedup", reason
            yield TaggedOutput("rejected", doc)


class Deduplicate(beam.PTransform):
    """Exact and near-duplicate clustering; keeps one document per cluster."""

    def __init__(self, config: dedup.DedupConfig):
        super().__init__()
        self.config = config

    def expand(self, docs: beam.PCollection):
        cfg = self.config
        keys = docs | "DedupKeys" >> beam.ParDo(DedupKeys(cfg)).with_outputs("bucket", "member", main="sig")
        edges = (
            keys.bucket
            | "GroupBuckets" >> CheckedGroupByKey("dedup/buckets")
            | "StarEdges" >> beam.FlatMap(lambda kv: dedup.grouped_star_edges(itertools.chain.from_iterable(kv[1])))
            | "DistinctEdges" >> CheckedDistinct("dedup/candidate-edges")
        )
        if cfg.near:
            # Verify candidates with both signatures: two keyed joins, no worker sees more than one
            # document's signature per edge.
            with_first = (
                {"edge": edges, "sig": keys.sig}
                | "JoinFirstSig" >> CheckedCoGroupByKey("dedup/first-signature")
                | "PairFirst" >> beam.FlatMap(_pair_with_first_signature)
            )
            edges = (
                {"edge": with_first, "sig": keys.sig}
                | "JoinSecondSig" >> CheckedCoGroupByKey("dedup/second-signature")
                | "Verify" >> beam.FlatMap(_verified(cfg.threshold))
            )
        roots = edges | "Components" >> ConnectedComponents(cfg.cc_rounds)
        is_root = (
            roots
            | "RootIds" >> beam.Map(lambda kv: (kv[1], True))
            | "DistinctRoots" >> CheckedDistinct("dedup/root-ids")
        )
        members = (
            {"root": roots, "is_root": is_root, "info": keys.member}
            | "JoinMembers" >> CheckedCoGroupByKey("dedup/members")
            | "ByCluster" >> beam.FlatMap(_with_roots).with_outputs("unconverged", main="members")
        )
        decisions = (
            members.members
            | "GroupClusters" >> CheckedGroupByKey("dedup/clusters")
            | "Decide" >> beam.FlatMap(_cluster_decisions(exact_only=not cfg.near))
        )
        out = (
            {"doc": docs | "KeyDocs" >> beam.Map(lambda d: (d["id"], packed.pack(d))), "cluster": decisions}
            | "JoinDocs" >> CheckedCoGroupByKey("dedup/documents")
            | "ApplyClusters" >> beam.FlatMap(_apply_cluster).with_outputs("rejected", main="kept")
        )
        return out.kept, out.rejected, members.unconverged


# ------------------------------------------------------------------------------------ tokenize, pack


def _train_tokenizer(sample: list[tuple[bytes, bytes]], config: bpe.TokenizerConfig) -> str:
    texts = [packed.unpack(text) for _, text in sorted(sample)]
    payload = bpe.train_bpe(texts, config.vocab_size, config.min_frequency).to_str()
    memory.release_free_memory()  # the trainer's counts
    return payload


def tokenizer_json(kept: beam.PCollection, config: bpe.TokenizerConfig, pipeline: beam.Pipeline, seed: int):
    if config.path:
        with FileSystems.open(config.path) as handle:
            payload = handle.read().decode("utf-8")
        bpe.tokenizer_from_json(payload)  # fail at graph construction, not in a worker
        return pipeline | "Tokenizer" >> beam.Create([payload])
    chars = config.sample_chars_per_doc
    return (
        kept
        # Packed: every bundle's smallest keys cross the runner with their text (up to sample_docs each).
        | "SampleKey" >> beam.Map(lambda d: (bpe.sample_key(d["id"], seed), packed.pack(d["text"][:chars])))
        | "Sample" >> beam.combiners.Top.Smallest(config.sample_docs)
        | "TrainBPE" >> beam.Map(_train_tokenizer, config)
    )


class Encode(ReleasingDoFn):
    """Batches of packed documents → documents with ``n_tokens`` (main) and (id, packed token ids)
    (tagged, see :func:`packed.pack_ids`)."""

    def __init__(self):
        self._payload_hash = None
        self._tokenizer = None
        self._dtype = np.uint32

    def process(self, packed_batch: list[bytes], payload: str) -> Iterator[Any]:
        batch = [packed.unpack(blob) for blob in packed_batch]
        digest = hashlib.sha256(payload.encode()).digest()
        if digest != self._payload_hash:
            self._tokenizer, self._payload_hash = bpe.tokenizer_from_json(payload), digest
            # Ids travel to the shard writers as uint16 when the vocabulary allows (shards store uint32).
            self._dtype = np.uint16 if self._tokenizer.get_vocab_size() <= 1 << 16 else np.uint32
        encodings = self._tokenizer.encode_batch_fast([d["text"] for d in batch], add_special_tokens=False)
        for doc, encoding in zip(batch, encodings, strict=True):
            ids = np.asarray(encoding.ids, dtype=self._dtype)
            doc["n_tokens"] = int(ids.size)  # the dict was unpacked just above: ours to annotate
            yield doc
            yield TaggedOutput("tokens", (doc["id"], packed.pack_ids(ids)))


def tokenizer_meta(payload: str) -> dict[str, Any]:
    tokenizer = bpe.tokenizer_from_json(payload)
    return {
        "sha256": bpe.tokenizer_sha256(payload),
        "vocab_size": tokenizer.get_vocab_size(),
        "eos_id": tokenizer.token_to_id(bpe.EOS),
        "pad_id": tokenizer.token_to_id(bpe.PAD),
    }


class WriteShard(ReleasingDoFn):
    def __init__(self, shard_dir: str, config: pack.PackConfig):
        self.shard_dir = shard_dir
        self.config = config

    def process(self, item: tuple[int, Iterable[tuple[str, bytes]]], meta: dict, n_shards: int):
        bucket, docs = item
        # The tokens settle the order of documents with the same id, which is otherwise the grouping's.
        ordered = [(doc_id, packed.unpack_ids(ids))
                   for doc_id, ids in sorted(docs, key=lambda d: (pack.order_key(d[0]), d[1]))]
        packer = pack.pack_best_fit if self.config.best_fit else pack.pack_greedy
        rows = packer(ordered, self.config.seq_len, meta["eos_id"], meta["pad_id"])
        schema = shards.shard_schema(self.config.seq_len, meta["eos_id"], meta["pad_id"], meta["sha256"])
        payload = shards.encode_shard(rows, schema)
        name = f"shard-{bucket:05d}-of-{n_shards:05d}.arrow"
        _write_bytes(posixpath.join(self.shard_dir, name), payload)
        yield {"path": f"shards/{name}", "sha256": hashlib.sha256(payload).hexdigest(), "rows": len(rows),
               "tokens": sum(r.n_tokens for r in rows), "documents": len(ordered)}


def pack_shards(tokens: beam.PCollection, meta, staging: str, config: pack.PackConfig) -> beam.PCollection:
    n_shards = (
        tokens
        | "TokensWithEos" >> beam.Map(lambda kv: packed.ids_count(kv[1]) + 1)
        | "TotalTokens" >> beam.CombineGlobally(sum).without_defaults()  # no tokens: no shards to assign
        | "ShardCount" >> beam.Map(pack.shard_count, config)
    )
    return (
        tokens
        | "AssignShard" >> beam.Map(lambda kv, n: (pack.bucket_of(kv[0], n), kv), AsSingleton(n_shards))
        | "GroupShard" >> CheckedGroupByKey("pack/shards")
        | "WriteShards" >> beam.ParDo(WriteShard(posixpath.join(staging, "shards"), config),
                                      AsSingleton(meta), AsSingleton(n_shards))
    )


# ------------------------------------------------------------------------------------ writers


def _write_bytes(path: str, payload: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(payload)


class WriteText(beam.DoFn):
    def __init__(self, path: str):
        self.path = path

    def process(self, payload: str) -> Iterator[str]:
        _write_bytes(self.path, payload.encode("utf-8"))
        yield self.path


class WriteJson(beam.DoFn):
    """Writes one small, bounded list (statistics, digests) as sorted JSON."""

    def __init__(self, path: str):
        self.path = path

    def process(self, items: list) -> Iterator[str]:
        _write_bytes(self.path, json.dumps(sorted(items, key=json.dumps), indent=1).encode("utf-8"))
        yield self.path


ROW_GROUP_ROWS = 4096  # a writer holds one row group of documents as Python objects, not a whole file


def parquet_bytes(rows: Iterable[dict], schema: pa.Schema) -> bytes:
    sink = io.BytesIO()
    rows = iter(rows)
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        while chunk := list(itertools.islice(rows, ROW_GROUP_ROWS)):
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    return sink.getvalue()


RowOrder = tuple[str, str, int]


def _row_order(row: dict) -> RowOrder:
    return row.get("id", ""), row.get("source", ""), row.get("position", 0)


def _file_key(order: RowOrder) -> str:
    """What assigns a row to its file: stable across runs, workers and input order."""
    return "\0".join(map(str, order))


FileKey = tuple[str, int, int]  # (table, file index, number of the table's files)


class WriteParquetGroup(ReleasingDoFn):
    """One file's rows → ``<root>/<table>/part-<index>-of-<files>.parquet``, in the table's schema."""

    def __init__(self, root: str, schemas: dict[str, pa.Schema]):
        self.root = root
        self.schemas = schemas

    def process(self, item: tuple[FileKey, Iterable[tuple[RowOrder, bytes]]]) -> Iterator[str]:
        (table, index, n_files), rows = item
        # Sorted while packed; each row is unpacked only when its row group is written.
        ordered = (packed.unpack(blob) for _, blob in sorted(rows))
        path = posixpath.join(self.root, table, f"part-{index:05d}-of-{n_files:05d}.parquet")
        _write_bytes(path, parquet_bytes(ordered, self.schemas[table]))
        yield path


Statistic = tuple[tuple[str, str, str], int]  # (stage, name, bucket) → count


class SumPerBundle(beam.DoFn):
    """Elements → the sums of their (key, count) statistics per key, once per bundle, where the elements
    are made (a number per key and bundle crosses the runner, not one per element)."""

    def __init__(self, statistics: Callable[[Any], Iterable[tuple[Any, int]]]):
        self.statistics = statistics

    def start_bundle(self) -> None:
        self.sums: dict[Any, int] = defaultdict(int)

    def process(self, element: Any) -> None:
        for key, count in self.statistics(element):
            self.sums[key] += count

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for key, count in self.sums.items():
            yield GlobalWindows.windowed_value((key, count))


def _as_tuple(pcolls: beam.PCollection | tuple[beam.PCollection, ...]) -> tuple[beam.PCollection, ...]:
    return (pcolls,) if isinstance(pcolls, beam.PCollection) else pcolls


def _once(_: Any) -> Iterator[tuple[None, int]]:
    yield None, 1


class CountRows(beam.PTransform):
    """A PCollection, or a tuple of them → one element, how many elements they hold (nothing when none).

    Counted per bundle in the stages that make the elements, then summed: a count that waits for nothing
    but the elements themselves, so a consumer that takes it as a side input can run in a later stage.
    """

    def __init__(self, edge: str):
        super().__init__()
        self.edge = edge

    def expand(self, pcolls: beam.PCollection | tuple[beam.PCollection, ...]) -> beam.PCollection:
        counts = tuple(pcoll | f"Count[{i}]" >> beam.ParDo(SumPerBundle(_once))
                       for i, pcoll in enumerate(_as_tuple(pcolls)))
        return (
            counts
            | "Group" >> CheckedGroupByKey(self.edge)
            | "Sum" >> beam.MapTuple(lambda _, counts: sum(counts))
        )


def _assign_file(keyed: tuple[RowOrder, bytes], table: str, n_files: int) -> tuple[FileKey, tuple[RowOrder, bytes]]:
    return (table, pack.bucket_of(_file_key(keyed[0]), n_files), n_files), keyed


class AssignParquetFiles(beam.PTransform):
    """Rows of one table → (file key, packed row) for :class:`WriteParquetFiles`: hash-assigned to files.

    The rows are one PCollection or a tuple of them, each packed where it is made; so is the result. The
    file count follows from the number of rows: by default counted here, which holds the packed rows in
    the runner until all are counted; a ``row_count`` computed upstream of the rows (:class:`CountRows`
    of a PCollection with as many elements) lets the file assignment run in the stage that makes them.
    """

    def __init__(self, table: str, rows_per_file: int, row_count: beam.PCollection | None = None):
        super().__init__()
        self.table, self.rows_per_file, self.row_count = table, rows_per_file, row_count

    def expand(self, rows: beam.PCollection | tuple[beam.PCollection, ...]) -> tuple[beam.PCollection, ...]:
        per_file = self.rows_per_file
        keyed = tuple(pcoll | f"Pack[{i}]" >> beam.Map(lambda row: (_row_order(row), packed.pack(row)))
                      for i, pcoll in enumerate(_as_tuple(rows)))
        row_count = self.row_count
        if row_count is None:
            row_count = keyed | "Count" >> CountRows(f"count/{self.table}")
        n_files = row_count | "Files" >> beam.Map(lambda n: math.ceil(n / per_file))
        return tuple(rows | f"AssignFile[{i}]" >> beam.Map(_assign_file, self.table, AsSingleton(n_files))
                     for i, rows in enumerate(keyed))


class WriteParquetFiles(beam.PTransform):
    """Assigned rows of any number of tables (:class:`AssignParquetFiles`) → deterministic Parquet files,
    ``<root>/<table>/part-*.parquet``, sorted inside each file.

    Every table's files are written in one stage, dealt over the workers: written table by table, a build
    whose tables fit in one file each wrote them one after another on one worker while the other waited.
    """

    def __init__(self, root: str, schemas: dict[str, pa.Schema]):
        super().__init__()
        self.root, self.schemas = root, schemas

    def expand(self, assigned: beam.PCollection | tuple[beam.PCollection, ...]) -> beam.PCollection:
        return (
            assigned
            | "GroupFile" >> CheckedGroupByKey("write/files")
            | "Write" >> beam.ParDo(WriteParquetGroup(self.root, self.schemas))
        )


# ------------------------------------------------------------------------------------ statistics


def parsed_statistics(batch: list[Doc]) -> Iterator[Statistic]:
    yield ("read", "parsed", ""), len(batch)


def _log2_bucket(value: float) -> str:
    return "0" if value <= 0 else str(2 ** int(math.log2(value)))


def kept_statistics(doc: Doc) -> Iterator[Statistic]:
    """Distribution rows for one kept document: (stage, name, bucket) → count."""
    yield ("output", "kept", ""), 1
    if "lang" in doc:
        yield ("langid", "lang", doc["lang"]), 1
    if "quality_score" in doc:
        yield ("quality", "quality_score", f"{min(9, int(doc['quality_score'] * 10)) / 10:.1f}"), 1
        yield ("quality", "words", _log2_bucket(doc.get("q_word_count", 0))), 1
    if "dup_cluster_size" in doc:
        yield ("dedup", "cluster_size", str(doc["dup_cluster_size"])), 1
    for kind in pii.PII_TYPES:
        found = doc.get(f"pii_{kind}")
        if found:
            yield ("pii", "replaced", kind), found
            yield ("pii", "docs_with", kind), 1
    if "n_tokens" in doc:
        yield ("tokenize", "tokens_per_doc", _log2_bucket(doc["n_tokens"])), 1
        yield ("tokenize", "tokens", ""), doc["n_tokens"]


def rejected_statistics(doc: Doc) -> Iterator[Statistic]:
    yield (doc["stage"], "rejected", doc["reason"]), 1
    if "lang" in doc:
        yield ("langid", "rejected_lang", doc["lang"]), 1


def dead_letter_statistics(row: dict) -> Iterator[Statistic]:
    # The error kind without its specifics (byte offsets, columns) so counts group.
    yield ("read", "dead_letter", row["error"].split(" at ")[0].split(":")[0]), 1


def document_columns(config: BuildConfig) -> list[pa.Field]:
    fields = [pa.field("id", pa.string()), pa.field("text", pa.string()), pa.field("source", pa.string()),
              pa.field("position", pa.int64())]
    if "langid" in config.stages:
        fields += [pa.field("lang", pa.string()), pa.field("lang_score", pa.float64())]
    if "quality" in config.stages:
        fields += [pa.field(name, pa.float64()) for name in quality.QUALITY_SIGNALS]
        fields += [pa.field("quality_score", pa.float64())]
    if "dedup" in config.stages:
        fields += [pa.field("dup_cluster", pa.string()), pa.field("dup_cluster_size", pa.int64())]
    if "pii" in config.stages:
        fields += [pa.field(f"pii_{kind}", pa.int64()) for kind in pii.PII_TYPES]
    if "tokenize" in config.stages:
        fields += [pa.field("n_tokens", pa.int64())]
    return fields


DEAD_LETTER_SCHEMA = pa.schema([pa.field("source", pa.string()), pa.field("position", pa.int64()),
                                pa.field("error", pa.string()), pa.field("raw", pa.binary())])


def docs_schema(config: BuildConfig) -> pa.Schema:
    return pa.schema(document_columns(config))


def rejected_schema(config: BuildConfig) -> pa.Schema:
    return pa.schema(document_columns(config) + [pa.field("stage", pa.string()), pa.field("reason", pa.string())])
