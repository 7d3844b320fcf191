"""Training batches from a dataset version's shards (read through ``pipelines.shards``).

The data order is a pure function of (seed, position): position i of the endless training stream is
row ``perm[epoch][i % rows]`` of the training split, with a fresh seeded permutation per epoch. So the
whole data cursor is one integer (rows consumed), it resumes exactly, and skipping a window of data
after a rollback is an addition. Under DDP every step consumes one *global* batch of
``world * grad_accum * batch_size`` positions; rank r's micro-batch j is the slice
``(r * grad_accum + j) * batch_size``, so ranks see distinct rows and the union is the same rows one
process with ``world * grad_accum`` micro-batches would see.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch

from pipelines import shards

IGNORE = -100
# The held-out split is fixed by the data alone, so runs with different seeds evaluate on the same rows.
SPLIT_SEED = 20240101


class DataError(RuntimeError):
    """The dataset version is missing, unreadable or fails its checksums."""


def no_shards(version: str) -> DataError:
    """The error for a version built without the tokenize and pack stages."""
    return DataError(f"dataset version {version} has no token shards (run the tokenize,pack stages)")


@dataclass(frozen=True)
class Batch:
    inputs: torch.Tensor  # int64 [batch, seq_len - 1]
    targets: torch.Tensor  # int64, IGNORE where the target is padding
    segments: torch.Tensor  # int64 document index of every input position (for document masking)

    @property
    def n_targets(self) -> int:
        return int((self.targets != IGNORE).sum())


def resolve_data(home: Path, data: str | None) -> Path:
    """``--data`` as a data dir (LATEST), a version dir, or a version name under ``<home>/data``."""
    data_dir = home / "data"
    try:
        if data is None:
            return shards.resolve_version(data_dir)
        path = Path(data)
        if path.exists():
            return shards.resolve_version(path)
        return shards.resolve_version(data_dir, version=data)
    except shards.ManifestError as exc:  # found, but unreadable: not a "not found" with a list of versions
        raise DataError(str(exc)) from exc
    except FileNotFoundError as exc:
        names = [m["version"] for m in shards.list_versions(data_dir)] if data_dir.is_dir() else []
        known = f"versions under {data_dir}: {', '.join(names)}" if names else f"no versions under {data_dir}"
        raise DataError(
            f"dataset {data or data_dir!s} not found ({exc}); {known}. "
            "Build one with: python -m pipelines.build --runner DirectRunner --home HOME"
        ) from exc


def manifest_vocab_size(manifest: dict[str, Any], version_dir: Path) -> int:
    """The manifest's ``tokenizer.vocab_size``: the shards hold no vocabulary size, and a guess from their
    largest token id would size the model's embedding smaller than the tokenizer's vocabulary."""
    tokenizer = manifest.get("tokenizer")
    found = (tokenizer or {}).get("vocab_size")
    if isinstance(found, int) and not isinstance(found, bool) and found >= 1:
        return found
    what = "no tokenizer entry" if not tokenizer else f"tokenizer.vocab_size {found!r}, not a positive whole number"
    raise DataError(
        f"dataset version {manifest['version']} at {version_dir}: its manifest has {what}, and the model's "
        "vocabulary is sized from it. Rebuild the version with: python -m pipelines.build --home HOME"
    )


class TokenData:
    """A verified dataset version: row access, the train/validation split and the batch stream."""

    def __init__(self, version_dir: str | os.PathLike[str], seed: int, eval_rows: int, verify: bool = True):
        self.version_dir = Path(version_dir)
        self.manifest = shards.read_manifest(self.version_dir)
        self.manifest_sha256 = hashlib.sha256((self.version_dir / shards.MANIFEST).read_bytes()).hexdigest()
        self.version = self.manifest["version"]
        if verify:
            problems = shards.verify_version(self.version_dir, tables=False)
            if problems:
                raise DataError(
                    f"dataset version {self.version} at {self.version_dir} failed verification against its "
                    f"manifest: {'; '.join(problems)}. Rebuild the version; never train on silently corrupt data."
                )
        paths = shards.shard_paths(self.version_dir)
        if not paths:
            raise no_shards(self.version)
        self.vocab_size = manifest_vocab_size(self.manifest, self.version_dir)
        self.readers = [shards.ShardReader(p) for p in paths]
        self.seq_len = self.readers[0].seq_len
        self.pad_id = self.readers[0].pad_id
        sizes = np.array([len(r) for r in self.readers])
        self._starts = np.concatenate([[0], np.cumsum(sizes)])
        self.n_rows = int(self._starts[-1])
        # Real (non-padding) tokens per row: the sum of its doc_lengths, computed column-wise in Arrow.
        self.real_len = np.concatenate([_row_sums(r) for r in self.readers])

        order = np.random.default_rng(SPLIT_SEED).permutation(self.n_rows)
        n_val = min(eval_rows, self.n_rows // 10)
        self.val_rows = np.sort(order[:n_val])
        self.train_rows = np.sort(order[n_val:])
        if len(self.train_rows) == 0:
            raise DataError(f"dataset version {self.version} has {self.n_rows} rows: too few to train on")
        self.seed = seed
        self._perm_epoch = -1
        self._perm = self.train_rows

    def unigram_entropy(self) -> float:
        """Entropy (nats) of the training split's token distribution: the loss of a model with no context."""
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for row in self.train_rows:
            counts += np.bincount(self._row(int(row))[: self.real_len[row]], minlength=self.vocab_size)
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log(p)).sum())

    def _row(self, row: int) -> np.ndarray:
        shard = int(np.searchsorted(self._starts, row, side="right") - 1)
        return self.readers[shard].input_ids[row - self._starts[shard]]

    def _doc_lengths(self, row: int) -> list[int]:
        shard = int(np.searchsorted(self._starts, row, side="right") - 1)
        return self.readers[shard].table.column("doc_lengths")[row - self._starts[shard]].as_py()

    def stream_row(self, position: int) -> int:
        epoch, offset = divmod(position, len(self.train_rows))
        if epoch != self._perm_epoch:
            perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_rows))
            self._perm, self._perm_epoch = self.train_rows[perm], epoch
        return int(self._perm[offset])

    def batch(self, rows: list[int], with_segments: bool = False) -> Batch:
        ids = np.stack([self._row(r) for r in rows]).astype(np.int64)
        inputs, targets = ids[:, :-1], ids[:, 1:].copy()
        positions = np.arange(1, self.seq_len)
        targets[positions[None, :] >= self.real_len[rows][:, None]] = IGNORE
        segments = np.zeros_like(inputs)
        if with_segments:
            for i, row in enumerate(rows):
                ends = np.cumsum(self._doc_lengths(row))
                # Padding gets its own segment after the last document.
                segments[i] = np.searchsorted(ends, np.arange(self.seq_len - 1), side="right")
        return Batch(torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(segments))

    def train_micro_batch(self, cursor: int, rank: int, micro: int, grad_accum: int, batch_size: int,
                          with_segments: bool = False) -> Batch:
        start = cursor + (rank * grad_accum + micro) * batch_size
        return self.batch([self.stream_row(p) for p in range(start, start + batch_size)], with_segments)

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def random_batch(like: Batch, vocab_size: int, seed: int) -> Batch:
    """Uniformly random tokens in the shape of ``like`` (the ``bad_batch`` fault)."""
    # The fault's seed mixes the run's seed (up to 2**64) with batch numbers; torch takes 64 bits. Seeds that
    # already fit are unchanged.
    gen = torch.Generator().manual_seed(seed % 2**64)
    ids = torch.randint(0, vocab_size, (like.inputs.shape[0], like.inputs.shape[1] + 1), generator=gen)
    return Batch(ids[:, :-1].contiguous(), ids[:, 1:].contiguous(), torch.zeros_like(like.segments))


def _row_sums(reader: shards.ShardReader) -> np.ndarray:
    column = reader.table.column("doc_lengths").combine_chunks()
    if len(column) == 0:
        return np.zeros(0, dtype=np.int64)
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.int64)
    parents = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
    return np.bincount(parents, weights=values, minlength=len(column)).astype(np.int64)
