"""A decoder-only transformer (GPT), readable top to bottom.

Pre-norm blocks (RMSNorm or LayerNorm) -> causal self-attention with rotary position embeddings
through ``scaled_dot_product_attention`` (flash kernels on GPU) -> MLP (SwiGLU or GELU). Optional
tied input/output embeddings and optional attention masking at document boundaries.
Initialisation follows GPT-2: N(0, 0.02), residual projections scaled by 1/sqrt(2 * layers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import ModelConfig


class Norm(nn.Module):
    def __init__(self, dim: int, kind: str, bias: bool):
        super().__init__()
        self.kind = kind
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias and kind == "layernorm" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "rmsnorm":
            return F.rms_norm(x, (x.shape[-1],), self.weight, eps=1e-6)
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, eps=1e-5)


def rope_tables(seq_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position * frequency, each [seq_len, head_dim / 2]."""
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), freqs)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (first half, second half) pair of x [batch, heads, time, head_dim] by its position's angle."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos[: x.shape[-2]].to(x.dtype), sin[: x.shape[-2]].to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.proj.is_residual_projection = True

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        batch, time, dim = x.shape
        q, k, v = self.qkv(x).view(batch, time, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(batch, time, dim))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.swiglu = cfg.ffn == "swiglu"
        # SwiGLU's gate and up projections share one matmul.
        self.up = nn.Linear(cfg.d_model, (2 if self.swiglu else 1) * cfg.d_ff, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.proj.is_residual_projection = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            gate, up = self.up(x).chunk(2, dim=-1)
            return self.proj(F.silu(gate) * up)
        return self.proj(F.gelu(self.up(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = Norm(cfg.d_model, cfg.norm, cfg.bias)
        self.attn = Attention(cfg)
        self.norm2 = Norm(cfg.d_model, cfg.norm, cfg.bias)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), cos, sin, mask))
        return x + self.drop(self.mlp(self.norm2(x)))


def document_mask(segments: torch.Tensor) -> torch.Tensor:
    """Causal mask that also stops attention across documents: [batch, 1, time, time], True = attend."""
    time = segments.shape[1]
    causal = torch.ones(time, time, dtype=torch.bool, device=segments.device).tril()
    same_doc = segments[:, :, None] == segments[:, None, :]
    return (causal & same_doc)[:, None]


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size < 1 or cfg.seq_len < 1:
            raise ValueError("ModelConfig.vocab_size and seq_len must be resolved before building the model")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = Norm(cfg.d_model, cfg.norm, cfg.bias)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        cos, sin = rope_tables(cfg.seq_len, cfg.d_model // cfg.n_heads, cfg.rope_base)
        # Not parameters and not saved: they are a pure function of the config.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "is_residual_projection", False):
                std /= math.sqrt(2 * self.cfg.n_layers)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                segments: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [batch, time, vocab]; with ``targets``, the *summed* cross-entropy over targets != -100.

        The sum (not the mean) lets the loop normalise by the token count of the whole global batch, so
        one process with gradient accumulation and N processes under DDP compute the same gradient.
        """
        mask = document_mask(segments) if segments is not None and self.cfg.doc_mask else None
        x = self.drop(self.embed(idx))
        for block in self.blocks:
            x = block(x, self.rope_cos, self.rope_sin, mask)
        logits = self.head(self.norm(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum")


def count_params(model: GPT) -> dict[str, int]:
    """``params`` counts every distinct parameter once (a tied head is the embedding); the non-embedding
    count (Kaplan et al.) leaves out the token embedding and an untied output head."""
    total = sum(p.numel() for p in model.parameters())
    embedding = model.embed.weight.numel()
    if not model.cfg.tie_embeddings:
        embedding += model.head.weight.numel()
    return {"params": total, "non_embedding_params": total - embedding}


def flops_per_token(cfg: ModelConfig, non_embedding_params: int) -> float:
    """Training FLOPs per token, 6N + 12 L h s (PaLM appendix B), where N counts the matmul weights: the
    non-embedding parameters plus the output head, which is a matmul even when tied (the lookup is not)."""
    n = non_embedding_params + cfg.vocab_size * cfg.d_model
    return 6.0 * n + 12.0 * cfg.n_layers * cfg.d_model * cfg.seq_len


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: matrices and embeddings decay; norm weights and biases (1-d tensors) do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
