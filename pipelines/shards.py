"""The on-disk dataset contract: packed-token shards, manifests, versions. pyarrow only, no Beam.

A dataset version is an immutable directory ``<data>/versions/<name>/`` holding ``manifest.json``
(written last) and ``shards/*.arrow``; ``<data>/LATEST`` names the current version. Shards are
Arrow IPC *file* format, so readers memory-map them and index rows at random. One shard row is
``seq_len`` token ids plus the lengths and ids of the document pieces packed into it, so the trainer
can stop attention at document boundaries. Schema details: docs/pipeline.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SHARD_FORMAT = "tokenmill.shard.v1"
MANIFEST = "manifest.json"
LATEST = "LATEST"
VERSIONS = "versions"
# A version's Parquet tables: folder → the manifest count its rows add up to.
TABLES = {"docs": "kept", "rejected": "rejected", "dead_letter": "dead_letter"}


def shard_schema(seq_len: int, eos_id: int, pad_id: int, tokenizer_sha256: str = "") -> pa.Schema:
    meta = {
        "format": SHARD_FORMAT,
        "seq_len": str(seq_len),
        "eos_id": str(eos_id),
        "pad_id": str(pad_id),
        "tokenizer_sha256": tokenizer_sha256,
    }
    return pa.schema(
        [
            pa.field("input_ids", pa.list_(pa.uint32(), seq_len), nullable=False),
            # Lengths of the consecutive document pieces in the row (each piece ends with EOS when it
            # ends its document); tokens after their sum are padding.
            pa.field("doc_lengths", pa.list_(pa.int32()), nullable=False),
            pa.field("doc_ids", pa.list_(pa.string()), nullable=False),
        ],
        metadata=meta,
    )


@dataclass(frozen=True)
class PackedRow:
    input_ids: np.ndarray  # uint32[seq_len]
    doc_lengths: tuple[int, ...]
    doc_ids: tuple[str, ...]

    @property
    def n_tokens(self) -> int:
        """Real (non-padding) tokens in the row."""
        return int(sum(self.doc_lengths))


def encode_shard(rows: Sequence[PackedRow], schema: pa.Schema) -> bytes:
    """Serialise rows into Arrow IPC file bytes. Same rows and schema give the same bytes."""
    seq_len = int(schema.metadata[b"seq_len"])
    flat = np.concatenate([r.input_ids for r in rows]).astype(np.uint32, copy=False) if rows else (
        np.zeros(0, dtype=np.uint32)
    )
    if flat.size != seq_len * len(rows):
        raise ValueError(f"every row must hold exactly {seq_len} tokens")
    input_ids = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.uint32()), seq_len)
    table = pa.Table.from_arrays(
        [
            input_ids,
            pa.array([list(r.doc_lengths) for r in rows], type=pa.list_(pa.int32())),
            pa.array([list(r.doc_ids) for r in rows], type=pa.list_(pa.string())),
        ],
        schema=schema,
    )
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(table, max_chunksize=max(1, len(rows)))
    return sink.getvalue()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class ShardReader:
    """Memory-mapped random access to one shard file."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._source = pa.memory_map(str(self.path), "r")
        reader = pa.ipc.open_file(self._source)
        self.schema = reader.schema
        meta = self.schema.metadata or {}
        if meta.get(b"format") != SHARD_FORMAT.encode():
            raise ValueError(f"{self.path}: not a {SHARD_FORMAT} shard")
        self.seq_len = int(meta[b"seq_len"])
        self.eos_id = int(meta[b"eos_id"])
        self.pad_id = int(meta[b"pad_id"])
        self.table = reader.read_all()
        self._ids = _token_matrix(self.table.column("input_ids"), self.seq_len)

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def input_ids(self) -> np.ndarray:
        """All rows as a read-only ``[rows, seq_len]`` uint32 matrix backed by the mapped file."""
        return self._ids

    def __getitem__(self, index: int) -> PackedRow:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        return PackedRow(
            input_ids=self._ids[index],
            doc_lengths=tuple(self.table.column("doc_lengths")[index].as_py()),
            doc_ids=tuple(self.table.column("doc_ids")[index].as_py()),
        )

    def __iter__(self) -> Iterator[PackedRow]:
        for index in range(len(self)):
            yield self[index]

    def close(self) -> None:
        self._source.close()


