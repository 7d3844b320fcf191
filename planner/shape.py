"""Model shapes: a decoder-only transformer's dimensions, its exact parameter count, and N -> shape.

Counting convention (matches trainer/model.py): no biases; two RMS/LayerNorm weight vectors per layer and one
final norm; attention with ``kv_heads`` key/value heads (grouped-query attention when fewer than ``heads``);
an MLP that is either GELU (two matrices, d x ffn) or SwiGLU (three). ``non_embedding`` leaves out the token
embedding and an untied output head (Kaplan et al. 2020); ``matmul`` counts the parameters that take part in
a matrix multiply per token (non-embedding plus the output head, tied or not), which is the N of the
model-FLOPs formula 6N + 12 L h s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

MLPS = ("gelu", "swiglu")
DEFAULT_VOCAB = 32_000
SHAPE_TOLERANCE = 0.05  # the bar: the built shape's parameter count within 5% of the target


class ShapeError(ValueError):
    """A shape that cannot exist (dimensions that do not divide) or a target no shape can reach."""


@dataclass(frozen=True)
class ModelShape:
    layers: int
    d_model: int
    heads: int
    ffn: int
    vocab: int
    kv_heads: int | None = None  # None: as many as `heads` (multi-head attention)
    mlp: str = "swiglu"
    tied_embeddings: bool = False

    def __post_init__(self) -> None:
        for name in ("layers", "d_model", "heads", "ffn", "vocab"):
            if getattr(self, name) < 1:
                raise ShapeError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.d_model % self.heads:
            raise ShapeError(f"d_model {self.d_model} is not divisible by {self.heads} heads")
        if self.heads % self.n_kv_heads:
            raise ShapeError(f"{self.heads} heads are not divisible by {self.n_kv_heads} key/value heads")
        if self.mlp not in MLPS:
            raise ShapeError(f"mlp must be one of {MLPS}, got {self.mlp!r}")

    @property
    def n_kv_heads(self) -> int:
        return self.heads if self.kv_heads is None else self.kv_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def attention_params(self) -> int:
        """Q and output projections (d x d each) plus K and V (d x kv_heads*head_dim each)."""
        kv = self.n_kv_heads * self.head_dim
        return 2 * self.d_model * self.d_model + 2 * self.d_model * kv

    @property
    def mlp_params(self) -> int:
        return (3 if self.mlp == "swiglu" else 2) * self.d_model * self.ffn

    @property
    def layer_params(self) -> int:
        return self.attention_params + self.mlp_params + 2 * self.d_model

    @property
    def non_embedding(self) -> int:
        return self.layers * self.layer_params + self.d_model

    @property
    def embedding(self) -> int:
        return self.vocab * self.d_model * (1 if self.tied_embeddings else 2)

    @property
    def total(self) -> int:
        return self.non_embedding + self.embedding

    @property
    def matmul(self) -> int:
        return self.layers * (self.attention_params + self.mlp_params) + self.vocab * self.d_model

    def model_flops_per_token(self, seq: int) -> float:
        """6 N_matmul + 12 L h s: forward + backward of every matmul and of attention's QK^T and AV."""
        return 6.0 * self.matmul + 12.0 * self.layers * self.d_model * seq

    def as_dict(self) -> dict[str, int | str | bool]:
        return {**asdict(self), "kv_heads": self.n_kv_heads}


def ffn_for(d_model: int, mlp: str) -> int:
    """4 d for GELU; for SwiGLU 8/3 d rounded up to a multiple of 256 (the Llama rule: 4096 -> 11008)."""
    if mlp == "gelu":
        return 4 * d_model
    return 256 * math.ceil(8 * d_model / 3 / 256)


def target_aspect(n: float) -> float:
    """d_model / layers to aim for: ~64 up to 3e8 parameters, ~128 from 6e9 (GPT-3, Llama, MPT), log-linear between.

    Kaplan et al. 2020 (Fig. 5) find loss nearly flat over a wide range of aspect ratios, so this only picks a
    conventional, well-tested point in that flat region.
    """
    lo, hi = math.log(3e8), math.log(6e9)
    x = min(max((math.log(n) - lo) / (hi - lo), 0.0), 1.0)
    return 64.0 * 2.0**x


def shape_for(n: float, counted: str = "total", vocab: int = DEFAULT_VOCAB, mlp: str = "swiglu",
              tied_embeddings: bool = False) -> ModelShape:
    """The shape whose parameter count (``counted``: total or non_embedding) is within 5% of ``n``.

    d_model is a multiple of 128, head dim 128 (64 below d_model 2048), FFN by :func:`ffn_for`. Among shapes
    within tolerance, the one nearest :func:`target_aspect` wins, with a small pull toward the exact count and
    a preference for head counts divisible by 8.
    """
    if counted not in ("total", "non_embedding"):
        raise ShapeError(f"counted must be 'total' or 'non_embedding', got {counted!r}")
    if not n > 0 or not math.isfinite(n):
        raise ShapeError(f"parameter target must be positive and finite, got {n!r}")
    best: tuple[float, ModelShape] | None = None
    nearest: tuple[float, ModelShape] | None = None
    aspect = target_aspect(n)
    for d_model in range(128, 65_536 + 1, 128):
        head_dim = 128 if d_model >= 2048 else 64
        probe = ModelShape(1, d_model, d_model // head_dim, ffn_for(d_model, mlp), vocab, mlp=mlp,
                           tied_embeddings=tied_embeddings)
        fixed = probe.d_model + (probe.embedding if counted == "total" else 0)
        per_layer = probe.layer_params
        for layers in {max(1, math.floor((n - fixed) / per_layer)), max(1, math.ceil((n - fixed) / per_layer))}:
            shape = ModelShape(layers, d_model, probe.heads, probe.ffn, vocab, mlp=mlp,
                               tied_embeddings=tied_embeddings)
            count = shape.total if counted == "total" else shape.non_embedding
            error = abs(count - n) / n
            if nearest is None or error < nearest[0]:
                nearest = (error, shape)
            if error <= SHAPE_TOLERANCE:
                # Head counts divisible by 8 keep every tensor-parallel degree up to a full node available.
                score = abs(math.log(d_model / layers / aspect)) + 4.0 * error + (0.5 if probe.heads % 8 else 0.0)
                if best is None or score < best[0]:
                    best = (score, shape)
        if fixed > 2 * n:  # wider models only overshoot more
            break
    if best is None:
        assert nearest is not None
        shape = nearest[1]
        count = shape.total if counted == "total" else shape.non_embedding
        raise ShapeError(f"no shape with vocab {vocab} has {n:.3g} {counted} parameters within 5%: the closest "
                         f"is {shape.layers} layers x d_model {shape.d_model} = {count:.3g}; use a smaller --vocab "
                         f"or a larger budget")
    return best[1]
