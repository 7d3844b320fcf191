"""The Beam wrappers under TestPipeline, on hand-made documents."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.windowed_value import WindowedValue

from pipelines import dedup, readers
from pipelines import transforms as T
from pipelines.dedup import DedupConfig
from pipelines.readers import InputConfig

BASE = ("Rivers carve valleys over thousands of years while farmers along their banks plant barley "
        "and beans in spring, harvest in autumn, and trade the surplus in market towns downstream. ") * 6


def _doc(doc_id: str, text: str, score: float = 0.5) -> dict:
    return {"id": doc_id, "text": text, "source": "t", "position": 0, "quality_score": score}


def test_run_stage_routes_rejections() -> None:
    docs = [_doc("a", "fine text"), _doc("b", "  "), _doc("c", "nul\x00byte")]
    with TestPipeline() as p:
        kept, rejected = T.run_stage(p | beam.Create(docs), T.InputCheck(InputConfig()))
        assert_that(kept | "KeptIds" >> beam.Map(lambda d: d["id"]), equal_to(["a"]), label="kept")
        assert_that(rejected | "Reasons" >> beam.Map(lambda d: (d["id"], d["stage"], d["reason"])),
                    equal_to([("b", "input", "empty"), ("c", "input", "nul_bytes")]), label="rejected")


class _Recording(T.DocStage):
    """Drops the documents whose id is in ``drop`` and records the order it saw documents in."""

    def __init__(self, name: str, drop: set[str], calls: list[tuple[str, str]]):
        self.name, self.drop, self.calls = name, drop, calls

    def apply(self, doc: dict) -> str | None:
        self.calls.append((self.name, doc["id"]))
        doc[f"seen_by_{self.name}"] = True
        return "unwanted" if doc["id"] in self.drop else None


def test_apply_stages_runs_each_stage_over_the_batch_before_the_next() -> None:
    calls: list[tuple[str, str]] = []
    stages = [_Recording("first", {"b"}, calls), _Recording("second", {"c"}, calls)]
    docs = [_doc("a", "x"), _doc("b", "x"), _doc("c", "x"), _doc("d", "x")]
    kept, rejected = T.apply_stages(stages, docs)
    assert calls == [("first", "a"), ("first", "b"), ("first", "c"), ("first", "d"),
                     ("second", "a"), ("second", "c"), ("second", "d")]
    assert [d["id"] for d in kept] == ["a", "d"]
    assert [(d["id"], d["stage"], d["reason"]) for d in rejected] == [("b", "first", "unwanted"),
                                                                       ("c", "second", "unwanted")]
    assert kept[0]["seen_by_second"] and "seen_by_second" not in rejected[0]
    assert all(set(d) == {"id", "text", "source", "position", "quality_score"} for d in docs)  # inputs untouched


def test_spread_moves_every_batch_once_unchanged() -> None:
    docs = [{**_doc(f"d{i:04d}", f"text {i}"), "source": f"file{i % 2}", "position": i // 2 + 1}
            for i in range(T.TEXT_BATCH * 40 + 3)]
    batches = [docs[i : i + T.TEXT_BATCH] for i in range(0, len(docs), T.TEXT_BATCH)]
    with TestPipeline() as p:
        spread = p | beam.Create(batches) | T.Spread()
        assert_that(spread | "Ids" >> beam.Map(lambda batch: tuple(d["id"] for d in batch)),
                    equal_to([tuple(d["id"] for d in batch) for batch in batches]))


def _open_binary(path: str):
    return open(path, "rb")


def _jsonl_with_a_broken_line(path: Path, n: int) -> list[str]:
    lines = [json.dumps({"id": f"doc-{i:05d}", "text": f"document {i} " + "filler " * 60}) for i in range(n)]
    lines[n // 2] = '{"id": "broken", "text": '
    path.write_bytes(("\n".join(lines) + "\n").encode())
    return [f"doc-{i:05d}" for i in range(n) if i != n // 2]


@pytest.mark.parametrize("name,spread", [("plain.jsonl", False), ("plain.jsonl", True), ("packed.jsonl.gz", True)])
def test_read_inputs_gives_every_document_once_in_bounded_batches(tmp_path: Path, name: str, spread: bool) -> None:
    plain = tmp_path / "plain.jsonl"
    ids = _jsonl_with_a_broken_line(plain, 2000)  # ~900 kB: planned in ~RANGES_PER_FILE ranges
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    whole = readers.FileDigest(str(path))
    list(readers.read_file(str(path), _open_binary, InputConfig(), whole))
    units, _ = readers.plan_reads(str(path), _open_binary)
    assert (len(units) == 1) == name.endswith(".gz")
    with TestPipeline() as p:
        batches, dead, digests = p | beam.Create([str(path)]) | T.ReadInputs(InputConfig(), spread)
        assert_that(batches | "Ids" >> beam.FlatMap(lambda batch: [d["id"] for d in batch]), equal_to(ids),
                    label="every document once")
        assert_that(batches | "Largest" >> beam.Map(len) | beam.CombineGlobally(max), equal_to([T.TEXT_BATCH]),
                    label="bounded batches")
        assert_that(dead | "Dead" >> beam.Map(lambda d: (d["position"], d["error"][:11])),
                    equal_to([(1001, "broken JSON")]), label="dead letter")
        assert_that(digests | beam.combiners.ToList() | beam.Map(readers.merge_digests), equal_to([[vars(whole)]]),
                    label="digest")


def test_run_stages_over_batches() -> None:
    batches = [[_doc("a", "fine text"), _doc("b", "  ")], [_doc("c", "nul\x00byte"), _doc("e", "more text")]]
    with TestPipeline() as p:
        kept, rejected = T.run_stages(p | beam.Create(batches), [T.InputCheck(InputConfig())])
        assert_that(kept | "KeptIds" >> beam.Map(lambda d: d["id"]), equal_to(["a", "e"]), label="kept")
        assert_that(rejected | "Reasons" >> beam.Map(lambda d: (d["id"], d["reason"])),
                    equal_to([("b", "empty"), ("c", "nul_bytes")]), label="rejected")


def test_deduplicate_clusters_and_keeps_best() -> None:
    near = BASE.replace("barley", "oats", 1)
    unrelated = ("Quantum computers use qubits that can hold superpositions, and error correction "
                 "codes protect fragile states from noise in the laboratory. ") * 6
    docs = [
        _doc("d3", BASE, score=0.4),
        _doc("d1", BASE.upper(), score=0.4),   # exact duplicate after normalisation
        _doc("d2", near, score=0.9),           # near duplicate with the best score: kept
        _doc("d9", unrelated),
    ]
    with TestPipeline() as p:
        kept, rejected, _ = p | beam.Create(docs) | T.Deduplicate(DedupConfig())
        assert_that(kept | "K" >> beam.Map(lambda d: (d["id"], d["dup_cluster"], d["dup_cluster_size"])),
                    equal_to([("d2", "d1", 3), ("d9", "d9", 1)]), label="kept")
        # d1 and d3 are exact copies of each other but only near copies of the keeper d2.
        assert_that(rejected | "R" >> beam.Map(lambda d: (d["id"], d["reason"], d["dup_cluster"])),
                    equal_to([("d1", "near_duplicate", "d1"), ("d3", "near_duplicate", "d1")]),
                    label="rejected")


def test_deduplicate_exact_only() -> None:
    docs = [_doc("b", BASE), _doc("a", BASE + "  "), _doc("c", BASE.replace("Rivers", "Glaciers"))]
    with TestPipeline() as p:
        kept, rejected, _ = p | beam.Create(docs) | T.Deduplicate(DedupConfig(near=False))
        assert_that(kept | "K" >> beam.Map(lambda d: d["id"]), equal_to(["a", "c"]), label="kept")
        assert_that(rejected | "R" >> beam.Map(lambda d: (d["id"], d["reason"])),
                    equal_to([("b", "exact_duplicate")]), label="rejected")


UNRELATED = ("Quantum computers use qubits that can hold superpositions, and error correction "
             "codes protect fragile states from noise in the laboratory. ") * 6


@pytest.mark.parametrize("near", [True, False], ids=["near", "exact-only"])
def test_deduplicate_lets_the_first_copy_of_a_repeated_id_stand_for_it(near: bool) -> None:
    # Two sources with overlapping ids: the later "x" has y's text. It must neither decide x's cluster
    # nor take y with it, whatever order the runner delivers the copies in.
    docs = [
        {**_doc("x", BASE), "source": "a.jsonl", "position": 7},
        {**_doc("x", UNRELATED), "source": "b.jsonl", "position": 1},
        {**_doc("y", UNRELATED), "source": "c.jsonl", "position": 1},
        {**_doc("z", BASE.upper()), "source": "c.jsonl", "position": 2},
    ]
    for order in (docs, docs[::-1]):
        with TestPipeline() as p:
            kept, rejected, _ = p | beam.Create(order) | T.Deduplicate(DedupConfig(near=near))
            assert_that(kept | "K" >> beam.Map(lambda d: (d["id"], d["source"], d["dup_cluster"])),
                        equal_to([("x", "a.jsonl", "x"), ("y", "c.jsonl", "y")]), label="kept")
            assert_that(rejected | "R" >> beam.Map(lambda d: (d["id"], d["source"], d["reason"])),
                        equal_to([("x", "b.jsonl", "duplicate_id"), ("z", "c.jsonl", "exact_duplicate")]),
                        label="rejected")


def test_shards_order_documents_with_one_id_by_their_tokens(tmp_path: Path) -> None:
    from pipelines import packed
    from pipelines.pack import PackConfig

    tokens = [("same", packed.pack_ids(np.array(ids, dtype=np.uint16))) for ids in ([5, 6], [3, 4, 5], [7])]
    tokens.append(("other", packed.pack_ids(np.array([9, 9], dtype=np.uint16))))
    meta = {"eos_id": 0, "pad_id": 1, "sha256": "0" * 64}
    payloads = []
    for order in (tokens, tokens[::-1], tokens[1:] + tokens[:1]):
        (info,) = T.WriteShard(str(tmp_path), PackConfig(seq_len=4)).process((0, order), meta, 1)
        payloads.append((tmp_path / info["path"].removeprefix("shards/")).read_bytes())
    assert payloads[0] == payloads[1] == payloads[2]


def test_connected_components_merges_chains() -> None:
    edges = [("a", "b"), ("b", "c"), ("c", "d"), ("x", "y"), ("d", "e")]
    with TestPipeline() as p:
        roots = p | beam.Create(edges) | T.ConnectedComponents(rounds=4)
        assert_that(roots, equal_to([("b", "a"), ("c", "a"), ("d", "a"), ("e", "a"), ("y", "x")]))


def _components(edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [(node, find(node)) for node in parent if find(node) != node]


def test_connected_components_match_union_find_with_duplicate_edges() -> None:
    rng = random.Random(3)
    nodes = [f"n{i:03d}" for i in range(80)]
    edges = [tuple(rng.sample(nodes, 2)) for _ in range(70)]
    edges += edges[:25] + [(b, a) for a, b in edges[25:45]]  # repeated, and repeated backwards
    rng.shuffle(edges)
    with TestPipeline() as p:
        roots = p | beam.Create(edges) | T.ConnectedComponents(rounds=6)
        assert_that(roots, equal_to(_components(edges)))


_WRITE_SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("source", pa.string()),
                           pa.field("position", pa.int64()), pa.field("value", pa.int64())])


def _write_tables(root: Path, tables: dict[str, list[list[dict]]], counted_upstream: bool) -> dict[str, bytes]:
    """Writes each table's rows (its parts, one PCollection each) with AssignParquetFiles and one
    WriteParquetFiles; the files' bytes by path under ``root``."""
    from pipelines import runner, transit

    pipeline = runner.make_pipeline(["--runner", "DirectRunner"])
    assigned: list[beam.PCollection] = []
    for table, parts in tables.items():
        sources = tuple(pipeline | f"{table}/Part{i}" >> beam.Create(rows) for i, rows in enumerate(parts))
        row_count = None
        if counted_upstream:
            row_count = (pipeline | f"{table}/All" >> beam.Create([row for rows in parts for row in rows])
                         | f"{table}/Count" >> T.CountRows(f"test/count/{table}"))
        rows = sources[0] if len(sources) == 1 else sources
        assigned += rows | f"{table}/Assign" >> T.AssignParquetFiles(table, 7, row_count)
    _ = tuple(assigned) | T.WriteParquetFiles(str(root), {table: _WRITE_SCHEMA for table in tables})
    result = pipeline.run()
    result.wait_until_finish()
    assert transit.problems(result, pipeline) == []
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*.parquet"))}