def _token_matrix(column: pa.ChunkedArray, seq_len: int) -> np.ndarray:
    if column.num_chunks == 0:
        return np.zeros((0, seq_len), dtype=np.uint32)
    if column.num_chunks == 1:
        values = column.chunk(0).flatten().to_numpy(zero_copy_only=True)
    else:
        values = np.concatenate([c.flatten().to_numpy(zero_copy_only=True) for c in column.chunks])
    return values.reshape(-1, seq_len)


# ---------------------------------------------------------------------------------------- versions


def workspace_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The workspace root: ``--home``, else env TOKENMILL_HOME, else the current directory."""
    return Path(home or os.environ.get("TOKENMILL_HOME") or ".").resolve()


class ManifestError(FileNotFoundError):
    """A version's manifest.json is there but unusable: not UTF-8 JSON, not an object, or a key missing or
    of the wrong type. A FileNotFoundError because a version whose manifest cannot be read is, to every
    reader, not a published version: callers that report a missing manifest (trainer.data.resolve_data,
    ``versions show``) report this one too, with the reason in the message."""

    def __init__(self, version_dir: Path, problem: str):
        super().__init__(f"{version_dir / MANIFEST}: {problem}; rebuild or remove this dataset version")
        self.version_dir = version_dir


# The type every reader assumes of each top-level key when it is there; only "version" is required, since
# hand-made manifests (bench.train_gpu's, tests') leave out what they have no use for.
_MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "version": str, "parent": (str, type(None)), "created_at": str, "counts": dict, "config": dict,
    "stages": dict, "distributions": dict, "tokenizer": (dict, type(None)), "seq_len": (int, type(None)),
    "shards": list, "files": dict,
}
_SHARD_TYPES: dict[str, type] = {"path": str, "sha256": str, "rows": int, "tokens": int}


def _manifest_problem(manifest: Any) -> str | None:
    if not isinstance(manifest, dict):
        return f"not a JSON object but a {type(manifest).__name__}"
    if "version" not in manifest:
        return "no 'version' key"
    for key, kind in _MANIFEST_TYPES.items():
        if key in manifest and not isinstance(manifest[key], kind):
            return f"'{key}' is a {type(manifest[key]).__name__}"
    for index, shard in enumerate(manifest.get("shards", [])):
        if not isinstance(shard, dict) or not all(isinstance(shard.get(k), t) for k, t in _SHARD_TYPES.items()):
            return f"shards[{index}] is not an object with {', '.join(_SHARD_TYPES)}"
    for folder, entries in manifest.get("files", {}).items():
        if not isinstance(entries, list) or not all(
                isinstance(e, str) or isinstance(e, dict) and isinstance(e.get("path"), str) for e in entries):
            return f"files.{folder} is not a list of file names or of objects with a path"
    if not isinstance((manifest.get("tokenizer") or {}).get("path", ""), str):
        return "tokenizer.path is not a string"
    return None


def read_manifest(version_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A version's manifest; FileNotFoundError when there is none, ManifestError when it is unusable."""
    path = Path(version_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{version_dir}: no {MANIFEST}; not a published dataset version")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ManifestError(Path(version_dir), f"not UTF-8 ({err.reason} at byte {err.start})") from err
    except (ValueError, RecursionError) as err:  # also an integer too long to parse, arrays nested too deep
        raise ManifestError(Path(version_dir), f"not valid JSON ({err})") from err
    if problem := _manifest_problem(manifest):
        raise ManifestError(Path(version_dir), problem)
    return manifest


def latest_version(data_dir: str | os.PathLike[str]) -> str | None:
    pointer = Path(data_dir) / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    return name or None


def scan_versions(data_dir: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Manifests of every published version, oldest first, and the versions whose manifest is unusable
    (name → ManifestError message). Unpublished staging dirs never show."""
    root = Path(data_dir) / VERSIONS
    manifests, broken = [], {}
    for path in sorted(root.glob(f"*/{MANIFEST}")) if root.is_dir() else []:
        try:
            manifests.append(read_manifest(path.parent))
        except ManifestError as err:
            broken[path.parent.name] = str(err)
    return sorted(manifests, key=lambda m: (m.get("created_at", ""), m["version"])), broken


def list_versions(data_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Manifests of every readable published version, oldest first (``scan_versions`` names the others)."""
    return scan_versions(data_dir)[0]


def resolve_version(path: str | os.PathLike[str], version: str | None = None) -> Path:
    """A version directory from a data dir (using ``version`` or LATEST) or a version dir itself."""
    path = Path(path)
    if (path / MANIFEST).is_file() and version is None:
        read_manifest(path)  # so that a corrupt manifest fails here, where callers expect a bad --data
        return path
    name = version or latest_version(path)
    if name is None:
        raise FileNotFoundError(f"{path}: no {LATEST} and no version given; build a dataset first")
    candidate = path / VERSIONS / name
    read_manifest(candidate)
    return candidate


def verify_version(version_dir: str | os.PathLike[str], tables: bool = True) -> list[str]:
    """Problems found checking a version's files against its manifest ([] = ok): every shard's sha256,
    rows and tokens, tokenizer.json's sha256, and unless ``tables`` is false (a trainer reads neither)
    the Parquet tables of documents, rejects and dead letters (see ``_table_problems``). An unusable
    manifest is the one problem reported; no manifest at all raises FileNotFoundError."""
    version_dir = Path(version_dir)
    try:
        manifest = read_manifest(version_dir)
    except ManifestError as err:
        return [str(err)]
    problems = []
    for shard in manifest.get("shards", []):
        if problem := _file_problem(version_dir, shard["path"], shard["sha256"]):
            problems.append(problem)
            continue
        reader = ShardReader(version_dir / shard["path"])
        tokens = sum(sum(r.as_py()) for r in reader.table.column("doc_lengths"))
        if len(reader) != shard["rows"] or tokens != shard["tokens"]:
            problems.append(f"{shard['path']}: rows/tokens {len(reader)}/{tokens} != manifest")
        reader.close()
    tokenizer = manifest.get("tokenizer")
    # An empty sha256 stands for no tokenizer file: token data made without one (bench.train_gpu's).
    if tokenizer and tokenizer.get("sha256"):
        problem = _file_problem(version_dir, tokenizer.get("path", "tokenizer.json"), tokenizer["sha256"])
        problems += [problem] if problem else []
    if tables and "files" in manifest:  # manifests from before the tables were listed have nothing to check them by
        for folder, count in TABLES.items():
            problems += _table_problems(version_dir, folder, manifest["files"].get(folder, []),
                                        manifest.get("counts", {}).get(count), count)
    return problems


def _file_problem(version_dir: Path, relative: str, sha256: str | None) -> str | None:
    path = version_dir / relative
    if not path.is_file():
        return f"{relative}: missing"
    if sha256 is not None and (digest := sha256_file(path)) != sha256:
        return f"{relative}: sha256 {digest} != manifest {sha256}"
    return None


def _table_problems(version_dir: Path, folder: str, listed: list[Any], expected_rows: int | None,
                    count: str) -> list[str]:
    """One table's files against the manifest: each listed file is there, matches its sha256 and rows
    and opens as Parquet; no file is unlisted; the rows add up to the manifest's count. Older manifests
    list file names only (no sha256, no rows), and get every check they can."""
    entries = [e if isinstance(e, dict) else {"path": f"{folder}/{e}"} for e in listed]
    problems, rows = [], 0
    for entry in entries:
        if problem := _file_problem(version_dir, entry["path"], entry.get("sha256")):
            problems.append(problem)
            continue
        try:
            found = pq.read_metadata(version_dir / entry["path"]).num_rows
        except (pa.ArrowException, OSError) as err:
            problems.append(f"{entry['path']}: not a readable Parquet file ({err})")
            continue
        if entry.get("rows", found) != found:
            problems.append(f"{entry['path']}: {found} rows != manifest {entry['rows']}")
        rows += found
    known = {Path(e["path"]).name for e in entries}
    problems += [f"{folder}/{path.name}: not in the manifest"
                 for path in sorted((version_dir / folder).glob("*.parquet")) if path.name not in known]
    if not problems and expected_rows is not None and rows != expected_rows:
        problems.append(f"{folder}/: {rows} rows != manifest counts {expected_rows} {count}")
    return problems


def shard_paths(version_dir: str | os.PathLike[str]) -> list[Path]:
    version_dir = Path(version_dir)
    return [version_dir / s["path"] for s in read_manifest(version_dir).get("shards", [])]


def write_latest(data_dir: str | os.PathLike[str], name: str) -> None:
    """Point LATEST at ``name`` atomically (temp file + rename)."""
    data_dir = Path(data_dir)
    tmp = data_dir / f".{LATEST}.{os.getpid()}.tmp"
    tmp.write_text(name + "\n", encoding="utf-8")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, data_dir / LATEST)
