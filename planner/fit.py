"""Fitting L(N, D) = E + A/N^alpha + B/D^beta to training runs: Hoffmann et al. 2022 Approach 3, as published.

This module owns reading runs (a CSV or the metrics store), the Huber-on-log-loss objective, the grid of
L-BFGS initialisations, and bootstrap intervals. The law itself lives in :mod:`planner.laws`.

Objective (Hoffmann et al. 2022, Eq. 4 / Appendix D.2; Besiroglu et al. 2024 Sec. 2):

    min_{a, b, e, alpha, beta}  sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i )

with A = e^a, B = e^b, E = e^e, delta = 1e-3, minimised with L-BFGS from every point of the grid
alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}; the best is kept.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from planner.laws import ChinchillaLaw, KaplanLaw

HUBER_DELTA = 1e-3

# The paper's initialisation grid (Hoffmann et al. 2022, Appendix D.2).
GRID_ALPHA = tuple(np.arange(0.0, 2.01, 0.5))
GRID_BETA = tuple(np.arange(0.0, 2.01, 0.5))
GRID_E = tuple(np.arange(-1.0, 1.01, 0.5))
GRID_A = tuple(np.arange(0.0, 25.1, 5.0))
GRID_B = tuple(np.arange(0.0, 25.1, 5.0))

# Column names recognised in a runs CSV, compared after lower-casing and turning every run of
# non-alphanumerics into one underscore ("Model Size" -> "model_size"). First match wins.
PARAM_COLUMNS = ("params_n", "params", "n_params", "num_params", "parameters", "model_size", "n")
TOKEN_COLUMNS = ("tokens_d", "tokens", "n_tokens", "num_tokens", "training_tokens", "train_tokens", "d")
FLOP_COLUMNS = ("flops_c", "flops", "training_flop", "training_flops", "compute", "compute_flops", "c")
LOSS_COLUMNS = ("loss", "final_loss", "eval_loss", "val_loss", "validation_loss", "l")

# Names a trainer run writes to the metrics store (source 'trainer', stage 'run'; docs/metrics.md).
METRIC_LOSS, METRIC_PARAMS, METRIC_TOKENS = "final_loss", "params", "tokens_trained"
METRIC_NON_EMBEDDING = "non_embedding_params"

MIN_RUNS = 5  # five free parameters
# Exponents published fits report lie in about 0.07-0.5 (Kaplan 2020's alpha_N 0.076 to the Chinchilla-run
# refits' beta ~0.45); outside this wider envelope a law is a curve through noise, not a scaling law.
PLAUSIBLE_EXPONENT = (0.05, 1.0)
# A fit whose irreducible loss E is below this share of the lowest observed loss has put E at ~0.
E_AT_ZERO = 0.05


class FitError(ValueError):
    """Input that cannot be fitted: missing columns, too few runs, non-positive values."""


@dataclass(frozen=True)
class Runs:
    """Training runs as parallel arrays of parameters N, tokens D and final loss L."""

    n: np.ndarray
    d: np.ndarray
    loss: np.ndarray
    source: str = ""
    # Non-embedding parameter counts for the Kaplan form, when the source knows them (else N is used).
    n_kaplan: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not (len(self.n) == len(self.d) == len(self.loss)):
            raise FitError("N, D and loss must have the same length")
        if len(self.n) < MIN_RUNS:
            raise FitError(f"need at least {MIN_RUNS} runs to fit 5 parameters, got {len(self.n)}")
        for label, values in (("N", self.n), ("D", self.d), ("loss", self.loss)):
            if not np.all(np.isfinite(values)) or np.any(values <= 0):
                raise FitError(f"every {label} must be a positive finite number")

    def __len__(self) -> int:
        return len(self.n)


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def _pick(columns: dict[str, str], candidates: tuple[str, ...]) -> str | None:
    for candidate in candidates:
        if candidate in columns:
            return columns[candidate]
    return None


def read_csv(path: str | os.PathLike[str]) -> Runs:
    """Runs from a CSV with a parameters column, a loss column, and tokens or FLOPs (then D = C / 6N)."""
    path = Path(path)
    if not path.is_file():
        raise FitError(f"no such file: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        columns = {_norm(h): h for h in header}
        n_col, loss_col = _pick(columns, PARAM_COLUMNS), _pick(columns, LOSS_COLUMNS)
        d_col, c_col = _pick(columns, TOKEN_COLUMNS), _pick(columns, FLOP_COLUMNS)
        if n_col is None or loss_col is None or (d_col is None and c_col is None):
            raise FitError(
                f"{path}: need a parameters column (one of {', '.join(PARAM_COLUMNS)}), a loss column "
                f"(one of {', '.join(LOSS_COLUMNS)}) and tokens ({', '.join(TOKEN_COLUMNS)}) or FLOPs "
                f"({', '.join(FLOP_COLUMNS)}); found {header}"
            )
        n, d, loss = [], [], []
        for line, row in enumerate(reader, start=2):
            try:
                n_i = float(row[n_col])
                d_i = float(row[d_col]) if d_col is not None else float(row[c_col]) / (6.0 * n_i)
                loss_i = float(row[loss_col])
            except (TypeError, ValueError, ZeroDivisionError) as exc:
                raise FitError(f"{path}:{line}: not a number ({exc})") from None
            n.append(n_i)
            d.append(d_i)
            loss.append(loss_i)
    return Runs(np.array(n), np.array(d), np.array(loss), source=str(path))


def workspace(path: str | os.PathLike[str]) -> Path:
    """The workspace of ``path``, which may name the workspace or its ``metrics`` folder."""
    path = Path(path)
    return path.parent if path.name == "metrics" and not (path / "metrics").is_dir() else path


def read_metrics(home: str | os.PathLike[str]) -> Runs:
    """Completed trainer runs from the metrics store under ``home`` (docs/metrics.md, "What the trainer writes").

    Per run (``source = 'trainer'``, ``stage = 'run'``): the newest ``status`` row must say ``completed``; the
    newest ``final_loss``, ``tokens_trained`` and ``params`` (else ``non_embedding_params``) are used. Kaplan
    fits use ``non_embedding_params`` where written. ``home`` may also be the ``metrics`` folder itself.
    """
    from metrics.store import connect  # read-only use of the store, as the architecture allows

    home = workspace(home)
    con = connect(home)
    rows = con.execute(
        """
        SELECT run, name, arg_max(value, ts) AS value, arg_max(key, ts) AS key
        FROM metrics
        WHERE source = 'trainer' AND stage = 'run' AND name IN ('status', ?, ?, ?, ?)
        GROUP BY run, name
        """,
        [METRIC_LOSS, METRIC_PARAMS, METRIC_NON_EMBEDDING, METRIC_TOKENS],
    ).fetchall()
    per_run: dict[str, dict[str, float | str]] = {}
    for run, name, value, key in rows:
        per_run.setdefault(run, {})[name] = key if name == "status" else value
    def usable(value: float | str | None) -> bool:
        return isinstance(value, float) and math.isfinite(value) and value > 0

    # A completed run whose final loss is not finite (a diverged run reports NaN) is skipped, not fatal.
    complete = sorted(
        r for r, v in per_run.items()
        if v.get("status") == "completed" and usable(v.get(METRIC_LOSS)) and usable(v.get(METRIC_TOKENS))
        and (usable(v.get(METRIC_PARAMS)) or usable(v.get(METRIC_NON_EMBEDDING)))
    )
    if len(complete) < MIN_RUNS:
        raise FitError(
            f"metrics store at {home}: {len(complete)} completed trainer runs have '{METRIC_LOSS}', "
            f"'{METRIC_TOKENS}' and '{METRIC_PARAMS}' (or '{METRIC_NON_EMBEDDING}'); need at least {MIN_RUNS}"
        )
    def pick(run: str, *names: str) -> float:
        return float(next(per_run[run][n] for n in names if usable(per_run[run].get(n))))

    n = np.array([pick(r, METRIC_PARAMS, METRIC_NON_EMBEDDING) for r in complete])
    n_kaplan = np.array([pick(r, METRIC_NON_EMBEDDING, METRIC_PARAMS) for r in complete])
    return Runs(n, np.array([pick(r, METRIC_TOKENS) for r in complete]),
                np.array([pick(r, METRIC_LOSS) for r in complete]), source=f"metrics:{home}", n_kaplan=n_kaplan)


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
               weights: np.ndarray) -> tuple[float, np.ndarray]:
    """Sum of Huber(LSE(a - alpha log N, b - beta log D, e) - log L) and its gradient in (a, b, e, alpha, beta).

    Written as a handful of flat numpy operations because L-BFGS calls it ~100 times per start and there are
    4 500 starts: per-call overhead, not arithmetic, is the cost at a few hundred runs.
    """
    a, b, e, alpha, beta = theta
    t1 = a - alpha * log_n
    t2 = b - beta * log_d
    top = np.maximum(np.maximum(t1, t2), e)  # subtract the max so exp never overflows (log-sum-exp)
    e1, e2, e3 = np.exp(t1 - top), np.exp(t2 - top), np.exp(e - top)
    total = e1 + e2 + e3
    r = top + np.log(total) - log_l
    # Huber's derivative is clip(r, -delta, delta), and its value is g * (r - g / 2) in both regimes.
    g = np.clip(r, -HUBER_DELTA, HUBER_DELTA)
    value = float(weights @ (g * (r - 0.5 * g)))
    dr = weights * g / total
    d1, d2 = dr * e1, dr * e2
    grad = np.array([d1.sum(), d2.sum(), dr @ e3, -(d1 @ log_n), -(d2 @ log_d)])
    return value, grad


def _minimise(start: np.ndarray, args: tuple[np.ndarray, ...]) -> tuple[float, np.ndarray]:
    from scipy.optimize import minimize  # imported when fitting: `planner --compute` must start fast

    # Tight tolerances: Besiroglu et al. 2024 trace the original's implausibly narrow intervals to an optimiser
    # that stopped early; the objective here is small (~1e-5 per run), so scipy's default gtol is loose.
    res = minimize(_objective, start, args=args, jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-12})
    return float(res.fun), res.x


def _batched_objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                       weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_objective` for K parameter vectors at once: theta (K, 5) -> values (K,), gradients (K, 5).

    ``weights`` (K, runs) gives each vector its own run weights (one bootstrap resample per row).
    """
    a, b, e, alpha, beta = (theta[:, i : i + 1] for i in range(5))
    t1 = a - alpha * log_n
    t2 = b - beta * log_d
    top = np.maximum(np.maximum(t1, t2), e)
    e1, e2, e3 = np.exp(t1 - top), np.exp(t2 - top), np.exp(e - top)
    total = e1 + e2 + e3
    r = top + np.log(total) - log_l
    g = np.clip(r, -HUBER_DELTA, HUBER_DELTA)
    hub = g * (r - 0.5 * g)
    if weights is not None:
        hub, g = hub * weights, g * weights
    value = hub.sum(axis=1)
    dr = g / total
    d1, d2 = dr * e1, dr * e2
    # Row sums, not `@`: a BLAS matrix-vector call may start threads, which only contend on a busy machine.
    grad = np.stack([d1.sum(1), d2.sum(1), (dr * e3).sum(1), -(d1 * log_n).sum(1), -(d2 * log_d).sum(1)], axis=1)
    return value, grad


