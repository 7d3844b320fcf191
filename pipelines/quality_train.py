"""Train the optional fastText quality classifier used by :class:`pipelines.quality.QualityClassifier`.

Owns one thing: turning labelled JSONL (``{"text": ..., "label": "hq" | "lq" | 1 | 0}``) into a fastText
supervised model with labels ``__label__hq`` / ``__label__lq``, plus a precision/recall report on a
deterministic held-out split (the ~10% of examples whose text hashes to 0 mod 10, so the split does not
depend on file order or on Python's randomised ``hash``).

    python -m pipelines.quality_train --input labelled.jsonl --output model.bin \\
        [--text-field text] [--label-field label] [--epoch 5] [--lr 0.5] [--wordNgrams 2] [--dim 64] \\
        [--bucket 200000] [--minCount 1] [--seed 0] [--quantize]

Training runs with ``thread=1`` and a fixed seed so the same input gives the same model. The model file
is (vocabulary + bucket) x dim x 4 bytes: fastText's default 2M buckets at dim 64 would be 512 MB, hence
a smaller default bucket; ``--quantize`` writes a compressed ``.ftz``-style model instead.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pipelines.quality import HQ_LABEL, LQ_LABEL

_HQ_VALUES = frozenset({"hq", "1", "true", "high", "good", "pos", "positive", HQ_LABEL})
_LQ_VALUES = frozenset({"lq", "0", "false", "low", "bad", "neg", "negative", LQ_LABEL})

DEFAULT_PARAMS: dict[str, Any] = {
    "epoch": 5,
    "lr": 0.5,
    "wordNgrams": 2,
    "dim": 64,
    "bucket": 200_000,
    "minCount": 1,
    "seed": 0,
    "quantize": False,
}


@contextlib.contextmanager
def _zeroed_allocations() -> Iterator[None]:
    """Make malloc return zeroed memory while fastText trains (glibc only; a no-op elsewhere).

    fastText 0.9.2 initialises only the first ``thread``/10 of its input matrix (``uniformThread`` fills
    one tenth per thread) and leaves the rest as whatever malloc returns. In a fresh process that is
    zero pages, but after any model has been freed in the same process it is stale heap memory: training
    then gives a different model every call, or fails with "Encountered NaN". glibc's M_PERTURB option
    makes malloc fill new blocks with ``value ^ 0xff``; 255 means zeros, i.e. the fresh-process result.
    """
    m_perturb = -6  # <malloc.h> M_PERTURB
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): results may vary within one process
        yield
        return
    previous = int(os.environ.get("MALLOC_PERTURB_", "0") or 0)
    mallopt(m_perturb, 255)
    try:
        yield
    finally:
        mallopt(m_perturb, previous)


class TrainingError(ValueError):
    """Bad training input or parameters; the message is meant for the user."""


def normalize_label(value: Any) -> str:
    """Map a label value ("hq"/"lq", 1/0, true/false, ...) to ``__label__hq`` / ``__label__lq``."""
    if isinstance(value, bool):
        return HQ_LABEL if value else LQ_LABEL
    if isinstance(value, int | float) and value in (0, 1):
        return HQ_LABEL if value == 1 else LQ_LABEL
    key = str(value).strip().lower()
    if key in _HQ_VALUES:
        return HQ_LABEL
    if key in _LQ_VALUES:
        return LQ_LABEL
    raise TrainingError(f"unknown label {value!r}: use hq/lq, 1/0 or true/false")


def _clean(text: str) -> str:
    # one example per line in fastText's format: no newlines inside the text, and no word that fastText
    # would read as a label
    return " ".join(text.replace("__label__", " ").split())


def is_heldout(text: str) -> bool:
    """Deterministic ~10% held-out split by a stable hash of the text."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10 == 0


def read_jsonl(path: Path, text_field: str = "text", label_field: str = "label") -> list[tuple[str, str]]:
    """Read (text, label) pairs; raises :class:`TrainingError` with the line number on bad input."""
    if not path.is_file():
        raise TrainingError(f"input file not found: {path}")
    records: list[tuple[str, str]] = []
    with path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TrainingError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
            if not isinstance(row, dict):
                raise TrainingError(f"{path}:{lineno}: expected a JSON object")
            if text_field not in row or label_field not in row:
                raise TrainingError(f"{path}:{lineno}: missing field {text_field!r} or {label_field!r}")
            text = row[text_field]
            if not isinstance(text, str):
                raise TrainingError(f"{path}:{lineno}: field {text_field!r} is not a string")
            try:
                label = normalize_label(row[label_field])
            except TrainingError as e:
                raise TrainingError(f"{path}:{lineno}: {e}") from e
            records.append((text, label))
    return records


