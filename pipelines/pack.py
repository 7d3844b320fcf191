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

# A row is allocated whole (seq_len uint32 tokens); 2**20 tokens is a 4 MiB row, far beyond any context.
MAX_SEQ_LEN = 1 << 20


@dataclass(frozen=True)
class PackConfig:
    seq_len: int = 512
    rows_per_shard: int = 8192
    best_fit: bool = False

    def __post_init__(self) -> None:
        if not 2 <= self.seq_len <= MAX_SEQ_LEN:
            raise ValueError(f"pack.seq_len must be within [2, {MAX_SEQ_LEN:,}], got {self.seq_len}")
        if self.rows_per_shard < 1:
            raise ValueError(f"pack.rows_per_shard must be >= 1, got {self.rows_per_shard}")


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


def _stream(docs: Sequence[Doc], eos_id: int) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """All documents joined, each followed by EOS, as one array (a shard's tokens stay in numpy, never
    become Python ints); and each document's (id, start, end) in it."""
    spans, total = [], 0
    for doc_id, tokens in docs:
        spans.append((doc_id, total, total + len(tokens) + 1))
        total += len(tokens) + 1
    stream = np.empty(total, dtype=np.uint32)
    for (_, tokens), (_, start, end) in zip(docs, spans, strict=True):
        stream[start : end - 1] = tokens
        stream[end - 1] = eos_id
    return stream, spans


def pack_greedy(docs: Sequence[Doc], seq_len: int, eos_id: int, pad_id: int) -> list[PackedRow]:
    stream, spans = _stream(docs, eos_id)
    rows: list[PackedRow] = []
    lengths: list[int] = []
    ids: list[str] = []
    row_start = 0
    for doc_id, start, end in spans:
        while start < end:
            take = min(end - start, row_start + seq_len - start)
            lengths.append(take)
            ids.append(doc_id)
            start += take
            if start - row_start == seq_len:
                rows.append(_row([stream[row_start:start]], lengths, ids, seq_len, pad_id))
                row_start, lengths, ids = start, [], []
    if lengths:
        rows.append(_row([stream[row_start:]], lengths, ids, seq_len, pad_id))
    return rows


def pack_best_fit(docs: Sequence[Doc], seq_len: int, eos_id: int, pad_id: int) -> list[PackedRow]:
    stream, spans = _stream(docs, eos_id)
    pieces: list[tuple[str, int, int]] = []  # (document id, start in the stream, length)
    for doc_id, start, end in spans:
        length = end - start
        whole_rows = length // seq_len if length > seq_len else 0
        for offset in range(0, whole_rows * seq_len, seq_len):
            pieces.append((doc_id, start + offset, seq_len))
        if length > whole_rows * seq_len:
            pieces.append((doc_id, start + whole_rows * seq_len, length - whole_rows * seq_len))
    # Longest first; the stable sort keeps the caller's deterministic order among equal lengths.
    pieces.sort(key=lambda p: -p[2])
    bins: list[tuple[list[np.ndarray], list[int], list[str]]] = []
    free_space: list[tuple[int, int]] = []  # sorted (room left, bin index)
    for doc_id, start, length in pieces:
        slot = bisect.bisect_left(free_space, (length, -1))
        if slot < len(free_space):
            room, index = free_space.pop(slot)
        else:
            room, index = seq_len, len(bins)
            bins.append(([], [], []))
        parts, lengths, ids = bins[index]
        parts.append(stream[start : start + length])
        lengths.append(length)
        ids.append(doc_id)
        if room - length > 0:
            bisect.insort(free_space, (room - length, index))
    return [_row(parts, lengths, ids, seq_len, pad_id) for parts, lengths, ids in bins]


def _row(parts: list[np.ndarray], lengths: list[int], ids: list[str], seq_len: int, pad_id: int) -> PackedRow:
    padded = np.full(seq_len, pad_id, dtype=np.uint32)
    filled = sum(lengths)
    padded[:filled] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return PackedRow(input_ids=padded, doc_lengths=tuple(lengths), doc_ids=tuple(ids))