def _batched_bfgs(starts: np.ndarray, args: tuple[np.ndarray, ...], max_iter: int = 300, ftol: float = 1e-12,
                  gtol: float = 1e-10, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Quasi-Newton descent (BFGS, Armijo backtracking) from every start at once; returns (values, thetas).

    Why not scipy from each start: 4 500 sequential L-BFGS-B runs cost minutes of Python overhead, while one
    (4500 x runs) array step costs milliseconds. This only screens; :func:`fit` polishes the best with scipy.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        theta = starts.astype(float).copy()
        k, dim = theta.shape
        f, g = _batched_objective(theta, *args, weights)
        h = np.broadcast_to(np.eye(dim), (k, dim, dim)).copy()
        active = np.isfinite(f) & np.all(np.isfinite(g), axis=1)
        for _ in range(max_iter):
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            gi = g[idx]
            p = -np.einsum("kij,kj->ki", h[idx], gi)
            slope = np.einsum("ki,ki->k", gi, p)
            bad = ~(slope < 0)  # lost descent (noisy curvature): restart that point from steepest descent
            h[idx[bad]] = np.eye(dim)
            p[bad], slope[bad] = -gi[bad], -np.einsum("ki,ki->k", gi[bad], gi[bad])
            step = np.ones(idx.size)
            new_f, new_g = np.full(idx.size, np.nan), np.zeros_like(gi)
            pending = np.arange(idx.size)
            for _ in range(40):
                cand = theta[idx[pending]] + step[pending, None] * p[pending]
                cf, cg = _batched_objective(cand, *args, None if weights is None else weights[idx[pending]])
                ok = cf <= f[idx[pending]] + 1e-4 * step[pending] * slope[pending]
                new_f[pending[ok]], new_g[pending[ok]] = cf[ok], cg[ok]
                pending = pending[~ok]
                if pending.size == 0:
                    break
                step[pending] *= 0.5
            moved = np.isfinite(new_f)
            done = np.zeros(idx.size, bool)
            done[~moved] = True  # no decrease found along the direction: as converged as it gets
            m = np.flatnonzero(moved)
            s_vec = step[m, None] * p[m]
            y_vec = new_g[m] - gi[m]
            sy = np.einsum("ki,ki->k", s_vec, y_vec)
            upd = sy > 1e-300  # BFGS update only with positive curvature, which keeps H positive definite
            mu = m[upd]
            rho = 1.0 / sy[upd]
            eye = np.eye(dim)
            left = eye - rho[:, None, None] * np.einsum("ki,kj->kij", s_vec[upd], y_vec[upd])
            h[idx[mu]] = (np.einsum("kij,kjl,kml->kim", left, h[idx[mu]], left)
                          + rho[:, None, None] * np.einsum("ki,kj->kij", s_vec[upd], s_vec[upd]))
            rel = np.abs(f[idx[m]] - new_f[m]) <= ftol * np.maximum(np.abs(f[idx[m]]), 1e-300)
            theta[idx[m]] += s_vec
            f[idx[m]], g[idx[m]] = new_f[m], new_g[m]
            done[m] = rel | (np.abs(new_g[m]).max(axis=1) < gtol)
            active[idx[done]] = False
    return f, theta


def grid() -> list[np.ndarray]:
    """The 4 500 initial points (a, b, e, alpha, beta) of the paper's grid."""
    return [np.array(p) for p in itertools.product(GRID_A, GRID_B, GRID_E, GRID_ALPHA, GRID_BETA)]


def _law(theta: np.ndarray) -> ChinchillaLaw:
    a, b, e, alpha, beta = theta
    return ChinchillaLaw(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=float(alpha), beta=float(beta))


def percentile_interval(values: np.ndarray | list[float], level: float) -> tuple[Any, Any]:
    """The central ``level`` interval of ``values`` along the first axis, interpolated linearly as
    ``np.percentile`` does by default.

    A bootstrap resample that pins nothing can leave a parameter, or a loss or allocation computed from it,
    at inf (exp past its range). Such values make that end of the interval inf, as they should; where both
    neighbours of a percentile are inf, ``np.percentile`` computes inf - inf and gives nan (and warns).
    """
    ordered = np.sort(np.asarray(values, dtype=float), axis=0)
    last = len(ordered) - 1
    ends = []
    for q in (0.5 * (1 - level), 0.5 * (1 + level)):
        i, t = divmod(last * q, 1.0)
        a, b = ordered[int(i)], ordered[min(int(i) + 1, last)]
        with np.errstate(invalid="ignore"):
            end = np.where((a == b) | (t == 0), a, a + (b - a) * t)
        ends.append(float(end) if end.ndim == 0 else end)
    return ends[0], ends[1]


@dataclass(frozen=True)
class FitResult:
    law: ChinchillaLaw
    objective: float
    n_runs: int
    starts: int
    # Bootstrap samples of (E, A, B, alpha, beta), one row per resample; empty when no bootstrap ran.
    samples: np.ndarray = field(default_factory=lambda: np.empty((0, 5)))
    seed: int | None = None
    level: float = 0.95

    def intervals(self) -> dict[str, tuple[float, float]]:
        """Percentile intervals at ``level`` for every parameter."""
        if len(self.samples) == 0:
            return {}
        names = ("E", "A", "B", "alpha", "beta")
        return {k: percentile_interval(self.samples[:, i], self.level) for i, k in enumerate(names)}

    def optimal_interval(self, compute: float) -> dict[str, tuple[float, float]]:
        """Percentile intervals of the compute-optimal N and D at ``compute`` across bootstrap resamples."""
        if len(self.samples) == 0:
            return {}
        with np.errstate(over="ignore"):  # a resample at A or B = inf allocates inf or 0 (see percentile_interval)
            opts = np.array([ChinchillaLaw(*row).optimal(compute) for row in self.samples])
        return {"params": percentile_interval(opts[:, 0], self.level),
                "tokens": percentile_interval(opts[:, 1], self.level)}


def fit(runs: Runs, starts: list[np.ndarray] | np.ndarray | None = None, bootstrap: int = 200, seed: int = 0,
        level: float = 0.95, exhaustive: bool = False, polish: int = 10) -> FitResult:
    """Approach 3: the best fit over the initialisation grid, then ``bootstrap`` resampled refits.

    Every start is descended (batched BFGS, see :func:`_batched_bfgs`), and the ``polish`` best end points
    are refined with scipy's L-BFGS-B; the lowest objective wins. ``exhaustive=True`` instead runs L-BFGS-B
    from every start, literally as published (minutes for the full grid); on the Chinchilla runs both give
    the same optimum to 1e-12 in the objective (docs/planner.md).

    Each bootstrap resample draws runs with replacement and descends (batched BFGS) from the full-data
    optimum rather than from the whole grid, which keeps 200 resamples to seconds.
    """
    log_n, log_d, log_l = np.log(runs.n), np.log(runs.d), np.log(runs.loss)
    ones = np.ones(len(runs))
    start_array = np.array(grid() if starts is None else starts, dtype=float).reshape(-1, 5)
    if exhaustive:
        candidates = start_array
    else:
        values, ends = _batched_bfgs(start_array, (log_n, log_d, log_l))
        order = np.argsort(np.where(np.isfinite(values), values, np.inf))
        candidates = ends[order[:polish]]
    best_value, best_theta = math.inf, None
    for start in candidates:
        value, theta = _minimise(start, (log_n, log_d, log_l, ones))
        if value < best_value and np.all(np.isfinite(theta)):
            best_value, best_theta = value, theta
    if best_theta is None:
        raise FitError("no initialisation converged to a finite fit")
    samples = np.empty((0, 5))
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        # Resampling with replacement == an integer weight per run (how often it was drawn); all resamples
        # descend together from the full-data optimum.
        draws = rng.integers(0, len(runs), (bootstrap, len(runs)))
        weights = np.stack([np.bincount(row, minlength=len(runs)) for row in draws]).astype(float)
        _, thetas = _batched_bfgs(np.tile(best_theta, (bootstrap, 1)), (log_n, log_d, log_l), weights=weights)
        # theta is (a, b, e, alpha, beta); samples are (E, A, B, alpha, beta) like ChinchillaLaw's fields. A
        # resample that pins nothing can run log A or log B past exp's range: inf is its honest value, and
        # the percentile intervals show it as an unbounded end.
        with np.errstate(over="ignore"):
            samples = np.column_stack([np.exp(thetas[:, 2]), np.exp(thetas[:, 0]), np.exp(thetas[:, 1]),
                                       thetas[:, 3:]])
    return FitResult(law=_law(best_theta), objective=best_value, n_runs=len(runs), starts=len(start_array),
                     samples=samples, seed=seed, level=level)


def drop_highest_loss(runs: Runs, k: int) -> Runs:
    """The runs without the ``k`` highest-loss ones: the outlier rule of Epoch's replication notebook."""
    if k <= 0:
        return runs
    keep = np.sort(np.argsort(runs.loss, kind="stable")[: len(runs) - k])
    return Runs(runs.n[keep], runs.d[keep], runs.loss[keep], source=runs.source,
                n_kaplan=None if runs.n_kaplan is None else runs.n_kaplan[keep])


# Kaplan joint form L = [(N_c/N)^(aN/aD) + D_c/D]^aD, fitted the same way (Huber on log loss, L-BFGS from a grid).
KAPLAN_GRID = tuple(itertools.product((20.0, 25.0, 30.0, 35.0), (20.0, 25.0, 30.0, 35.0),
                                      (math.log(0.05), math.log(0.1), math.log(0.3)),
                                      (math.log(0.05), math.log(0.1), math.log(0.3))))
KAPLAN_STARTS = 16


def _kaplan_objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                      weights: np.ndarray) -> tuple[float, np.ndarray]:
    """Summed Huber(log L_pred - log L) and its gradient in (log N_c, log D_c, log alpha_N, log alpha_D).

    The exponents are optimised through their logs so that they stay positive without bounds.
    """
    # Clipped so a wild line-search probe gives a large finite value instead of overflowing.
    log_nc, log_dc = theta[0], theta[1]
    a_n, a_d = math.exp(min(max(theta[2], -20.0), 5.0)), math.exp(min(max(theta[3], -20.0), 5.0))
    x = log_nc - log_n
    u = a_n / a_d * x
    v = log_dc - log_d
    lse = np.logaddexp(u, v)
    r = a_d * lse - log_l
    g = np.clip(r, -HUBER_DELTA, HUBER_DELTA)
    wg = weights * g
    share_u = np.exp(u - lse)  # d lse / du; d lse / dv = 1 - share_u
    # Sums, not `@`: a BLAS dot may start threads, which only contend at this size (see _batched_objective).
    grad = np.array([a_n * (wg * share_u).sum(), a_d * (wg * (1 - share_u)).sum(), a_n * (wg * share_u * x).sum(),
                     a_d * (wg * (lse - share_u * u)).sum()])
    return float((weights * g * (r - 0.5 * g)).sum()), grad


