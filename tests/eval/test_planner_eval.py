"""Approach 3 on the 245 Chinchilla runs digitised by Epoch AI (``../shared/eval/chinchilla``).

Two fits, both with the full 4 500-start grid and 200 bootstrap resamples (seed 0):

* all 245 runs;
* the 5 highest-loss runs left out, the outlier rule of Epoch's replication notebook, whose stored best fit
  (PROVENANCE.txt: A=477.817, B=2142.52, E=1.8172, alpha=0.34731, beta=0.36715) we reproduce.

Bounds sit around the values measured and recorded in docs/planner.md, so a regression in the objective,
the optimiser or the bootstrap fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

EVAL_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "eval"
CSV = EVAL_ROOT / "chinchilla" / "chinchilla_N_D_loss.csv"

if not CSV.is_file():
    pytest.skip(f"external Chinchilla runs not found at {CSV}", allow_module_level=True)

from planner import fit as F  # noqa: E402
from planner.laws import HOFFMANN2022  # noqa: E402

pytestmark = pytest.mark.eval
GOPHER = 5.76e23
EPOCH_NOTEBOOK = {"A": 477.817, "B": 2142.52, "E": 1.8172, "alpha": 0.34731, "beta": 0.36715}


@pytest.fixture(scope="module")
def runs() -> F.Runs:
    return F.read_csv(CSV)


@pytest.fixture(scope="module")
def all_runs(runs: F.Runs) -> F.FitResult:
    return F.fit(runs, bootstrap=200, seed=0)


@pytest.fixture(scope="module")
def epoch_rule(runs: F.Runs) -> F.FitResult:
    return F.fit(F.drop_highest_loss(runs, 5), bootstrap=200, seed=0)


def test_reads_all_245_runs(runs: F.Runs) -> None:
    assert len(runs) == 245
    assert 5.7e7 < runs.n.min() and runs.n.max() < 1.7e10


def test_all_245_runs(all_runs: F.FitResult) -> None:
    law = all_runs.law
    # Measured: E 1.891, A 495.7, B 12846, alpha 0.3493, beta 0.4530 (the B/beta ridge is flat: see docs).
    assert law.E == pytest.approx(1.891, abs=0.005)
    assert law.alpha == pytest.approx(0.3493, abs=0.002)
    assert law.beta == pytest.approx(0.4530, abs=0.005)
    assert law.A == pytest.approx(495.7, rel=0.02)
    assert 8e3 < law.B < 2e4
    iv = all_runs.intervals()
    # Both published alphas are inside the interval; beta is poorly determined with all runs in.
    assert iv["alpha"][0] < 0.34 < 0.3478 < iv["alpha"][1]
    assert 0.33 < iv["beta"][0] < 0.38 and 0.53 < iv["beta"][1] < 0.65


def test_epoch_rule_reproduces_the_replication(epoch_rule: F.FitResult) -> None:
    law = epoch_rule.law
    assert epoch_rule.n_runs == 240
    for key, value in EPOCH_NOTEBOOK.items():
        assert getattr(law, key) == pytest.approx(value, rel=1e-3), key
    iv = epoch_rule.intervals()
    for key, value in law.as_dict().items():
        assert iv[key][0] < value < iv[key][1], key
    # The replication's headline: Hoffmann's published beta = 0.28 is far outside the interval.
    assert iv["beta"][0] > 0.32 > HOFFMANN2022.beta
    assert 0.40 < iv["beta"][1] < 0.45
    assert 1.76 < iv["E"][0] < 1.79 and 1.86 < iv["E"][1] < 1.89


def test_compute_optimal_at_gophers_budget(epoch_rule: F.FitResult) -> None:
    n, d = epoch_rule.law.optimal(GOPHER)
    # Measured: 73B params, 1.31T tokens (Hoffmann's rounded law gives 32B; the paper's table ~40B).
    assert 6.5e10 < n < 8.0e10
    lo, hi = epoch_rule.optimal_interval(GOPHER)["params"]
    assert 4.5e10 < lo < n < hi < 1.4e11


def test_approaches_1_and_2_and_the_kaplan_form(runs: F.Runs) -> None:
    # Hoffmann et al. report N_opt ∝ C^a with a = 0.50 (Approach 1) and 0.49 (Approach 2); on the digitised runs
    # we measured 0.507 (68 envelope points) and 0.513 (22 IsoFLOP groups).
    one, two = F.approach1(runs), F.approach2(runs)
    assert one is not None and 0.48 < one["a"] < 0.53
    assert two is not None and two["groups"] >= 15 and 0.48 < two["a"] < 0.54
    # Kaplan's joint form on the same runs (measured alpha_N 0.092, alpha_D 0.126; Kaplan published 0.076, 0.095
    # on WebText2 with non-embedding N, so only the order of magnitude is comparable).
    kaplan = F.fit_kaplan(runs, bootstrap=0)
    assert kaplan.law.alpha_N == pytest.approx(0.092, abs=0.005)
    assert kaplan.law.alpha_D == pytest.approx(0.126, abs=0.01)