def test_parquet_files_are_the_same_however_their_rows_arrive(tmp_path: Path) -> None:
    rows = [{"id": f"d{i:02d}", "source": "s", "position": i, "value": i * i} for i in range(40)]
    random.Random(3).shuffle(rows)
    together = _write_tables(tmp_path / "one", {"t": [rows]}, counted_upstream=False)
    assert sorted(together) == [f"t/part-{i:05d}-of-00006.parquet" for i in range(6)]  # ceil(40 / 7)
    # Several sources written together (each packed and counted where it is made), and a count given
    # from upstream, give byte-identical files.
    three_parts = {"t": [rows[:5], rows[5:31], rows[31:]]}
    assert _write_tables(tmp_path / "three", three_parts, counted_upstream=False) == together
    assert _write_tables(tmp_path / "upstream", {"t": [rows[:5], rows[5:]]}, counted_upstream=True) == together
    written = [row for name in together for row in pq.read_table(tmp_path / "one" / name).to_pylist()]
    assert sorted(written, key=lambda row: row["id"]) == sorted(rows, key=lambda row: row["id"])


def test_tables_written_together_get_the_files_each_gets_alone(tmp_path: Path) -> None:
    rows = [{"id": f"d{i:02d}", "source": "s", "position": i, "value": i} for i in range(30)]
    other = [{"id": f"e{i:02d}", "source": "o", "position": i, "value": -i} for i in range(9)]
    alone = {**_write_tables(tmp_path / "a", {"t": [rows]}, counted_upstream=False),
             **_write_tables(tmp_path / "b", {"u": [other]}, counted_upstream=True)}
    together = _write_tables(tmp_path / "both", {"t": [rows], "u": [other]}, counted_upstream=False)
    assert together == alone
    assert sorted(together) == [*(f"t/part-{i:05d}-of-00005.parquet" for i in range(5)),
                                "u/part-00000-of-00002.parquet", "u/part-00001-of-00002.parquet"]