@dataclass(frozen=True)
class KaplanFit:
    law: KaplanLaw
    objective: float
    n_runs: int
    samples: np.ndarray = field(default_factory=lambda: np.empty((0, 4)))  # (N_c, D_c, alpha_N, alpha_D) rows
    level: float = 0.95

    def intervals(self) -> dict[str, tuple[float, float]]:
        if len(self.samples) == 0:
            return {}
        return {k: percentile_interval(self.samples[:, i], self.level)
                for i, k in enumerate(("N_c", "D_c", "alpha_N", "alpha_D"))}

    def as_dict(self) -> dict[str, float]:
        return {"N_c": self.law.N_c, "D_c": self.law.D_c, "alpha_N": self.law.alpha_N, "alpha_D": self.law.alpha_D}


def _kaplan_minimise(start: np.ndarray, args: tuple[np.ndarray, ...]) -> tuple[float, np.ndarray]:
    from scipy.optimize import minimize

    # Plain BFGS (numpy on 4 x 4 matrices), not L-BFGS-B: scipy's L-BFGS-B calls multi-threaded BLAS, which on a
    # busy 2-core machine made this fit ~40x slower.
    res = minimize(_kaplan_objective, start, args=args, jac=True, method="BFGS", options={"gtol": 1e-10,
                                                                                           "maxiter": 2000})
    return float(res.fun), res.x


