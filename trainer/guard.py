"""The spike guard: detect loss and gradient-norm outliers and non-finite values, decide what to do.

Detection compares each step against a rolling window of *accepted* steps (an outlier never enters the
window it is judged by): an outlier lies more than ``k`` standard deviations above the window mean,
once the window is full. Non-finite loss or gradients are always detected.

Decision: an isolated outlier is skipped (no optimizer update); ``persist`` consecutive outliers are a
spike the weights are already part of, so the loop rolls back to the last good checkpoint and skips the
data window (PaLM, Chowdhery et al. 2022, section 5.1); more than ``max_rollbacks`` rollbacks give up.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from trainer.config import GuardConfig


@dataclass(frozen=True)
class Verdict:
    action: str  # ok | skip | rollback | give_up
    kind: str = ""  # nan | spike for anything but ok
    reason: str = ""


class SpikeGuard:
    def __init__(self, cfg: GuardConfig):
        self.cfg = cfg
        self.losses: deque[float] = deque(maxlen=cfg.window)
        self.norms: deque[float] = deque(maxlen=cfg.window)
        self.consecutive = 0
        self.onset_step: int | None = None  # first step of the current run of outliers

    def _outlier(self, name: str, value: float, history: deque[float], min_rel_std: float) -> str:
        if len(history) < self.cfg.window:
            return ""
        mean = math.fsum(history) / len(history)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in history) / len(history))
        std = max(std, min_rel_std * abs(mean))
        limit = mean + self.cfg.k * std
        return f"{name} {value:.4g} > mean {mean:.4g} + {self.cfg.k:g}σ ({limit:.4g})" if value > limit else ""

    def check(self, step: int, loss: float, grad_norm: float, rollbacks: int) -> Verdict:
        """Judge one step; ``rollbacks`` is how many the run has already done."""
        if not math.isfinite(loss) or not math.isfinite(grad_norm):
            kind, reason = "nan", f"non-finite loss {loss} / grad norm {grad_norm}"
        else:
            reason = (self._outlier("loss", loss, self.losses, self.cfg.min_rel_std)
                      or self._outlier("grad norm", grad_norm, self.norms, self.cfg.grad_min_rel_std))
            kind = "spike" if reason else ""
        if not kind:
            self.consecutive, self.onset_step = 0, None
            self.losses.append(loss)
            self.norms.append(grad_norm)
            return Verdict("ok")
        if self.consecutive == 0:
            self.onset_step = step
        self.consecutive += 1
        if self.consecutive < self.cfg.persist:
            return Verdict("skip", kind, reason)
        self.consecutive = 0
        if rollbacks >= self.cfg.max_rollbacks:
            return Verdict("give_up", kind, f"{reason}; {self.cfg.persist} outliers in a row after {rollbacks} "
                                            f"rollbacks (guard.max_rollbacks = {self.cfg.max_rollbacks})")
        return Verdict("rollback", kind, f"{reason}; {self.cfg.persist} outliers in a row")

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "norms": list(self.norms), "consecutive": self.consecutive,
                "onset_step": -1 if self.onset_step is None else self.onset_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = deque(state["losses"], maxlen=self.cfg.window)
        self.norms = deque(state["norms"], maxlen=self.cfg.window)
        self.consecutive = int(state["consecutive"])
        self.onset_step = None if state["onset_step"] < 0 else int(state["onset_step"])