def test_count_rows_counts_every_bundle_and_gives_nothing_for_no_rows() -> None:
    with TestPipeline() as p:
        many = p | "Many" >> beam.Create(range(1000)) | beam.Reshuffle()
        few = p | "Few" >> beam.Create(["a", "b", "c"])
        none = p | "None" >> beam.Create([])
        assert_that((many, few) | "Both" >> T.CountRows("test/both"), equal_to([1003]), label="both")
        assert_that(few | "One" >> T.CountRows("test/one"), equal_to([3]), label="one")
        assert_that(none | "Empty" >> T.CountRows("test/none"), equal_to([]), label="empty")


def test_statistics_summed_per_bundle_add_up_to_the_per_document_totals() -> None:
    from collections import Counter

    docs = [dict(_doc(f"d{i}", "text"), lang=("en", "fr", "de")[i % 3], quality_score=i / 50, q_word_count=i,
                 n_tokens=3 * i) for i in range(50)]
    expected: Counter = Counter()
    for doc in docs:
        for key, count in T.kept_statistics(doc):
            expected[key] += count
    with TestPipeline() as p:
        sums = (p | beam.Create(docs) | beam.Reshuffle() | beam.ParDo(T.SumPerBundle(T.kept_statistics))
                | beam.CombinePerKey(sum))
        assert_that(sums, equal_to(list(expected.items())))


