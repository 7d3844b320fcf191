"""Document quality: numeric signals, thresholded keep/drop decisions, and an optional fastText scorer.

This module owns the *quality* text stage's logic, as plain functions with no Beam import:

- :func:`quality_signals` computes a fixed, ordered set of numeric signals (:data:`QUALITY_SIGNALS`, all
  prefixed ``q_``) for one document. They become Parquet columns, so the names and order are a contract.
- :func:`quality_reason` turns signals into a decision with thresholds from :class:`QualityConfig`
  ("score, then decide", as in dolma/datatrove): re-tuning a threshold never recomputes a signal. It
  returns ``None`` to keep, or the stable snake_case name of the first failing rule (:data:`QUALITY_REASONS`).
- :func:`quality_score` folds signals into one number in [0, 1] (higher = better), used to choose which
  member of a near-duplicate cluster to keep.
- :class:`QualityClassifier` wraps an optional fastText model (labels ``__label__hq`` / ``__label__lq``);
  ``pipelines/quality_train.py`` trains one.

The rules are the published heuristics of Gopher (Rae et al. 2021, appendix A), C4 (Raffel et al. 2020)
and FineWeb (Penedo et al. 2024), re-implemented for speed: one split into lines, one word tokenisation
(``str.translate`` + ``str.split`` for ASCII text, one compiled regex otherwise) and n-gram repetition with
vectorised integer hashing instead of per-n-gram Python objects. Where our definition of a signal differs
from the peer implementation (datatrove) the docstring of :func:`quality_signals` says how.

Languages. Word-based rules assume words separated by spaces. For languages written without spaces
(Chinese, Japanese, Thai, Lao, Khmer, Burmese, Tibetan) every character of those scripts is one token and
word counts are character counts scaled by an average word length in characters (:data:`UNSPACED_LANGS`:
1.5 Chinese, 2 Japanese, 4-5 Thai/Lao/Burmese/Khmer/Tibetan); n-gram sizes are scaled the same way,
short-line and words-per-line limits too. When ``lang`` is missing or not such a language, text that is
mostly CJK/South-East-Asian script is detected and treated the same way. The mean-word-length rule is
skipped for those languages and for Korean and Vietnamese (space-separated syllable blocks / syllables, so
"word length" is not comparable); the stop-word rule applies only to languages with a list in
:data:`STOP_WORDS` (skipped otherwise, and when ``lang`` is None); Thai and Lao end sentences with a space,
so the terminal-punctuation rules are skipped for them. Signals that do not apply are set to -1.0, and
rules skip negative values.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import filterfalse
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------

_TOP_NGRAM_NS: tuple[int, ...] = (2, 3, 4)
_DUP_NGRAM_NS: tuple[int, ...] = (5, 6, 7, 8, 9, 10)


# An out-of-range limit drops every document or switches its rule off without a word: (limits, check,
# the range the error names).
_LIMIT_RANGES: tuple[tuple[tuple[str, ...], Callable[[float], bool], str], ...] = (
    (("min_words", "min_stop_words", "min_c4_sentences"), lambda v: v >= 0, ">= 0"),
    # Below 1 no document with a word is kept; a word has at least one character.
    (("max_words", "max_mean_word_length"), lambda v: v >= 1, ">= 1"),
    # Infinity is "no limit" for a maximum, but as a minimum it would drop every document.
    (("min_mean_word_length",), lambda v: 0 <= v < math.inf, "within [0, inf)"),
    # Occurrences per word, not fractions: "###" is 3 per word, blank lines between one-word lines 2.
    (("max_symbol_word_ratio", "max_list_ratio"), lambda v: v >= 0, ">= 0"),
    (("max_bullet_lines_frac", "max_ellipsis_lines_frac", "min_alpha_words_frac", "max_dup_line_frac",
      "max_dup_para_frac", "max_dup_line_char_frac", "max_dup_para_char_frac", "max_javascript_lines_frac",
      "max_policy_lines_frac", "max_c4_removed_lines_frac", "classifier_threshold"),
     lambda v: 0 <= v <= 1, "within [0, 1]"),
    # FineWeb's rules also drop a document whose signal equals the limit, so the end that would keep
    # nothing is excluded; quality.skip_rules turns such a rule off.
    (("min_terminal_punct_lines_frac",), lambda v: 0 <= v < 1, "within [0, 1)"),
    (("max_short_line_frac", "max_char_dup_ratio"), lambda v: 0 < v <= 1, "within (0, 1]"),
)


@dataclass(frozen=True)
class QualityConfig:
    """Every keep/drop threshold of the quality stage (signals never depend on these).

    Defaults are the published values: Gopher = Rae et al. 2021, "Scaling Language Models", appendix A
    (MassiveText quality and repetition filters); C4 = Raffel et al. 2020, section 2.2; FineWeb = Penedo
    et al. 2024 and the datatrove ``FineWebQualityFilter`` defaults it was built with. Values marked
    "ours" are not published and are documented where they are defined. A ``max_*`` rule drops a document
    whose signal is above the limit, a ``min_*`` rule one whose signal is below it.
    """

    # --- Gopher quality filter (Rae et al. 2021, A.1.1) ---
    min_words: int = 50  # Gopher: 50 <= words <= 100,000
    max_words: int = 100_000
    min_mean_word_length: float = 3.0  # Gopher: mean word length in [3, 10] characters
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1  # Gopher: "#" and ellipsis, each at most 0.1 per word
    max_bullet_lines_frac: float = 0.9  # Gopher: at most 90% of lines start with a bullet
    max_ellipsis_lines_frac: float = 0.3  # Gopher: at most 30% of lines end with an ellipsis
    min_alpha_words_frac: float = 0.8  # Gopher: at least 80% of words contain an alphabetic character
    min_stop_words: int = 2  # Gopher: at least 2 of the, be, to, of, and, that, have, with
    # --- Gopher repetition filter (Rae et al. 2021, A.1.2, table A1) ---
    max_dup_line_frac: float = 0.30
    max_dup_para_frac: float = 0.30
    max_dup_line_char_frac: float = 0.20
    max_dup_para_char_frac: float = 0.20
    max_top_ngram_char_frac: tuple[float, ...] = (0.20, 0.18, 0.16)  # n = 2, 3, 4
    max_dup_ngram_char_frac: tuple[float, ...] = (0.15, 0.14, 0.13, 0.12, 0.11, 0.10)  # n = 5 .. 10
    # --- C4 (Raffel et al. 2020, 2.2) ---
    forbid_lorem_ipsum: bool = True  # C4: drop pages containing "lorem ipsum"
    forbid_curly_brace: bool = True  # C4: drop pages containing "{" (code); FineWeb kept this rule
    # C4 removes *lines* mentioning javascript or cookie/terms policies. A page-level limit is ours: a page
    # where more than half the lines are such notices is a notice page, not content.
    max_javascript_lines_frac: float = 0.5
    max_policy_lines_frac: float = 0.5
    # C4 also removes lines without terminal punctuation, with fewer than 3 words or with a >1000-char word.
    # FineWeb found the terminal-punctuation removal too aggressive and disabled it, so the page-level limit
    # on the fraction of lines C4 would remove is off (1.0) by default.
    max_c4_removed_lines_frac: float = 1.0
    min_c4_sentences: int = 5  # C4: drop pages with fewer than 5 sentences (after its line filters)
    # --- FineWeb (Penedo et al. 2024; datatrove FineWebQualityFilter defaults) ---
    min_terminal_punct_lines_frac: float = 0.12  # drop if <= 12% of lines end in terminal punctuation
    max_short_line_frac: float = 0.67  # drop if >= 67% of lines are short (<= 30 characters)
    # The paper's text says 0.1, the datatrove code that built FineWeb defaults to 0.01; we follow the code.
    max_char_dup_ratio: float = 0.01  # drop if >= 1% of characters sit in duplicated lines
    max_list_ratio: float = 0.3  # drop if newlines / words > 0.3
    # --- optional fastText classifier ---
    classifier_model: str = ""  # path to a fastText model with __label__hq/__label__lq; "" = disabled
    classifier_threshold: float = 0.0  # drop if P(__label__hq) < threshold
    classifier_langs: tuple[str, ...] = ()  # languages the classifier judges; () = all (set ("en",) for EN)
    # --- switches ---
    skip_rules: tuple[str, ...] = ()  # reasons (from QUALITY_REASONS) to never apply

    def __post_init__(self) -> None:
        # a typo in a TOML file must be an error, not a silently ignored rule
        if len(self.max_top_ngram_char_frac) != len(_TOP_NGRAM_NS):
            raise ValueError(f"quality.max_top_ngram_char_frac needs {len(_TOP_NGRAM_NS)} values (n = 2, 3, 4)")
        if len(self.max_dup_ngram_char_frac) != len(_DUP_NGRAM_NS):
            raise ValueError(f"quality.max_dup_ngram_char_frac needs {len(_DUP_NGRAM_NS)} values (n = 5 .. 10)")
        unknown = sorted(set(self.skip_rules) - set(QUALITY_REASONS))
        if unknown:
            raise ValueError(f"quality.skip_rules: unknown reason(s) {unknown}; known: {list(QUALITY_REASONS)}")

        for names, ok, bounds in _LIMIT_RANGES:
            for name in names:
                # A plain comparison, false for NaN: NaN compares false with every signal and disables a rule.
                if not ok(value := getattr(self, name)):
                    raise ValueError(f"quality.{name} must be {bounds}, got {value}")
        for name, ns in (("max_top_ngram_char_frac", _TOP_NGRAM_NS), ("max_dup_ngram_char_frac", _DUP_NGRAM_NS)):
            for i, (n, value) in enumerate(zip(ns, getattr(self, name), strict=True)):
                if not 0 <= value <= 1:
                    raise ValueError(f"quality.{name}[{i}] (n = {n}) must be within [0, 1], got {value}")
        for low, high in (("min_words", "max_words"), ("min_mean_word_length", "max_mean_word_length")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"quality.{low} ({getattr(self, low)}) must be <= quality.{high} "
                                 f"({getattr(self, high)}): every document would be dropped")


# ---------------------------------------------------------------------------------------------------------
# Signals: names are a Parquet contract, keep them and their order stable
# ---------------------------------------------------------------------------------------------------------

QUALITY_SIGNALS: tuple[str, ...] = (
    "q_char_count",
    "q_word_count",
    "q_line_count",
    "q_mean_word_length",
    "q_hash_word_ratio",
    "q_ellipsis_word_ratio",
    "q_bullet_line_frac",
    "q_ellipsis_line_frac",
    "q_alpha_word_frac",
    "q_stop_word_count",
    "q_dup_line_frac",
    "q_dup_para_frac",
    "q_dup_line_char_frac",
    "q_dup_para_char_frac",
    *(f"q_top_{n}gram_char_frac" for n in _TOP_NGRAM_NS),
    *(f"q_dup_{n}gram_char_frac" for n in _DUP_NGRAM_NS),
    "q_lorem_ipsum_count",
    "q_curly_brace_count",
    "q_javascript_line_frac",
    "q_policy_line_frac",
    "q_c4_removed_line_frac",
    "q_c4_sentence_count",
    "q_terminal_punct_line_frac",
    "q_short_line_frac",
    "q_newline_word_ratio",
    "q_classifier_hq",
)

QUALITY_REASONS: tuple[str, ...] = (
    "gopher_min_words",
    "gopher_max_words",
    "gopher_dup_para_frac",
    "gopher_dup_para_char_frac",
    "gopher_dup_line_frac",
    "gopher_dup_line_char_frac",
    *(f"gopher_top_{n}gram_char_frac" for n in _TOP_NGRAM_NS),
    *(f"gopher_dup_{n}gram_char_frac" for n in _DUP_NGRAM_NS),
    "gopher_mean_word_length",
    "gopher_hash_word_ratio",
    "gopher_ellipsis_word_ratio",
    "gopher_bullet_line_frac",
    "gopher_ellipsis_line_frac",
    "gopher_alpha_word_frac",
    "gopher_stop_words",
    "c4_lorem_ipsum",
    "c4_curly_brace",
    "c4_javascript_line_frac",
    "c4_policy_line_frac",
    "c4_removed_line_frac",
    "c4_min_sentences",
    "fineweb_line_punct_frac",
    "fineweb_short_line_frac",
    "fineweb_char_dup_frac",
    "fineweb_list_ratio",
    "classifier_low",
)

NOT_APPLICABLE = -1.0  # value of a signal that does not apply to this document or language

# ---------------------------------------------------------------------------------------------------------
# Language tables
# ---------------------------------------------------------------------------------------------------------

# Gopher's English list is exactly the published eight words, so the published rule holds for English.
# The others are 20-30 of the most frequent function words of each language (articles, prepositions,
# conjunctions, copulas), lower case; they only need to be common in real prose and rare in spam.
_STOP_WORD_TABLE = """
en: the be to of and that have with
fr: le la les de des du un une et est en que qui dans pour pas sur au aux il elle ne se ce par avec
    plus sont son sa
