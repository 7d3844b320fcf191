"""bench.floor: the fixed cost plus the libraries' per-document work that bounds a build on this machine."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from bench import e2e, floor
from pipelines.sample import SAMPLE_CORPUS


def _build_run(docs: int, wall_s: float, stage_in: dict[str, int]) -> e2e.BuildRun:
    stages = {stage: {"in": n, "kept": n, "rejected": {}} for stage, n in stage_in.items()}
    return e2e.BuildRun(docs, wall_s, 0.0, 0, 0, 3, 0, {"input": docs}, stages, "")


def test_floor_is_fixed_cost_plus_each_stages_documents_times_its_cost_over_the_cores() -> None:
    run = _build_run(10_000, 40.0, {"langid": 10_000, "quality": 8_000, "dedup": 6_000, "tokenize": 5_000})
    costs = {
        "langid": floor.StageCost(1_000, 1.0),  # 1 ms per document
        "quality": floor.StageCost(800, 0.4),  # 0.5 ms
        "dedup": floor.StageCost(600, 0.6),  # 1 ms
        "tokenize": floor.StageCost(500, 1.0),  # 2 ms
    }
    f = floor.Floor(run, fixed_s=5.0, costs=costs)
    assert f.work_cpu_s() == pytest.approx(10 + 4 + 6 + 10)
    assert f.floor_s == pytest.approx(5.0 + 30 / e2e.CORES)
    assert f.docs_per_core == pytest.approx(10_000 / 20.0 / e2e.CORES)

    table = floor.tables([f])
    first_row = table.splitlines()[2]
    assert first_row.startswith("| 10,000 ") and "| 250 " in first_row and "| yes " in first_row
    assert "| 0.50 " in first_row  # floor 20 s of a 40 s build
    slower = floor.Floor(run, fixed_s=6.0, costs=costs)
    assert "| no " in floor.tables([slower]).splitlines()[2]


def test_a_stage_the_build_did_not_run_adds_no_work() -> None:
    run = _build_run(100, 1.0, {"langid": 100})
    f = floor.Floor(run, 0.5, {"langid": floor.StageCost(10, 0.01),
                               "tokenize": floor.StageCost(10, 5.0)})
    assert f.work_cpu_s() == pytest.approx(0.1)


def test_sample_is_spread_evenly_over_the_corpus(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"text {i}"}) + "\n" for i in range(100)))
    docs = floor.sample_documents(path, 100, 10)
    assert [d["id"] for d in docs] == [f"d{i}" for i in range(0, 100, 10)]
    assert all(d["source"] == str(path) for d in docs)
    assert len(floor.sample_documents(path, 100, 500)) == 100


def test_stage_costs_measure_each_library_on_what_the_stage_before_kept(tmp_path: Path) -> None:
    with gzip.open(SAMPLE_CORPUS, "rt", encoding="utf-8") as handle:
        lines = handle.readlines()[:240]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    costs = floor.stage_costs(floor.sample_documents(path, len(lines), 120), repeats=1)
    assert list(costs) == ["langid", "quality", "dedup", "tokenize"]
    measured = [costs[s].measured_docs for s in costs]
    assert measured[0] == 120
    assert measured[0] > measured[1] > measured[2] > 0  # the sample corpus has noise each stage drops
    assert measured[2] == measured[3]
    assert all(cost.cpu_s > 0 and cost.per_doc_s > 0 for cost in costs.values())
