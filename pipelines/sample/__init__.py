"""Bundled sample corpus authored by the tokenmill project.

``SAMPLE_CORPUS`` points at ``corpus.jsonl.gz`` (about 1,600 JSON-lines records in 16+
languages with realistic crawl noise); :func:`generate` rebuilds it deterministically.
Regenerate with ``python -m pipelines.sample``.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_CORPUS: Path = Path(__file__).with_name("corpus.jsonl.gz")

# Imported after SAMPLE_CORPUS on purpose. Binding the *function* here also shadows the
# ``pipelines.sample.generate`` submodule attribute, so ``from pipelines.sample import generate``
# always yields the function (the module stays importable as ``pipelines.sample.generate``).
from pipelines.sample.generate import generate  # noqa: E402

__all__ = ["SAMPLE_CORPUS", "generate"]