de: der die das und ist in zu den von mit sich des auf für nicht ein eine dem es auch an als im
    wird sind bei oder aus wie dass
es: el la de que y en los las del se un una por con no es para al lo como más su pero sus le ha
    este esta
it: il di che e la le per un una in non è del della si con sono da al gli lo dei come anche nel ma
    alla
pt: o a os as de do da dos das que e em um uma para com não no na por se é mais ao ou como mas foi
nl: de het een en van in is dat op te met voor zijn niet die er aan om ook als bij door maar wordt
    worden naar
ru: и в не на что с по как это к из но а о за от для то же так его он она все было был при или бы
pl: i w nie na się z do to że jest jak o a ale po od za co dla przez tak jego są ich lub oraz czy
    tym
sv: och i att det som en på är av för med till den har de inte om ett var men från så kan vid eller
tr: ve bir bu da de için ile olarak çok daha gibi olan en ne her ama kadar değil o ki sonra veya mı
    var
id: yang dan di ini itu dengan untuk dari dalam tidak ke akan pada adalah juga ada oleh karena atau
    sebagai bisa mereka kami
"""  # "xx: words...", indented lines continue the language above


def _parse_stop_words(table: str) -> dict[str, frozenset[str]]:
    parsed: dict[str, list[str]] = {}
    lang = ""
    for line in table.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            lang, _, line = line.partition(":")
            parsed[lang] = []
        parsed[lang].extend(line.split())
    return {k: frozenset(v) for k, v in parsed.items()}


STOP_WORDS: dict[str, frozenset[str]] = _parse_stop_words(_STOP_WORD_TABLE)

# Written without spaces between words: value = average characters (code points) per word, used to scale
# word counts, n-gram sizes and per-line limits. Chinese words average 1.5-1.7 characters; Japanese ~2
# (kana particles and okurigana lengthen words); Thai and Lao ~4 code points and Burmese, Khmer and Tibetan
# ~5 (vowel signs, tone marks, stacked consonants and syllable separators are code points too). These are
# rough, documented approximations (checked only for being in a sane range on UDHR translations); they
# put unspaced prose on the scale of space-separated prose for thresholds tuned on English.
_CJK_CHARS_PER_WORD = 1.5
_SEA_CHARS_PER_WORD = 4.0
UNSPACED_LANGS: dict[str, float] = {
    "zh": 1.5, "yue": 1.5, "wuu": 1.5, "gan": 1.5, "ja": 2.0,
    "th": 4.0, "lo": 4.0, "my": 5.0, "km": 5.0, "bo": 5.0, "dz": 5.0,
}  # fmt: skip
# Space-separated, but a "word" is a syllable (block), so Gopher's word-length bounds do not transfer.
_SYLLABLE_SPACED_LANGS = frozenset({"ko", "vi"})
# Written without sentence-final punctuation (a space ends a sentence), so the terminal-punctuation rules
# (C4 sentences and line removal, FineWeb line punctuation) do not apply.
_NO_TERMINAL_PUNCT_LANGS = frozenset({"th", "lo"})

_ISO3_TO_1 = {
    "eng": "en", "fra": "fr", "fre": "fr", "deu": "de", "ger": "de", "spa": "es", "ita": "it", "por": "pt",
    "nld": "nl", "dut": "nl", "rus": "ru", "pol": "pl", "swe": "sv", "tur": "tr", "ind": "id", "zho": "zh",
    "chi": "zh", "cmn": "zh", "jpn": "ja", "kor": "ko", "vie": "vi", "tha": "th", "lao": "lo", "khm": "km",
    "mya": "my", "bur": "my", "bod": "bo", "tib": "bo", "dzo": "dz",
}  # fmt: skip


def normalize_lang(lang: str | None) -> str | None:
    """'en', 'EN', 'en-US', 'eng_Latn', '__label__en' -> 'en'; None/'' -> None."""
    if not lang:
        return None
    code = lang.strip().lower().removeprefix("__label__")
    code = re.split(r"[-_]", code, maxsplit=1)[0]
    return _ISO3_TO_1.get(code, code) or None


# ---------------------------------------------------------------------------------------------------------
# Character tables (built once at import from unicodedata; constants, not state)
# ---------------------------------------------------------------------------------------------------------

# Punctuation (P*) and symbols (S*) of the Basic Multilingual Plane. Words are runs of anything else, so
# combining marks (Devanagari matras, Thai vowels) stay inside words, unlike Python's regex \w.
_PUNCT_CHARS = "".join(chr(c) for c in range(0x10000) if unicodedata.category(chr(c))[0] in "PS")
_PUNCT_TO_SPACE = str.maketrans(_PUNCT_CHARS, " " * len(_PUNCT_CHARS))
_PUNCT_CLASS = re.escape(_PUNCT_CHARS)
_WORD_RE = re.compile(f"[^\\s{_PUNCT_CLASS}]+")
_HAS_ALPHA_RE = re.compile(r"[^\W\d_]")  # a letter: word character that is not a digit or "_"

_CJK_RANGES = "\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_CJK_RANGES += "\U00020000-\U0003134f"
_SEA_RANGES = "\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff\uaa60-\uaa7f"
_CJK_RE = re.compile(f"[{_CJK_RANGES}]")
_SEA_RE = re.compile(f"[{_SEA_RANGES}]")
_THAI_LAO_RE = re.compile("[\u0e00-\u0eff]")
_UNSPACED_RE = re.compile(f"[{_CJK_RANGES}{_SEA_RANGES}]")
# One unspaced-script character, or a run of other word characters.
_UNIT_RE = re.compile(f"[{_CJK_RANGES}{_SEA_RANGES}]|[^\\s{_PUNCT_CLASS}{_CJK_RANGES}{_SEA_RANGES}]+")
# Script-based fallback when lang is unknown or wrong: text that is mostly CJK/SEA characters is unspaced.
_UNSPACED_SCRIPT_MIN_FRAC = 0.3

# Sentence terminators: Latin, CJK full-width, Devanagari danda, Arabic/Urdu, Ethiopic, Burmese, Armenian,
# Khmer, Tibetan. A line "ends in terminal punctuation" if it ends with one of these or a closing quote
# (C4 counts a closing quote as terminal), or a terminator followed by a closing bracket.
_TERMINALS = ".!?…。！？｡।॥؟۔።။։៕។།༎"
_QUOTES = "\"'”’»」』"
_CLOSERS = _QUOTES + "）)]"
TERMINAL_PUNCT: tuple[str, ...] = (
    *_TERMINALS,
    *_QUOTES,
    *(t + c for t in ".!?。！？" for c in ")]）"),
)
# A run of terminators (plus closing quotes) not followed by a Latin, Greek or Cyrillic letter or digit
# ("3.14", "e.g.", "example.com" are not sentence ends; CJK, Thai and Burmese put no space after one).
_SENT_END_RE = re.compile(
    f"[{re.escape(_TERMINALS)}]+[{re.escape(_CLOSERS)}]*(?![0-9A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff])"
)
_PARA_SPLIT_RE = re.compile(r"\n[ \t\r\f\v]*\n\s*")

# Gopher/datatrove use "•" and "-"; we add the other common bullet glyphs. Em/en dashes are left out on
# purpose: they open dialogue lines in Russian, Spanish and French fiction.
BULLETS: tuple[str, ...] = (
    "•", "●", "○", "◦", "▪", "■", "□", "‣", "·", "-", "*", "►", "▶", "➢", "→", "✓", "✔",
)  # fmt: skip
_ELLIPSES = ("...", "…")
# C4's policy substrings (lines containing them are removed).
_POLICY_SUBSTRINGS = (
    "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies",
)  # fmt: skip
_C4_MIN_WORDS_PER_LINE = 3
_C4_MAX_WORD_LENGTH = 1000
# FineWeb: a short line has at most 30 characters (~5 English words); unspaced scripts scale by 5 words.
_SHORT_LINE_CHARS = 30
_SHORT_LINE_WORDS = 5

_HASH_MULT_INT = 1_000_003  # polynomial combination of word hashes into n-gram hashes
_HASH_MULT = np.int64(_HASH_MULT_INT)


# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items seen before, characters in them): datatrove's find_duplicates semantics."""
    if len(items) < 2:
        return 0, 0
    counts = Counter(items)
    if len(counts) == len(items):
        return 0, 0
    dup_items = 0
    dup_chars = 0
    for item, c in counts.items():
        if c > 1:
            dup_items += c - 1
            dup_chars += len(item) * (c - 1)
    return dup_items, dup_chars


