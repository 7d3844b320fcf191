"""Documents cross the runner's shuffles as zstd-compressed pickles, not as dicts.

A runner's GroupByKey (DirectRunner's included) decodes every value it groups and holds it until the
consuming stage runs: a document dict with its text and ~40 annotations costs ~7.5 KB of Python objects
there (a ~4 KB pickle), and the runner re-encodes it afterwards in its single thread. Packed, the same
document is one ``bytes`` object of ~1.7 KB on the benchmark corpus (docs/benchmarks.md) that the runner
only moves, and the compression runs in the workers. Packing is transient: nothing packed is ever
written to a version.
"""

from __future__ import annotations

import pickle
import struct
import threading
from typing import Any

import numpy as np
import zstandard

LEVEL = 1  # zstd's fastest level; level 3 packs ~1% smaller for ~20% more time

_local = threading.local()  # zstandard's (de)compressor objects must not be shared between threads


def _codecs() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    codecs = getattr(_local, "codecs", None)
    if codecs is None:
        codecs = _local.codecs = (zstandard.ZstdCompressor(level=LEVEL), zstandard.ZstdDecompressor())
    return codecs


def document_fields() -> list[str]:
    """Every field a document can carry through the pipeline, in the order the stages add them."""
    from pipelines import pii, quality

    return ["id", "text", "source", "position", "lang", "lang_score", *quality.QUALITY_SIGNALS, "quality_score",
            "dup_cluster", "dup_cluster_size", *(f"pii_{kind}" for kind in pii.PII_TYPES), "n_tokens",
            "stage", "reason"]


def _document_codecs() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    """zstd with a document's pickled field names as a raw-content dictionary.

    Each document is packed alone, so without it every packed document carries its ~40 field names
    (~500 bytes of its ~2.1 KB on the benchmark corpus); with them in the dictionary it packs to ~1.7 KB,
    for ~6 µs more per document (~25 µs in all; unpacking ~11 µs either way), far less than the runner
    spends moving 400 bytes. Only bytes this module packed, in this version of it, are unpacked with it.
    """
    codecs = getattr(_local, "document_codecs", None)
    if codecs is None:
        template = pickle.dumps(dict.fromkeys(document_fields(), 0.0), protocol=pickle.HIGHEST_PROTOCOL)
        fields = zstandard.ZstdCompressionDict(template, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        codecs = _local.document_codecs = (zstandard.ZstdCompressor(level=LEVEL, dict_data=fields),
                                           zstandard.ZstdDecompressor(dict_data=fields))
    return codecs


def pack(value: Any) -> bytes:
    """A document, or a batch (list) of them."""
    return _document_codecs()[0].compress(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def unpack(blob: bytes) -> Any:
    # Only ever bytes this pipeline packed itself, in transit between its own stages.
    return pickle.loads(_document_codecs()[1].decompress(blob))


_IDS_HEADER = struct.Struct("<BI")  # bytes per id, number of ids
_ID_TYPES = {2: np.uint16, 4: np.uint32}


def pack_ids(ids: np.ndarray) -> bytes:
    """A document's token ids (uint16 or uint32) as bytes: ~31% smaller than raw uint16 on the benchmark
    corpus, and one ``bytes`` where an array cost a pickle's framing and an object header."""
    return _IDS_HEADER.pack(ids.itemsize, ids.size) + _codecs()[0].compress(ids.tobytes())


def ids_count(blob: bytes) -> int:
    return _IDS_HEADER.unpack_from(blob)[1]


def unpack_ids(blob: bytes) -> np.ndarray:
    itemsize, _ = _IDS_HEADER.unpack_from(blob)
    return np.frombuffer(_codecs()[1].decompress(blob[_IDS_HEADER.size :]), dtype=_ID_TYPES[itemsize])
