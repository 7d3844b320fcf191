"""Exact and MinHash-LSH near-duplicate detection: signatures, LSH bands, clustering steps.

Plain functions only; ``pipelines.transforms`` wires them into Beam so that clustering never gathers
documents or signatures on one worker: LSH buckets become star edges, candidate edges are verified
against both signatures after two keyed joins, and connected components come from alternating
large-star / small-star rounds (Kiveris et al., 2014), each one GroupByKey on edges.

Why 20 bands x 6 rows over 120 permutations: P(candidate | Jaccard s) = 1 - (1 - s^6)^20 is 0.92
at s = 0.7 (our threshold), 0.9977 at s = 0.8, 0.27 at s = 0.5 and 0.0145 at s = 0.3. Candidates are
then verified with the signatures' estimated Jaccard, so the generous low end costs a little work
but no precision. See :func:`s_curve` and docs/pipeline.md.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from xxhash import xxh3_64_digest, xxh3_64_intdigest, xxh32_intdigest

DATASKETCH_SCHEME = "affine32"
# xxh32 instead of datasketch's default SHA-1 per shingle: 4x faster signatures, and affine32
# pre-mixes every input hash with the MurmurHash3 finalizer anyway. Recorded in the manifest.
SHINGLE_HASH = "xxh32"


@dataclass(frozen=True)
class DedupConfig:
    exact: bool = True
    near: bool = True
    threshold: float = 0.7  # estimated Jaccard of shingle sets for a verified near-duplicate
    num_perm: int = 120
    bands: int = 20
    rows: int = 6
    ngram: int = 5  # words per shingle; characters per shingle for unspaced scripts
    seed: int = 1
    # Large-star/small-star rounds; components of real duplicate graphs converge in 2-4.
    cc_rounds: int = 6

    def __post_init__(self) -> None:
        # cc_rounds 0 would leave chains of near-duplicates split across clusters, seen only as a count.
        for name in ("num_perm", "bands", "rows", "ngram", "cc_rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"dedup.{name} must be >= 1, got {getattr(self, name)}")
        # A band's bucket key starts with its index as one byte (band_keys).
        if self.bands > 256:
            raise ValueError(f"dedup.bands must be within [1, 256], got {self.bands}")
        # datasketch seeds numpy's RandomState with it, which takes only this range.
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"dedup.seed must be within [0, 2**32 - 1], got {self.seed}")
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"dedup.bands * dedup.rows = {self.bands * self.rows} exceeds "
                             f"dedup.num_perm = {self.num_perm}")
        # Also refuses NaN, which no estimated Jaccard reaches: no near-duplicate would be found.
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"dedup.threshold must be within (0, 1], got {self.threshold}")


def s_curve(similarity: float, bands: int, rows: int) -> float:
    """Probability that two documents with Jaccard ``similarity`` share at least one LSH band."""
    return 1.0 - (1.0 - similarity**rows) ** bands


# Punctuation and whitespace alike: every run of them becomes one space, in one pass over the text.
_NON_WORD_RUN = re.compile(r"\W+")
# The same for ASCII text, whose NFKC form is itself: non-word characters become spaces and the words are
# re-joined by one space, ~3x faster than the regex (which is kept for all other text).
_ASCII_NON_WORD_TO_SPACE = str.maketrans({c: " " for c in range(128) if not re.fullmatch(r"\w", chr(c))})


def normalize(text: str) -> str:
    """Case, punctuation, accents-composition and spacing differences do not make a new document."""
    if text.isascii():
        return " ".join(text.lower().translate(_ASCII_NON_WORD_TO_SPACE).split())
    return _NON_WORD_RUN.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def exact_key(text: str) -> str:
    return normalized_key(normalize(text))


def normalized_key(normalized: str) -> str:
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).hexdigest()


def _unspaced(normalized: str) -> bool:
    # CJK or Thai text has few spaces: characters make its shingles, so documents still get many.
    return (normalized.count(" ") + 1) * 12 < len(normalized)


def shingles(normalized: str, n: int) -> set[bytes]:
    """Word n-grams; character n-grams when the script does not separate words with spaces."""
    if not normalized:  # normalised text is stripped and single-spaced: otherwise no gram is empty
        return set()
    if _unspaced(normalized):
        chars = normalized.replace(" ", "")
        grams = {chars[i : i + n] for i in range(max(1, len(chars) - n + 1))}
        return {g.encode("utf-8") for g in grams}
    # Joined as bytes: the n-grams MinHash hashes come out of one pass, not joined as text and then encoded.
    words = normalized.encode("utf-8").split(b" ")
    return {b" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def shingle_occurrences(normalized: str, n: int) -> list[bytes] | set[bytes]:
    """The shingles of :func:`shingles` as MinHash needs them: every occurrence, not the set (a minimum
    does not change when a value repeats), and word n-grams sliced from the encoded text. In normalised
    text one space separates words, so a word n-gram is the bytes from its first word's start to its last
    word's end: no n-gram is joined, and the slice bounds come from one numpy pass over the bytes
    (docs/benchmarks.md has the timings; the signature is the same)."""
    if not normalized or _unspaced(normalized):
        return shingles(normalized, n)
    encoded = normalized.encode("utf-8")
    spaces = np.flatnonzero(np.frombuffer(encoded, dtype=np.uint8) == 32)
    n_words = len(spaces) + 1
    count = max(1, n_words - n + 1)  # fewer than n words: the whole text is the one shingle
    starts = np.concatenate(([0], spaces[: count - 1] + 1)).tolist()
    ends = np.append(spaces, len(encoded))[min(n, n_words) - 1 :].tolist()
    return [encoded[start:end] for start, end in zip(starts, ends, strict=True)]


class Signer:
    """Computes MinHash signatures; the permutations are built once per worker."""

    def __init__(self, config: DedupConfig):
        self.config = config
        self._template = None

    def signature(self, text: str) -> np.ndarray:
        return self.signature_of_normalized(normalize(text))

    def signature_of_normalized(self, normalized: str) -> np.ndarray:
        if self._template is None:
            from datasketch import MinHash  # imports scipy (~0.5 s): only where signatures are made

            self._template = MinHash(num_perm=self.config.num_perm, seed=self.config.seed,
                                     scheme=DATASKETCH_SCHEME, hashfunc=xxh32_intdigest)
        minhash = self._template.copy()
        minhash.update_batch(shingle_occurrences(normalized, self.config.ngram))
        return minhash.hashvalues


def band_keys(signature: np.ndarray, bands: int, rows: int) -> list[bytes]:
    """One bucket key per band: the band index and a 64-bit digest of its rows (XXH3: a bucket key needs
    no cryptographic digest, and two bands that collide by chance only add a candidate pair that the
    verification step then rejects)."""
    raw, width = signature.tobytes(), rows * signature.itemsize  # one copy, sliced as bytes
    return [bytes((band,)) + xxh3_64_digest(raw[band * width : (band + 1) * width]) for band in range(bands)]


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a == b)) / len(a)


def signature_bytes(signature: np.ndarray) -> bytes:
    """A signature (``affine32``: uint32 values) as it crosses the shuffles: the joins hold every one,
    and bytes cost no pickling."""
    return signature.tobytes()


def signature_from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.uint32)


# Buckets travel through the shuffle in this many groups, not one key per bucket: almost every LSH bucket
# holds a single document, and a runner's per-key overhead (not the bytes) dominated the shuffle's memory.
# A bundle hands on its entries as one record per group it touched, so the group count is also how many
# records a bundle's entries become: with 2^16 groups a bundle of 3,000 documents (63,000 entries) still
# made ~40,000 records, with 2^12 it makes 4,096. 2^12 groups hold ~500k entries each at 100M documents
# and ~5M (~0.5-1 GB in the worker that reads one) at 1B, where this constant should grow.
BUCKET_GROUPS = 1 << 12


def bucket_group(key: bytes) -> int:
    return xxh3_64_intdigest(key) & (BUCKET_GROUPS - 1)


def bucket_entry(key: bytes, doc_id: str) -> bytes:
    """A document's membership of one bucket as a single ``bytes``: every document has ~21 of these, and
    a runner holding millions of (key, id) tuples spent ~100 bytes more on each than on one bytes."""
    return bytes([len(key)]) + key + doc_id.encode("utf-8", "surrogatepass")


def split_entry(entry: bytes) -> tuple[bytes, str]:
    size = entry[0]
    return entry[1 : 1 + size], entry[1 + size :].decode("utf-8", "surrogatepass")


def grouped_star_edges(entries: Iterable[bytes]) -> Iterator[tuple[str, str]]:
    """The bucket entries of one bucket group → the star edges of each bucket in it."""
    buckets: dict[bytes, list[str]] = defaultdict(list)
    for key, doc_id in map(split_entry, entries):
        buckets[key].append(doc_id)
    for members in buckets.values():
        if len(members) > 1:
            yield from star_edges(members)


def star_edges(members: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Connect every member of one bucket to its smallest id: n - 1 edges instead of n^2 / 2."""
    ordered = sorted(set(members))
    for other in ordered[1:]:
        yield ordered[0], other


def large_star(node: str, neighbours: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Link every larger neighbour of ``node`` to the smallest node of its neighbourhood."""
    neighbours = set(neighbours)
    smallest = min(neighbours | {node})
    for other in neighbours:
        if other > node:
            yield other, smallest


def small_star(node: str, smaller_neighbours: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Link ``node`` and its smaller neighbours to the smallest of them."""
    group = set(smaller_neighbours) | {node}
    smallest = min(group)
    for other in group:
        if other != smallest:
            yield other, smallest


def choose_keeper(members: Sequence[tuple[float, str]]) -> str:
    """The best quality score wins; ties go to the smallest id, so the choice is deterministic."""
    return min(members, key=lambda m: (-m[0], m[1]))[1]
