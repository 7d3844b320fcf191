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
import math
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
    try:
        f = path.open("rb")  # decoded line by line, so that bad UTF-8 is reported with its line number
    except OSError as e:
        raise TrainingError(f"cannot read {path}: {e.strerror}") from e
    with f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise TrainingError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from e
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TrainingError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
            except RecursionError as e:
                raise TrainingError(f"{path}:{lineno}: not valid JSON (nested too deeply)") from e
            except ValueError as e:  # e.g. an integer longer than int() may parse
                raise TrainingError(f"{path}:{lineno}: not valid JSON ({e})") from e
            if not isinstance(row, dict):
                raise TrainingError(f"{path}:{lineno}: expected a JSON object")
            if text_field not in row or label_field not in row:
                raise TrainingError(f"{path}:{lineno}: missing field {text_field!r} or {label_field!r}")
            text = row[text_field]
            if not isinstance(text, str):
                raise TrainingError(f"{path}:{lineno}: field {text_field!r} is not a string")
            try:  # JSON may escape a lone surrogate, which no UTF-8 training file can hold
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise TrainingError(f"{path}:{lineno}: field {text_field!r} is not valid Unicode ({e.reason})") from e
            try:
                label = normalize_label(row[label_field])
            except TrainingError as e:
                raise TrainingError(f"{path}:{lineno}: {e}") from e
            records.append((text, label))
    return records


# fastText stores these as C ints; anything larger fails in its binding instead of with a message.
_INT_MAX = 2**31 - 1


def check_params(**params: Any) -> dict[str, Any]:
    """``params`` over :data:`DEFAULT_PARAMS`, or TrainingError naming the first bad one as its CLI flag.

    fastText accepts zero and negative values and then trains a meaningless model, or with no bucket for
    word n-grams divides by zero and kills the process (SIGFPE), so they are refused before it sees them."""
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise TrainingError(f"unknown training parameters: {sorted(unknown)}")
    p = {**DEFAULT_PARAMS, **params}
    for name, low in (("epoch", 1), ("wordNgrams", 1), ("dim", 1), ("minCount", 1), ("bucket", 0), ("seed", 0)):
        value = p[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= _INT_MAX:
            raise TrainingError(f"--{name} must be an integer from {low} to {_INT_MAX}, got {value!r}")
    if p["bucket"] == 0 and p["wordNgrams"] > 1:
        raise TrainingError(f"--bucket must be at least 1 with --wordNgrams {p['wordNgrams']} (word n-grams are "
                            "hashed into the buckets); use --wordNgrams 1 for a model without them")
    lr = p["lr"]
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not (math.isfinite(lr) and lr > 0):
        raise TrainingError(f"--lr must be a positive finite number, got {lr!r}")
    return p


def check_output(output: Path) -> None:
    """TrainingError unless a model file can go at ``output``; checked before anything is trained."""
    if output.is_dir():
        raise TrainingError(f"--output {output} is a directory; give a file name such as {output / 'quality.bin'}")
    parent = next((d for d in output.parents if d.exists()), None)
    if parent is not None and not parent.is_dir():
        raise TrainingError(f"--output {output}: {parent} is not a directory")


def train_quality_classifier(
    records: Iterable[tuple[str, str]], output: Path, **params: Any
) -> dict[str, Any]:
    """Train on (text, label) pairs, write the model to ``output`` and return a report.

    Labels may be raw values ("hq", 0, ...) or fastText labels. ``params`` override
    :data:`DEFAULT_PARAMS` (epoch, lr, wordNgrams, dim, bucket, minCount, seed, quantize). The report has
    the model path, example counts per split and label, and precision / recall / f1 / accuracy of the hq
    label on the held-out split (None when the split is empty).
    """
    p = check_params(**params)
    output = Path(output)
    check_output(output)
    import fasttext  # heavy native module, only needed here

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

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainingError(f"cannot create {output.parent}: {e.strerror}") from e
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
    try:
        model.save_model(str(tmp_out))
        os.replace(tmp_out, output)  # never leave a half-written model under the final name
    except (OSError, ValueError) as e:  # fastText reports a file it cannot open as ValueError
        raise TrainingError(f"cannot write the model to {output} ({e})") from e
    finally:
        tmp_out.unlink(missing_ok=True)  # a model is tens of MB: never leave one behind on failure

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
    params = {"epoch": args.epoch, "lr": args.lr, "wordNgrams": args.wordNgrams, "dim": args.dim,
              "bucket": args.bucket, "minCount": args.minCount, "seed": args.seed, "quantize": args.quantize}
    try:
        # Bad flags fail before the input is read, which can take a while.
        check_params(**params)
        check_output(args.output)
        records = read_jsonl(args.input, args.text_field, args.label_field)
        report = train_quality_classifier(records, args.output, **params)
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
