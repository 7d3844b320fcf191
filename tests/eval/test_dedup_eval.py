"""Near-duplicate detection measured against external, labelled text reuse in ``../shared/eval/dedup``.

* McCormick articles: planted near-identical pairs (true word-shingle Jaccard ~0.98), every other pair
  below 0.3. All pairs are searched, with the plain functions and through the real Beam transform.
* Clough–Stevenson: answers graded cut / light / heavy / non against a Wikipedia source. Our detector
  is a Jaccard one, so it finds whole-document near copies; a "cut" answer that copies part of the
  source has high containment but low Jaccard and is (correctly, by design) not a near-duplicate.

Floors sit just below the measured values in docs/quality.md. Print the tables with
``.venv/bin/python -m pipelines.evaluate dedup --eval ../shared/eval``.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

EVAL_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "eval"
DEDUP_DIR = EVAL_ROOT / "dedup"

if not DEDUP_DIR.is_dir():
    pytest.skip(f"external dedup eval data not found at {DEDUP_DIR}", allow_module_level=True)

from pipelines import dedup  # noqa: E402
from pipelines import evaluate as E  # noqa: E402

pytestmark = pytest.mark.eval
CFG = dedup.DedupConfig()


@pytest.fixture(scope="module")
def clough_docs() -> list[E.CloughDoc]:
    return E.load_clough(EVAL_ROOT)


@pytest.fixture(scope="module")
def clough(clough_docs: list[E.CloughDoc]) -> list[E.CloughPair]:
    return E.clough_pairs(clough_docs, CFG)


@pytest.fixture(scope="module")
def mccormick_2500() -> tuple[dict[str, str], set[E.Pair]]:
    return E.load_mccormick(EVAL_ROOT, 2500)


# ------------------------------------------------------------------------------------ McCormick


@pytest.mark.parametrize("size", E.MCCORMICK_SIZES)
def test_mccormick_plain_functions(size: int) -> None:
    texts, truth = E.load_mccormick(EVAL_ROOT, size)
    assert len(texts) == size
    candidates = E.candidate_pairs(E.signatures(texts, CFG), CFG)
    for threshold in E.DEDUP_THRESHOLDS:
        score = E.score_pairs(E.near_duplicate_pairs(candidates, threshold), truth)
        # Measured: precision = recall = 1.0 at every threshold and size (5 / 10 / 20 true pairs).
        assert score.precision >= 0.95, (threshold, score)
        assert score.recall >= 0.95, (threshold, score)


@pytest.mark.slow
def test_mccormick_through_beam_transform(mccormick_2500: tuple[dict[str, str], set[E.Pair]]) -> None:
    texts, truth = mccormick_2500
    result = E.run_beam_dedup(texts, CFG)
    score = E.score_pairs(E.cluster_pairs(result.clusters), truth)
    assert score.precision >= 0.95, score  # measured 1.0 (20 TP, 0 FP)
    assert score.recall >= 0.95, score  # measured 1.0 (0 FN)
    assert result.unconverged == 0
    assert set(result.reasons) <= {None, "near_duplicate", "exact_duplicate"}
    # One document of each planted pair is rejected, the other kept.
    assert result.reasons["near_duplicate"] + result.reasons["exact_duplicate"] == len(truth)
    assert result.reasons[None] == len(texts) - len(truth)


# ------------------------------------------------------------------------------------ Clough–Stevenson


def test_clough_corpus_shape(clough_docs: list[E.CloughDoc]) -> None:
    counts = {c: sum(d.category == c for d in clough_docs) for c in ("orig", *E.CLOUGH_CATEGORIES)}
    assert counts == {"orig": 5, "cut": 19, "light": 19, "heavy": 19, "non": 38}
    assert all(len(d.text.split()) > 20 for d in clough_docs)


def test_clough_detection_rates(clough: list[E.CloughPair]) -> None:
    rates = E.detection_rates(clough)
    # Measured at 0.7: cut 2/19, light 1/19, heavy 1/19, non 0/38.
    assert rates["cut"][CFG.threshold] >= 2 / 19 - 1e-9
    assert rates["light"][CFG.threshold] >= 1 / 19 - 1e-9
    for threshold in E.DEDUP_THRESHOLDS:
        assert rates["non"][threshold] == 0.0  # independently written answers are never duplicates


def test_clough_jaccard_explains_misses(clough: list[E.CloughPair]) -> None:
    median = {c: statistics.median(p.jaccard for p in clough if p.category == c) for c in E.CLOUGH_CATEGORIES}
    assert median["cut"] > median["light"] > median["heavy"] > median["non"]
    assert median["heavy"] < 0.15  # measured 0.05: heavy revisions are far below any sane threshold
    assert median["cut"] < 0.5  # measured 0.28: cut answers copy part of a longer source ...
    cut_containment = statistics.median(p.containment for p in clough if p.category == "cut")
    assert cut_containment >= 0.5  # ... measured 0.60 of their shingles are from it


def test_clough_detection_follows_true_jaccard(clough: list[E.CloughPair]) -> None:
    """What the S-curve promises: all pairs with J >= 0.8 found, none with J < 0.5."""
    for p in clough:
        if p.jaccard >= 0.8:
            assert p.detected(CFG.threshold), p
        if p.jaccard < 0.5:
            assert not p.detected(0.5), p
    assert sum(p.jaccard >= 0.8 for p in clough) == 3


def test_clough_all_pairs_no_cross_task(clough_docs: list[E.CloughDoc]) -> None:
    task = {d.file: d.task for d in clough_docs}
    candidates = E.candidate_pairs(E.signatures({d.file: d.text for d in clough_docs}, CFG), CFG)
    for threshold in E.DEDUP_THRESHOLDS:
        found = E.near_duplicate_pairs(candidates, threshold)
        assert all(task[a] == task[b] for a, b in found), threshold
        assert len(found) <= 10  # measured 6 at 0.5-0.7, 3 at 0.8


@pytest.mark.slow
def test_clough_through_beam_transform(clough_docs: list[E.CloughDoc], clough: list[E.CloughPair]) -> None:
    same_cluster = E.clough_beam(clough_docs, CFG)
    plain = E.detection_rates(clough, (CFG.threshold,))
    assert same_cluster["non"] == 0.0
    assert same_cluster["cut"] >= 2 / 19 - 1e-9
    # Clusters are transitive, so they can only add to the direct answer-source detections.
    for category in E.CLOUGH_CATEGORIES:
        assert same_cluster[category] >= plain[category][CFG.threshold] - 1e-9, category


# ------------------------------------------------------------------------------------ S-curve


def test_s_curve_supports_the_threshold() -> None:
    assert dedup.s_curve(0.7, CFG.bands, CFG.rows) == pytest.approx(0.918, abs=0.001)
    assert dedup.s_curve(0.8, CFG.bands, CFG.rows) >= 0.997  # 0.9977
    assert dedup.s_curve(0.3, CFG.bands, CFG.rows) <= 0.015  # 0.0145
    assert E.idealised_detection(0.8, CFG, CFG.threshold) >= 0.99
    assert E.idealised_detection(0.6, CFG, CFG.threshold) <= 0.05