def _ngram_repetition(
    words: list[str], top_ns: Iterable[int], dup_ns: Iterable[int]
) -> tuple[list[float], list[float]]:
    """Gopher n-gram repetition over word (or unit) tokens, as fractions of all word characters.

    top: characters of the most frequent repeated n-gram times its count (0 when nothing repeats; ties go
    to the longest, which keeps the value independent of hash order). dup: characters of word positions
    covered by any occurrence of an n-gram that occurs more than once (each word counted once).

    Words are hashed once (``hash`` of str, cached by CPython) and n-gram hashes are built by a polynomial
    roll in int64. An (n+1)-gram at position i can repeat only if the n-grams at i and i+1 both do, so
    each n looks only at the positions the n before left (on the benchmark corpus ~458 words, then ~22,
    ~12, ...), and once an n finds no repeats every larger n is 0 without work.
    """
    top_ns = list(top_ns)
    dup_ns = list(dup_ns)
    results: dict[int, tuple[float, float]] = {}
    n_words = len(words)
    wanted = set(top_ns) | set(dup_ns)
    if n_words >= 2 and wanted:
        hashes = np.fromiter(map(hash, words), dtype=np.int64, count=n_words)
        cum = np.zeros(n_words + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=n_words), out=cum[1:])
        if cum[-1] > 0:
            _repetition_by_n(hashes, cum, set(top_ns), set(dup_ns), max(wanted), results)
    top = [results.get(n, (0.0, 0.0))[0] for n in top_ns]
    dup = [results.get(n, (0.0, 0.0))[1] for n in dup_ns]
    return top, dup


