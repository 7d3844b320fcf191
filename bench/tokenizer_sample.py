"""How big the tokenizer's training sample needs to be: training time against the tokenizer it gives.

A build trains BPE on the ``tokenizer.sample_docs`` documents with the smallest ``sample_key(id)``; this
trains on the first N of the benchmark corpus in that same order, for several N, and encodes two
held-out sets with each tokenizer: the corpus's last documents in that order (never in any sample) and
the bundled sample corpus (other text: 16+ languages, spam, code). Compression (UTF-8 bytes per token)
says how much each extra document bought; the vocabulary shared with the largest sample's says how much
the merges moved.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report import table

HELD_OUT = 3000


@dataclass(frozen=True)
class SampleResult:
    docs: int
    chars: int
    train_s: float
    train_cpu_s: float
    bytes_per_token_held_out: float
    bytes_per_token_bundled: float
    vocab: frozenset[str]
    held_out_docs: int


def _bytes_per_token(tokenizer, texts: list[str]) -> float:
    encodings = tokenizer.encode_batch_fast(texts)
    return sum(len(t.encode("utf-8")) for t in texts) / sum(len(e.ids) for e in encodings)


def run(corpus_path: Path, sample_sizes: list[int], vocab_size: int = 8192,
        held_out_docs: int = HELD_OUT) -> list[SampleResult]:
    from pipelines.bpe import sample_key, train_bpe
    from pipelines.sample import SAMPLE_CORPUS

    with corpus_path.open(encoding="utf-8") as handle:
        docs = sorted((json.loads(line) for line in handle), key=lambda d: sample_key(d["id"]))
    if len(docs) < max(sample_sizes) + held_out_docs:
        raise ValueError(f"{corpus_path} has {len(docs)} documents; need {max(sample_sizes) + held_out_docs}")
    held_out = [d["text"] for d in docs[-held_out_docs:]]
    with gzip.open(SAMPLE_CORPUS, "rt", encoding="utf-8") as handle:
        bundled = [t for t in (json.loads(line).get("text") for line in handle) if isinstance(t, str)]
    results = []
    for n in sorted(sample_sizes):
        texts = [d["text"] for d in docs[:n]]
        wall, cpu = time.perf_counter(), time.process_time()
        tokenizer = train_bpe(texts, vocab_size)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        results.append(SampleResult(
            n, sum(map(len, texts)), wall, cpu,
            _bytes_per_token(tokenizer, held_out), _bytes_per_token(tokenizer, bundled),
            frozenset(tokenizer.get_vocab()), held_out_docs,
        ))
    return results


def tables(results: list[SampleResult]) -> str:
    largest = results[-1]
    held_out_docs = largest.held_out_docs
    rows = [
        [r.docs, f"{r.chars / 1e6:.1f}", r.train_s, r.train_cpu_s, f"{r.bytes_per_token_held_out:.4f}",
         f"{r.bytes_per_token_held_out / largest.bytes_per_token_held_out - 1:+.2%}",
         f"{r.bytes_per_token_bundled:.4f}",
         f"{r.bytes_per_token_bundled / largest.bytes_per_token_bundled - 1:+.2%}",
         f"{len(r.vocab & largest.vocab) / len(largest.vocab):.1%}"]
        for r in results
    ]
    return table(
        ["sample docs", "M chars", "train s", "train CPU s", f"bytes/token, {held_out_docs:,} held-out docs",
         f"vs {largest.docs:,}", "bytes/token, bundled sample corpus", f"vs {largest.docs:,}",
         f"vocabulary shared with {largest.docs:,}"],
        rows,
    )
