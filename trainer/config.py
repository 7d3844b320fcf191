"""Trainer configuration: frozen dataclasses, presets, TOML files and ``--set`` overrides.

Resolution order, later wins: the preset, then ``--config FILE.toml``, then explicit command-line flags,
then ``--set section.key=value``. The resolved config is written into ``run.json`` of every run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.faults import parse_faults


@dataclass(frozen=True)
class ModelConfig:
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    ffn: str = "swiglu"  # swiglu | gelu
    norm: str = "rmsnorm"  # rmsnorm | layernorm
    tie_embeddings: bool = True
    # Stop attention at document boundaries using the shard's doc_lengths (turns off flash kernels).
    doc_mask: bool = False
    ffn_hidden: int = 0  # 0 = 8/3·d_model for SwiGLU (same parameters as a 4·d GELU MLP), 4·d_model for GELU
    bias: bool = False
    dropout: float = 0.0
    rope_base: float = 10000.0
    # 0 means "take it from the dataset version": the tokenizer's vocabulary and the shard row length.
    vocab_size: int = 0
    seq_len: int = 0

    @property
    def d_ff(self) -> int:
        if self.ffn_hidden:
            return self.ffn_hidden
        # SwiGLU has three matrices instead of two, so 2/3 of 4d keeps the parameter count of a GELU MLP;
        # rounding to 64 keeps matmuls on tensor-core-friendly shapes.
        if self.ffn == "swiglu":
            return 64 * ((8 * self.d_model // 3 + 63) // 64)
        return 4 * self.d_model


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    schedule: str = "cosine"  # cosine | wsd (warmup-stable-decay)
    decay_frac: float = 0.2  # wsd: the final fraction of steps spent decaying
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0


@dataclass(frozen=True)
class GuardConfig:
    window: int = 50  # accepted steps the statistics are taken over; detection starts once it is full
    k: float = 6.0  # an outlier lies more than k standard deviations above the window mean
    # Floors on sigma as a fraction of the window mean, so a quiet window is not hair-trigger. Gradient
    # norms are heavy-tailed (a healthy step at 1.7x the mean is common), so theirs is much higher.
    min_rel_std: float = 0.02
    grad_min_rel_std: float = 0.25
    persist: int = 3  # consecutive outliers that count as a spike worth a rollback, not a skip
    max_rollbacks: int = 3
    rollback_skip_batches: int = 10  # extra batches skipped past the spike (PaLM skipped 200-500)
    lr_factor_on_rollback: float = 1.0


@dataclass(frozen=True)
class ScalerConfig:
    init_scale: float = 2.0**16
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    growth_interval: int = 2000


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "tiny"
    home: str | None = None
    data: str | None = None  # a data dir, a version dir, or a version name under <home>/data
    out: str | None = None
    seed: int = 0
    max_steps: int = 300
    batch_size: int = 8  # rows per micro-batch per process
    grad_accum: int = 1
    device: str = "auto"  # auto (cuda when torch sees a GPU, else cpu) | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    compile: bool = False
    parallel: str = "ddp"  # ddp | fsdp (FSDP2: parameters, gradients and optimizer state sharded); under torchrun
    log_every: int = 10
    eval_every: int = 100
    eval_rows: int = 32  # rows held out of training for val_loss; 0 disables evaluation
    ckpt_every: int = 50
    keep_last: int = 3
    keep_every: int = 1000  # checkpoints at multiples of this step are kept for good
    peak_flops: float = 0.0  # per device, for MFU; 0 = look it up (CUDA) or measure a matmul (CPU)
    inject_faults: tuple[str, ...] = ()
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    scaler: ScalerConfig = field(default_factory=ScalerConfig)

    def resolved_precision(self) -> str:
        """Of a config whose device is resolved (the trainer resolves ``auto`` first)."""
        if self.precision == "auto":
            return "bf16" if self.device.startswith("cuda") else "fp32"
        return self.precision

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """A config file, preset or override that does not describe a valid run."""


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on a laptop CPU; the test suite trains it end to end.
    "tiny": {},
    # GPT-2 small / Pythia-160M shape: about 125M parameters at a 50k vocabulary.
    "small": {
        "max_steps": 20000, "batch_size": 16, "grad_accum": 4, "eval_every": 1000, "eval_rows": 256,
        "ckpt_every": 1000, "log_every": 10, "keep_every": 5000,
        "model": {"n_layers": 12, "d_model": 768, "n_heads": 12},
        "optim": {"lr": 6e-4, "warmup_steps": 700},
        "guard": {"rollback_skip_batches": 200},
    },
    # GPT-2 medium shape, about 350M.
    "medium": {
        "max_steps": 40000, "batch_size": 8, "grad_accum": 8, "eval_every": 1000, "eval_rows": 256,
        "ckpt_every": 1000, "log_every": 10, "keep_every": 5000,
        "model": {"n_layers": 24, "d_model": 1024, "n_heads": 16},
        "optim": {"lr": 3e-4, "warmup_steps": 1000},
        "guard": {"rollback_skip_batches": 300},
    },
    # OLMo-1B shape: 16 layers of width 2048, SwiGLU hidden 8192.
    "1b": {
        "max_steps": 100000, "batch_size": 4, "grad_accum": 16, "eval_every": 1000, "eval_rows": 256,
        "ckpt_every": 1000, "log_every": 10, "keep_every": 10000,
        "model": {"n_layers": 16, "d_model": 2048, "n_heads": 16, "ffn_hidden": 8192},
        "optim": {"lr": 4e-4, "warmup_steps": 2000},
        "guard": {"rollback_skip_batches": 500},
    },
}

_SECTIONS = {"model": ModelConfig, "optim": OptimConfig, "guard": GuardConfig, "scaler": ScalerConfig}
_CHOICES = {
    ("model", "ffn"): ("swiglu", "gelu"),
    ("model", "norm"): ("rmsnorm", "layernorm"),
    ("optim", "schedule"): ("cosine", "wsd"),
    ("", "precision"): ("auto", "bf16", "fp16", "fp32"),
    ("", "parallel"): ("ddp", "fsdp"),
}


def _check_type(where: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
    elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(default, tuple):
        if isinstance(value, str):
            value = tuple(v for v in value.split(",") if v)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        value = tuple(value)
    elif default is None or kind is str:
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
    elif not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _merge(base: Any, updates: dict[str, Any], section: str = "") -> Any:
    names = {f.name: f for f in dataclasses.fields(base)}
    changes: dict[str, Any] = {}
    for key, value in updates.items():
        where = f"{section}.{key}" if section else key
        if key not in names:
            raise ConfigError(f"unknown setting {where!r}; known: {', '.join(sorted(names))}")
        current = getattr(base, key)
        if key in _SECTIONS and not section:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a table of settings, got {value!r}")
            changes[key] = _merge(current, value, key)
            continue
        value = _check_type(where, value, current)
        allowed = _CHOICES.get((section, key))
        if allowed and value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
        changes[key] = value
    return dataclasses.replace(base, **changes)


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["model.d_model=128", "ckpt_every=5"]`` -> nested dict, values parsed as TOML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, raw = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word is a string
        *parents, leaf = key.strip().split(".")
        node = out
        for depth, parent in enumerate(parents, start=1):
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                where = ".".join(parents[:depth])
                raise ConfigError(f"--set {item!r}: {where} is already set to {node!r}, not a table of settings")
        node[leaf] = value
    return out


def out_of_memory(config: TrainConfig, how: str = "--set {key}={value}") -> str:
    """That a run's micro-batch did not fit on its device, and what to change, each setting written as ``how``."""
    if config.batch_size > 1:
        keep = " ".join((how.format(key="batch_size", value=config.batch_size // 2),
                         how.format(key="grad_accum", value=config.grad_accum * 2)))
        advice = f"lower batch_size and raise grad_accum by the same factor to keep the global batch ({keep})"
    else:
        advice = "one sequence already does not fit: shard the model (FSDP) over more GPUs, or shrink it or seq_len"
    return f"out of memory on {config.device} with a micro-batch of {config.batch_size} sequence(s): {advice}"


def build_config(preset: str = "tiny", file: str | Path | None = None, *overrides: dict[str, Any]) -> TrainConfig:
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    config = _merge(TrainConfig(preset=preset), PRESETS[preset])
    if file is not None:
        try:
            loaded = tomllib.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"--config {file}: {exc}") from exc
        config = _merge(config, loaded)
    for update in overrides:
        config = _merge(config, update)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    m, o, g, s = config.model, config.optim, config.guard, config.scaler
    inf = math.inf  # `0 < x < inf` also refuses NaN, which TOML and --set accept as a float
    ranges: list[tuple[str, float, bool, str]] = [
        ("seed", config.seed, 0 <= config.seed < 2**64, "in [0, 2**64) (torch.manual_seed)"),
        ("eval_rows", config.eval_rows, config.eval_rows >= 0, "at least 0 (0 disables evaluation)"),
        ("peak_flops", config.peak_flops, 0 <= config.peak_flops < inf, "a finite number >= 0 (0 = look it up)"),
        ("model.n_layers", m.n_layers, m.n_layers >= 1, "at least 1"),
        ("model.d_model", m.d_model, m.d_model >= 1, "at least 1"),
        ("model.n_heads", m.n_heads, m.n_heads >= 1, "at least 1"),
        ("model.ffn_hidden", m.ffn_hidden, m.ffn_hidden >= 0, "at least 0 (0 = derived from d_model)"),
        ("model.dropout", m.dropout, 0 <= m.dropout < 1, "in [0, 1)"),
        ("model.rope_base", m.rope_base, 1 < m.rope_base < inf, "a finite number above 1"),
        ("model.vocab_size", m.vocab_size, m.vocab_size >= 0, "at least 0 (0 = the dataset's)"),
        ("model.seq_len", m.seq_len, m.seq_len >= 0, "at least 0 (0 = the dataset's)"),
        ("optim.lr", o.lr, 0 < o.lr < inf, "a finite number above 0"),
        ("optim.min_lr_ratio", o.min_lr_ratio, 0 <= o.min_lr_ratio <= 1, "in [0, 1]"),
        ("optim.warmup_steps", o.warmup_steps, o.warmup_steps >= 0, "at least 0"),
        ("optim.decay_frac", o.decay_frac, 0 <= o.decay_frac <= 1, "in [0, 1]"),
        ("optim.weight_decay", o.weight_decay, 0 <= o.weight_decay < inf, "a finite number >= 0"),
        ("optim.beta1", o.beta1, 0 <= o.beta1 < 1, "in [0, 1)"),
        ("optim.beta2", o.beta2, 0 <= o.beta2 < 1, "in [0, 1)"),
        ("optim.eps", o.eps, 0 < o.eps < inf, "a finite number above 0"),
        ("optim.grad_clip", o.grad_clip, 0 <= o.grad_clip < inf, "a finite number >= 0 (0 = no clipping)"),
        ("guard.window", g.window, g.window >= 1, "at least 1"),
        ("guard.k", g.k, 0 < g.k < inf, "a finite number above 0"),
        ("guard.min_rel_std", g.min_rel_std, 0 <= g.min_rel_std < inf, "a finite number >= 0"),
        ("guard.grad_min_rel_std", g.grad_min_rel_std, 0 <= g.grad_min_rel_std < inf, "a finite number >= 0"),
        ("guard.persist", g.persist, g.persist >= 1, "at least 1"),
        ("guard.max_rollbacks", g.max_rollbacks, g.max_rollbacks >= 0, "at least 0"),
        ("guard.rollback_skip_batches", g.rollback_skip_batches, g.rollback_skip_batches >= 0, "at least 0"),
        ("guard.lr_factor_on_rollback", g.lr_factor_on_rollback, 0 < g.lr_factor_on_rollback <= 1,
         "in (0, 1] (1 = unchanged)"),
        ("scaler.init_scale", s.init_scale, 0 < s.init_scale < inf, "a finite number above 0"),
        ("scaler.growth_factor", s.growth_factor, 1 < s.growth_factor < inf, "a finite number above 1"),
        ("scaler.backoff_factor", s.backoff_factor, 0 < s.backoff_factor < 1, "in (0, 1)"),
        ("scaler.growth_interval", s.growth_interval, s.growth_interval >= 1, "at least 1"),
    ]
    ranges += [(name, getattr(config, name), getattr(config, name) >= 1, "at least 1")
               for name in ("max_steps", "batch_size", "grad_accum", "log_every", "eval_every", "ckpt_every",
                            "keep_last", "keep_every")]
    for where, value, ok, allowed in ranges:
        if not ok:
            raise ConfigError(f"{where} must be {allowed}, got {value!r}")
    if m.d_model % m.n_heads or (m.d_model // m.n_heads) % 2:
        raise ConfigError(f"model.d_model {m.d_model} must split into {m.n_heads} heads of even size (RoPE)")
    try:
        parse_faults(config.inject_faults)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Inverse of ``TrainConfig.to_dict`` (used to read a run.json back)."""
    return _merge(TrainConfig(), json.loads(json.dumps(data)))