def fit_kaplan(runs: Runs, bootstrap: int = 100, seed: int = 0, level: float = 0.95) -> KaplanFit:
    """Kaplan et al. 2020's joint L(N, D) fitted to ``runs`` (N = ``runs.n_kaplan`` when known, else ``runs.n``).

    The compute-optimal frontier constants (1.3e9, 0.73) are Kaplan's own and are not refitted: they came from
    learning-curve envelopes, which final losses alone do not carry.
    """
    n = runs.n if runs.n_kaplan is None else runs.n_kaplan
    args = (np.log(n), np.log(runs.d), np.log(runs.loss), np.ones(len(runs)))
    # Descend from the 16 grid points with the lowest starting objective: the rest start far up the flat Huber
    # plateau and, on the Chinchilla runs and the synthetic tests, all end at one of the same optima.
    starts = sorted(KAPLAN_GRID, key=lambda start: _kaplan_objective(np.array(start), *args)[0])[:KAPLAN_STARTS]
    best_value, best_theta = math.inf, None
    for start in starts:
        value, theta = _kaplan_minimise(np.array(start), args)
        if value < best_value:
            best_value, best_theta = value, theta
    assert best_theta is not None
    samples = np.empty((0, 4))
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(bootstrap):
            weights = np.bincount(rng.integers(0, len(runs), len(runs)), minlength=len(runs)).astype(float)
            _, theta = _kaplan_minimise(best_theta, args[:3] + (weights,))
            rows.append(np.exp(theta))
        samples = np.array(rows)
    n_c, d_c, alpha_n, alpha_d = (float(v) for v in np.exp(best_theta))
    law = KaplanLaw(N_c=n_c, D_c=d_c, alpha_N=alpha_n, alpha_D=alpha_d)
    return KaplanFit(law=law, objective=best_value, n_runs=len(runs), samples=samples, level=level)