# Below this many candidate positions an n is cheaper in plain Python than in a dozen numpy calls.
_FEW_POSITIONS = 48
_INT64_WRAP = 1 << 64
_INT64_SIGN = 1 << 63


def _repetition_by_n(hashes: np.ndarray, cum: np.ndarray, top_ns: set[int], dup_ns: set[int], max_n: int,
                     results: dict[int, tuple[float, float]]) -> None:
    """Fills ``results[n] = (top, dup)`` for every n from 2 that still has repeats (see above)."""
    n_words = len(hashes)
    total = float(cum[-1])
    positions = np.arange(n_words - 1)
    grams = hashes[:-1] * _HASH_MULT + hashes[1:]  # int64 overflow wraps silently on arrays
    n = 2
    while n <= max_n and len(positions) > _FEW_POSITIONS:
        order = np.argsort(grams, kind="stable")
        sorted_grams = grams[order]
        same = sorted_grams[1:] == sorted_grams[:-1]
        if not same.any():
            return
        repeated_sorted = np.zeros(len(order), dtype=bool)
        repeated_sorted[1:] = same
        repeated_sorted[:-1] |= same
        repeated = np.empty_like(repeated_sorted)
        repeated[order] = repeated_sorted
        starts = positions[repeated]
        top_frac = dup_frac = 0.0
        if n in top_ns:
            bounds = np.concatenate(([0], np.flatnonzero(~same) + 1, [len(order)]))
            runs = np.diff(bounds)
            m = int(runs.max())
            firsts = positions[order[bounds[:-1][runs == m]]]
            # overlapping occurrences ("a a a a") can count characters twice: cap at the whole text
            top_frac = min(1.0, m * float((cum[firsts + n] - cum[firsts]).max()) / total)
        if n in dup_ns:
            # +1 where a duplicated n-gram starts, -1 where it ends: positive prefix sums = covered words
            size = n_words + 1
            delta = np.bincount(starts, minlength=size) - np.bincount(starts + n, minlength=size)
            covered = np.cumsum(delta[:n_words]) > 0
            dup_frac = float(np.diff(cum)[covered].sum()) / total
        results[n] = (top_frac, dup_frac)
        follows = starts[1:] == starts[:-1] + 1
        fits = starts[:-1][follows] + n < n_words
        positions = starts[:-1][follows][fits]
        grams = grams[repeated][:-1][follows][fits] * _HASH_MULT + hashes[positions + n]
        n += 1
    _repetition_by_n_few(hashes.tolist(), cum.tolist(), positions.tolist(), grams.tolist(), n, top_ns, dup_ns,
                         max_n, results)


