"""``bench.timed_build``: the build's own entry point plus a record of when each fused stage started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import timed_build
from tests.conftest import IN_PROCESS, SMALL


def test_label_names_the_user_transforms_of_a_fused_stage() -> None:
    stage = (
        "((((ref_AppliedPTransform_Stages-input-langid-quality-ParDo-ApplyStages-_12)"
        "+(ref_AppliedPTransform_Dedup-DedupKeys_30))+(Dedup/GroupBuckets/Group/Write))"
        "+(ref_AppliedPTransform_WriteDocs-Pack_77))"
    )
    # Transforms first, in order; then the shuffles the stage reads or writes, by their top-level name.
    assert timed_build.label(stage) == "Stages[input,langid,quality], Dedup/DedupKeys, WriteDocs, Dedup"


def test_a_timed_build_records_its_fused_stages(
    tmp_path: Path, fixture_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "stages.json"
    monkeypatch.setenv("TOKENMILL_BENCH_STAGE_LOG", str(log))
    argv = ["--home", str(tmp_path / "home"), "--input", str(fixture_corpus), *IN_PROCESS, *SMALL]
    assert timed_build.main(argv) == 0
    record = json.loads(log.read_text(encoding="utf-8"))
    stages = record["stages"]
    assert 0 < record["first_bundle"] == stages[0]["start"] < record["total"]
    # Consecutive starts: the stages' times add up to the build's time after the first bundle.
    assert sum(s["seconds"] for s in stages) == pytest.approx(record["total"] - record["first_bundle"])
    labels = [s["stage"] for s in stages]
    assert any("Stages[input,langid,quality]" in label for label in labels)
    assert any(label.startswith("Encode") or ", Encode" in label for label in labels)