def _power_law(c: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(exponent a, coefficient k) of y = k C^a by least squares in log space."""
    a, log_k = np.polyfit(np.log(c), np.log(y), 1)
    return float(a), float(math.exp(log_k))


def approach1(runs: Runs) -> dict[str, float | int] | None:
    """Hoffmann et al. Approach 1 on final losses: the runs on the minimum-loss envelope over FLOPs (no run with
    less compute reached a lower loss), then N_opt = k C^a and D_opt = k' C^b fitted along it.

    None when fewer than 3 envelope points span at least half a decade of compute (no envelope to fit).
    """
    c = 6.0 * runs.n * runs.d
    order = np.argsort(c, kind="stable")
    envelope, best = [], math.inf
    for i in order:
        if runs.loss[i] < best:
            best = runs.loss[i]
            envelope.append(i)
    idx = np.array(envelope)
    if len(idx) < 3 or math.log10(c[idx].max() / c[idx].min()) < 0.5 or len(set(runs.n[idx])) < 3:
        return None
    a, k_n = _power_law(c[idx], runs.n[idx])
    b, k_d = _power_law(c[idx], runs.d[idx])
    return {"a": a, "b": b, "k_params": k_n, "k_tokens": k_d, "points": len(idx)}


def isoflop_groups(runs: Runs, width_decades: float = 0.1) -> list[np.ndarray]:
    """Indices of runs sharing a compute budget: sorted by log10 C, a group spans at most ``width_decades``."""
    log_c = np.log10(6.0 * runs.n * runs.d)
    order = np.argsort(log_c, kind="stable")
    groups, current = [], [order[0]]
    for i in order[1:]:
        if log_c[i] - log_c[current[0]] <= width_decades:
            current.append(i)
        else:
            groups.append(np.array(current))
            current = [i]
    groups.append(np.array(current))
    return groups


def approach2(runs: Runs) -> dict[str, float | int] | None:
    """Approach 2 (IsoFLOP profiles): in every compute group with >= 3 model sizes, a parabola of loss in log N whose
    minimum lies inside the sizes tried gives N_opt(C); then N_opt = k C^a, D_opt = C / 6 N_opt.

    None when fewer than 2 groups give a minimum (no profile structure in the data).
    """
    points = []
    for group in isoflop_groups(runs):
        if len(set(np.round(np.log(runs.n[group]), 6))) < 3:
            continue
        x = np.log(runs.n[group])
        curvature, slope, _ = np.polyfit(x, runs.loss[group], 2)
        if curvature <= 0:
            continue
        x_min = -slope / (2 * curvature)
        if not x.min() <= x_min <= x.max():
            continue
        points.append((float(np.exp(np.mean(np.log(6.0 * runs.n[group] * runs.d[group])))), float(np.exp(x_min))))
    if len(points) < 2:
        return None
    c, n_opt = (np.array(v) for v in zip(*points, strict=True))
    a, k_n = _power_law(c, n_opt)
    b, k_d = _power_law(c, c / (6.0 * n_opt))
    return {"a": a, "b": b, "k_params": k_n, "k_tokens": k_d, "groups": len(points)}


def warnings_for(runs: Runs, result: FitResult) -> list[str]:
    """Why the exponents may not be pinned: too few distinct sizes/token counts, or wide bootstrap intervals."""
    out = []
    sizes, budgets = len(set(np.round(runs.n, 0))), len(set(np.round(runs.d, 0)))
    # Three points along an axis are the fewest that can separate a power law from the shared offset E.
    if sizes < 3:
        out.append(f"only {sizes} distinct model sizes: alpha (how loss falls with N) is not pinned; "
                   f"train at least 3 (better 4+) sizes spanning 8x or more")
    if budgets < 3:
        out.append(f"only {budgets} distinct token counts: beta (how loss falls with D) is not pinned; "
                   f"train at least 3 (better 4+) token budgets")
    if runs.n.max() / runs.n.min() < 8:
        out.append(f"model sizes span only {runs.n.max() / runs.n.min():.1f}x (< 8x): exponents extrapolate poorly")
    if result.law.E < E_AT_ZERO * float(runs.loss.min()):
        out.append(f"E = {result.law.E:.3g}: the fit puts the irreducible loss at about zero, so the runs never show "
                   f"where loss flattens and the exponents absorb it; extrapolations from this law are unreliable "
                   f"(train longer or larger models)")
    for key in ("alpha", "beta"):
        value = getattr(result.law, key)
        if not PLAUSIBLE_EXPONENT[0] <= value <= PLAUSIBLE_EXPONENT[1]:
            out.append(f"{key} = {value:.3g} is outside {PLAUSIBLE_EXPONENT[0]}-{PLAUSIBLE_EXPONENT[1]}, the envelope "
                       f"of published fits: the runs do not follow a power law in "
                       f"{'N' if key == 'alpha' else 'D'} (undertrained, or too narrow a grid)")
    for key, (lo, hi) in result.intervals().items():
        if key in ("alpha", "beta") and hi - lo > 0.5 * getattr(result.law, key):
            out.append(f"the 95% interval of {key} [{lo:.3g}, {hi:.3g}] is wider than half its value "
                       f"{getattr(result.law, key):.3g}: these runs do not pin this exponent (too few, too narrow a "
                       f"grid, or too scattered)")
    return out