def test_dedup_keys_gather_each_bundles_bucket_entries_once_per_group() -> None:
    docs = [_doc(f"d{i}", BASE + f" variant {i % 3}") for i in range(30)]
    fn = T.DedupKeys(DedupConfig())
    fn.start_bundle()
    per_doc = [list(fn.process(doc)) for doc in docs]
    gathered = list(fn.finish_bundle())
    assert all(len(outputs) == 2 for outputs in per_doc)  # the signature and the member record
    groups = [tagged.value.value for tagged in gathered]
    assert all(tagged.tag == "bucket" and isinstance(tagged.value, WindowedValue) for tagged in gathered)
    assert len({group for group, _ in groups}) == len(groups)  # one record per group
    entries = [entry for _, group_entries in groups for entry in group_entries]
    assert len(entries) == 30 * 21  # the exact key and 20 bands for every document
    signer = dedup.Signer(DedupConfig())
    expected = []
    for doc in docs:
        normalized = dedup.normalize(doc["text"])
        keys = [b"x" + dedup.normalized_key(normalized).encode()]
        keys += [b"b" + key for key in dedup.band_keys(signer.signature_of_normalized(normalized), 20, 6)]
        expected += [(dedup.bucket_group(key), dedup.bucket_entry(key, doc["id"])) for key in keys]
    assert sorted((group, entry) for group, group_entries in groups for entry in group_entries) == sorted(expected)
    fn.start_bundle()
    assert list(fn.finish_bundle()) == []  # a new bundle starts empty


def test_dedup_keys_hand_on_their_gathered_entries_when_they_hold_too_many() -> None:
    docs = [_doc(f"d{i}", BASE + f" variant {i % 3}") for i in range(32)]
    whole = T.DedupKeys(DedupConfig())
    whole.start_bundle()
    for doc in docs:
        list(whole.process(doc))
    expected = sorted((group, entry) for tagged in whole.finish_bundle()
                      for group, entries in [tagged.value.value] for entry in entries)
    bounded = T.DedupKeys(DedupConfig())
    bounded.HELD_ENTRIES = 100  # about five documents' entries
    bounded.start_bundle()
    early = []
    for doc in docs:
        early += [out.value for out in bounded.process(doc) if getattr(out, "tag", None) == "bucket"]
        assert bounded.held < 100
    late = [tagged.value.value for tagged in bounded.finish_bundle()]
    assert len(early) > len(late) > 0
    assert sorted((group, entry) for group, entries in early + late for entry in entries) == expected
