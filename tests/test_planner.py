"""Planner: closed-form allocations against numeric minimisation, Kaplan's frontier, Approach 3 recovering a
known law from noisy synthetic runs, CSV and metrics-store inputs, and the CLI's text, JSON and exit codes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import check_grad, minimize_scalar

from metrics.store import MetricRow, MetricsStore
from planner import fit as F
from planner.cli import _fit_text, fit_report, main
from planner.hardware import CATALOGUE, training_time
from planner.laws import BESIROGLU2024, HOFFMANN2022, KAPLAN2020, PF_DAY, ChinchillaLaw

TRUE = ChinchillaLaw(E=1.8, A=450.0, B=1500.0, alpha=0.33, beta=0.36)


def synthetic_runs(law: ChinchillaLaw, noise: float, seed: int = 0) -> F.Runs:
    """An 8 x 8 grid of model sizes and token counts, loss multiplied by lognormal noise."""
    rng = np.random.default_rng(seed)
    n, d = (a.ravel() for a in np.meshgrid(np.logspace(7.5, 10, 8), np.logspace(8.5, 11.5, 8)))
    loss = np.array([law.loss(ni, di) for ni, di in zip(n, d, strict=True)]) * np.exp(rng.normal(0, noise, n.size))
    return F.Runs(n, d, loss, source="synthetic")


def write_csv(path, header: list[str], rows: list[list[float]]) -> None:
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in rows) + "\n")


@pytest.mark.parametrize("law", [HOFFMANN2022, BESIROGLU2024, TRUE])
@pytest.mark.parametrize("compute", [1e18, 6e21, 5.76e23, 1e26])
def test_closed_form_matches_numeric_minimum_on_the_compute_curve(law: ChinchillaLaw, compute: float) -> None:
    n_opt, d_opt = law.optimal(compute)
    assert 6 * n_opt * d_opt == pytest.approx(compute, rel=1e-12)
    res = minimize_scalar(lambda log_n: law.loss(math.exp(log_n), compute / (6 * math.exp(log_n))),
                          bounds=(math.log(1e3), math.log(1e16)), method="bounded", options={"xatol": 1e-10})
    assert math.exp(res.x) == pytest.approx(n_opt, rel=1e-4)
    # And the closed form is a minimum: nudging N either way along the curve costs loss.
    for factor in (0.9, 1.1):
        n = n_opt * factor
        assert law.loss(n, compute / (6 * n)) > law.loss(n_opt, d_opt)


def test_hoffmann2022_at_gophers_budget() -> None:
    # The rounded published parameters give 32B params / 3.0T tokens at 5.76e23 FLOPs (the paper's table
    # quotes ~40B for Approach 3; the rounding of alpha, beta moves it, see docs/planner.md).
    n, d = HOFFMANN2022.optimal(5.76e23)
    assert 3.1e10 < n < 3.3e10
    assert 2.9e12 < d < 3.1e12
    assert HOFFMANN2022.G == pytest.approx((0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62))


def test_kaplan_frontier_and_loss_limits() -> None:
    n, d = KAPLAN2020.optimal(PF_DAY)
    assert n == pytest.approx(1.3e9, rel=1e-12)
    assert d == pytest.approx(PF_DAY / (6 * 1.3e9), rel=1e-12)
    n10, _ = KAPLAN2020.optimal(10 * PF_DAY)
    assert n10 / n == pytest.approx(10**0.73)
    # The joint form reduces to L(N) with unlimited data and to L(D) with an unlimited model.
    assert KAPLAN2020.loss(1e9, 1e30) == pytest.approx(KAPLAN2020.loss_n(1e9), rel=1e-6)
    assert KAPLAN2020.loss(1e30, 1e10) == pytest.approx(KAPLAN2020.loss_d(1e10), rel=1e-6)


def test_bad_compute_is_rejected() -> None:
    for law in (HOFFMANN2022, KAPLAN2020):
        with pytest.raises(ValueError):
            law.optimal(0)
        with pytest.raises(ValueError):
            law.optimal(float("inf"))


def test_objective_gradient_and_batched_form_agree() -> None:
    runs = synthetic_runs(TRUE, 0.01)
    args = (np.log(runs.n), np.log(runs.d), np.log(runs.loss))
    weights = np.ones(len(runs))
    for theta in (np.array([6.0, 7.0, 0.6, 0.34, 0.37]), np.array([5.0, 9.0, 0.4, 0.3, 0.5])):
        value = lambda t: F._objective(t, *args, weights)[0]  # noqa: E731
        grad = lambda t: F._objective(t, *args, weights)[1]  # noqa: E731
        assert check_grad(value, grad, theta) < 1e-6 * max(1.0, np.linalg.norm(grad(theta)))
        bv, bg = F._batched_objective(theta[None, :], *args)
        assert bv[0] == pytest.approx(value(theta), rel=1e-12)
        np.testing.assert_allclose(bg[0], grad(theta), rtol=1e-10, atol=1e-15)


def test_grid_is_the_published_one() -> None:
    starts = np.array(F.grid())
    assert starts.shape == (5 * 5 * 5 * 6 * 6, 5)
    assert sorted(set(starts[:, 0])) == [0, 5, 10, 15, 20, 25]
    assert sorted(set(starts[:, 2])) == [-1, -0.5, 0, 0.5, 1]
    assert sorted(set(starts[:, 3])) == [0, 0.5, 1, 1.5, 2]


@pytest.fixture(scope="module")
def noisy_fit() -> F.FitResult:
    return F.fit(synthetic_runs(TRUE, noise=0.003, seed=1), bootstrap=60, seed=0)


def test_fit_recovers_a_known_law_from_noisy_runs(noisy_fit: F.FitResult) -> None:
    result = noisy_fit
    law = result.law
    assert law.alpha == pytest.approx(TRUE.alpha, abs=0.02)
    assert law.beta == pytest.approx(TRUE.beta, abs=0.02)
    assert law.E == pytest.approx(TRUE.E, abs=0.03)
    n_true, _ = TRUE.optimal(1e22)
    assert law.optimal(1e22)[0] == pytest.approx(n_true, rel=0.25)
    intervals = result.intervals()
    for key in ("E", "alpha", "beta"):
        lo, hi = intervals[key]
        assert lo <= getattr(TRUE, key) <= hi, (key, lo, hi)
    lo, hi = result.optimal_interval(1e22)["params"]
    assert lo <= n_true <= hi


def test_near_noiseless_fit_is_exact_and_batched_screen_matches_scipy_everywhere() -> None:
    runs = synthetic_runs(TRUE, noise=1e-4)
    starts = F.grid()[::300]  # 15 spread-out starts: both paths must find the same optimum
    screened = F.fit(runs, starts=starts, bootstrap=0)
    literal = F.fit(runs, starts=starts, bootstrap=0, exhaustive=True)
    assert screened.objective == pytest.approx(literal.objective, abs=1e-12)
    for law in (screened.law, literal.law):
        assert law.alpha == pytest.approx(TRUE.alpha, rel=1e-3)
        assert law.B == pytest.approx(TRUE.B, rel=2e-2)


def test_runs_validation_and_drop_highest_loss() -> None:
    with pytest.raises(F.FitError, match="at least 5"):
        F.Runs(np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(F.FitError, match="positive"):
        F.Runs(np.array([1.0, 2, 3, 4, -5]), np.ones(5), np.ones(5))
    runs = F.Runs(np.arange(1.0, 8), np.arange(1.0, 8), np.array([3.0, 9, 2, 8, 1, 7, 4]))
    kept = F.drop_highest_loss(runs, 2)
    assert list(kept.loss) == [3.0, 2, 1, 7, 4]
    assert list(kept.n) == [1.0, 3, 5, 6, 7]


def test_read_csv_detects_columns_and_derives_tokens_from_flops(tmp_path) -> None:
    path = tmp_path / "runs.csv"
    write_csv(path, ["Model Size", "Training FLOP", "Loss"], [[1e8, 6e18, 3.0]] * 5)
    runs = F.read_csv(path)
    assert runs.d[0] == pytest.approx(1e10)
    write_csv(path, ["n_params", "tokens", "final_loss"], [[1e8, 2e9, 3.0]] * 5)
    assert F.read_csv(path).d[0] == 2e9
    write_csv(path, ["params", "loss"], [[1e8, 3.0]] * 5)
    with pytest.raises(F.FitError, match="tokens"):
        F.read_csv(path)


def test_plan_cli_text_and_json(capsys) -> None:
    assert main(["--compute", "6e21", "--gpus", "128"]) == 0
    text = capsys.readouterr().out
    assert "Chinchilla" in text and "Kaplan" in text and "NON-embedding" in text and "GPU-hours" in text
    assert main(["plan", "--compute", "6e21", "--gpus", "128", "--gpu", "a100-80", "--mfu", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    n, d = HOFFMANN2022.optimal(6e21)
    assert out["laws"]["chinchilla"]["params"] == pytest.approx(n)
    assert out["laws"]["chinchilla"]["tokens_per_param"] == pytest.approx(d / n)
    assert out["laws"]["kaplan"]["params_counted"] == "non_embedding"
    seconds = 6e21 / (128 * 312e12 * 0.5)
    assert out["training"]["days"] == pytest.approx(seconds / 86400)
    assert out["training"]["gpu_hours"] == pytest.approx(seconds * 128 / 3600)
    assert main(["--compute", "1e20", "--law", "kaplan", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["laws"]) == ["kaplan"] and out["training"] is None


@pytest.mark.parametrize("argv", [
    ["--compute", "abc"], ["--compute", "-5"], ["--compute", "0"], ["--compute", "6e21", "--gpu", "tpu-v9"],
    ["--compute", "6e21", "--gpus", "0"], ["--compute", "6e21", "--mfu", "1.5"], [], ["fit"],
])
def test_bad_input_exits_2(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_fit_cli_on_csv(tmp_path, capsys) -> None:
    runs = synthetic_runs(TRUE, noise=0.003, seed=2)
    path = tmp_path / "runs.csv"
    write_csv(path, ["params", "tokens", "loss"], [list(r) for r in zip(runs.n, runs.d, runs.loss, strict=True)])
    assert main(["fit", str(path), "--json", "--bootstrap", "30", "--compute", "1e22"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_runs"] == 64 and out["starts"] == 4500 and out["bootstrap"]["resamples"] == 30
    assert out["law"]["alpha"] == pytest.approx(TRUE.alpha, abs=0.02)
    lo, hi = out["intervals"]["beta"]
    assert lo < out["law"]["beta"] < hi
    assert out["optimal"]["params_interval"][0] < out["optimal"]["params"] < out["optimal"]["params_interval"][1]
    bad = tmp_path / "bad.csv"
    write_csv(bad, ["params", "loss"], [[1e8, 3.0]] * 6)
    assert main(["fit", str(bad)]) == 2
    assert "tokens" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "missing.csv")]) == 2
    assert main(["fit", str(path), "--drop-highest-loss", "64"]) == 2


def test_fit_text_report(noisy_fit: F.FitResult) -> None:
    runs = synthetic_runs(TRUE, noise=0.003, seed=1)
    text = _fit_text(fit_report(noisy_fit, runs, 1e22, 0, False))
    assert "95% interval" in text and "Besiroglu 2024" in text
    alpha_line = next(line for line in text.splitlines() if line.startswith("alpha"))
    assert f"{noisy_fit.law.alpha:.4g}" in alpha_line


def test_fit_from_metrics_store(tmp_path, capsys) -> None:
    full = synthetic_runs(TRUE, noise=0.0)
    runs = F.Runs(full.n[::4], full.d[::4], full.loss[::4])  # 16 noiseless runs keep this fast and exact
    store = MetricsStore(tmp_path)
    for i, (n, d, loss) in enumerate(zip(runs.n, runs.d, runs.loss, strict=True)):
        store.append([MetricRow("trainer", f"run{i}", "final", "params", n),
                      MetricRow("trainer", f"run{i}", "final", "tokens", d),
                      MetricRow("trainer", f"run{i}", "final", "final_loss", loss)])
    # An unfinished run (no final_loss) and other sources are ignored.
    store.append([MetricRow("trainer", "unfinished", "final", "params", 1e9)])
    store.append([MetricRow("planner", "x", "fit", "final_loss", 9.0)])
    read = F.read_metrics(tmp_path)
    assert len(read) == 16 and read.source.startswith("metrics:")
    assert sorted(read.loss) == sorted(runs.loss)
    assert main(["fit", "--metrics", str(tmp_path), "--json", "--bootstrap", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["law"]["beta"] == pytest.approx(TRUE.beta, rel=1e-3)
    empty = tmp_path / "empty"
    assert main(["fit", "--metrics", str(empty)]) == 2
    assert "need at least 5" in capsys.readouterr().err


def test_training_time_arithmetic() -> None:
    t = training_time(1e24, 1000, CATALOGUE["b200"], 0.5)
    assert t["days"] == pytest.approx(1e24 / (1000 * 2250e12 * 0.5) / 86400)
    with pytest.raises(ValueError):
        training_time(1e24, 8, CATALOGUE["h100"], 0.0)
