"""End-to-end builds through Beam: the dataset-version contract, accounting, determinism, crashes."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import metrics
from pipelines import readers, shards, worker
from pipelines.build import expand_inputs
from pipelines.versions import main as versions_main

from .conftest import IN_PROCESS, MULTI_PROCESS, SMALL, run_build, write_fixture

pytestmark = pytest.mark.slow


def _version(home: Path) -> Path:
    return shards.resolve_version(home / "data")


def test_manifest_contract(built: Path) -> None:
    version_dir = _version(built)
    manifest = shards.read_manifest(version_dir)
    for key in ("version", "parent", "created_at", "config", "code_version", "inputs", "counts", "stages",
                "tokenizer", "shards", "dedup"):
        assert key in manifest, key
    counts = manifest["counts"]
    assert counts["input"] == counts["kept"] + counts["rejected"] + counts["dead_letter"]
    assert counts["kept"] > 0 and counts["rejected"] > 0
    assert manifest["version"] == version_dir.name
    assert (built / "data" / "LATEST").read_text().strip() == version_dir.name
    assert manifest["inputs"][0]["sha256"] and manifest["inputs"][0]["path"].endswith("fixture.jsonl")
    assert {"sha256", "vocab_size"} <= set(manifest["tokenizer"])
    assert manifest["dedup"]["num_perm"] >= manifest["dedup"]["bands"] * manifest["dedup"]["rows"]
    assert shards.verify_version(version_dir) == []


def test_every_document_accounted_for(built: Path, fixture_corpus: Path) -> None:
    version_dir = _version(built)
    manifest = shards.read_manifest(version_dir)
    docs = pq.read_table(version_dir / "docs")
    rejected = pq.read_table(version_dir / "rejected")
    dead = pq.read_table(version_dir / "dead_letter")
    lines = [ln for ln in fixture_corpus.read_bytes().split(b"\n") if ln.strip()]
    assert docs.num_rows + rejected.num_rows + dead.num_rows == len(lines) == manifest["counts"]["input"]
    assert None not in rejected.column("reason").to_pylist()
    reasons = set(rejected.column("reason").to_pylist())
    assert {"nul_bytes", "empty", "exact_duplicate"} <= reasons
    errors = " | ".join(dead.column("error").to_pylist())
    for expected in ("broken JSON", "invalid UTF-8", "is int", "is list", "missing text field",
                     "expected a JSON object"):
        assert expected in errors
    assert all(p > 0 for p in dead.column("position").to_pylist())
    per_stage = manifest["stages"]
    assert per_stage["input"]["in"] == docs.num_rows + rejected.num_rows
    assert per_stage["pack"]["kept"] == docs.num_rows


def test_docs_columns_and_annotations(built: Path) -> None:
    docs = pq.read_table(_version(built) / "docs")
    for column in ("id", "text", "lang", "lang_score", "quality_score", "dup_cluster", "dup_cluster_size",
                   "pii_email", "n_tokens"):
        assert column in docs.column_names
    assert len(set(docs.column("id").to_pylist())) == docs.num_rows
    assert len(set(docs.column("lang").to_pylist())) >= 5
    assert not any("@example" in t for t in docs.column("text").to_pylist() if t)


def test_shards_hold_exactly_the_kept_tokens(built: Path) -> None:
    version_dir = _version(built)
    manifest = shards.read_manifest(version_dir)
    docs = pq.read_table(version_dir / "docs")
    kept_ids = set(docs.column("id").to_pylist())
    seen_ids, tokens = set(), 0
    for path in shards.shard_paths(version_dir):
        reader = shards.ShardReader(path)
        assert reader.input_ids.shape[1] == manifest["seq_len"]
        for row in reader:
            seen_ids.update(row.doc_ids)
            tokens += row.n_tokens
    assert seen_ids == kept_ids
    # every document contributes its tokens plus one EOS
    assert tokens == sum(docs.column("n_tokens").to_pylist()) + docs.num_rows


def test_metrics_store_has_the_build(built: Path) -> None:
    version = _version(built).name
    con = metrics.connect(built)
    stages = {r[0] for r in con.execute("SELECT DISTINCT stage FROM pipeline_counts WHERE version = ?",
                                        [version]).fetchall()}
    assert {"input", "langid", "quality", "dedup", "pii", "tokenize", "pack"} <= stages
    langs = con.execute("SELECT count(*) FROM pipeline_distributions WHERE version = ? AND name = 'lang'",
                        [version]).fetchone()[0]
    assert langs >= 5


def test_deterministic_across_runners(tmp_path: Path, fixture_corpus: Path, built: Path) -> None:
    """Same input and config → byte-identical version, in-process or with 2 worker processes."""
    assert run_build(tmp_path, "--input", str(fixture_corpus), *MULTI_PROCESS, *SMALL) == 0
    first, second = _version(built), _version(tmp_path)
    assert first.name == second.name  # the name digests every published file
    for a, b in zip(shards.shard_paths(first), shards.shard_paths(second), strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_plain_file_read_in_ranges_matches_the_same_file_read_whole(tmp_path: Path, fixture_corpus: Path,
                                                                   built: Path) -> None:
    """The plain fixture is cut into byte ranges read side by side; gzipped, it is read whole and its
    batches spread. Same documents, so the same shards, documents and counts."""
    assert len(readers.plan_reads(str(fixture_corpus), lambda p: open(p, "rb"))[0]) > 4
    packed_copy = tmp_path / "fixture.jsonl.gz"
    packed_copy.write_bytes(gzip.compress(fixture_corpus.read_bytes(), mtime=0))
    assert run_build(tmp_path, "--input", str(packed_copy), *IN_PROCESS, *SMALL) == 0
    ranged, whole = _version(built), _version(tmp_path)
    for a, b in zip(shards.shard_paths(ranged), shards.shard_paths(whole), strict=True):
        assert a.read_bytes() == b.read_bytes()
    columns = ["id", "text", "position", "dup_cluster"]
    assert pq.read_table(ranged / "docs", columns=columns) == pq.read_table(whole / "docs", columns=columns)
    first, second = shards.read_manifest(ranged), shards.read_manifest(whole)
    assert first["counts"] == second["counts"] and first["stages"] == second["stages"]
    assert first["inputs"][0]["records"] == second["inputs"][0]["records"]


def test_rebuild_reuses_identical_version(tmp_path: Path, fixture_corpus: Path) -> None:
    args = ["--input", str(fixture_corpus), *IN_PROCESS, *SMALL, "--stages", "langid,dedup"]
    assert run_build(tmp_path, *args) == 0
    assert run_build(tmp_path, *args) == 0
    assert len(shards.list_versions(tmp_path / "data")) == 1
    assert run_build(tmp_path, *args, "--set", "langid.threshold=0.9") == 0
    versions = shards.list_versions(tmp_path / "data")
    assert len(versions) == 2 and versions[1]["parent"] == versions[0]["version"]
    assert versions[1]["stages"]["langid"]["kept"] < versions[0]["stages"]["langid"]["kept"]


def test_subset_of_stages_has_no_shards(tmp_path: Path, fixture_corpus: Path) -> None:
    assert run_build(tmp_path, "--input", str(fixture_corpus), *IN_PROCESS, "--stages", "pii") == 0
    version_dir = _version(tmp_path)
    manifest = shards.read_manifest(version_dir)
    assert manifest["shards"] == [] and manifest["tokenizer"] is None
    assert not (version_dir / "shards").exists()
    assert "lang" not in pq.read_table(version_dir / "docs").column_names


def test_huge_and_odd_documents_never_crash(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        out.write(json.dumps({"id": "huge", "text": "word " * 300_000}) + "\n")
        out.write(json.dumps({"text": "Emoji 😀 and RTL שלום and combining e\u0301 " * 40}) + "\n")
        out.write(json.dumps({"id": 7, "text": "An integer id is accepted and stored as a string. " * 20}) + "\n")
        out.write(json.dumps({"id": True, "text": "bool ids are refused"}) + "\n")
        out.write('{"id": "x", "text": "\\ud800 lone surrogate"}\n')
        out.write('{"id": "abc\\ud800", "text": "A lone surrogate in the id once crashed the whole build."}\n')
    assert run_build(tmp_path, "--input", str(path), *IN_PROCESS, *SMALL,
                     "--set", "input.max_doc_chars=1000000") == 0
    manifest = shards.read_manifest(_version(tmp_path))
    assert manifest["counts"] == {"input": 6, "kept": manifest["counts"]["kept"],
                                  "rejected": manifest["counts"]["rejected"], "dead_letter": 3}
    rejected = pq.read_table(_version(tmp_path) / "rejected")
    assert "too_long" in rejected.column("reason").to_pylist()


def test_a_build_that_keeps_nothing_publishes_an_empty_consistent_version(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "short.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in ("Hi.", "ok", "")))
    assert run_build(tmp_path, "--input", f"{tmp_path}/empty.jsonl,{tmp_path}/short.jsonl", *IN_PROCESS, *SMALL) == 0
    version_dir = _version(tmp_path)
    manifest = shards.read_manifest(version_dir)
    assert manifest["counts"] == {"input": 3, "kept": 0, "rejected": 3, "dead_letter": 0}
    assert [(i["records"], i["dead_letters"]) for i in manifest["inputs"]] == [(0, 0), (3, 0)]
    assert manifest["shards"] == [] and not (version_dir / "shards").exists()
    for folder, rows in (("docs", 0), ("rejected", 3), ("dead_letter", 0)):
        [entry] = manifest["files"][folder]
        assert entry["path"] == f"{folder}/part-00000-of-00001.parquet" and entry["rows"] == rows
        assert pq.read_table(version_dir / folder).num_rows == rows


def test_a_build_of_inputs_holding_no_documents_publishes_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert run_build(tmp_path, "--input", str(tmp_path / "empty.jsonl"), *IN_PROCESS, "--stages", "langid") == 0
    version = _version(tmp_path)
    assert shards.read_manifest(version)["counts"]["input"] == 0
    assert (tmp_path / "data" / "LATEST").read_text().strip() == version.name
    assert f"warning: the inputs hold no documents; version {version.name} is empty" in capsys.readouterr().err


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_build(tmp_path, "--input", str(tmp_path / "nope-*.jsonl"), *IN_PROCESS) == 2
    assert "no input files match" in capsys.readouterr().err
    assert run_build(tmp_path, "--stages", "langid,bogus", *IN_PROCESS) == 2
    assert "unknown stage" in capsys.readouterr().err
    assert run_build(tmp_path, "--set", "quality.no_such_threshold=1", *IN_PROCESS) == 2
    assert "no_such_threshold" in capsys.readouterr().err
    (tmp_path / "data.csv").write_text("a,b\n")
    assert run_build(tmp_path, "--input", str(tmp_path / "data.csv"), *IN_PROCESS) == 2


def test_a_directory_input_skips_hidden_and_underscore_files(tmp_path: Path) -> None:
    """A Spark/Hadoop output directory: its checksums and markers are not inputs; named files always are."""
    spark = tmp_path / "spark"
    (spark / "_temporary").mkdir(parents=True)
    for name in ("part-00000.parquet", "part-00001.jsonl", ".part-00000.parquet.crc", "_SUCCESS",
                 "_common_metadata", ".hidden.jsonl", "_temporary/part-00002.jsonl"):
        (spark / name).write_bytes(b"")
    assert expand_inputs(str(spark)) == [str(spark / "part-00000.parquet"), str(spark / "part-00001.jsonl")]
    named = f"{spark}/_temporary/part-00002.jsonl,{spark}/.hidden.jsonl"
    assert expand_inputs(named) == [str(spark / ".hidden.jsonl"), str(spark / "_temporary" / "part-00002.jsonl")]
    assert expand_inputs(f"{spark}/*.jsonl") == [str(spark / ".hidden.jsonl"), str(spark / "part-00001.jsonl")]
    (tmp_path / "only-markers").mkdir()
    (tmp_path / "only-markers" / "_SUCCESS").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="hidden and _ files skipped"):
        expand_inputs(str(tmp_path / "only-markers"))


def test_an_input_file_name_that_is_not_utf8_is_an_input_error(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    with open(os.fsencode(folder) + b"/caf\xe9.jsonl", "wb") as out:
        out.write(b'{"id": "a", "text": "Hello there."}\n')
    assert run_build(tmp_path, "--input", str(folder), *IN_PROCESS, "--stages", "langid") == 2
    assert "file name is not valid UTF-8" in capsys.readouterr().err


def test_versions_cli(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    version = _version(built).name
    assert versions_main(["--home", str(built), "list"]) == 0
    assert version in capsys.readouterr().out
    assert versions_main(["--home", str(built), "verify"]) == 0
    assert "OK" in capsys.readouterr().out
    assert versions_main(["--home", str(built), "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == version
    assert versions_main(["--home", str(built), "lineage", version]) == 0
    assert versions_main(["--home", str(built), "show", "vdoesnotexist"]) == 2


def _start_and_kill(home: Path, corpus: Path, ready: Callable[[int], bool]) -> int:
    """Starts a multi-process build, SIGKILLs it with its workers once ``ready(pid)``, returns its pid."""
    command = [sys.executable, "-m", "pipelines.build", "--home", str(home), "--input", str(corpus),
               *MULTI_PROCESS, *SMALL]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ready(process.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the build finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return process.pid


def _standby_folders(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"{worker.FOLDER_PREFIX}{pid}-*"))


def test_killed_build_leaves_nothing_visible(tmp_path: Path) -> None:
    corpus = write_fixture(tmp_path, every=1)
    home = tmp_path / "home"
    staging = home / "data" / ".staging"

    # Killed midway: once the tokenizer is staged, with encoding, shards and most writers still to come.
    _start_and_kill(home, corpus, lambda _: any(staging.glob("*/tokenizer.json")))
    # Killed while starting, its standby workers still importing: their sockets' folder is left behind.
    starting = _start_and_kill(home, corpus, lambda pid: bool(_standby_folders(pid)))
    abandoned = _standby_folders(starting)
    assert len(abandoned) == 1
    assert any(staging.iterdir())
    assert shards.latest_version(home / "data") is None
    assert shards.list_versions(home / "data") == []
    assert not (home / "data" / "versions").exists() or not any((home / "data" / "versions").iterdir())
    # Rerunning works and clears the dead builds' staging directories and the abandoned folder.
    assert run_build(home, "--input", str(corpus), *IN_PROCESS, *SMALL, "--stages", "langid") == 0
    assert len(shards.list_versions(home / "data")) == 1
    assert not any(staging.iterdir())
    assert not abandoned[0].exists()
