"""Shard encoding/reading and the version-directory helpers in pipelines.shards."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import shards
from pipelines.shards import PackedRow, ShardReader

SEQ_LEN = 8
EOS = 0
PAD = 1


def _row(tokens: list[int], lengths: list[int], ids: list[str]) -> PackedRow:
    padded = np.full(SEQ_LEN, PAD, dtype=np.uint32)
    padded[: len(tokens)] = tokens
    return PackedRow(input_ids=padded, doc_lengths=tuple(lengths), doc_ids=tuple(ids))


def _rows() -> list[PackedRow]:
    return [
        _row([5, 6, 7, EOS, 8, 9, 10, 11], [4, 4], ["a", "b"]),
        _row([12, 13, EOS, 14, 15, 16, 17, 18], [3, 5], ["b", "c"]),
        _row([19, EOS, 2**32 - 1, EOS], [2, 2], ["c", "d"]),  # max uint32 survives
    ]


def _schema(sha: str = "abc123") -> pa.Schema:
    return shards.shard_schema(SEQ_LEN, EOS, PAD, sha)


def _write_shard(path: Path, rows: list[PackedRow] | None = None) -> bytes:
    payload = shards.encode_shard(_rows() if rows is None else rows, _schema())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return payload


# ----------------------------------------------------------------------------------- shard files


def test_round_trip(tmp_path: Path) -> None:
    rows = _rows()
    path = tmp_path / "s.arrow"
    _write_shard(path, rows)
    reader = ShardReader(path)
    try:
        assert len(reader) == 3
        assert reader.seq_len == SEQ_LEN
        assert reader.eos_id == EOS
        assert reader.pad_id == PAD
        assert reader.schema.metadata[b"tokenizer_sha256"] == b"abc123"
        expected = np.stack([r.input_ids for r in rows])
        assert reader.input_ids.shape == (3, SEQ_LEN)
        assert reader.input_ids.dtype == np.uint32
        np.testing.assert_array_equal(reader.input_ids, expected)
        for i, row in enumerate(rows):
            got = reader[i]
            np.testing.assert_array_equal(got.input_ids, row.input_ids)
            assert got.doc_lengths == row.doc_lengths
            assert got.doc_ids == row.doc_ids
            assert got.n_tokens == row.n_tokens
    finally:
        reader.close()


def test_n_tokens_counts_real_tokens_only() -> None:
    rows = _rows()
    assert [r.n_tokens for r in rows] == [8, 8, 4]


def test_negative_index_and_index_error(tmp_path: Path) -> None:
    path = tmp_path / "s.arrow"
    _write_shard(path)
    reader = ShardReader(path)
    try:
        last = reader[-1]
        assert last.doc_ids == ("c", "d")
        np.testing.assert_array_equal(last.input_ids, reader[2].input_ids)
        assert reader[-3].doc_ids == reader[0].doc_ids
        with pytest.raises(IndexError):
            reader[3]
        with pytest.raises(IndexError):
            reader[-4]
    finally:
        reader.close()


def test_iteration_yields_every_row_in_order(tmp_path: Path) -> None:
    rows = _rows()
    path = tmp_path / "s.arrow"
    _write_shard(path, rows)
    reader = ShardReader(path)
    try:
        got = list(reader)
        assert len(got) == len(rows)
        for a, b in zip(got, rows, strict=True):
            np.testing.assert_array_equal(a.input_ids, b.input_ids)
            assert (a.doc_lengths, a.doc_ids) == (b.doc_lengths, b.doc_ids)
    finally:
        reader.close()


def test_input_ids_matrix_is_read_only(tmp_path: Path) -> None:
    path = tmp_path / "s.arrow"
    _write_shard(path)
    reader = ShardReader(path)
    try:
        with pytest.raises(ValueError):
            reader.input_ids[0, 0] = 99
    finally:
        reader.close()


def test_same_rows_give_identical_bytes() -> None:
    assert shards.encode_shard(_rows(), _schema()) == shards.encode_shard(_rows(), _schema())


def test_different_rows_give_different_bytes() -> None:
    other = _rows()
    other[0] = _row([5, 6, 7, EOS, 8, 9, 10, 12], [4, 4], ["a", "b"])
    assert shards.encode_shard(_rows(), _schema()) != shards.encode_shard(other, _schema())


@pytest.mark.parametrize("n_tokens", [SEQ_LEN - 1, SEQ_LEN + 1, 0])
def test_wrong_token_count_raises(n_tokens: int) -> None:
    bad = PackedRow(input_ids=np.arange(n_tokens, dtype=np.uint32), doc_lengths=(n_tokens,), doc_ids=("x",))
    with pytest.raises(ValueError):
        shards.encode_shard([_rows()[0], bad], _schema())


def test_reader_rejects_non_shard_arrow_file(tmp_path: Path) -> None:
    path = tmp_path / "other.arrow"
    table = pa.table({"x": [1, 2, 3]})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(ValueError, match="not a"):
        ShardReader(path)


def test_reader_rejects_wrong_format_tag(tmp_path: Path) -> None:
    schema = _schema().with_metadata({**_schema().metadata, b"format": b"tokenmill.shard.v0"})
    path = tmp_path / "old.arrow"
    path.write_bytes(shards.encode_shard(_rows(), schema))
    with pytest.raises(ValueError):
        ShardReader(path)


def test_empty_shard_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "empty.arrow"
    path.write_bytes(shards.encode_shard([], _schema()))
    reader = ShardReader(path)
    assert len(reader) == 0
    assert reader.input_ids.shape == (0, SEQ_LEN)
    assert list(reader) == []


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert shards.sha256_file(path, chunk=1000) == hashlib.sha256(data).hexdigest()


# -------------------------------------------------------------------------------------- versions


def _make_version(data_dir: Path, name: str, created_at: str = "2024-01-01T00:00:00Z") -> Path:
    version_dir = data_dir / shards.VERSIONS / name
    entries = []
    for i in range(2):
        rel = f"shards/shard-{i:05d}-of-00002.arrow"
        payload = _write_shard(version_dir / rel)
        entries.append(
            {
                "path": rel,
                "sha256": hashlib.sha256(payload).hexdigest(),
                "rows": 3,
                "tokens": sum(r.n_tokens for r in _rows()),
            }
        )
    manifest = {"version": name, "created_at": created_at, "shards": entries}
    (version_dir / shards.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return version_dir


def test_read_manifest(tmp_path: Path) -> None:
    version_dir = _make_version(tmp_path, "v1")
    manifest = shards.read_manifest(version_dir)
    assert manifest["version"] == "v1"
    assert len(manifest["shards"]) == 2


def test_read_manifest_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        shards.read_manifest(tmp_path)


def test_verify_version_ok(tmp_path: Path) -> None:
    version_dir = _make_version(tmp_path, "v1")
    assert shards.verify_version(version_dir) == []


def test_verify_version_detects_corrupt_byte(tmp_path: Path) -> None:
    version_dir = _make_version(tmp_path, "v1")
    target = version_dir / "shards" / "shard-00001-of-00002.arrow"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    problems = shards.verify_version(version_dir)
    assert len(problems) == 1
    assert "shard-00001-of-00002.arrow" in problems[0]
    assert "sha256" in problems[0]


def test_verify_version_detects_missing_file(tmp_path: Path) -> None:
    version_dir = _make_version(tmp_path, "v1")
    (version_dir / "shards" / "shard-00000-of-00002.arrow").unlink()
    problems = shards.verify_version(version_dir)
    assert len(problems) == 1
    assert "shard-00000-of-00002.arrow" in problems[0]
    assert "missing" in problems[0]


def test_verify_version_detects_wrong_counts(tmp_path: Path) -> None:
    version_dir = _make_version(tmp_path, "v1")
    manifest = shards.read_manifest(version_dir)
    manifest["shards"][0]["rows"] = 4
    manifest["shards"][1]["tokens"] += 1
    (version_dir / shards.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    problems = shards.verify_version(version_dir)
    assert len(problems) == 2


def test_shard_paths(tmp_path: Path) -> None:
    version_dir = _make_version(tmp_path, "v1")
    paths = shards.shard_paths(version_dir)
    assert [p.name for p in paths] == ["shard-00000-of-00002.arrow", "shard-00001-of-00002.arrow"]
    assert all(p.is_file() for p in paths)


def test_list_versions_sorted_and_ignores_staging(tmp_path: Path) -> None:
    _make_version(tmp_path, "vb", created_at="2024-02-01T00:00:00Z")
    _make_version(tmp_path, "va", created_at="2024-03-01T00:00:00Z")
    _make_version(tmp_path, "vc", created_at="2024-01-01T00:00:00Z")
    staging = tmp_path / shards.VERSIONS / ".staging-123"
    (staging / "shards").mkdir(parents=True)
    (staging / "shards" / "x.arrow").write_bytes(b"partial")
    (tmp_path / shards.VERSIONS / "half-written").mkdir()
    versions = shards.list_versions(tmp_path)
    assert [m["version"] for m in versions] == ["vc", "vb", "va"]


def test_list_versions_empty(tmp_path: Path) -> None:
    assert shards.list_versions(tmp_path) == []
    assert shards.list_versions(tmp_path / "does-not-exist") == []


def test_latest_and_write_latest(tmp_path: Path) -> None:
    assert shards.latest_version(tmp_path) is None
    shards.write_latest(tmp_path, "v1")
    assert shards.latest_version(tmp_path) == "v1"
    shards.write_latest(tmp_path, "v2")
    assert shards.latest_version(tmp_path) == "v2"
    assert (tmp_path / shards.LATEST).read_text(encoding="utf-8").strip() == "v2"
    # Atomic replace leaves no temp file behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == [shards.LATEST]


def test_latest_version_blank_pointer(tmp_path: Path) -> None:
    (tmp_path / shards.LATEST).write_text("  \n", encoding="utf-8")
    assert shards.latest_version(tmp_path) is None


def test_resolve_version(tmp_path: Path) -> None:
    v1 = _make_version(tmp_path, "v1")
    v2 = _make_version(tmp_path, "v2")
    with pytest.raises(FileNotFoundError):
        shards.resolve_version(tmp_path)  # no LATEST yet
    shards.write_latest(tmp_path, "v1")
    assert shards.resolve_version(tmp_path) == v1
    assert shards.resolve_version(tmp_path, "v2") == v2
    assert shards.resolve_version(v2) == v2  # a version dir itself
    with pytest.raises(FileNotFoundError):
        shards.resolve_version(tmp_path, "nope")


def test_resolve_version_rejects_unpublished(tmp_path: Path) -> None:
    (tmp_path / shards.VERSIONS / "staging").mkdir(parents=True)
    shards.write_latest(tmp_path, "staging")
    with pytest.raises(FileNotFoundError):
        shards.resolve_version(tmp_path)


def test_verify_version_checks_the_tokenizer(tmp_path: Path) -> None:
    version_dir = _make_version(tmp_path, "v1")
    tokenizer = version_dir / "tokenizer.json"
    tokenizer.write_text('{"model": {"vocab": {"a": 0}}}', encoding="utf-8")
    manifest = shards.read_manifest(version_dir)
    # Manifests have always held the sha256; "path" came later, and tokenizer.json is the default.
    manifest["tokenizer"] = {"sha256": shards.sha256_file(tokenizer), "vocab_size": 1}
    (version_dir / shards.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    assert shards.verify_version(version_dir) == []
    tokenizer.write_text('{"model": {"vocab": {"b": 0}}}', encoding="utf-8")
    [problem] = shards.verify_version(version_dir)
    assert problem.startswith("tokenizer.json: sha256 ") and manifest["tokenizer"]["sha256"] in problem
    tokenizer.unlink()
    assert shards.verify_version(version_dir) == ["tokenizer.json: missing"]


def _add_tables(version_dir: Path, rows: dict[str, int], listed_by_name: bool) -> None:
    """Parquet tables as a build publishes them; ``listed_by_name`` writes the older manifest form."""
    manifest = shards.read_manifest(version_dir)
    manifest["counts"] = {count: rows[folder] for folder, count in shards.TABLES.items()}
    manifest["files"] = {}
    for folder in shards.TABLES:
        path = version_dir / folder / "part-00000-of-00001.parquet"
        path.parent.mkdir()
        pq.write_table(pa.table({"id": [f"{folder}{i}" for i in range(rows[folder])]}, schema=pa.schema(
            [("id", pa.string())])), path)
        entry = {"path": f"{folder}/{path.name}", "sha256": shards.sha256_file(path), "rows": rows[folder]}
        manifest["files"][folder] = [path.name if listed_by_name else entry]
    (version_dir / shards.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize("listed_by_name", [False, True], ids=["checksums", "names only"])
def test_verify_version_checks_the_parquet_tables(tmp_path: Path, listed_by_name: bool) -> None:
    version_dir = _make_version(tmp_path, "v1")
    _add_tables(version_dir, {"docs": 5, "rejected": 2, "dead_letter": 0}, listed_by_name)
    assert shards.verify_version(version_dir) == []
    docs = version_dir / "docs" / "part-00000-of-00001.parquet"
    docs.write_bytes(docs.read_bytes()[: docs.stat().st_size // 2])  # truncated
    (version_dir / "dead_letter" / "part-00000-of-00001.parquet").unlink()
    pq.write_table(pa.table({"id": ["x"]}), version_dir / "rejected" / "part-00001-of-00001.parquet")
    problems = shards.verify_version(version_dir)
    expected_docs = ("docs/part-00000-of-00001.parquet: not a readable Parquet file" if listed_by_name
                     else "docs/part-00000-of-00001.parquet: sha256 ")
    assert len(problems) == 3 and problems[0].startswith(expected_docs)
    assert problems[1:] == ["rejected/part-00001-of-00001.parquet: not in the manifest",
                            "dead_letter/part-00000-of-00001.parquet: missing"]
    assert shards.verify_version(version_dir, tables=False) == []  # what a trainer reads is intact


def test_verify_version_checks_table_rows_against_the_manifest(tmp_path: Path) -> None:
    version_dir = _make_version(tmp_path, "v1")
    _add_tables(version_dir, {"docs": 5, "rejected": 2, "dead_letter": 1}, listed_by_name=False)
    manifest = shards.read_manifest(version_dir)
    manifest["files"]["rejected"][0]["rows"] = 3
    manifest["counts"]["dead_letter"] = 4
    (version_dir / shards.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    assert shards.verify_version(version_dir) == [
        "rejected/part-00000-of-00001.parquet: 2 rows != manifest 3",
        "dead_letter/: 1 rows != manifest counts 4 dead_letter"]
