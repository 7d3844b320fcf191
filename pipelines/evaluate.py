"""Measure language ID and near-duplicate detection against external, labelled data.

The data lives outside the repository, in ``../shared/eval`` beside the checkout (see its README.md and
each folder's PROVENANCE.txt); nothing from it is copied here. Print the tables of docs/quality.md with::

    .venv/bin/python -m pipelines.evaluate langid --eval ../shared/eval [--limit-per-lang N]
    .venv/bin/python -m pipelines.evaluate dedup --eval ../shared/eval

The measuring functions are shared with ``tests/eval``, so the floors asserted there are floors on
exactly the numbers printed here.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import itertools
import json
import os
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines import dedup, langid

DEFAULT_EVAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval"

# ==================================================================================== language ID

# lingua's language names (accuracy CSV) -> the ISO 639-1 codes that label lingua_sentences.tsv.
LINGUA_LANGUAGES: dict[str, str] = {
    "Afrikaans": "af", "Albanian": "sq", "Arabic": "ar", "Armenian": "hy", "Azerbaijani": "az",
    "Basque": "eu", "Belarusian": "be", "Bengali": "bn", "Bokmal": "nb", "Bosnian": "bs",
    "Bulgarian": "bg", "Catalan": "ca", "Chinese": "zh", "Croatian": "hr", "Czech": "cs",
    "Danish": "da", "Dutch": "nl", "English": "en", "Esperanto": "eo", "Estonian": "et",
    "Finnish": "fi", "French": "fr", "Ganda": "lg", "Georgian": "ka", "German": "de", "Greek": "el",
    "Gujarati": "gu", "Hebrew": "he", "Hindi": "hi", "Hungarian": "hu", "Icelandic": "is",
    "Indonesian": "id", "Irish": "ga", "Italian": "it", "Japanese": "ja", "Kazakh": "kk",
    "Korean": "ko", "Latin": "la", "Latvian": "lv", "Lithuanian": "lt", "Macedonian": "mk",
    "Malay": "ms", "Maori": "mi", "Marathi": "mr", "Mongolian": "mn", "Nynorsk": "nn",
    "Persian": "fa", "Polish": "pl", "Portuguese": "pt", "Punjabi": "pa", "Romanian": "ro",
    "Russian": "ru", "Serbian": "sr", "Shona": "sn", "Slovak": "sk", "Slovene": "sl", "Somali": "so",
    "Sotho": "st", "Spanish": "es", "Swahili": "sw", "Swedish": "sv", "Tagalog": "tl", "Tamil": "ta",
    "Telugu": "te", "Thai": "th", "Tsonga": "ts", "Tswana": "tn", "Turkish": "tr",
    "Ukrainian": "uk", "Urdu": "ur", "Vietnamese": "vi", "Welsh": "cy", "Xhosa": "xh",
    "Yoruba": "yo", "Zulu": "zu",
}
LINGUA_NAMES = {code: name for name, code in LINGUA_LANGUAGES.items()}

# lid.176 labels that mean a lingua code: its "no" (Norwegian, trained on no.wikipedia) is Bokmål.
FASTTEXT_ALIASES = {"no": "nb"}
# Published columns of lingua-average-accuracy-values.csv shown beside ours. Each figure there is the
# mean of lingua's single-word, word-pair and sentence accuracies, so it is lower than a sentence-only
# figure; lingua publishes no fastText column.
LINGUA_BASELINES = ("cld3", "langdetect", "langid", "lingua-high-accuracy")

THRESHOLDS = tuple(round(0.30 + 0.05 * i, 2) for i in range(13))  # 0.30 .. 0.90
ACCURACY_TARGET = 0.97  # accuracy among kept documents that the threshold must reach
SENTENCES_PER_DOC = 5


def sample_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def load_lingua_sentences(eval_dir: Path, limit_per_lang: int | None = None) -> dict[str, list[str]]:
    """Code -> sentences in a fixed pseudo-random order (by hash); the first ``limit_per_lang`` of it."""
    by_lang: dict[str, list[str]] = defaultdict(list)
    with open(eval_dir / "langid" / "lingua_sentences.tsv", encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        if header != ["lang", "text"]:
            raise ValueError(f"unexpected header {header}")
        for line in handle:
            lang, _, text = line.rstrip("\n").partition("\t")
            if text.strip():
                by_lang[lang].append(text)
    return {lang: sorted(texts, key=sample_key)[:limit_per_lang] for lang, texts in sorted(by_lang.items())}


def load_lingua_baselines(eval_dir: Path) -> dict[str, dict[str, float | None]]:
    """Code -> detector -> published average accuracy (0..1), None where the detector lacks it."""
    out: dict[str, dict[str, float | None]] = {}
    with open(eval_dir / "langid" / "lingua-average-accuracy-values.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            values = {}
            for column in LINGUA_BASELINES:
                value = float(row[column])
                values[column] = None if np.isnan(value) else value / 100.0
            out[LINGUA_LANGUAGES[row["language"]]] = values
    return out


def pseudo_documents(sentences: Sequence[str], k: int = SENTENCES_PER_DOC) -> list[str]:
    """Consecutive groups of ``k`` sentences of one language joined into one short 'document'."""
    return [" ".join(sentences[i : i + k]) for i in range(0, len(sentences) - k + 1, k)]


@dataclass
class Prediction:
    gold: str
    pred: str
    score: float

    @property
    def correct(self) -> bool:
        return self.gold == self.pred


def model_codes(config: langid.LangIdConfig) -> set[str]:
    import fasttext

    model = fasttext.load_model(config.model_path or str(langid.bundled_model_path()))
    codes = {langid.label_to_code(label) for label in model.get_labels()}
    return codes | {FASTTEXT_ALIASES.get(code, code) for code in codes}


def predict_all(identifier: langid.LanguageIdentifier, texts: Mapping[str, Sequence[str]]) -> list[Prediction]:
    out = []
    for gold, items in texts.items():
        for text in items:
            code, score = identifier.predict(text)
            out.append(Prediction(gold, FASTTEXT_ALIASES.get(code, code), score))
    return out


def accuracy(preds: Sequence[Prediction]) -> float:
    return sum(p.correct for p in preds) / len(preds) if preds else float("nan")


@dataclass
class CalibrationRow:
    threshold: float
    kept: float  # fraction with score >= threshold
    accuracy_kept: float  # accuracy among those
    correct_kept: float  # fraction of the correctly labelled ones that are kept


def calibrate(preds: Sequence[Prediction], thresholds: Iterable[float] = THRESHOLDS) -> list[CalibrationRow]:
    n_correct = sum(p.correct for p in preds)
    rows = []
    for t in thresholds:
        kept = [p for p in preds if p.score >= t]
        rows.append(CalibrationRow(t, len(kept) / len(preds), accuracy(kept),
                                   sum(p.correct for p in kept) / n_correct))
    return rows


def choose_threshold(*tables: Sequence[CalibrationRow], target: float = ACCURACY_TARGET) -> float | None:
    """The smallest threshold whose accuracy among kept reaches ``target`` in every table."""
    for rows in zip(*tables, strict=True):
        if all(row.accuracy_kept >= target for row in rows):
            return rows[0].threshold
    return None


@dataclass
class LangIdReport:
    supported: set[str]  # lingua codes that lid.176 can output
    sentences: list[Prediction]
    documents: list[Prediction]
    baselines: dict[str, dict[str, float | None]]
    calibration: dict[str, list[CalibrationRow]] = field(default_factory=dict)
    recommended: float | None = None

    def by_lang(self, which: str = "sentences") -> dict[str, list[Prediction]]:
        out: dict[str, list[Prediction]] = defaultdict(list)
        for p in getattr(self, which):
            out[p.gold].append(p)
        return out

    def subset(self, which: str, supported_only: bool) -> list[Prediction]:
        preds = getattr(self, which)
        return [p for p in preds if p.gold in self.supported] if supported_only else list(preds)


def langid_report(eval_dir: Path, limit_per_lang: int | None = None,
                  config: langid.LangIdConfig | None = None) -> LangIdReport:
    config = config or langid.LangIdConfig()
    texts = load_lingua_sentences(eval_dir, limit_per_lang)
    unknown = set(texts) - set(LINGUA_NAMES)
    if unknown:
        raise ValueError(f"language codes missing from LINGUA_LANGUAGES: {sorted(unknown)}")
    identifier = langid.LanguageIdentifier(config)
    report = LangIdReport(
        supported=set(texts) & model_codes(config),
        sentences=predict_all(identifier, texts),
        documents=predict_all(identifier, {lang: pseudo_documents(s) for lang, s in texts.items()}),
        baselines=load_lingua_baselines(eval_dir),
    )
    for which in ("sentences", "documents"):
        for supported_only in (True, False):
            key = f"{which}/{'supported' if supported_only else 'all'}"
            report.calibration[key] = calibrate(report.subset(which, supported_only))
    report.recommended = choose_threshold(report.calibration["sentences/supported"],
                                          report.calibration["documents/supported"])
    return report


def _pct(value: float | None) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def format_langid(report: LangIdReport) -> str:
    out = []
    sentences, documents = report.by_lang("sentences"), report.by_lang("documents")
    n_sent, n_docs = len(report.sentences), len(report.documents)
    out.append(f"### Per language ({n_sent} sentences; {n_docs} pseudo-documents of "
               f"{SENTENCES_PER_DOC} sentences)\n")
    out.append("Accuracy in %. `sent`: single sentences; `doc5`: 5 sentences of the language joined; "
               "`kept@t`: share of sentences with score >= the recommended threshold; `top error`: the "
               "most frequent wrong label (share of the language's sentences). The last four columns are "
               "lingua's published *average* of single-word, word-pair and sentence accuracy over a "
               "closed set of 75 languages (lid.176 chooses among 176), so they are lower than a "
               "sentence-only figure and only indicative.\n")
    t_rec = report.recommended if report.recommended is not None else langid.DEFAULT_THRESHOLD
    rows = []
    for code in sorted(sentences, key=lambda c: LINGUA_NAMES[c]):
        preds = sentences[code]
        errors = Counter(p.pred for p in preds if not p.correct)
        top = errors.most_common(1)
        top_error = f"{top[0][0]} ({100 * top[0][1] / len(preds):.0f}%)" if top else "–"
        base = report.baselines.get(code, {})
        rows.append([
            LINGUA_NAMES[code], code, "yes" if code in report.supported else "**no**", len(preds),
            _pct(accuracy(preds)), _pct(accuracy(documents.get(code, []))),
            _pct(sum(p.score >= t_rec for p in preds) / len(preds)), top_error,
            *(_pct(base.get(column)) for column in LINGUA_BASELINES),
        ])
    out.append(_table(["language", "code", "in lid.176", "n", "sent", "doc5", f"kept@{t_rec:.2f}",
                       "top error", *LINGUA_BASELINES], rows))

    out.append("\n### Overall\n")
    merged = {"hr": "bs", "sr": "bs", "sh": "bs", "ms": "id", "nn": "nb"}

    def lenient(preds: Sequence[Prediction]) -> float:
        return sum(merged.get(p.gold, p.gold) == merged.get(p.pred, p.pred) for p in preds) / len(preds)

    rows = []
    for label, supported_only in (("languages lid.176 knows", True), ("all 75 languages", False)):
        sent, docs = report.subset("sentences", supported_only), report.subset("documents", supported_only)
        per_lang = defaultdict(list)
        for p in sent:
            per_lang[p.gold].append(p.correct)
        macro = statistics.fmean(statistics.fmean(v) for v in per_lang.values())
        rows.append([label, len(per_lang), len(sent), _pct(accuracy(sent)), _pct(macro), _pct(lenient(sent)),
                     _pct(accuracy(docs)), _pct(lenient(docs))])
    out.append(_table(["set", "languages", "sentences", "sent accuracy", "sent macro-avg",
                       "sent, bs/hr/sr, ms/id, nb/nn merged", "doc5 accuracy", "doc5, merged"], rows))

    out.append("\n### Threshold calibration\n")
    out.append("`kept`: share with score >= t; `acc kept`: accuracy among those; `correct kept`: share of "
               "the correctly labelled ones that survive. Supported = the 67 languages lid.176 can "
               "output; all = with the 8 it cannot (lg mi sn st tn ts xh zu), which it always gets "
               "wrong.\n")
    keys = ("sentences/supported", "sentences/all", "documents/supported", "documents/all")
    rows = []
    for i, t in enumerate(THRESHOLDS):
        row: list[object] = [f"{t:.2f}"]
        for key in keys:
            c = report.calibration[key][i]
            row += [_pct(c.kept), _pct(c.accuracy_kept), _pct(c.correct_kept)]
        rows.append(row)
    header = ["t"]
    for key in keys:
        which, subset = key.split("/")
        short = "sent" if which == "sentences" else "doc5"
        header += [f"{short} {subset}: kept", "acc kept", "correct kept"]
    out.append(_table(header, rows))
    out.append(f"\nRecommended threshold (smallest t with accuracy among kept >= {ACCURACY_TARGET:.0%} for "
               f"both single sentences and 5-sentence documents of supported languages): "
               f"{report.recommended}")
    return "\n".join(out)


# ==================================================================================== dedup

DEDUP_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)
CLOUGH_CATEGORIES = ("cut", "light", "heavy", "non")
MCCORMICK_SIZES = (100, 1000, 2500)
Pair = tuple[str, str]


def read_text(path: Path) -> str:
    """UTF-8, else Windows-1252 (17 Clough–Stevenson answers were saved from Word in cp1252)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