def _repetition_by_n_few(hashes: list[int], cum: list[int], positions: list[int], grams: list[int], n: int,
                         top_ns: set[int], dup_ns: set[int], max_n: int,
                         results: dict[int, tuple[float, float]]) -> None:
    """:func:`_repetition_by_n` for few positions, in plain Python with the same int64 arithmetic."""
    n_words = len(hashes)
    total = float(cum[-1])
    while n <= max_n and len(positions) >= 2:
        groups: dict[int, list[int]] = {}
        for position, gram in zip(positions, grams, strict=True):
            groups.setdefault(gram, []).append(position)
        repeats = [group for group in groups.values() if len(group) > 1]
        if not repeats:
            return
        top_frac = dup_frac = 0.0
        if n in top_ns:
            m = max(map(len, repeats))
            chars = max(cum[group[0] + n] - cum[group[0]] for group in repeats if len(group) == m)
            top_frac = min(1.0, m * float(chars) / total)
        starts = sorted(position for group in repeats for position in group)
        if n in dup_ns:
            covered = 0
            run_start, run_end = starts[0], starts[0] + n
            for start in starts[1:]:
                if start > run_end:
                    covered += cum[run_end] - cum[run_start]
                    run_start = start
                run_end = start + n
            covered += cum[run_end] - cum[run_start]
            dup_frac = float(covered) / total
        results[n] = (top_frac, dup_frac)
        gram_at = dict(zip(positions, grams, strict=True))
        repeated = set(starts)
        positions = [start for start in starts if start + 1 in repeated and start + n < n_words]
        grams = []
        for position in positions:
            gram = (gram_at[position] * _HASH_MULT_INT + hashes[position + n]) % _INT64_WRAP
            grams.append(gram - _INT64_WRAP if gram >= _INT64_SIGN else gram)
        n += 1


def _scale_ngram(n: int, chars_per_word: float) -> int:
    return max(n, int(n * chars_per_word + 0.5))


# ---------------------------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------------------------


