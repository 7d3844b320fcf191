"""The publish-time accounting check, without Beam: counts must agree three independent ways."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import transforms as T
from pipelines.build import STAGING, AccountingError, _prune_stale_staging, publish
from pipelines.config import load_config


def _stage(tmp_path: Path, kept: int, rejected: int, stat_kept: int, stat_rejected: int, records: int) -> Path:
    """A staging directory as a finished pipeline leaves it, with chosen written rows and statistics."""
    config = load_config(None, {"stages": "langid"})
    staging = tmp_path / "data" / ".staging" / "run"
    for folder in ("docs", "rejected", "dead_letter"):
        (staging / folder).mkdir(parents=True)
    docs = [{"id": f"k{i}", "text": "x", "source": "in.jsonl", "position": i} for i in range(kept)]
    gone = [{"id": f"r{i}", "text": "x", "source": "in.jsonl", "position": i, "stage": "langid",
             "reason": "lang_score"} for i in range(rejected)]
    (staging / "docs" / "part-00000-of-00001.parquet").write_bytes(T.parquet_bytes(docs, T.docs_schema(config)))
    (staging / "rejected" / "part-00000-of-00001.parquet").write_bytes(
        T.parquet_bytes(gone, T.rejected_schema(config)))
    stats = [["read", "parsed", "", stat_kept + stat_rejected], ["output", "kept", "", stat_kept],
             ["langid", "rejected", "lang_score", stat_rejected]]
    (staging / "_stats.json").write_text(json.dumps(stats))
    inputs = [{"path": "in.jsonl", "sha256": "0" * 64, "bytes": 1, "records": records, "dead_letters": 0}]
    (staging / "_inputs.json").write_text(json.dumps(inputs))
    return staging


def test_consistent_counts_publish(tmp_path: Path) -> None:
    staging = _stage(tmp_path, kept=3, rejected=2, stat_kept=3, stat_rejected=2, records=5)
    result = publish(staging, tmp_path / "data", load_config(None, {"stages": "langid"}), None, 0.0)
    assert result.manifest["counts"] == {"input": 5, "kept": 3, "rejected": 2, "dead_letter": 0}
    assert not staging.exists() and (result.path / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("kept", "rejected", "stat_kept", "stat_rejected", "records", "message"),
    [
        (3, 2, 3, 2, 7, "the readers saw 7 records"),  # documents lost before they were counted
        (2, 2, 3, 2, 5, "docs/ holds 2 rows but the statistics count 3 kept"),  # a written file lost rows
        (3, 1, 3, 2, 5, "rejected/ holds 1 rows but the statistics count 2 rejected"),
    ],
)
def test_disagreeing_counts_refuse_to_publish_and_keep_evidence(
    tmp_path: Path, kept: int, rejected: int, stat_kept: int, stat_rejected: int, records: int, message: str
) -> None:
    staging = _stage(tmp_path, kept, rejected, stat_kept, stat_rejected, records)
    with pytest.raises(AccountingError) as caught:
        publish(staging, tmp_path / "data", load_config(None, {"stages": "langid"}), None, 0.0)
    text = str(caught.value)
    assert message in text and "refusing to publish" in text and str(staging) in text
    assert "langid" in text  # the per-stage table
    assert (staging / "_stats.json").is_file(), "the evidence stays"
    assert not (tmp_path / "data" / "versions").exists() and not (tmp_path / "data" / "LATEST").exists()


def test_statistics_that_do_not_add_up_are_reported(tmp_path: Path) -> None:
    staging = _stage(tmp_path, kept=3, rejected=2, stat_kept=3, stat_rejected=2, records=5)
    stats = json.loads((staging / "_stats.json").read_text())
    stats[0][3] = 9  # parsed more than kept + rejected
    (staging / "_stats.json").write_text(json.dumps(stats))
    with pytest.raises(AccountingError, match="input - kept - rejected - dead_letter = 4"):
        publish(staging, tmp_path / "data", load_config(None, {"stages": "langid"}), None, 0.0)


def test_stale_staging_is_pruned_only_when_its_build_is_gone(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    owners = {"alive": {"host": socket.gethostname(), "pid": os.getpid()},
              "dead": {"host": socket.gethostname(), "pid": gone.pid},
              "elsewhere": {"host": "another-machine", "pid": gone.pid},
              "not-a-pid": {"host": socket.gethostname(), "pid": "12"}}
    for name, owner in owners.items():
        (tmp_path / STAGING / name).mkdir(parents=True)
        (tmp_path / STAGING / name / "owner.json").write_text(json.dumps(owner))
    _prune_stale_staging(tmp_path)
    assert sorted(p.name for p in (tmp_path / STAGING).iterdir()) == ["alive", "elsewhere", "not-a-pid"]
