"""bench.tokenizer_sample: the table behind the default size of the tokenizer's training sample."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bench import tokenizer_sample

WORDS = ("river stone market garden lantern window harbour meadow orchard quiet bright narrow "
         "travel winter summer morning evening letter number").split()


def _corpus(path: Path, n: int) -> Path:
    rng = random.Random(7)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80))) + "."
            handle.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")
    return path


def test_larger_samples_train_longer_and_the_table_compares_with_the_largest(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus.jsonl", 260)
    results = tokenizer_sample.run(corpus, [20, 200], vocab_size=300, held_out_docs=60)
    assert [r.docs for r in results] == [20, 200]
    assert results[0].chars < results[1].chars
    for r in results:
        assert r.held_out_docs == 60
        assert r.bytes_per_token_held_out > 1.0 and r.bytes_per_token_bundled > 1.0
    table = tokenizer_sample.tables(results)
    lines = table.splitlines()
    assert "60 held-out docs" in lines[0]
    assert lines[-1].startswith("| 200 ") and "+0.00%" in lines[-1] and "100.0%" in lines[-1]


def test_too_small_a_corpus_is_refused(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus.jsonl", 50)
    with pytest.raises(ValueError, match="need 60"):
        tokenizer_sample.run(corpus, [40], vocab_size=300, held_out_docs=20)