def quality_signals(
    text: str, lang: str | None, classifier: QualityClassifier | None = None
) -> dict[str, float]:
    """Compute every quality signal of one document; keys are exactly :data:`QUALITY_SIGNALS`, in order.

    ``lang`` is the language code from language ID (``en``, ``zh-Hans``, ``eng_Latn`` all work; None when
    unknown). ``q_classifier_hq`` is -1.0 ("not computed") unless ``classifier`` is given, in which case
    it holds P(``__label__hq``); a Beam wrapper may equally overwrite it afterwards.

    Definitions (fractions are in [0, 1]; -1.0 marks a signal that does not apply):

    - words: lower-cased text with Unicode punctuation/symbols turned into spaces, split on whitespace
      (so symbol-only tokens are not words, like datatrove's non-symbol words). In unspaced scripts each
      character is a token and ``q_word_count`` = other tokens + script characters / chars-per-word.
    - ``q_mean_word_length``: mean characters per word; -1 for unspaced languages, Korean, Vietnamese.
    - ``q_hash_word_ratio`` / ``q_ellipsis_word_ratio``: occurrences of "#" / ("..." or "…") per word.
    - ``q_alpha_word_frac``: fraction of whitespace-separated tokens containing an alphabetic character
      (``str.isalpha`` is true for letters of every script, so this applies everywhere).
    - ``q_stop_word_count``: words in the language's :data:`STOP_WORDS` list; -1 when there is none.
    - line signals use non-empty stripped lines; paragraphs are separated by blank lines. Duplicate
      fractions count the repeats after the first occurrence (datatrove's ``find_duplicates``); char
      fractions divide by the characters of all non-empty lines / paragraphs.
    - ``q_top_{n}gram_char_frac``: characters of the most frequent repeated word n-gram times its count
      over all word characters; ``q_dup_{n}gram_char_frac``: characters of words covered by n-grams that
      occur more than once (Gopher's definition; datatrove instead counts only later occurrences and
      divides by len(text), so its values are lower). For unspaced scripts n is scaled by chars-per-word.
    - C4: ``q_lorem_ipsum_count``, ``q_curly_brace_count`` ("{" count), line fractions mentioning
      javascript / C4's policy phrases, ``q_c4_removed_line_frac`` (lines C4 would delete: no terminal
      punctuation, < 3 words, javascript, policy, a word > 1000 chars) and ``q_c4_sentence_count``
      (sentence ends in the lines kept by C4's filters other than terminal punctuation, as FineWeb ran it).
    - FineWeb: ``q_terminal_punct_line_frac``, ``q_short_line_frac`` (lines <= 30 chars; 5 words' worth
      of characters for unspaced scripts) and ``q_newline_word_ratio`` (newlines per word).
      ``q_terminal_punct_line_frac`` and ``q_c4_sentence_count`` are -1 for Thai and Lao.

    Cost: about 0.4-0.7 ms for a 3 KB English document on one core.
    """
    code = normalize_lang(lang)
    n_chars = len(text)
    lower = text.lower()
    is_ascii = text.isascii()

    # --- language mode: spaced words, or per-character units for unspaced scripts ---
    chars_per_word = UNSPACED_LANGS.get(code or "", 0.0)
    if not chars_per_word and not is_ascii:
        # langid may be missing or wrong; trust the script when it is clearly CJK / South-East Asian
        n_cjk = len(_CJK_RE.findall(text))
        n_sea = len(_SEA_RE.findall(text)) if n_cjk * 2 < n_chars else 0
        non_space = n_chars - sum(map(text.count, " \n\t\r"))
        if non_space and (n_cjk + n_sea) / non_space >= _UNSPACED_SCRIPT_MIN_FRAC:
            chars_per_word = _CJK_CHARS_PER_WORD if n_cjk >= n_sea else _SEA_CHARS_PER_WORD
            if n_sea > n_cjk and len(_THAI_LAO_RE.findall(text)) * 2 > n_sea:
                code = "th"  # Thai or Lao script: only used to skip the punctuation rules below
    unspaced = chars_per_word > 0.0
    has_terminal_punct = code not in _NO_TERMINAL_PUNCT_LANGS

    # --- tokens ---
    if unspaced:
        words = _UNIT_RE.findall(lower)
        n_script = len(_UNSPACED_RE.findall(lower))
        n_words = (len(words) - n_script) + n_script / chars_per_word
    else:
        words = lower.translate(_PUNCT_TO_SPACE).split() if is_ascii else _WORD_RE.findall(lower)
        n_words = float(len(words))
    word_chars = sum(map(len, words))
    raw_tokens = text.split()

    if unspaced or code in _SYLLABLE_SPACED_LANGS or not words:
        mean_word_length = NOT_APPLICABLE
    else:
        mean_word_length = word_chars / len(words)

    if raw_tokens:
        # str.isalpha settles most tokens in C; only tokens with punctuation or digits need the regex
        candidates = list(filterfalse(str.isalpha, raw_tokens))
        no_alpha = len(candidates) - len(list(filter(_HAS_ALPHA_RE.search, candidates)))
        alpha_word_frac = 1.0 - no_alpha / len(raw_tokens)
        max_token_len = max(map(len, raw_tokens))
    else:
        alpha_word_frac = 0.0
        max_token_len = 0

    stop_list = STOP_WORDS.get(code or "") if not unspaced else None
    stop_word_count = float(sum(map(stop_list.__contains__, words))) if stop_list else NOT_APPLICABLE

    per_word = 1.0 / n_words if n_words else 0.0
    hash_word_ratio = text.count("#") * per_word
    ellipsis_word_ratio = (text.count("...") + text.count("…")) * per_word
    newline_word_ratio = text.count("\n") * per_word

    # --- lines and paragraphs ---
    lines = [s for s in map(str.strip, text.split("\n")) if s]
    n_lines = len(lines)
    line_chars = sum(map(len, lines))
    if n_lines:
        inv_lines = 1.0 / n_lines
        terminal = [s.endswith(TERMINAL_PUNCT) for s in lines]
        terminal_frac = sum(terminal) * inv_lines
        short_len = _SHORT_LINE_CHARS if not unspaced else int(_SHORT_LINE_WORDS * chars_per_word + 0.5)
        short_frac = sum(1 for s in lines if len(s) <= short_len) * inv_lines
        bullet_frac = sum(1 for s in lines if s.startswith(BULLETS)) * inv_lines
        ellipsis_line_frac = sum(1 for s in lines if s.endswith(_ELLIPSES)) * inv_lines
        dup_lines, dup_line_chars = _duplicates(lines)
        dup_line_frac = dup_lines * inv_lines
        dup_line_char_frac = dup_line_chars / line_chars if line_chars else 0.0
    else:
        terminal = []
        terminal_frac = short_frac = bullet_frac = ellipsis_line_frac = 0.0
        dup_line_frac = dup_line_char_frac = 0.0

    paragraphs = [p for p in (p.strip() for p in _PARA_SPLIT_RE.split(text)) if p]
    dup_paras, dup_para_chars = _duplicates(paragraphs)
    dup_para_frac = dup_paras / len(paragraphs) if paragraphs else 0.0
    para_chars = sum(map(len, paragraphs))
    dup_para_char_frac = dup_para_chars / para_chars if para_chars else 0.0

    # --- C4 line filters ---
    has_js = "javascript" in lower
    has_policy = any(p in lower for p in _POLICY_SUBSTRINGS)
    has_long_word = max_token_len > _C4_MAX_WORD_LENGTH
    js_lines = policy_lines = 0
    kept: list[str] = []
    removed = 0
    for s, term in zip(lines, terminal, strict=True):
        drop = False
        if has_js or has_policy:
            low_s = s.lower()
            if has_js and "javascript" in low_s:
                js_lines += 1
                drop = True
            if has_policy and any(p in low_s for p in _POLICY_SUBSTRINGS):
                policy_lines += 1
                drop = True
        if not drop:
            # maxsplit: we only need to know whether there are at least 3 words
            n_line_words = len(s) / chars_per_word if unspaced else len(s.split(None, 2))
            if n_line_words < _C4_MIN_WORDS_PER_LINE:
                drop = True
            if not drop and has_long_word and any(len(t) > _C4_MAX_WORD_LENGTH for t in s.split()):
                drop = True
        if drop:
            removed += 1
            continue
        kept.append(s)
        if not term and has_terminal_punct:
            removed += 1  # C4 proper would drop it too; FineWeb-style sentence counting keeps it
    if not has_terminal_punct:
        sentences = NOT_APPLICABLE
        terminal_frac = NOT_APPLICABLE
    elif kept:
        kept_text = "\n".join(kept)
        sentences = len(_SENT_END_RE.findall(kept_text))
        if not kept[-1].endswith(TERMINAL_PUNCT):
            sentences += 1  # trailing unterminated fragment
    else:
        sentences = 0
    inv = 1.0 / n_lines if n_lines else 0.0

    # --- n-gram repetition ---
    cpw = chars_per_word if unspaced else 1.0
    top_ns = [_scale_ngram(n, cpw) for n in _TOP_NGRAM_NS]
    dup_ns = [_scale_ngram(n, cpw) for n in _DUP_NGRAM_NS]
    top, dup = _ngram_repetition(words, top_ns, dup_ns)

    classifier_hq = classifier.predict_hq(text) if classifier is not None else NOT_APPLICABLE

    values = (
        float(n_chars),
        float(n_words),
        float(n_lines),
        float(mean_word_length),
        hash_word_ratio,
        ellipsis_word_ratio,
        bullet_frac,
        ellipsis_line_frac,
        alpha_word_frac,
        stop_word_count,
        dup_line_frac,
        dup_para_frac,
        dup_line_char_frac,
        dup_para_char_frac,
        *top,
        *dup,
        float(lower.count("lorem ipsum")),
        float(text.count("{")),
        js_lines * inv,
        policy_lines * inv,
        removed * inv,
        float(sentences),
        terminal_frac,
        short_frac,
        newline_word_ratio,
        float(classifier_hq),
    )
    return dict(zip(QUALITY_SIGNALS, (float(v) for v in values), strict=True))