def train_quality_classifier(
    records: Iterable[tuple[str, str]], output: Path, **params: Any
) -> dict[str, Any]:
    """Train on (text, label) pairs, write the model to ``output`` and return a report.

    Labels may be raw values ("hq", 0, ...) or fastText labels. ``params`` override
    :data:`DEFAULT_PARAMS` (epoch, lr, wordNgrams, dim, bucket, minCount, seed, quantize). The report has
    the model path, example counts per split and label, and precision / recall / f1 / accuracy of the hq
    label on the held-out split (None when the split is empty).
    """
    import fasttext  # heavy native module, only needed here

    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise TrainingError(f"unknown training parameters: {sorted(unknown)}")
    p = {**DEFAULT_PARAMS, **params}

    train: list[tuple[str, str]] = []
    heldout: list[tuple[str, str]] = []
    for text, label in records:
        cleaned = _clean(text)
        if not cleaned:
            continue
        (heldout if is_heldout(cleaned) else train).append((cleaned, normalize_label(label)))
    if not train and not heldout:
        raise TrainingError("no training examples (all texts empty or input empty)")
    labels_all = {lab for _, lab in train} | {lab for _, lab in heldout}
    if len(labels_all) < 2:
        only = next(iter(labels_all)).removeprefix("__label__")
        raise TrainingError(f"only one class in the input ({only!r}): need both hq and lq examples")
    if {lab for _, lab in train} != {HQ_LABEL, LQ_LABEL}:
        raise TrainingError("the training split lacks one class: add more examples of each label")

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, train_path = tempfile.mkstemp(prefix="quality_train_", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for text, label in train:
                f.write(f"{label} {text}\n")
        with _zeroed_allocations():
            try:
                model = fasttext.train_supervised(
                    input=train_path,
                    epoch=int(p["epoch"]),
                    lr=float(p["lr"]),
                    wordNgrams=int(p["wordNgrams"]),
                    dim=int(p["dim"]),
                    bucket=int(p["bucket"]),
                    minCount=int(p["minCount"]),
                    seed=int(p["seed"]),
                    thread=1,  # fastText is only deterministic single-threaded
                    verbose=0,
                )
            except RuntimeError as e:  # "Encountered NaN." when the learning rate is too high
                raise TrainingError(f"fastText training failed ({e}); try a lower --lr") from e
            if p["quantize"]:
                try:
                    model.quantize(input=train_path, qnorm=True, retrain=False, thread=1, verbose=0)
                except (RuntimeError, ValueError) as e:
                    hint = "try a larger --bucket or leave out --quantize"
                    raise TrainingError(f"quantization failed ({e}); {hint}") from e
    finally:
        os.unlink(train_path)
    tmp_out = output.with_name(output.name + ".tmp")
    model.save_model(str(tmp_out))
    os.replace(tmp_out, output)  # never leave a half-written model under the final name

    tp = fp = fn = correct = 0
    if heldout:
        predicted, _ = model.predict([t for t, _ in heldout], k=1)
        for (_, gold), pred in zip(heldout, predicted, strict=True):
            guess = pred[0] if pred else LQ_LABEL
            correct += guess == gold
            tp += guess == HQ_LABEL and gold == HQ_LABEL
            fp += guess == HQ_LABEL and gold == LQ_LABEL
            fn += guess == LQ_LABEL and gold == HQ_LABEL
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    if heldout:
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    def _count(rows: list[tuple[str, str]], label: str) -> int:
        return sum(1 for _, lab in rows if lab == label)

    return {
        "model": str(output),
        "params": {k: p[k] for k in DEFAULT_PARAMS},
        "train_examples": {"hq": _count(train, HQ_LABEL), "lq": _count(train, LQ_LABEL)},
        "heldout_examples": {"hq": _count(heldout, HQ_LABEL), "lq": _count(heldout, LQ_LABEL)},
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": correct / len(heldout) if heldout else None,
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m pipelines.quality_train",
        description="Train a fastText hq/lq quality classifier from labelled JSONL.",
    )
    ap.add_argument("--input", required=True, type=Path, help="JSONL file with text and label fields")
    ap.add_argument("--output", required=True, type=Path, help="where to write the model (.bin or .ftz)")
    ap.add_argument("--text-field", default="text")
    ap.add_argument("--label-field", default="label")
    ap.add_argument("--epoch", type=int, default=DEFAULT_PARAMS["epoch"])
    ap.add_argument("--lr", type=float, default=DEFAULT_PARAMS["lr"])
    ap.add_argument("--wordNgrams", type=int, default=DEFAULT_PARAMS["wordNgrams"])
    ap.add_argument("--dim", type=int, default=DEFAULT_PARAMS["dim"])
    ap.add_argument("--bucket", type=int, default=DEFAULT_PARAMS["bucket"], help="hashed n-gram buckets")
    ap.add_argument("--minCount", type=int, default=DEFAULT_PARAMS["minCount"])
    ap.add_argument("--seed", type=int, default=DEFAULT_PARAMS["seed"])
    ap.add_argument("--quantize", action="store_true", help="write a quantized (smaller) model")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        records = read_jsonl(args.input, args.text_field, args.label_field)
        report = train_quality_classifier(
            records,
            args.output,
            epoch=args.epoch,
            lr=args.lr,
            wordNgrams=args.wordNgrams,
            dim=args.dim,
            bucket=args.bucket,
            minCount=args.minCount,
            seed=args.seed,
            quantize=args.quantize,
        )
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