@dataclass
class CloughDoc:
    file: str
    task: str
    category: str
    text: str


def load_clough(eval_dir: Path) -> list[CloughDoc]:
    folder = eval_dir / "dedup" / "clough_stevenson_plagiarism_corpus"
    with open(folder / "file_information.csv", encoding="utf-8") as handle:
        return [CloughDoc(row["File"], row["Task"], row["Category"], read_text(folder / row["File"]))
                for row in csv.DictReader(handle)]


def load_mccormick(eval_dir: Path, size: int) -> tuple[dict[str, str], set[Pair]]:
    folder = eval_dir / "dedup" / "mccormick_minhash_articles"
    docs = {}
    with open(folder / f"articles_{size}.train", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                doc_id, _, text = line.rstrip("\n").partition(" ")
                docs[doc_id] = text
    with open(folder / f"articles_{size}.truth", encoding="utf-8") as handle:
        truth = {pair(*line.split()) for line in handle if line.strip()}
    return docs, truth


def pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


def true_jaccard(a: str, b: str, n: int) -> float:
    sa, sb = dedup.shingles(dedup.normalize(a), n), dedup.shingles(dedup.normalize(b), n)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def containment(part: str, whole: str, n: int) -> float:
    """Share of ``part``'s shingles that also occur in ``whole``."""
    sa, sb = dedup.shingles(dedup.normalize(part), n), dedup.shingles(dedup.normalize(whole), n)
    return len(sa & sb) / len(sa) if sa else 1.0


def signatures(texts: Mapping[str, str], config: dedup.DedupConfig) -> dict[str, np.ndarray]:
    signer = dedup.Signer(config)
    return {doc_id: signer.signature(text) for doc_id, text in texts.items()}


def is_candidate(a: np.ndarray, b: np.ndarray, config: dedup.DedupConfig) -> bool:
    return bool(set(dedup.band_keys(a, config.bands, config.rows))
                & set(dedup.band_keys(b, config.bands, config.rows)))


def candidate_pairs(sigs: Mapping[str, np.ndarray], config: dedup.DedupConfig) -> dict[Pair, float]:
    """Pairs sharing at least one LSH band key -> their estimated Jaccard (what Verify compares)."""
    buckets: dict[bytes, list[str]] = defaultdict(list)
    for doc_id, sig in sigs.items():
        for key in dedup.band_keys(sig, config.bands, config.rows):
            buckets[key].append(doc_id)
    out = {}
    for members in buckets.values():
        for a, b in itertools.combinations(sorted(set(members)), 2):
            if (a, b) not in out:
                out[(a, b)] = dedup.estimated_jaccard(sigs[a], sigs[b])
    return out


def near_duplicate_pairs(candidates: Mapping[Pair, float], threshold: float) -> set[Pair]:
    return {p for p, estimate in candidates.items() if estimate >= threshold}


@dataclass
class PairScore:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score_pairs(predicted: set[Pair], truth: set[Pair]) -> PairScore:
    return PairScore(len(predicted & truth), len(predicted - truth), len(truth - predicted))


def cluster_pairs(assignments: Mapping[str, str]) -> set[Pair]:
    """Doc id -> cluster id  ->  every pair of documents that share a cluster."""
    clusters: dict[str, list[str]] = defaultdict(list)
    for doc_id, cluster in assignments.items():
        clusters[cluster].append(doc_id)
    return {pair(a, b) for members in clusters.values() for a, b in itertools.combinations(members, 2)}


def _as_json(doc: dict) -> str:
    return json.dumps({"id": doc["id"], "dup_cluster": doc["dup_cluster"], "reason": doc.get("reason")})


@dataclass
class BeamDedupResult:
    clusters: dict[str, str]  # doc id -> dup_cluster
    reasons: Counter  # rejection reason -> documents (None: kept)
    unconverged: int


def run_beam_dedup(texts: Mapping[str, str], config: dedup.DedupConfig) -> BeamDedupResult:
    """Runs the real ``Deduplicate`` transform under TestPipeline (in-process) and reads its output."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline

    from pipelines.transforms import Deduplicate

    docs = [{"id": doc_id, "text": text, "source": "eval", "position": i, "quality_score": 0.5}
            for i, (doc_id, text) in enumerate(sorted(texts.items()))]
    with tempfile.TemporaryDirectory() as tmp:
        with TestPipeline(runner="FnApiRunner", argv=[]) as p:
            kept, rejected, unconverged = p | beam.Create(docs) | Deduplicate(config)
            for name, pcoll in (("kept", kept), ("rejected", rejected)):
                _ = (pcoll | f"Json{name}" >> beam.Map(_as_json)
                     | f"Write{name}" >> beam.io.WriteToText(os.path.join(tmp, name)))
            _ = (unconverged | "CountUnconverged" >> beam.combiners.Count.Globally()
                 | "JsonUnconverged" >> beam.Map(json.dumps)
                 | "WriteUnconverged" >> beam.io.WriteToText(os.path.join(tmp, "unconverged")))
        clusters, reasons, n_unconverged = {}, Counter(), 0
        for path in sorted(glob.glob(os.path.join(tmp, "*-of-*"))):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    value = json.loads(line)
                    if os.path.basename(path).startswith("unconverged"):
                        n_unconverged += int(value)
                    else:
                        clusters[value["id"]] = value["dup_cluster"]
                        reasons[value["reason"]] += 1
    if len(clusters) != len(docs):
        raise AssertionError(f"Deduplicate returned {len(clusters)} documents for {len(docs)}")
    return BeamDedupResult(clusters, reasons, n_unconverged)


@dataclass
class CloughPair:
    file: str
    category: str
    jaccard: float  # true Jaccard of the word 5-gram shingle sets, answer vs its source
    containment: float  # share of the answer's shingles found in the source
    estimate: float  # estimated Jaccard from the MinHash signatures
    candidate: bool  # shares at least one LSH band with the source

    def detected(self, threshold: float) -> bool:
        return self.candidate and self.estimate >= threshold


def clough_pairs(docs: Sequence[CloughDoc], config: dedup.DedupConfig) -> list[CloughPair]:
    """Every answer against the Wikipedia source text of its task."""
    sources = {d.task: d for d in docs if d.category == "orig"}
    sigs = signatures({d.file: d.text for d in docs}, config)
    out = []
    for d in docs:
        if d.category == "orig":
            continue
        src = sources[d.task]
        out.append(CloughPair(d.file, d.category, true_jaccard(d.text, src.text, config.ngram),
                              containment(d.text, src.text, config.ngram),
                              dedup.estimated_jaccard(sigs[d.file], sigs[src.file]),
                              is_candidate(sigs[d.file], sigs[src.file], config)))
    return out


def detection_rates(pairs: Sequence[CloughPair], thresholds: Sequence[float] = DEDUP_THRESHOLDS
                    ) -> dict[str, dict[float, float]]:
    out = {}
    for category in CLOUGH_CATEGORIES:
        members = [p for p in pairs if p.category == category]
        out[category] = {t: sum(p.detected(t) for p in members) / len(members) for t in thresholds}
    return out


def idealised_detection(similarity: float, config: dedup.DedupConfig, threshold: float,
                        trials: int = 20000, seed: int = 0) -> float:
    """P(candidate and estimate >= threshold) when each MinHash slot agrees with probability s."""
    rng = np.random.default_rng(seed)
    agree = rng.random((trials, config.num_perm)) < similarity
    bands = agree[:, : config.bands * config.rows].reshape(trials, config.bands, config.rows).all(axis=2)
    return float((bands.any(axis=1) & (agree.mean(axis=1) >= threshold)).mean())


@dataclass
class DedupReport:
    config: dedup.DedupConfig
    clough: list[CloughPair]
    clough_all_pairs: dict[float, tuple[int, int]]  # threshold -> (predicted pairs, across tasks)
    clough_beam: dict[str, float]  # category -> share in the same Beam cluster as its source
    mccormick: dict[int, dict[float, PairScore]]  # size -> threshold -> score (plain functions)
    mccormick_candidates: dict[int, int]
    mccormick_beam: dict[int, PairScore]
    beam_reasons: dict[int, Counter]


def clough_beam(docs: Sequence[CloughDoc], config: dedup.DedupConfig) -> dict[str, float]:
    result = run_beam_dedup({d.file: d.text for d in docs}, config)
    sources = {d.task: d.file for d in docs if d.category == "orig"}
    out = {}
    for category in CLOUGH_CATEGORIES:
        members = [d for d in docs if d.category == category]
        same = sum(result.clusters[d.file] == result.clusters[sources[d.task]] for d in members)
        out[category] = same / len(members)
    return out


def dedup_report(eval_dir: Path, config: dedup.DedupConfig | None = None,
                 sizes: Sequence[int] = MCCORMICK_SIZES, beam_sizes: Sequence[int] = (2500,),
                 beam_clough: bool = True) -> DedupReport:
    config = config or dedup.DedupConfig()
    docs = load_clough(eval_dir)
    task_of = {d.file: d.task for d in docs}
    clough_cands = candidate_pairs(signatures({d.file: d.text for d in docs}, config), config)
    clough_all = {}
    for t in DEDUP_THRESHOLDS:
        found = near_duplicate_pairs(clough_cands, t)
        clough_all[t] = (len(found), sum(task_of[a] != task_of[b] for a, b in found))
    mccormick, n_candidates, beam_scores, reasons = {}, {}, {}, {}
    for size in sizes:
        texts, truth = load_mccormick(eval_dir, size)
        cands = candidate_pairs(signatures(texts, config), config)
        n_candidates[size] = len(cands)
        mccormick[size] = {t: score_pairs(near_duplicate_pairs(cands, t), truth) for t in DEDUP_THRESHOLDS}
        if size in beam_sizes:
            result = run_beam_dedup(texts, config)
            beam_scores[size] = score_pairs(cluster_pairs(result.clusters), truth)
            reasons[size] = result.reasons
    return DedupReport(config, clough_pairs(docs, config), clough_all,
                       clough_beam(docs, config) if beam_clough else {}, mccormick, n_candidates,
                       beam_scores, reasons)


def _quantiles(values: Sequence[float]) -> list[str]:
    v = sorted(values)
    q = statistics.quantiles(v, n=4, method="inclusive")
    return [f"{x:.2f}" for x in (v[0], q[0], q[1], q[2], v[-1])]


def format_dedup(report: DedupReport) -> str:
    cfg = report.config
    out = [f"Config: {cfg.bands} bands x {cfg.rows} rows of {cfg.num_perm} permutations, word "
           f"{cfg.ngram}-gram shingles, verification threshold {cfg.threshold} (estimated Jaccard).\n"]

    out.append("### Clough–Stevenson: each answer against its Wikipedia source\n")
    rows = []
    rates = detection_rates(report.clough)
    for category in CLOUGH_CATEGORIES:
        members = [p for p in report.clough if p.category == category]
        rows.append([category, len(members), *_quantiles([p.jaccard for p in members]),
                     f"{statistics.median(p.containment for p in members):.2f}",
                     f"{sum(p.candidate for p in members)}/{len(members)}",
                     *(_pct(rates[category][t]) for t in DEDUP_THRESHOLDS),
                     _pct(report.clough_beam.get(category))])
    out.append(_table(["category", "n", "J min", "J p25", "J median", "J p75", "J max", "containment median",
                       "LSH candidate", *(f"detected % @{t}" for t in DEDUP_THRESHOLDS),
                       f"Beam: same cluster as source % @{cfg.threshold}"], rows))
    out.append("\nJ = true Jaccard of the word 5-gram shingle sets (after normalisation); containment = share "
               "of the answer's shingles found in the source. Detected = LSH candidate and estimated "
               "Jaccard >= t.\n")
    out.append("Answers with J >= 0.25 or an LSH candidate, by true Jaccard:\n")
    rows = []
    for p in sorted(report.clough, key=lambda p: -p.jaccard):
        if p.jaccard >= 0.25 or p.candidate:
            rows.append([p.file, p.category, f"{p.jaccard:.2f}", f"{p.containment:.2f}", f"{p.estimate:.2f}",
                         "yes" if p.candidate else "no"])
    out.append(_table(["file", "category", "J", "containment", "estimated J", "candidate"], rows) + "\n")

    out.append("All 100 files against each other (plain functions): predicted near-duplicate pairs, and how "
               "many of them join files of different tasks (certain false positives)\n")
    out.append(_table(["threshold", "pairs", "across tasks"],
                      [[t, *report.clough_all_pairs[t]] for t in DEDUP_THRESHOLDS]))

    out.append("\n### McCormick articles: planted duplicate pairs, all pairs searched\n")
    rows = []
    for size, by_t in report.mccormick.items():
        for t, s in by_t.items():
            rows.append([size, report.mccormick_candidates[size], "plain", t, s.tp + s.fn, s.tp, s.fp, s.fn,
                         f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.f1:.3f}"])
        if size in report.mccormick_beam:
            s = report.mccormick_beam[size]
            rows.append([size, report.mccormick_candidates[size], "Beam Deduplicate", cfg.threshold,
                         s.tp + s.fn, s.tp, s.fp, s.fn, f"{s.precision:.3f}", f"{s.recall:.3f}",
                         f"{s.f1:.3f}"])
    out.append(_table(["docs", "LSH candidate pairs", "path", "threshold", "true pairs", "TP", "FP", "FN",
                       "precision", "recall", "F1"], rows))
    for size, reasons in report.beam_reasons.items():
        summary = ", ".join(f"{k or 'kept'}: {v}" for k, v in sorted(reasons.items(), key=lambda kv: str(kv[0])))
        out.append(f"\nBeam run on {size} docs (pairs rebuilt from dup_cluster): {summary}")

    out.append("\n### S-curve of 20 bands x 6 rows\n")
    rows = []
    for s in (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        rows.append([f"{s:.2f}", f"{dedup.s_curve(s, cfg.bands, cfg.rows):.3f}",
                     f"{idealised_detection(s, cfg, cfg.threshold):.3f}"])
    out.append(_table(["Jaccard s", "P(candidate) = 1-(1-s^6)^20",
                       f"P(candidate and estimate >= {cfg.threshold}) (simulated)"], rows))
    return "\n".join(out)


# ==================================================================================== CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p_lang = sub.add_parser("langid", help="language-ID accuracy and threshold calibration")
    p_lang.add_argument("--eval", type=Path, default=DEFAULT_EVAL_DIR, help="the shared eval folder")
    p_lang.add_argument("--limit-per-lang", type=int, default=None,
                        help="sentences per language (a fixed pseudo-random sample); default all")
    p_dedup = sub.add_parser("dedup", help="near-duplicate precision/recall")
    p_dedup.add_argument("--eval", type=Path, default=DEFAULT_EVAL_DIR, help="the shared eval folder")
    p_dedup.add_argument("--no-beam", action="store_true", help="skip the runs through the Beam transform")
    args = parser.parse_args(argv)
    if not args.eval.is_dir():
        parser.error(f"{args.eval} is not a directory")
    if args.what == "langid":
        print(format_langid(langid_report(args.eval, args.limit_per_lang)))
    else:
        beam_sizes = () if args.no_beam else (2500,)
        print(format_dedup(dedup_report(args.eval, beam_sizes=beam_sizes, beam_clough=not args.no_beam)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
