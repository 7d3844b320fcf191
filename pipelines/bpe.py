"""Byte-level BPE with HF ``tokenizers``: train on a deterministic sample, or load a tokenizer.json.

Byte-level pre-tokenisation with no normaliser makes ``decode(encode(text)) == text`` for any
Unicode string, which the pipeline relies on to call tokenisation lossless.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

EOS = "<|endoftext|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (EOS, PAD)
# ``tokenizers`` reads it at every call: "false" runs the call on the calling thread only.
PARALLELISM_ENV = "TOKENIZERS_PARALLELISM"
MAX_VOCAB_SIZE = 1 << 20


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 8192
    path: str = ""  # an existing tokenizer.json to reuse instead of training
    # The training sample: the kept documents with the smallest hash(id), each cut to max chars.
    # 4,000 ~3 KB documents give an 8,192 vocabulary within 0.2% of the compression 10,000 give, in half
    # the training time (`python -m bench --only tokenizer`, docs/benchmarks.md).
    sample_docs: int = 4_000
    sample_chars_per_doc: int = 20_000
    min_frequency: int = 2
    batch_size: int = 256

    def __post_init__(self) -> None:
        # Above: the trainer reserves memory per requested entry before counting (2**31 aborted the worker,
        # asking for 141 GB); published vocabularies stop near 2**18.
        if not 300 <= self.vocab_size <= MAX_VOCAB_SIZE:
            raise ValueError(f"tokenizer.vocab_size must be within [300, {MAX_VOCAB_SIZE:,}] (256 bytes + special "
                             f"tokens + merges at least), got {self.vocab_size}")
        # 0 would train on no text and silently give a vocabulary of bytes and special tokens only.
        for name in ("sample_docs", "sample_chars_per_doc", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"tokenizer.{name} must be >= 1, got {getattr(self, name)}")
        # The trainer takes it as an unsigned count: a negative one failed in the tokenize stage, after the
        # stages before it had run.
        if self.min_frequency < 0:
            raise ValueError(f"tokenizer.min_frequency must be >= 0, got {self.min_frequency}")


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    with tokenizers_parallelism(True):
        tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.encode_special_tokens = True
    return tokenizer


@contextlib.contextmanager
def tokenizers_parallelism(enabled: bool) -> Iterator[None]:
    """``tokenizers``' thread pool on (or off) inside the block; the setting is restored after it.

    A multi-process build's workers encode on their own thread only (:mod:`pipelines.worker`), but
    training runs alone while the other workers wait for its tokenizer: it gets every core (4,000
    documents: 4.70 s on one thread, 2.34 s on two, docs/benchmarks.md).
    """
    previous = os.environ.get(PARALLELISM_ENV)
    if previous is None and enabled:  # unset is on: the environment stays as it is
        yield
        return
    os.environ[PARALLELISM_ENV] = "true" if enabled else "false"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[PARALLELISM_ENV]
        else:
            os.environ[PARALLELISM_ENV] = previous


def tokenizer_from_json(payload: str):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(payload)
    missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
    if missing:
        raise ValueError(f"tokenizer lacks special token(s) {missing}")
    # A document that merely contains the text "<|endoftext|>" must not gain a document boundary.
    # The flag is not stored in tokenizer.json, so it is set on every load.
    tokenizer.encode_special_tokens = True
    return tokenizer


def tokenizer_sha256(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def sample_key(doc_id: str, seed: int = 0) -> bytes:
    """Sampling order for tokenizer training: stable, independent of input order, varied by ``seed``."""
    return hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8, salt=seed.to_bytes(8, "big", signed=True)).digest()
