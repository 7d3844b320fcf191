"""Planner: closed-form allocations against numeric minimisation, Kaplan's frontier, Approach 3 recovering a
known law from noisy synthetic runs, CSV and metrics-store inputs, and the CLI's text, JSON and exit codes."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy.optimize import check_grad, minimize_scalar

from metrics.store import MetricRow, MetricsStore, connect
from planner import fit as F
from planner.cli import _fit_text, fit_report, main, plan, resolve_fit
from planner.hardware import CATALOGUE, training_time
from planner.laws import BESIROGLU2024, HOFFMANN2022, KAPLAN2020, PF_DAY, ChinchillaLaw, KaplanLaw

TRUE = ChinchillaLaw(E=1.8, A=450.0, B=1500.0, alpha=0.33, beta=0.36)


@pytest.fixture(autouse=True)
def _workspace(tmp_path, monkeypatch) -> None:
    """Plans and fits are recorded in the metrics store of TOKENMILL_HOME: keep them out of the repository."""
    monkeypatch.setenv("TOKENMILL_HOME", str(tmp_path / "home"))


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
    for word in ("Chinchilla", "Kaplan", "NON-embedding", "GPU-hours", "Model shape", "Runner-up", "why it lost",
                 "MFU", "memory"):
        assert word in text, word
    assert main(["plan", "--compute", "6e21", "--gpus", "128", "--gpu", "a100-80", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    n, d = HOFFMANN2022.optimal(6e21)
    assert out["params"] == pytest.approx(n) and out["tokens"] == pytest.approx(d)
    assert out["loss"] == pytest.approx(HOFFMANN2022.loss(n, d))
    assert out["laws"]["chinchilla"]["tokens_per_param"] == pytest.approx(d / n)
    assert out["laws"]["kaplan"]["params_counted"] == "non_embedding"
    assert out["laws"]["kaplan"]["params"] == pytest.approx(KAPLAN2020.optimal(6e21)[0])
    # Days follow from the chosen layout: steps x step time, and GPU-hours = days x 24 x GPUs.
    lo = out["layout"]
    assert lo["dp"] * lo["tp"] * lo["pp"] == 128
    assert out["steps"] == math.ceil(d / (lo["global_batch"] * out["shape"]["seq"]))
    assert out["days"] == pytest.approx(out["steps"] * out["step_time_s"] / 86400)
    assert out["gpu_hours"] == pytest.approx(out["days"] * 24 * 128)
    assert out["feasible"] and out["memory_gb_per_gpu"] <= 80
    assert 0 < out["mfu"] <= out["hfu"] < 1
    assert out["model_tflops_per_gpu"] == pytest.approx(out["mfu"] * 312)
    assert main(["--compute", "1e20", "--law", "kaplan", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["law"] == "kaplan" and out["params_counted"] == "non_embedding"
    assert out["shape"]["params_non_embedding"] == pytest.approx(KAPLAN2020.optimal(1e20)[0], rel=0.05)
    assert out["layout"] is None and out["days"] is None


@pytest.mark.parametrize("argv", [
    ["--compute", "abc"], ["--compute", "-5"], ["--compute", "0"], ["--compute", "6e21", "--gpu", "tpu-v9"],
    ["--compute", "6e21", "--gpus", "0"], ["--compute", "6e21", "--law", "both"], [], ["fit"],
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
    assert out["alpha"] == out["law"]["alpha"] == pytest.approx(TRUE.alpha, abs=0.02)
    lo, hi = out["ci95"]["beta"]
    assert lo < out["law"]["beta"] < hi
    assert out["optimal"]["params_interval"][0] < out["optimal"]["params"] < out["optimal"]["params_interval"][1]
    bad = tmp_path / "bad.csv"
    write_csv(bad, ["params", "loss"], [[1e8, 3.0]] * 6)
    assert main(["fit", str(bad)]) == 2
    assert "tokens" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "missing.csv")]) == 2
    assert main(["fit", str(path), "--drop-highest-loss", "64"]) == 2
    # The fit is in the store: both forms, their intervals, and every point used.
    con = connect(tmp_path / "home")
    forms = dict(con.execute("SELECT run, key FROM planner_results WHERE stage = 'fit' AND name = 'form'").fetchall())
    assert sorted(forms.values()) == ["chinchilla", "kaplan"]
    chinchilla_run = next(r for r, f in forms.items() if f == "chinchilla")
    got = dict(con.execute("SELECT name, value FROM planner_results WHERE run = ? AND stage = 'fit' AND key = ''",
                           [chinchilla_run]).fetchall())
    assert got["alpha"] == pytest.approx(out["alpha"]) and got["n_points"] == 64
    ci = con.execute("SELECT key, name, value FROM planner_results WHERE run = ? AND name LIKE 'ci95_%'",
                     [chinchilla_run]).fetchall()
    names = ("E", "A", "B", "alpha", "beta")
    assert {(k, n) for k, n, _ in ci} == {(k, n) for k in names for n in ("ci95_lo", "ci95_hi")}
    points = con.execute("SELECT count(*), count(DISTINCT step) FROM planner_results "
                         "WHERE run = ? AND stage = 'fit_point'", [chinchilla_run]).fetchone()
    assert points == (64 * 3, 64)


def test_fit_text_report(noisy_fit: F.FitResult) -> None:
    runs = synthetic_runs(TRUE, noise=0.003, seed=1)
    text = _fit_text(fit_report(noisy_fit, runs, 1e22, 0, False))
    assert "95% interval" in text and "Besiroglu 2024" in text
    alpha_line = next(line for line in text.splitlines() if line.startswith("alpha"))
    assert f"{noisy_fit.law.alpha:.4g}" in alpha_line


def _trainer_run(store: MetricsStore, run: str, n: float, d: float, loss: float, status: str = "completed",
                 non_embedding: float | None = None) -> None:
    """The rows docs/metrics.md says a finished trainer run writes (stage 'run')."""
    rows = [MetricRow("trainer", run, "run", "status", 0.0, key="running"),
            MetricRow("trainer", run, "run", "params", n), MetricRow("trainer", run, "run", "tokens_trained", d),
            MetricRow("trainer", run, "run", "final_loss", loss)]
    if non_embedding is not None:
        rows.append(MetricRow("trainer", run, "run", "non_embedding_params", non_embedding))
    store.append(rows)
    if status != "running":
        store.append([MetricRow("trainer", run, "run", "status", 0.0, key=status)])


def test_fit_from_metrics_store(tmp_path, capsys, monkeypatch) -> None:
    full = synthetic_runs(TRUE, noise=0.0)
    runs = F.Runs(full.n[::3], full.d[::3], full.loss[::3])  # 22 noiseless runs, all 8 sizes: fast and exact
    store = MetricsStore(tmp_path)
    for i, (n, d, loss) in enumerate(zip(runs.n, runs.d, runs.loss, strict=True)):
        _trainer_run(store, f"run{i}", n, d, loss, non_embedding=0.9 * n)
    # A run still going, a failed one, and other sources are ignored.
    _trainer_run(store, "going", 1e9, 1e9, 3.0, status="running")
    _trainer_run(store, "crashed", 1e9, 1e9, 3.0, status="failed")
    _trainer_run(store, "diverged", 1e9, 1e9, float("nan"))
    store.append([MetricRow("planner", "x", "fit", "final_loss", 9.0)])
    read = F.read_metrics(tmp_path)
    assert len(read) == 22 and read.source.startswith("metrics:")
    assert sorted(read.loss) == sorted(runs.loss)
    np.testing.assert_allclose(read.n_kaplan, 0.9 * read.n)
    assert len(F.read_metrics(tmp_path / "metrics")) == 22  # HOME/metrics works as well as HOME
    assert main(["fit", str(tmp_path / "metrics"), "--json", "--bootstrap", "0", "--home", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["beta"] == pytest.approx(TRUE.beta, rel=1e-3) and out["n_points"] == 22
    assert out["alpha"] == pytest.approx(TRUE.alpha, rel=1e-3) and out["warnings"] == []
    assert out["kaplan"]["params_counted"] == "non_embedding"
    # Planning with our own law: --fit HOME fits the store and plans with it.
    assert main(["--compute", "1e21", "--fit", str(tmp_path), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["fit"] == str(tmp_path) and plan["params"] == pytest.approx(TRUE.optimal(1e21)[0], rel=0.02)
    lo, hi = plan["loss_ci95"]
    assert lo <= plan["loss"] <= hi
    # The law fitted for the plan is in the store next to the plan, with the points it used.
    con = connect(tmp_path / "home")
    fitted = dict(con.execute("SELECT name, value FROM planner_results WHERE run = ? AND stage = 'fit' AND key = ''",
                              [plan["fit_run"]]).fetchall())
    assert fitted["alpha"] == pytest.approx(TRUE.alpha, rel=1e-3) and fitted["n_points"] == 22
    inputs = {run: source for run, source in con.execute(
        "SELECT run, key FROM planner_results WHERE stage = 'fit' AND name = 'input'").fetchall()}
    assert inputs[plan["fit_run"]] == f"metrics:{tmp_path}"  # the input as `planner fit` of these runs names it
    assert con.execute("SELECT count(*) FROM planner_results WHERE run = ? AND stage = 'plan'",
                       [plan["run"]]).fetchone()[0] > 10
    # Without --home or $TOKENMILL_HOME, a fit of HOME's runs is recorded in HOME itself.
    monkeypatch.delenv("TOKENMILL_HOME")
    monkeypatch.chdir(tmp_path / "home")
    assert main(["fit", str(tmp_path / "metrics"), "--bootstrap", "0"]) == 0
    assert connect(tmp_path).execute("SELECT count(*) FROM planner_results WHERE stage = 'fit' AND name = 'form'"
                                     ).fetchone()[0] == 4  # the --home fit and this one, two forms each
    empty = tmp_path / "empty"
    assert main(["fit", "--metrics", str(empty)]) == 2
    assert "need at least 5" in capsys.readouterr().err


def test_training_time_arithmetic() -> None:
    t = training_time(1e24, 1000, CATALOGUE["b200"], 0.5)
    assert t["days"] == pytest.approx(1e24 / (1000 * 2250e12 * 0.5) / 86400)
    with pytest.raises(ValueError):
        training_time(1e24, 8, CATALOGUE["h100"], 0.0)


def isoflop_runs(law: ChinchillaLaw) -> F.Runs:
    """IsoFLOP profiles: at each of 6 budgets, 9 model sizes from 1/4x to 4x the optimum, D = C / 6N."""
    n, d = [], []
    for c in np.logspace(18, 21, 6):
        n_opt, _ = law.optimal(c)
        for k in np.logspace(-0.6, 0.6, 9):
            n.append(n_opt * k)
            d.append(c / (6 * n_opt * k))
    n_arr, d_arr = np.array(n), np.array(d)
    return F.Runs(n_arr, d_arr, np.array([law.loss(a, b) for a, b in zip(n_arr, d_arr, strict=True)]))


def test_approaches_1_and_2_recover_the_allocation_exponent() -> None:
    runs = isoflop_runs(TRUE)
    a_true = TRUE.beta / (TRUE.alpha + TRUE.beta)  # N_opt ∝ C^(beta / (alpha + beta))
    two = F.approach2(runs)
    assert two is not None and two["groups"] == 6
    assert two["a"] == pytest.approx(a_true, abs=0.01) and two["a"] + two["b"] == pytest.approx(1.0)
    one = F.approach1(runs)
    assert one is not None and one["a"] == pytest.approx(a_true, abs=0.08)
    # One model size trained for different lengths has neither an envelope across sizes nor IsoFLOP profiles.
    flat = F.Runs(np.full(6, 1e8), np.logspace(9, 11, 6), np.linspace(3.5, 3.0, 6))
    assert F.approach1(flat) is None and F.approach2(flat) is None


def test_kaplan_fit_recovers_a_known_kaplan_law() -> None:
    true = KaplanLaw(N_c=5e13, alpha_N=0.08, D_c=2e13, alpha_D=0.1)
    base = synthetic_runs(TRUE, 0.0)
    runs = F.Runs(base.n, base.d, np.array([true.loss(n, d) for n, d in zip(base.n, base.d, strict=True)]))
    args = (np.log(runs.n), np.log(runs.d), np.log(runs.loss), np.ones(len(runs)))
    theta = np.array([30.0, 30.5, math.log(0.07), math.log(0.12)])
    assert check_grad(lambda t: F._kaplan_objective(t, *args)[0], lambda t: F._kaplan_objective(t, *args)[1],
                      theta) < 1e-6
    result = F.fit_kaplan(runs, bootstrap=5)
    assert result.law.alpha_N == pytest.approx(0.08, rel=1e-3) and result.law.alpha_D == pytest.approx(0.1, rel=1e-3)
    assert result.law.N_c == pytest.approx(5e13, rel=2e-2) and result.law.D_c == pytest.approx(2e13, rel=2e-2)
    lo, hi = result.intervals()["alpha_N"]
    assert lo <= 0.08 * (1 + 1e-3) and hi >= 0.08 * (1 - 1e-3)


def test_small_grids_warn_that_exponents_are_not_pinned() -> None:
    full = synthetic_runs(TRUE, 0.0)
    two_sizes = F.Runs(full.n[::4], full.d[::4], full.loss[::4])  # the 8 x 8 grid's every 4th run: 2 sizes
    assert len(set(two_sizes.n)) == 2
    result = F.fit(two_sizes, starts=F.grid()[::300], bootstrap=0)
    warnings = F.warnings_for(two_sizes, result)
    assert any("2 distinct model sizes" in w and "alpha" in w for w in warnings)
    assert not any("token counts" in w for w in warnings)
    assert F.warnings_for(full, F.fit(full, starts=F.grid()[::300], bootstrap=0)) == []


def test_implausible_laws_warn_and_plans_say_how_far_they_extrapolate(tmp_path) -> None:
    # Loss that barely moves with N and collapses with D, no floor: what undertrained sweeps produce.
    broken = ChinchillaLaw(E=0.0, A=12.0, B=1e14, alpha=0.02, beta=3.0)
    runs = synthetic_runs(broken, 0.0)
    result = F.fit(runs, starts=F.grid()[::300], bootstrap=0)
    warnings = F.warnings_for(runs, result)
    assert any(w.startswith("E = ") and "about zero" in w for w in warnings)
    assert any(w.startswith("alpha = ") and "outside" in w for w in warnings)
    assert any(w.startswith("beta = ") and "outside" in w for w in warnings)
    path = tmp_path / "broken.csv"
    write_csv(path, ["params", "tokens", "loss"], [list(r) for r in zip(runs.n, runs.d, runs.loss, strict=True)])
    fitted = resolve_fit(str(path), kaplan=False)
    notes = plan(1e30, fitted=fitted, fit_spec=str(path))["notes"]
    assert any(n.startswith("fit warning: alpha = ") for n in notes)
    largest = float(np.max(6 * runs.n * runs.d))
    assert any(f"an extrapolation over {np.log10(1e30 / largest):.0f} decades" in n for n in notes)
    # A well-posed law inside its runs' range plans without remarks.
    good = tmp_path / "good.csv"
    full = synthetic_runs(TRUE, 0.0)
    write_csv(good, ["params", "tokens", "loss"], [list(r) for r in zip(full.n, full.d, full.loss, strict=True)])
    assert plan(1e21, fitted=resolve_fit(str(good), kaplan=False), fit_spec=str(good))["notes"] == []


# The 12 runs of `make demo`'s sweep, as logged: with their exact values, a few bootstrap resamples ran
# log A past exp's range (709) on the machine that logged them (the optimiser's path, and so whether any
# resample gets there, moves with the CPU's floating-point vector code).
DEMO_N = [101220.0] * 3 + [135216.0] * 3 + [33612.0] * 3 + [67352.0] * 3
DEMO_D = [100156.0, 200010.0, 400322.0] * 2 + [100156.0, 200010.0, 399300.0, 100156.0, 200010.0, 400322.0]
DEMO_LOSS = [7.419177941846754, 6.370251052766863, 5.65422264143912, 7.274222297444502, 6.491430876073072,
             5.580184891732472, 7.753398380167564, 7.250905509097702, 6.795344462833293, 7.430767126512621,
             6.791001262030257, 6.104129082069472]


def test_percentile_interval_is_numpys_and_keeps_inf_ends() -> None:
    rng = np.random.default_rng(0)
    for values in (rng.normal(size=200), rng.lognormal(size=(37, 5)), np.arange(3.0)):
        lo, hi = F.percentile_interval(values, 0.95)
        np.testing.assert_allclose([lo, hi], np.percentile(values, [2.5, 97.5], axis=0), rtol=1e-12)
    tail = np.array([1.0] * 190 + [np.inf] * 10)
    assert F.percentile_interval(tail, 0.95) == (1.0, np.inf)  # np.percentile: nan, and a warning
    assert F.percentile_interval(np.array([1.0] * 195 + [np.inf] * 5), 0.95) == (1.0, np.inf)  # 1 to inf
    assert F.percentile_interval(np.array([1.0] * 196 + [np.inf] * 4), 0.95) == (1.0, 1.0)


def test_resamples_past_exps_range_give_inf_ends_not_nan_or_warnings(recwarn: pytest.WarningsRecorder) -> None:
    result = F.fit(F.Runs(np.array(DEMO_N), np.array(DEMO_D), np.array(DEMO_LOSS)))
    samples = result.samples.copy()
    samples[: len(samples) // 10, 1] = np.inf  # A of 10% of the resamples: both neighbours of 97.5% are inf
    overflowed = dataclasses.replace(result, samples=samples)
    lo, hi = overflowed.intervals()["A"]
    assert np.isfinite(lo) and hi == np.inf
    assert not any(math.isnan(end) for pair in overflowed.intervals().values() for end in pair)
    assert not any(math.isnan(end) for pair in overflowed.optimal_interval(6e21).values() for end in pair)
    # As the plan computes its loss interval: inf / inf in a resample's A / N**alpha was nan there.
    losses = [ChinchillaLaw(*row).loss(1e9, 2e10) for row in samples]
    lo, hi = F.percentile_interval(losses, overflowed.level)
    assert np.isfinite(lo) and hi == np.inf
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_demo_fit_and_plan_give_intervals_not_nan_or_warnings(tmp_path, capsys,
                                                               recwarn: pytest.WarningsRecorder) -> None:
    result = F.fit(F.Runs(np.array(DEMO_N), np.array(DEMO_D), np.array(DEMO_LOSS)))
    assert np.isfinite(result.law.A)
    assert not any(math.isnan(end) for pair in result.intervals().values() for end in pair)
    path = tmp_path / "runs.csv"
    write_csv(path, ["params", "tokens", "loss"], [list(r) for r in zip(DEMO_N, DEMO_D, DEMO_LOSS, strict=True)])
    assert main(["--compute", "6e21", "--gpus", "128", "--gpu", "h100", "--fit", str(path), "--json",
                 "--home", str(tmp_path / "home")]) == 0
    lo, hi = json.loads(capsys.readouterr().out)["loss_ci95"]
    assert 0 < lo < hi  # the interval was [nan, nan]: inf / inf in one resample's A / N**alpha
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
