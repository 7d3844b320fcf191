"""Scaling-law forms and their compute-optimal allocations: Chinchilla (Hoffmann et al. 2022) and Kaplan et al. 2020.

This module owns the closed-form maths only: no fitting (see :mod:`planner.fit`), no hardware (see
:mod:`planner.hardware`). Compute is always in FLOPs with the usual C = 6 N D training-cost approximation.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

# 1 PF-day = 1e15 FLOP/s for 86 400 s; Kaplan et al. quote compute in these units.
PF_DAY = 1e15 * 86_400


@dataclass(frozen=True)
class ChinchillaLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta, with N total parameters and D training tokens."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, n: float, d: float) -> float:
        # In logs: a bootstrap resample can carry A or B = inf with a large exponent, where A / n**alpha
        # would be inf / inf (nan) instead of the inf it is.
        with np.errstate(over="ignore", divide="ignore"):
            return (self.E + np.exp(np.log(self.A) - self.alpha * np.log(n))
                    + np.exp(np.log(self.B) - self.beta * np.log(d)))

    @property
    def G(self) -> float:
        """G = (alpha A / (beta B))^(1 / (alpha + beta)), the constant of the closed-form allocation."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def optimal(self, compute: float) -> tuple[float, float]:
        """The (N, D) minimising L on the curve 6 N D = compute (set dL/dN = 0 with D = C / 6N)."""
        if not compute > 0 or not math.isfinite(compute):
            raise ValueError(f"compute must be a positive finite FLOP count, got {compute!r}")
        s = self.alpha + self.beta
        n = self.G * (compute / 6.0) ** (self.beta / s)
        d = (compute / 6.0) ** (self.alpha / s) / self.G
        return n, d

    def as_dict(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta}


# Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", Approach 3 (Eq. 10 / Appendix D.2).
HOFFMANN2022 = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt" (Epoch AI), their refit of Approach 3 on
# the digitised Figure 4 runs. Kept for comparison in docs and the eval test, not used as a default.
BESIROGLU2024 = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)

PRESETS: dict[str, ChinchillaLaw] = {"hoffmann2022": HOFFMANN2022, "besiroglu2024": BESIROGLU2024}


@dataclass(frozen=True)
class KaplanLaw:
    """Kaplan et al. 2020, "Scaling Laws for Neural Language Models" (Eqs. 1.1, 1.5, 1.7 and Table 6 / Fig. 14).

    N counts NON-embedding parameters and losses are in nats per token on WebText2 with their BPE, so the
    absolute loss is not comparable with Chinchilla's MassiveText losses.
    """

    N_c: float = 8.8e13
    alpha_N: float = 0.076
    D_c: float = 5.4e13
    alpha_D: float = 0.095
    # Compute-efficient frontier: N_opt = n_coef * C_min^n_exp with C_min in PF-days.
    n_coef: float = 1.3e9
    n_exp: float = 0.73

    def loss_n(self, n: float) -> float:
        """L(N): loss of an N-parameter model trained to convergence on unlimited data."""
        return (self.N_c / n) ** self.alpha_N

    def loss_d(self, d: float) -> float:
        """L(D): loss of a large model trained with early stopping on D tokens."""
        return (self.D_c / d) ** self.alpha_D

    def loss(self, n: float, d: float) -> float:
        """L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D."""
        return ((self.N_c / n) ** (self.alpha_N / self.alpha_D) + self.D_c / d) ** self.alpha_D

    def optimal(self, compute: float) -> tuple[float, float]:
        """(N_non_embedding, D) with N = 1.3e9 * C_PF-days^0.73 and D = C / 6N."""
        if not compute > 0 or not math.isfinite(compute):
            raise ValueError(f"compute must be a positive finite FLOP count, got {compute!r}")
        n = self.n_coef * (compute / PF_DAY) ** self.n_exp
        return n, compute / (6.0 * n)


KAPLAN2020 = KaplanLaw()


# Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", Eq. 5 and their fitted decay constants:
# the value of repeated tokens (and of parameters beyond what the unique data can use) decays exponentially.
R_D_STAR = 15.39
R_N_STAR = 5.31


def effective_tokens(d: float, unique: float) -> float:
    """D' = U + U R*_D (1 - exp(-R_D / R*_D)), R_D = D/U - 1 repeated epochs; D' = D with no repetition."""
    if d <= unique:
        return d
    repeats = d / unique - 1.0
    return unique + unique * R_D_STAR * (1.0 - math.exp(-repeats / R_D_STAR))


def effective_params(n: float, unique_params: float) -> float:
    """N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)), R_N = N/U_N - 1: parameters beyond U_N are worth less."""
    if n <= unique_params:
        return n
    excess = n / unique_params - 1.0
    return unique_params + unique_params * R_N_STAR * (1.0 - math.exp(-excess / R_N_STAR))


