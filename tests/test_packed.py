"""Documents and token ids packed for the runner's shuffles come back unchanged, from any thread."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pipelines import packed


def _doc(i: int) -> dict:
    text = f"Document {i}: naïve café, 東京, emoji 🙂, a lone surrogate \udcff and a NUL \x00. " * 40
    return {"id": f"d{i}", "text": text, "source": "in.jsonl", "position": i, "lang_score": 0.25 + i,
            "raw": b"\xff\xfe bytes", "tags": None}


def test_round_trip_keeps_every_field_and_type() -> None:
    doc = _doc(7)
    blob = packed.pack(doc)
    assert isinstance(blob, bytes)
    back = packed.unpack(blob)
    assert back == doc
    assert list(back) == list(doc)  # field order survives too (Parquet columns are by name, but still)


def test_packed_documents_are_smaller_than_their_pickles() -> None:
    doc = _doc(1)
    assert len(packed.pack(doc)) < len(pickle.dumps(doc, protocol=pickle.HIGHEST_PROTOCOL)) / 2


def test_threads_pack_and_unpack_concurrently() -> None:
    # Beam runs bundles on a thread pool; zstd codec objects must not be shared between threads.
    def round_trip(i: int) -> bool:
        return all(packed.unpack(packed.pack(_doc(i * 100 + j))) == _doc(i * 100 + j) for j in range(50))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(round_trip, range(16)))


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_token_ids_round_trip_with_their_type_and_count(dtype) -> None:
    rng = np.random.default_rng(0)
    for size in (0, 1, 777):
        ids = rng.integers(0, np.iinfo(dtype).max, size=size, dtype=dtype)
        blob = packed.pack_ids(ids)
        back = packed.unpack_ids(blob)
        assert back.dtype == dtype and np.array_equal(back, ids)
        assert packed.ids_count(blob) == size


def test_token_ids_pack_smaller_than_raw_for_text_like_ids() -> None:
    # BPE ids of real text repeat (frequent words, punctuation); a Zipf-like draw stands in for them.
    ids = np.minimum(np.random.default_rng(1).zipf(1.3, size=5000), 8191).astype(np.uint16)
    assert len(packed.pack_ids(ids)) < 0.8 * ids.nbytes


def test_field_names_pack_against_the_dictionary() -> None:
    import zstandard

    annotated = dict.fromkeys(packed.document_fields(), 0.5) | {"id": "d1", "text": "Short text.", "source": "s"}
    plain = zstandard.ZstdCompressor(level=packed.LEVEL).compress(pickle.dumps(annotated, protocol=5))
    blob = packed.pack(annotated)
    assert len(blob) < 0.6 * len(plain)  # the ~40 field names are in the dictionary, not in each document
    assert packed.unpack(blob) == annotated
    assert packed.unpack(packed.pack({"unknown": "fields"})) == {"unknown": "fields"}