# ---------------------------------------------------------------------------------------------------------
# Decision
# ---------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)  # configs are frozen and hashable; the rule list is rebuilt once per config
def _rules(config: QualityConfig) -> tuple[tuple[str, str, str, float], ...]:
    """(reason, signal, op, limit) in the fixed order of evaluation. op: 'min' drops below, 'max' above,
    'max=' drops at or above (FineWeb's >= rules), 'min=' drops at or below (FineWeb's <= rule)."""
    c = config
    rules: list[tuple[str, str, str, float]] = [
        ("gopher_min_words", "q_word_count", "min", c.min_words),
        ("gopher_max_words", "q_word_count", "max", c.max_words),
        ("gopher_dup_para_frac", "q_dup_para_frac", "max", c.max_dup_para_frac),
        ("gopher_dup_para_char_frac", "q_dup_para_char_frac", "max", c.max_dup_para_char_frac),
        ("gopher_dup_line_frac", "q_dup_line_frac", "max", c.max_dup_line_frac),
        ("gopher_dup_line_char_frac", "q_dup_line_char_frac", "max", c.max_dup_line_char_frac),
    ]
    for n, limit in zip(_TOP_NGRAM_NS, c.max_top_ngram_char_frac, strict=True):
        rules.append((f"gopher_top_{n}gram_char_frac", f"q_top_{n}gram_char_frac", "max", limit))
    for n, limit in zip(_DUP_NGRAM_NS, c.max_dup_ngram_char_frac, strict=True):
        rules.append((f"gopher_dup_{n}gram_char_frac", f"q_dup_{n}gram_char_frac", "max", limit))
    rules += [
        ("gopher_mean_word_length", "q_mean_word_length", "min", c.min_mean_word_length),
        ("gopher_mean_word_length", "q_mean_word_length", "max", c.max_mean_word_length),
        ("gopher_hash_word_ratio", "q_hash_word_ratio", "max", c.max_symbol_word_ratio),
        ("gopher_ellipsis_word_ratio", "q_ellipsis_word_ratio", "max", c.max_symbol_word_ratio),
        ("gopher_bullet_line_frac", "q_bullet_line_frac", "max", c.max_bullet_lines_frac),
        ("gopher_ellipsis_line_frac", "q_ellipsis_line_frac", "max", c.max_ellipsis_lines_frac),
        ("gopher_alpha_word_frac", "q_alpha_word_frac", "min", c.min_alpha_words_frac),
        ("gopher_stop_words", "q_stop_word_count", "min", c.min_stop_words),
        ("c4_lorem_ipsum", "q_lorem_ipsum_count", "max", 0.0 if c.forbid_lorem_ipsum else math.inf),
        ("c4_curly_brace", "q_curly_brace_count", "max", 0.0 if c.forbid_curly_brace else math.inf),
        ("c4_javascript_line_frac", "q_javascript_line_frac", "max", c.max_javascript_lines_frac),
        ("c4_policy_line_frac", "q_policy_line_frac", "max", c.max_policy_lines_frac),
        ("c4_removed_line_frac", "q_c4_removed_line_frac", "max", c.max_c4_removed_lines_frac),
        ("c4_min_sentences", "q_c4_sentence_count", "min", c.min_c4_sentences),
        ("fineweb_line_punct_frac", "q_terminal_punct_line_frac", "min=", c.min_terminal_punct_lines_frac),
        ("fineweb_short_line_frac", "q_short_line_frac", "max=", c.max_short_line_frac),
        ("fineweb_char_dup_frac", "q_dup_line_char_frac", "max=", c.max_char_dup_ratio),
        ("fineweb_list_ratio", "q_newline_word_ratio", "max", c.max_list_ratio),
    ]
    return tuple(rules)