def params_for_tokens(law: ChinchillaLaw, d: float) -> float:
    """The N for which ``d`` tokens is the compute-optimal amount: N_opt / D_opt = G^2 (C/6)^((b-a)/(a+b))."""
    # From D_opt = G^-1 (C/6)^(a/(a+b)): C/6 = (G D)^((a+b)/a), then N_opt = G (C/6)^(b/(a+b)).
    # In logs: a fitted law with beta >> alpha puts this past the float range, which means "no finite N".
    log_n = math.log(law.G) + law.beta / law.alpha * math.log(law.G * d)
    return math.exp(log_n) if log_n < math.log(sys.float_info.max) else math.inf


def _minimise_log(fn, lo: float, hi: float) -> float:
    from scipy.optimize import minimize_scalar  # scipy only when a constrained allocation is asked for

    res = minimize_scalar(fn, bounds=(lo, hi), method="bounded", options={"xatol": 1e-9})
    return math.exp(res.x)


def data_constrained(law: ChinchillaLaw, compute: float, unique_tokens: float) -> dict[str, float]:
    """The N minimising L(N', D') on 6ND = C when only ``unique_tokens`` exist (Muennighoff et al. 2023).

    Returns params, tokens (seen, repeats included), epochs = tokens / unique, the effective D' and N', and the
    predicted loss; the unconstrained optimum is recovered when the data suffices (epochs <= 1).
    """
    if not unique_tokens > 0:
        raise ValueError(f"unique tokens must be positive, got {unique_tokens!r}")
    n_free, _ = law.optimal(compute)
    unique_params = params_for_tokens(law, unique_tokens)

    def loss(n: float) -> float:
        d = compute / (6.0 * n)
        n_eff = effective_params(n, min(unique_params, n))
        return law.loss(n_eff, effective_tokens(d, unique_tokens))

    n = _minimise_log(lambda x: loss(math.exp(x)), math.log(n_free) - 6, math.log(n_free) + 6)
    d = compute / (6.0 * n)
    return {"params": n, "tokens": d, "epochs": d / unique_tokens,
            "effective_tokens": effective_tokens(d, unique_tokens),
            "effective_params": effective_params(n, min(unique_params, n)), "loss": loss(n),
            "unique_tokens": unique_tokens}


def inference_aware(law: ChinchillaLaw, compute: float, inference_tokens: float,
                    unique_tokens: float | None = None) -> dict[str, float]:
    """Sardana et al. 2023: the (N, D) reaching the loss of the compute-optimal model at ``compute`` while
    minimising training plus inference FLOPs, 6 N D + 2 N D_inf. Smaller N, more training tokens.

    With ``unique_tokens`` the reference model and the loss along the way are the data-constrained ones
    (:func:`data_constrained`): repeated tokens buy less, so the trade toward small models stops earlier.
    """
    if not inference_tokens >= 0:
        raise ValueError(f"inference tokens must be non-negative, got {inference_tokens!r}")
    if unique_tokens is None:
        n_opt, d_opt = law.optimal(compute)
        target = law.loss(n_opt, d_opt)
    else:
        reference = data_constrained(law, compute, unique_tokens)
        n_opt, target = reference["params"], reference["loss"]
        unique_params = params_for_tokens(law, unique_tokens)

    def tokens_for(n: float) -> float:
        """D with L(N, D) = target; inf when no amount of data gets an N-parameter model there."""
        if unique_tokens is None:
            gap = target - law.E - law.A / n**law.alpha
            return (law.B / gap) ** (1.0 / law.beta) if gap > 0 else math.inf
        from scipy.optimize import brentq

        n_eff = effective_params(n, min(unique_params, n))

        def excess(log_d: float) -> float:
            return law.loss(n_eff, effective_tokens(math.exp(log_d), unique_tokens)) - target

        hi = math.log(unique_tokens) + 12.0  # ~160,000 epochs: effective tokens have long saturated
        if excess(hi) > 0:
            return math.inf
        return math.exp(brentq(excess, math.log(1.0), hi, xtol=1e-12))

    def total(log_n: float) -> float:
        n = math.exp(log_n)
        d = tokens_for(n)
        # A large finite value, not inf, keeps the bounded search well defined where the target is unreachable.
        return math.log(6.0 * n * d + 2.0 * n * inference_tokens) if math.isfinite(d) else 1e3

    # The smallest model that can reach the target at all has A/N^alpha = target - E; stay just above it.
    n_min = (law.A / (target - law.E)) ** (1.0 / law.alpha)
    n = _minimise_log(total, math.log(n_min) + 1e-6, math.log(n_opt) + 1e-9)
    d = tokens_for(n)
    out = {"params": n, "tokens": d, "loss": target, "training_compute": 6.0 * n * d,
           "inference_compute": 2.0 * n * inference_tokens,
           "total_compute": 6.0 * n * d + 2.0 * n * inference_tokens,
           "chinchilla_total_compute": compute + 2.0 * n_opt * inference_tokens}
    if unique_tokens is not None:
        out["epochs"] = d / unique_tokens
    return out
