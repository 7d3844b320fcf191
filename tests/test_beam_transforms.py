"""The Beam wrappers under TestPipeline, on hand-made documents."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

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


def test_connected_components_merges_chains() -> None:
    edges = [("a", "b"), ("b", "c"), ("c", "d"), ("x", "y"), ("d", "e")]
    with TestPipeline() as p:
        roots = p | beam.Create(edges) | T.ConnectedComponents(rounds=4)
        assert_that(roots, equal_to([("b", "a"), ("c", "a"), ("d", "a"), ("e", "a"), ("y", "x")]))
