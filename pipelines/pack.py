"""Packing tokenised documents into fixed-length rows, and deterministic shard assignment.

Greedy packing joins documents with EOS into one stream and cuts it every ``seq_len`` tokens, so
documents straddle rows. Best-fit packing places each document that fits in a row whole, into the
fullest row that still has room (best-fit decreasing), and only splits documents longer than a row;
it trades a little padding for fewer split documents.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.shards import PackedRow


@dataclass(frozen=True)
class PackConfig:
    seq_len: int = 512
    rows_per_shard: int = 8192
    best_fit: bool = False

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise ValueError("seq_len must be at least 2")
        if self.rows_per_shard < 1:
            raise ValueError("rows_per_shard must be positive")


def bucket_of(doc_id: str, buckets: int) -> int:
    """Which shard a document goes to: a stable hash, independent of worker and input order."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


def order_key(doc_id: str) -> tuple[bytes, str]:
    """Order inside a shard: hash first so neighbouring rows mix sources, id to break ties."""
    return hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), doc_id


def shard_count(total_tokens: int, config: PackConfig) -> int:
    return max(1, math.ceil(total_tokens / (config.seq_len * config.rows_per_shard)))


Doc = tuple[str, Sequence[int]]


def pack_greedy(docs: Sequence[Doc], seq_len: int, eos_id: int, pad_id: int) -> list[PackedRow]:
    rows: list[PackedRow] = []
    tokens: list[int] = []
    lengths: list[int] = []
    ids: list[str] = []
    for doc_id, doc_tokens in docs:
        piece = list(doc_tokens) + [eos_id]
        while piece:
            take = piece[: seq_len - len(tokens)]
            piece = piece[len(take) :]
            tokens.extend(take)
            lengths.append(len(take))
            ids.append(doc_id)
            if len(tokens) == seq_len:
                rows.append(_row(tokens, lengths, ids, seq_len, pad_id))
                tokens, lengths, ids = [], [], []
    if tokens:
        rows.append(_row(tokens, lengths, ids, seq_len, pad_id))
    return rows


def pack_best_fit(docs: Sequence[Doc], seq_len: int, eos_id: int, pad_id: int) -> list[PackedRow]:
    pieces: list[tuple[str, list[int]]] = []
    for doc_id, doc_tokens in docs:
        stream = list(doc_tokens) + [eos_id]
        whole_rows = len(stream) // seq_len if len(stream) > seq_len else 0
        for start in range(0, whole_rows * seq_len, seq_len):
            pieces.append((doc_id, stream[start : start + seq_len]))
        if len(stream) > whole_rows * seq_len:
            pieces.append((doc_id, stream[whole_rows * seq_len :]))
    # Longest first; the stable sort keeps the caller's deterministic order among equal lengths.
    pieces.sort(key=lambda p: -len(p[1]))
    bins: list[tuple[list[int], list[int], list[str]]] = []
    free_space: list[tuple[int, int]] = []  # sorted (room left, bin index)
    for doc_id, piece in pieces:
        slot = bisect.bisect_left(free_space, (len(piece), -1))
        if slot < len(free_space):
            room, index = free_space.pop(slot)
        else:
            room, index = seq_len, len(bins)
            bins.append(([], [], []))
        tokens, lengths, ids = bins[index]
        tokens.extend(piece)
        lengths.append(len(piece))
        ids.append(doc_id)
        if room - len(piece) > 0:
            bisect.insort(free_space, (room - len(piece), index))
    return [_row(t, lengths, ids, seq_len, pad_id) for t, lengths, ids in bins]


def _row(tokens: list[int], lengths: list[int], ids: list[str], seq_len: int, pad_id: int) -> PackedRow:
    padded = np.full(seq_len, pad_id, dtype=np.uint32)
    padded[: len(tokens)] = tokens
    return PackedRow(input_ids=padded, doc_lengths=tuple(lengths), doc_ids=tuple(ids))