def quality_reason(signals: Mapping[str, float], lang: str | None, config: QualityConfig) -> str | None:
    """None to keep the document, else the reason of the first failing rule, in :data:`QUALITY_REASONS`
    order (Gopher word count, Gopher repetition, Gopher quality, C4, FineWeb, classifier).

    Signals at -1.0 (not applicable) never fail a rule. ``lang`` selects whether the classifier rule
    applies (``config.classifier_langs``); language-specific skipping of word rules is already encoded in
    the signals. Missing signals are treated as not applicable, so older Parquet columns still decide.
    """
    skip = config.skip_rules
    for reason, name, op, limit in _rules(config):
        if skip and reason in skip:
            continue
        value = signals.get(name, NOT_APPLICABLE)
        # -1.0 marks "not applicable" for signals that are otherwise >= 0
        if value < 0.0:
            continue
        if op == "min":
            failed = value < limit
        elif op == "max":
            failed = value > limit
        elif op == "min=":
            failed = value <= limit
        else:  # "max="
            failed = value >= limit
        if failed:
            return reason
    if config.classifier_model and "classifier_low" not in skip:
        applies = not config.classifier_langs or normalize_lang(lang) in {
            normalize_lang(x) for x in config.classifier_langs
        }
        hq = signals.get("q_classifier_hq", NOT_APPLICABLE)
        if applies and hq >= 0.0 and hq < config.classifier_threshold:
            return "classifier_low"
    return None


# ---------------------------------------------------------------------------------------------------------
# Score
# ---------------------------------------------------------------------------------------------------------

_DEFAULT_CONFIG = QualityConfig()
# repetition signals and their default limits: duplicated line/paragraph characters and n-gram fractions
_REPETITION_LIMITS: tuple[tuple[str, float], ...] = tuple(
    (signal, limit)
    for reason, signal, _, limit in _rules(_DEFAULT_CONFIG)
    if reason.startswith("gopher_") and signal.endswith("_char_frac")
)


def _clip01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def quality_score(signals: Mapping[str, float]) -> float:
    """One number in [0, 1], higher = better, to rank documents (e.g. which near-duplicate to keep).

    If the classifier ran (``q_classifier_hq`` >= 0) its probability is the score. Otherwise a composite
    of the heuristic signals, measured against the default (published) thresholds so that it does not
    depend on config: 0.4 x repetition (1 - worst signal/limit ratio), 0.4 x prose structure (mean of
    terminal-punctuation line fraction, 1 - short-line fraction, alphabetic-word fraction and stop-word
    density where applicable), 0.2 x length (saturating at 4 x min_words), scaled down linearly below
    min_words, and halved for each of lorem ipsum / code braces / a majority of javascript or policy
    lines. Ties are broken by the caller (e.g. by id).
    """
    hq = signals.get("q_classifier_hq", NOT_APPLICABLE)
    if hq >= 0.0:
        return _clip01(float(hq))
    g = signals.get
    words = g("q_word_count", 0.0)
    if words <= 0.0:
        return 0.0

    worst = 0.0
    for name, limit in _REPETITION_LIMITS:
        if limit > 0:
            worst = max(worst, g(name, 0.0) / limit)
    repetition = _clip01(1.0 - worst)

    parts = [
        _clip01(1.0 - g("q_short_line_frac", 0.0)),
        _clip01(g("q_alpha_word_frac", 0.0)),
    ]
    terminal = g("q_terminal_punct_line_frac", NOT_APPLICABLE)
    if terminal >= 0.0:
        parts.append(_clip01(terminal / 0.5))  # half the lines ending a sentence is already prose-like
    stop = g("q_stop_word_count", NOT_APPLICABLE)
    if stop >= 0.0:
        # function words are ~10-40% of running text in the listed languages; 4% of words is "present"
        parts.append(_clip01(stop / (0.04 * words)))
    structure = sum(parts) / len(parts)

    length = _clip01(words / (4.0 * _DEFAULT_CONFIG.min_words))
    score = 0.4 * repetition + 0.4 * structure + 0.2 * length
    if words < _DEFAULT_CONFIG.min_words:
        score *= words / _DEFAULT_CONFIG.min_words  # too short to judge: rank below any full document
    if g("q_lorem_ipsum_count", 0.0) > 0:
        score *= 0.5
    if g("q_curly_brace_count", 0.0) > 0:
        score *= 0.5
    if max(g("q_javascript_line_frac", 0.0), g("q_policy_line_frac", 0.0)) > 0.5:
        score *= 0.5
    return _clip01(score)


# ---------------------------------------------------------------------------------------------------------
# Optional fastText classifier
# ---------------------------------------------------------------------------------------------------------

HQ_LABEL = "__label__hq"
LQ_LABEL = "__label__lq"


class QualityClassifier:
    """A fastText supervised model with labels ``__label__hq`` / ``__label__lq``, loaded lazily.

    Construct it anywhere (it pickles without the model, so a Beam DoFn can carry it) and call
    :meth:`load` in ``DoFn.setup``; :meth:`predict_hq` loads on first use if that was skipped. The path
    must be a local file (fastText reads it itself); stage remote models before loading.
    """

    def __init__(self, model_path: str) -> None:
        self.model_path = model_path
        self._model: Any = None

    def load(self) -> None:
        if self._model is None:
            import fasttext  # imported here so the module stays importable and cheap without the model

            self._model = fasttext.load_model(self.model_path)

    def __getstate__(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "_model": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.model_path = state["model_path"]
        self._model = None

    @staticmethod
    def _clean(text: str) -> str:
        # fastText's predict rejects "\n" ("\r" splits lines too); "__label__" words would be read as
        # labels, as quality_train also strips them
        return text.replace("\n", " ").replace("\r", " ").replace("__label__", " ")

    @staticmethod
    def _hq_prob(labels: Iterable[str], probs: Iterable[float]) -> float:
        for label, prob in zip(labels, probs, strict=False):
            if label == HQ_LABEL:
                return _clip01(float(prob))  # fastText's softmax can overshoot 1 by rounding
        return 0.0

    def predict_hq(self, text: str) -> float:
        """P(``__label__hq``) for one document, in [0, 1]."""
        self.load()
        labels, probs = self._model.predict(self._clean(text), k=-1)
        return self._hq_prob(labels, probs)

    def predict_hq_batch(self, texts: list[str]) -> list[float]:
        """P(``__label__hq``) for many documents in one fastText call."""
        self.load()
        if not texts:
            return []
        labels, probs = self._model.predict([self._clean(t) for t in texts], k=-1)
        return [self._hq_prob(lab, pr) for lab, pr in zip(labels, probs, strict=True)]
