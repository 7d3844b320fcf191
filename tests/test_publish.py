"""Publishing, without Beam: counts must agree three independent ways, the manifest pins every file,
concurrent builds never break each other, and the versions CLI reads what was published."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import build, shards
from pipelines import transforms as T
from pipelines.build import STAGING, AccountingError, _prune_stale_staging, publish
from pipelines.config import load_config
from pipelines.versions import main as versions_main


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


def _owned(staging: Path) -> Path:
    """A staging directory owned, as a running build's is, by a live process: this one."""
    (staging / "owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    return staging


def test_a_live_build_is_never_pruned_while_it_publishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Publishing hashes every staged file, which takes minutes on a large version; a build starting
    meanwhile prunes stale staging directories and must leave this one, whose owner is alive, alone."""
    staging = _owned(_stage(tmp_path, kept=3, rejected=2, stat_kept=3, stat_rejected=2, records=5))
    hash_file = shards.sha256_file

    def slow_hash(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
        long_ago = time.time() - 3600  # the staging directory looks an hour old, well past the grace minute
        os.utime(staging, (long_ago, long_ago))
        _prune_stale_staging(tmp_path / "data")
        return hash_file(path, chunk)

    monkeypatch.setattr(shards, "sha256_file", slow_hash)
    result = publish(staging, tmp_path / "data", load_config(None, {"stages": "langid"}), None, 0.0)
    assert not result.reused and (result.path / "manifest.json").is_file()
    assert not (result.path / "owner.json").exists()


def test_the_owner_file_is_no_part_of_the_version_name(tmp_path: Path) -> None:
    config = load_config(None, {"stages": "langid"})
    owned = _owned(_stage(tmp_path / "a", kept=3, rejected=2, stat_kept=3, stat_rejected=2, records=5))
    plain = _stage(tmp_path / "b", kept=3, rejected=2, stat_kept=3, stat_rejected=2, records=5)
    assert publish(owned, tmp_path / "a" / "data", config, None, 0.0).version == \
        publish(plain, tmp_path / "b" / "data", config, None, 0.0).version


def test_two_identical_builds_racing_to_publish_both_succeed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other build renames the same version into place after this one checked for it and before
    its own rename: same name, same content, so this build reuses it."""
    config = load_config(None, {"stages": "langid"})
    data = tmp_path / "data"
    first = _owned(_stage(tmp_path, kept=3, rejected=2, stat_kept=3, stat_rejected=2, records=5))
    second = _stage(tmp_path / "other", kept=3, rejected=2, stat_kept=3, stat_rejected=2, records=5)
    second = second.rename(data / STAGING / "other-run")
    winner = []

    def other_build_publishes_first() -> str:
        # This build is writing its manifest, past its check for an existing version.
        monkeypatch.undo()
        winner.append(publish(second, data, config, None, 0.0))
        return build.code_version()

    monkeypatch.setattr(build, "code_version", other_build_publishes_first)
    result = publish(first, data, config, None, 0.0)
    assert not winner[0].reused and result.reused and result.version == winner[0].version
    assert result.manifest == winner[0].manifest
    assert not first.exists() and [p.name for p in (data / "versions").iterdir()] == [result.version]
    assert shards.latest_version(data) == result.version


def test_the_manifest_records_every_parquet_file_and_verify_checks_them(tmp_path: Path) -> None:
    staging = _stage(tmp_path, kept=3, rejected=2, stat_kept=3, stat_rejected=2, records=5)
    result = publish(staging, tmp_path / "data", load_config(None, {"stages": "langid"}), None, 0.0)
    files = result.manifest["files"]
    assert sorted(files) == ["dead_letter", "docs", "rejected"]
    for folder, rows in (("docs", 3), ("rejected", 2), ("dead_letter", 0)):
        [entry] = files[folder]
        path = result.path / entry["path"]
        assert entry == {"path": f"{folder}/part-00000-of-00001.parquet", "sha256": shards.sha256_file(path),
                         "rows": rows}
    assert shards.verify_version(result.path) == []
    docs = result.path / files["docs"][0]["path"]
    docs.write_bytes(docs.read_bytes()[:-100])  # truncated
    [problem] = shards.verify_version(result.path)
    assert problem.startswith("docs/part-00000-of-00001.parquet: sha256 ")


def test_versions_cli_json_for_every_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    staging = _stage(tmp_path, kept=3, rejected=2, stat_kept=3, stat_rejected=2, records=5)
    version = publish(staging, data, load_config(None, {"stages": "langid"}), None, 0.0).version

    def run(*argv: str) -> tuple[int, object]:
        code = versions_main(["--data", str(data), *argv])
        return code, json.loads(capsys.readouterr().out)

    code, listed = run("list", "--json")
    assert code == 0 and [v["version"] for v in listed] == [version] and listed[0]["latest"] is True
    assert listed[0]["counts"] == {"input": 5, "kept": 3, "rejected": 2, "dead_letter": 0}
    assert run("show", "--json") == (0, shards.read_manifest(data / "versions" / version))
    code, chain = run("lineage", version, "--json")
    assert code == 0 and [m["version"] for m in chain] == [version]
    assert run("verify", "--json") == (0, {"version": version, "path": str(data / "versions" / version),
                                           "ok": True, "problems": []})
    (data / "versions" / version / "rejected" / "part-00000-of-00001.parquet").unlink()
    code, report = run("--json", "verify", version)  # --json before the command works too
    assert code == 1 and report["ok"] is False
    assert report["problems"] == ["rejected/part-00000-of-00001.parquet: missing"]
    assert versions_main(["list", "--data", str(tmp_path / "nothing"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
