"""Numbers the Planning page derives from what the planner recorded: law curves with bootstrap bands,
IsoFLOP curves, compute-optimal frontiers and the model-state part of a plan's memory."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from planner import fit as fitting
from planner.laws import BESIROGLU2024, HOFFMANN2022, KAPLAN2020, ChinchillaLaw

BOOTSTRAP = 200
LAW_FIELDS = ("E", "A", "B", "alpha", "beta")
# Mixed-precision Adam: bf16 weights and gradients, fp32 master weights and two fp32 moments.
BYTES_WEIGHTS, BYTES_GRADS, BYTES_OPTIMIZER = 2, 2, 12


def law_of(fit_row: pd.Series) -> ChinchillaLaw | None:
    """The Chinchilla law a recorded fit holds, or None for another form or missing estimates."""
    if fit_row.get("form", "chinchilla") != "chinchilla":
        return None
    values = [fit_row.get(k) for k in LAW_FIELDS]
    if any(v is None or not isinstance(v, int | float) or not math.isfinite(v) for v in values):
        return None
    return ChinchillaLaw(*(float(v) for v in values))


def bootstrap_laws(law: ChinchillaLaw, points: pd.DataFrame, seed: int = 0) -> list[ChinchillaLaw]:
    """Laws refitted on resamples of the fit's own points, descending from the recorded optimum.

    The store records per-parameter intervals, but the parameters are strongly correlated (A with alpha,
    B with beta), so a band built from independent intervals would be far too wide; resampling the points
    again gives the joint spread. Empty when there are too few points to fit."""
    clean = points.dropna(subset=["params", "tokens", "loss"])
    try:
        runs = fitting.Runs(clean["params"].to_numpy(float), clean["tokens"].to_numpy(float),
                            clean["loss"].to_numpy(float))
    except fitting.FitError:
        return []
    start = np.array([math.log(law.A), math.log(law.B), math.log(law.E), law.alpha, law.beta])
    result = fitting.fit(runs, starts=[start], bootstrap=BOOTSTRAP, seed=seed)
    return [ChinchillaLaw(*row) for row in result.samples if np.all(np.isfinite(row))]


def _band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return fitting.percentile_interval(values, 0.95)


def loss_curves(law: ChinchillaLaw, samples: list[ChinchillaLaw], sizes: list[float],
                tokens: np.ndarray) -> pd.DataFrame:
    """L(N, D) over ``tokens`` for each model size: columns params, tokens, loss, lo, hi (95% band)."""
    pieces = []
    for n in sizes:
        loss = law.loss(n, tokens)
        lo = hi = np.full_like(tokens, np.nan)
        if samples:
            lo, hi = _band(np.array([s.loss(n, tokens) for s in samples]))
        pieces.append(pd.DataFrame({"params": n, "tokens": tokens, "loss": loss, "lo": lo, "hi": hi}))
    return pd.concat(pieces, ignore_index=True)


def isoflop_curves(law: ChinchillaLaw, samples: list[ChinchillaLaw], budgets: list[float],
                   params: np.ndarray) -> pd.DataFrame:
    """L(N, C / 6N) across ``params`` for each compute budget C, with a 95% band; column optimal marks N_opt."""
    pieces = []
    for c in budgets:
        tokens = c / (6.0 * params)
        loss = law.loss(params, tokens)
        lo = hi = np.full_like(params, np.nan)
        if samples:
            lo, hi = _band(np.array([s.loss(params, tokens) for s in samples]))
        pieces.append(pd.DataFrame({"compute": c, "params": params, "tokens": tokens, "loss": loss, "lo": lo,
                                    "hi": hi}))
    return pd.concat(pieces, ignore_index=True)


def isoflop_optima(law: ChinchillaLaw, budgets: list[float]) -> pd.DataFrame:
    rows = []
    for c in budgets:
        n, d = law.optimal(c)
        rows.append({"compute": c, "params": n, "tokens": d, "loss": law.loss(n, d)})
    return pd.DataFrame(rows)


def frontiers(laws: dict[str, ChinchillaLaw], computes: np.ndarray, kaplan: bool = True) -> pd.DataFrame:
    """Compute-optimal N, D and loss against C for each named law (Kaplan: non-embedding N, no loss:
    its WebText2 losses are not on the same scale)."""
    pieces = []
    for label, law in laws.items():
        nd = np.array([law.optimal(c) for c in computes])
        pieces.append(pd.DataFrame({"law": label, "compute": computes, "params": nd[:, 0], "tokens": nd[:, 1],
                                    "loss": law.loss(nd[:, 0], nd[:, 1])}))
    if kaplan:
        nd = np.array([KAPLAN2020.optimal(c) for c in computes])
        pieces.append(pd.DataFrame({"law": "Kaplan 2020 (non-embedding N)", "compute": computes, "params": nd[:, 0],
                                    "tokens": nd[:, 1], "loss": np.nan}))
    return pd.concat(pieces, ignore_index=True)


PUBLISHED = {"Hoffmann 2022": HOFFMANN2022, "Besiroglu 2024": BESIROGLU2024}


def _field(plan: pd.Series, name: str, default: float) -> float:
    # A field one plan lacks is NaN once another plan in the table has it, and NaN is truthy: test, don't `or`.
    value = plan.get(name)
    return float(value) if pd.notna(value) else default


def has_layout(plan: pd.Series) -> bool:
    """Whether the plan has a parallel layout: a plan made without ``--gpus`` records none."""
    return all(pd.notna(plan.get(k)) for k in ("tp", "pp", "dp"))


def model_state_memory(plan: pd.Series) -> pd.DataFrame:
    """Per-GPU memory of weights, gradients and optimizer states for a plan's layout, and the rest of the
    planner's recorded total (activations, logits, buffers and overhead): columns part, gb.

    Each GPU holds 1 / (TP x PP) of the model; ZeRO stage 1 shards optimizer states over the DP group,
    stage 2 also gradients, stage 3 also weights.
    """
    params, tp, pp, dp = (_field(plan, k, 1.0) for k in ("params", "tp", "pp", "dp"))
    zero = int(_field(plan, "zero", 0.0))
    shard = params / (tp * pp)
    parts = {
        "weights (bf16)": shard * BYTES_WEIGHTS / (dp if zero >= 3 else 1),
        "gradients (bf16)": shard * BYTES_GRADS / (dp if zero >= 2 else 1),
        "optimizer (fp32 master, Adam m and v)": shard * BYTES_OPTIMIZER / (dp if zero >= 1 else 1),
    }
    frame = pd.DataFrame({"part": list(parts), "gb": [v / 2**30 for v in parts.values()]})
    total = plan.get("memory_gb_per_gpu")
    if isinstance(total, int | float) and math.isfinite(total):
        rest = float(total) - float(frame["gb"].sum())
        frame = pd.concat([frame, pd.DataFrame({"part": ["activations, logits and overhead (recorded total − above)"],
                                                "gb": [rest]})], ignore_index=True)
    return frame
