"""Scaling-law forms and their compute-optimal allocations: Chinchilla (Hoffmann et al. 2022) and Kaplan et al. 2020.

This module owns the closed-form maths only: no fitting (see :mod:`planner.fit`), no hardware (see
:mod:`planner.hardware`). Compute is always in FLOPs with the usual C = 6 N D training-cost approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

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
