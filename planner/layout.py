"""Parallel layouts: memory per GPU, step time, MFU/HFU for DP x TP x PP, and the search over them.

Memory (bytes per GPU, for the first pipeline stage, which holds the most activations, and the last, which holds
the logits; the larger is reported):

* weights/gradients/optimizer: 2 + 2 + 12 bytes per parameter (bf16 weights and gradients, fp32 master copy and
  Adam moments; Rajbhandari et al. 2020), parameters of the stage divided by TP, and with ZeRO stage 1/2/3 the
  optimizer / +gradients / +weights divided by the DP degree (never by all GPUs). ZeRO-3 adds two gathered
  layers (the one computing and the one prefetched).
* activations per layer and micro-batch (Korthikanti et al. 2022, Sec. 4, generalised to GQA and SwiGLU):
  ``rep`` = 8sbh (+2sbh dropout masks) is replicated across TP ranks unless sequence parallelism splits it;
  ``par`` = (Q, K, V, attention output, MLP intermediates) is split by TP; eager attention adds
  2as^2b (5as^2b with dropout), which selective recompute and FlashAttention never store; full recompute keeps
  only the 2sbh layer input (split by TP under SP) plus one layer's working set during its backward.
  With GELU 4h, MHA and dropout this is exactly the paper's sbh(10 + 24/t + 5as/(ht)).
* the first stage holds min(m, p) micro-batches of its L/p layers (1F1B), times (1 + (p-1)/(p v)) when
  interleaved with v chunks; the last stage holds one, plus bf16 logits and their fp32 softmax (6 s b V / t).
* a stated framework allowance: 2 GiB (CUDA context, NCCL and cuBLAS workspaces) plus 5% for fragmentation.

Sizes are GiB (2^30 bytes), labelled GB as GPU capacities are quoted (an "80 GB" H100 holds 80 GiB).

Time per step: (m + (p-1)/v) micro-batch slots of the slowest stage (ceil(L/p) layers, plus the output head on
the last stage), each = matmul FLOPs at an achievable fraction of peak (the GPU's ``matmul_efficiency`` times
x/(x + 256) with x = d_model/t, because sharded GEMMs are narrower) + memory-bound elementwise work at HBM
speed + TP collectives over NVLink (not overlapped) + pipeline sends; then DP traffic over NVLink (DP group
inside a node) or the inter-node network: ZeRO-0 one gradient all-reduce hidden behind the last micro-batch's
backward; ZeRO-1 a reduce-scatter there plus a parameter all-gather behind the first forward; ZeRO-2 a
reduce-scatter after every micro-batch (sharded gradients cannot accumulate locally) plus the all-gather; ZeRO-3
per-micro-batch parameter gathers (forward and backward) and gradient reduce-scatters behind that micro-batch's
compute; then the optimizer step at HBM speed. Collectives run at 80% of link bandwidth.

MFU counts model FLOPs (6N + 12 L h s per token, :meth:`ModelShape.model_flops_per_token`); HFU adds what is
computed twice: the forward pass under full recompute, attention's QK^T/AV forward under selective recompute or
FlashAttention (whose backward recomputes it).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

from planner.hardware import GIB, Gpu
from planner.shape import ModelShape

RECOMPUTE = ("none", "selective", "full")
ZERO_STAGES = (0, 1, 2, 3)
BYTES_WEIGHT, BYTES_GRAD, BYTES_OPTIMIZER = 2, 2, 12
FRAMEWORK_FIXED_BYTES = 2 * 2**30
FRAMEWORK_FRACTION = 0.05
COMM_EFFICIENCY = 0.8
GEMM_WIDTH_KNEE = 256  # x/(x + 256): a d_model/t of 768 runs at 75% of the GPU's large-GEMM efficiency
COLLECTIVE_LATENCY_S = 20e-6
# Memory traffic of the non-matmul work per token per layer, forward + backward, in units of d_model bytes
# (norms, residual adds, activation function, rotary/dropout: ~32 tensor reads/writes of 2 bytes each).
ELEMENTWISE_BYTES_PER_H = 64
# Eager softmax (+ dropout) reads/writes the a x s score matrix ~8 times at 2 bytes, forward + backward.
SOFTMAX_BYTES_PER_AS = 16
MICRO_BATCHES = (1, 2, 3, 4, 6, 8, 12, 16, 32)


class LayoutError(ValueError):
    """A layout that is not valid for the model and cluster (degrees that do not divide, a batch that cannot split)."""


@dataclass(frozen=True)
class Workload:
    """What is being trained: a shape at a sequence length, and whether attention is Flash and uses dropout."""

    shape: ModelShape
    seq: int
    flash: bool = True
    dropout: bool = False


@dataclass(frozen=True)
class Layout:
    dp: int
    tp: int
    pp: int
    micro_batch: int
    grad_accum: int
    zero: int = 1
    recompute: str = "selective"
    sequence_parallel: bool = True
    interleave: int = 1  # virtual pipeline chunks per stage (v)

    @property
    def gpus(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def global_batch(self) -> int:
        return self.dp * self.micro_batch * self.grad_accum

    def as_dict(self) -> dict[str, int | str | bool]:
        return asdict(self)


@dataclass
class Estimate:
    layout: Layout
    feasible: bool
    memory: dict[str, float]  # bytes per GPU on the worst stage, by component, plus "total"
    worst_stage: str
    step_time_s: float
    times: dict[str, float]  # seconds per step by component (they sum to step_time_s)
    mfu: float
    hfu: float
    model_tflops_per_gpu: float
    hardware_tflops_per_gpu: float
    tokens_per_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def memory_gb(self) -> float:
        return self.memory["total"] / GIB


def _ring(bytes_: float, n: int, bandwidth_gbps: float, factor: float = 2.0) -> float:
    """A ring collective over n ranks: all-reduce moves 2(n-1)/n of the buffer per rank, gather/scatter (n-1)/n."""
    if n <= 1 or bytes_ <= 0:
        return 0.0
    return factor * (n - 1) / n * bytes_ / (bandwidth_gbps * 1e9 * COMM_EFFICIENCY) + COLLECTIVE_LATENCY_S


def check(work: Workload, gpu: Gpu, layout: Layout) -> None:
    """Raise :class:`LayoutError` naming what is wrong and the nearest valid value."""
    s = work.shape
    lay = layout
    for name in ("dp", "tp", "pp", "micro_batch", "grad_accum", "interleave"):
        if getattr(lay, name) < 1:
            raise LayoutError(f"{name} must be at least 1, got {getattr(lay, name)}")
    if lay.zero not in ZERO_STAGES:
        raise LayoutError(f"zero must be one of {ZERO_STAGES}, got {lay.zero}")
    if lay.recompute not in RECOMPUTE:
        raise LayoutError(f"recompute must be one of {RECOMPUTE}, got {lay.recompute!r}")
    if gpu.gpus_per_node % lay.tp:
        # A TP group priced at NVLink speed must sit inside one node, so the groups must tile the node exactly.
        raise LayoutError(f"tp {lay.tp} spans nodes of {gpu.gpus_per_node} GPUs (tp must divide the node): "
                          f"closest valid tp {_nearest_tp(s, gpu, lay.tp)}")
    if s.heads % lay.tp or s.n_kv_heads % lay.tp:
        raise LayoutError(f"tp {lay.tp} does not divide {s.heads} heads / {s.n_kv_heads} key-value heads: "
                          f"closest valid tp {_nearest_tp(s, gpu, lay.tp)}")
    if lay.pp > s.layers:
        raise LayoutError(f"pp {lay.pp} exceeds {s.layers} layers: closest valid pp {s.layers}")
    if lay.interleave > 1:
        if lay.interleave not in interleaves(s.layers, lay.pp) or lay.grad_accum % lay.pp:
            raise LayoutError(f"interleave {lay.interleave} needs pp > 1, layers per stage "
                              f"({math.ceil(s.layers / lay.pp)}) divisible by it, and grad_accum ({lay.grad_accum}) "
                              f"divisible by pp ({lay.pp})")
    if lay.sequence_parallel and lay.tp == 1:
        raise LayoutError("sequence parallelism needs tp > 1")


def interleaves(layers: int, pp: int) -> list[int]:
    """Virtual chunks per stage that ``pp`` stages of ``layers`` layers allow: the divisors of the largest stage's
    layer count, since every chunk holds whole layers; only 1 without a pipeline."""
    return _divisors(math.ceil(layers / pp)) if pp > 1 else [1]


def _valid_tps(s: ModelShape, gpu: Gpu) -> list[int]:
    """TP degrees that tile a node exactly and divide the query and key/value heads."""
    return [t for t in _divisors(gpu.gpus_per_node) if s.heads % t == 0 and s.n_kv_heads % t == 0]


def _nearest_tp(s: ModelShape, gpu: Gpu, want: int) -> int:
    return min(_valid_tps(s, gpu), key=lambda t: (abs(t - want), t))


def _activation_bytes_per_layer(work: Workload, lay: Layout) -> tuple[float, float]:
    """(stored bytes per layer per micro-batch, working bytes of one layer during its backward) on one GPU."""
    s, seq, b, t = work.shape, work.seq, lay.micro_batch, lay.tp
    h, a, f = s.d_model, s.heads, s.ffn
    sbh = seq * b * h
    kv = s.n_kv_heads * s.head_dim / h
    rep = 8 * sbh + (2 * sbh if work.dropout else 0)
    mlp = (6 if s.mlp == "swiglu" else 4) * seq * b * f
    par = 2 * sbh * (1 + kv) + 2 * sbh * kv + 2 * sbh + mlp  # Q and K, V, attention output, MLP intermediates
    scores = (5 if work.dropout else 2) * a * seq * seq * b
    lse = 4 * a * seq * b if work.flash else 0.0  # FlashAttention keeps the fp32 log-sum-exp per row
    split_rep = t if lay.sequence_parallel else 1
    everything = rep / split_rep + par / t + (0.0 if work.flash else scores / t) + lse / t
    if lay.recompute == "full":
        return 2 * sbh / split_rep, everything
    if lay.recompute == "selective":
        return everything - (0.0 if work.flash else scores / t), 0.0
    return everything, 0.0


def _stage_params(s: ModelShape, lay: Layout) -> tuple[float, float, float]:
    """Parameters held per GPU on the first and on the last pipeline stage, and per layer (all after TP)."""
    per_stage = math.ceil(s.layers / lay.pp)
    layer = s.layer_params / lay.tp
    emb = s.vocab * s.d_model / lay.tp
    if lay.pp == 1:
        first = per_stage * layer + s.embedding / lay.tp + s.d_model
        return first, first, layer
    # Megatron keeps the input embedding on the first stage and the output head (a copy when tied) on the last.
    return per_stage * layer + emb, per_stage * layer + emb + s.d_model, layer


def _state_bytes(params: float, lay: Layout) -> dict[str, float]:
    d = lay.dp
    weights = params * BYTES_WEIGHT / (d if lay.zero >= 3 else 1)
    grads = params * BYTES_GRAD / (d if lay.zero >= 2 else 1)
    optimizer = params * BYTES_OPTIMIZER / (d if lay.zero >= 1 else 1)
    return {"weights": weights, "gradients": grads, "optimizer": optimizer}


def evaluate(work: Workload, gpu: Gpu, layout: Layout) -> Estimate:
    """Memory, step time and utilisation of one layout (see the module docstring for every term)."""
    check(work, gpu, layout)
    s, lay, seq = work.shape, layout, work.seq
    t, p, d, b, m, v = lay.tp, lay.pp, lay.dp, lay.micro_batch, lay.grad_accum, lay.interleave
    h = s.d_model
    per_stage = math.ceil(s.layers / p)
    notes = []
    if s.layers % p:
        notes.append(f"uneven pipeline: the largest stage holds {per_stage} of {s.layers} layers")

    # Memory, first and last stage.
    first_params, last_params, layer_params = _stage_params(s, lay)
    stored, working = _activation_bytes_per_layer(work, lay)
    in_flight = min(m, p)
    interleave_factor = 1 + (p - 1) / (p * v) if v > 1 else 1.0
    logits = 6.0 * seq * b * s.vocab / t
    stages = {}
    for name, params, micro_batches in (("first", first_params, in_flight * interleave_factor),
                                        ("last", last_params, 1.0)):
        mem = _state_bytes(params, lay)
        mem["zero3_buffers"] = 2 * layer_params * BYTES_WEIGHT if lay.zero == 3 and d > 1 else 0.0
        mem["activations"] = stored * per_stage * micro_batches + working
        mem["logits"] = logits if (name == "last" or p == 1) else 0.0
        if p == 1 and name == "last":
            continue
        subtotal = sum(mem.values())
        mem["framework"] = FRAMEWORK_FIXED_BYTES + FRAMEWORK_FRACTION * subtotal
        mem["total"] = subtotal + mem["framework"]
        stages[name] = mem
    worst = max(stages, key=lambda k: stages[k]["total"])
    memory = stages[worst]

    # FLOPs per token on the slowest stage (per GPU: split by TP).
    attn_core = 12.0 * h * seq  # per layer, forward + backward
    layer_mm = 6.0 * (s.attention_params + s.mlp_params)
    head_mm = 6.0 * s.vocab * h
    recompute_per_layer = 0.0
    if lay.recompute == "full":
        recompute_per_layer = (layer_mm + attn_core) / 3 + (attn_core / 3 if work.flash else 0.0)
    elif lay.recompute == "selective" or work.flash:
        recompute_per_layer = attn_core / 3
    stage_model = per_stage * (layer_mm + attn_core) + head_mm
    stage_hw = stage_model + per_stage * recompute_per_layer
    tokens_mb = b * seq
    efficiency = gpu.matmul_efficiency * (h / t) / (h / t + GEMM_WIDTH_KNEE)
    compute_mb = stage_hw * tokens_mb / t / (gpu.peak_bf16_flops * efficiency)
    recompute_mb = per_stage * recompute_per_layer * tokens_mb / t / (gpu.peak_bf16_flops * efficiency)

    elementwise = ELEMENTWISE_BYTES_PER_H * h / (t if lay.sequence_parallel else 1)
    if not work.flash:
        elementwise += SOFTMAX_BYTES_PER_AS * s.heads * seq / t
    elementwise_mb = per_stage * elementwise * tokens_mb / (gpu.hbm_gbps * 1e9)

    # TP: two all-reduces (or all-gather + reduce-scatter under SP) forward, two backward, two more when the
    # forward is recomputed; activations are bf16.
    tp_collectives = 4 + (2 if lay.recompute == "full" else 0)
    tp_mb = per_stage * tp_collectives * _ring(2.0 * tokens_mb * h, t, gpu.nvlink_gbps)
    single_node = lay.gpus <= gpu.gpus_per_node
    pp_bw = gpu.nvlink_gbps if single_node else gpu.internode_gbps
    pp_mb = 2 * v * (2.0 * tokens_mb * h / (t if lay.sequence_parallel else 1)) / (pp_bw * 1e9 * COMM_EFFICIENCY)
    pp_mb = pp_mb + 2 * v * COLLECTIVE_LATENCY_S if p > 1 else 0.0
    slot = compute_mb + elementwise_mb + tp_mb + pp_mb

    # DP: ring over d ranks spaced t apart; inside a node when t * d fits in one.
    dp_bw = gpu.nvlink_gbps if t * d <= gpu.gpus_per_node else gpu.internode_gbps
    shard_params = max(first_params, last_params)
    zero3_exposed = 0.0
    if lay.zero == 3:
        gather = 2 * _ring(shard_params * BYTES_WEIGHT, d, dp_bw, factor=1.0)  # forward and backward gathers
        scatter = _ring(shard_params * BYTES_GRAD, d, dp_bw, factor=1.0)
        zero3_exposed = m * max(0.0, gather + scatter - compute_mb)
        dp_exposed = 0.0
    else:
        reduce_scatter = _ring(shard_params * BYTES_GRAD, d, dp_bw, factor=1.0)
        gather = _ring(shard_params * BYTES_WEIGHT, d, dp_bw, factor=1.0)
        backward, forward = compute_mb * 2 / 3, compute_mb / 3
        if lay.zero == 0:  # one all-reduce per step, hidden behind the last micro-batch's backward
            dp_exposed = max(0.0, _ring(shard_params * BYTES_GRAD, d, dp_bw) - backward)
        elif lay.zero == 1:  # reduce-scatter behind the last backward, parameter all-gather behind the first forward
            dp_exposed = max(0.0, reduce_scatter - backward) + max(0.0, gather - forward)
        else:  # sharded gradients cannot accumulate locally: a reduce-scatter after every micro-batch's backward
            dp_exposed = m * max(0.0, reduce_scatter - backward) + max(0.0, gather - forward)
    optimizer_params = shard_params / (d if lay.zero >= 1 else 1)
    optimizer_s = optimizer_params * 2 * (BYTES_WEIGHT + BYTES_GRAD + BYTES_OPTIMIZER) / (gpu.hbm_gbps * 1e9)

    bubble_slots = (p - 1) / v
    times = {
        "compute": m * (compute_mb - recompute_mb),
        "recompute": m * recompute_mb,
        "elementwise": m * elementwise_mb,
        "tp_comm": m * tp_mb,
        "pp_comm": m * pp_mb,
        "bubble": bubble_slots * slot,
        "dp_comm_exposed": dp_exposed,
        "zero3_exposed": zero3_exposed,
        "optimizer": optimizer_s,
    }
    step = sum(times.values())
    tokens = lay.global_batch * seq
    model_flops = s.model_flops_per_token(seq) * tokens
    hw_extra = s.layers * recompute_per_layer * tokens
    gpus = lay.gpus
    mfu = model_flops / (step * gpus * gpu.peak_bf16_flops)
    hfu = (model_flops + hw_extra) / (step * gpus * gpu.peak_bf16_flops)
    return Estimate(layout=lay, feasible=memory["total"] <= gpu.hbm_bytes, memory=memory, worst_stage=worst,
                    step_time_s=step, times=times, mfu=mfu, hfu=hfu,
                    model_tflops_per_gpu=mfu * gpu.peak_bf16_flops / 1e12,
                    hardware_tflops_per_gpu=hfu * gpu.peak_bf16_flops / 1e12, tokens_per_s=tokens / step,
                    notes=notes)


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


@dataclass(frozen=True)
class Constraints:
    """Degrees fixed by the user; None leaves that dimension to the search."""

    tp: int | None = None
    pp: int | None = None
    dp: int | None = None
    micro_batch: int | None = None
    zero: int | None = None
    recompute: str | None = None
    sequence_parallel: bool | None = None
    interleave: int | None = None


def candidates(work: Workload, gpu: Gpu, gpus: int, global_batch: int | None, batch_target: float | None = None,
               fixed: Constraints = Constraints()) -> list[Layout]:
    """Every valid layout on ``gpus`` GPUs: TP dividing the node size and the (kv) heads, any PP up to the layer count
    (uneven stages allowed, the largest sets the pace), DP the rest; micro-batch, ZeRO, recompute, SP, interleave.

    With ``global_batch`` the batch is exact (it must split into dp x micro_batch x grad_accum); with
    ``batch_target`` (sequences) the grad accumulation is the nearest whole number to the target instead.
    """
    s = work.shape
    tps = [t for t in _valid_tps(s, gpu) if gpus % t == 0]
    out = []
    zero_without_dp = False
    for t in tps if fixed.tp is None else [fixed.tp]:
        if gpus % t:
            continue
        if fixed.pp is not None:
            pps = [fixed.pp]
        elif fixed.dp is not None:  # the one PP that leaves the pinned DP; listing every divisor costs O(gpus)
            pps = [max(1, gpus // (t * fixed.dp))]
        else:
            pps = _divisors(gpus // t)
        for p in pps:
            if p > s.layers or (gpus // t) % p:
                continue
            d = gpus // (t * p)
            if fixed.dp is not None and d != fixed.dp:
                continue
            for b in MICRO_BATCHES if fixed.micro_batch is None else [fixed.micro_batch]:
                if global_batch is not None:
                    if global_batch % (d * b):
                        continue
                    m = global_batch // (d * b)
                else:
                    assert batch_target is not None
                    m = max(1, round(batch_target / (d * b)))
                    if b > 1 and m == 1 and d * b > 1.5 * batch_target:
                        continue  # a micro-batch this large overshoots the batch target
                per_stage = math.ceil(s.layers / p)
                vs = [k for k in (1, 2, 3, 4, 6, 8) if k == 1 or (p > 1 and per_stage % k == 0 and m % p == 0)]
                for zero, rec, sp, v in itertools.product(
                        ZERO_STAGES if fixed.zero is None else [fixed.zero],
                        RECOMPUTE if fixed.recompute is None else [fixed.recompute],
                        # Sequence parallelism only lowers memory and elementwise time at equal communication, so
                        # without it a layout is dominated: searched only when asked for.
                        (t > 1,) if fixed.sequence_parallel is None else [fixed.sequence_parallel],
                        vs if fixed.interleave is None else [fixed.interleave]):
                    if zero > 0 and d == 1:
                        zero_without_dp = True
                        continue  # nothing to shard over
                    if zero == 0 and d > 1 and fixed.zero is None:
                        continue  # ZeRO-1 moves the same bytes with more overlap and holds less: 0 is dominated
                    out.append(Layout(d, t, p, b, m, zero, rec, sp, v))
    if not out and zero_without_dp:
        # Only the user's ZeRO stage stood in the way; saying so beats blaming heads or the batch.
        raise LayoutError(f"ZeRO shards over data-parallel ranks: zero {fixed.zero} needs dp > 1, and every "
                          f"layout left has dp 1 (use zero 0, or smaller tp x pp to leave GPUs for dp)")
    return out


def _rank_key(e: Estimate) -> tuple[bool, float, float]:
    return (not e.feasible, e.step_time_s / e.layout.global_batch, e.memory["total"])


def search(work: Workload, gpu: Gpu, gpus: int, global_batch: int | None = None, batch_target: float | None = None,
           fixed: Constraints = Constraints()) -> list[Estimate]:
    """All candidate layouts evaluated, best first: feasible before not, then time per sequence, then memory."""
    estimates = []
    for lay in candidates(work, gpu, gpus, global_batch, batch_target, fixed):
        try:
            estimates.append(evaluate(work, gpu, lay))
        except LayoutError:
            continue
    estimates.sort(key=_rank_key)
    return estimates


def why_lost(best: Estimate, other: Estimate, hbm_gb: float) -> str:
    """One line: how much slower ``other`` is than ``best`` and the time component that grew the most."""
    if not other.feasible:
        return f"does not fit: {other.memory_gb:.1f} GB > {hbm_gb:g} GB"
    per_seq_best = best.step_time_s / best.layout.global_batch
    per_seq = other.step_time_s / other.layout.global_batch
    growth = {k: other.times[k] / other.layout.global_batch - best.times[k] / best.layout.global_batch
              for k in best.times}
    worst = max(growth, key=lambda k: growth[k])
    slower = per_seq / per_seq_best - 1
    if slower <= 1e-9:
        return f"as fast; uses {other.memory_gb:.1f} GB vs {best.memory_gb:.1f} GB"
    return f"{slower:+.1%} time per sequence, mostly {worst.replace('_', ' ')} (+{growth[worst] / per_seq_best:.1%})"


def runners_up(estimates: list[Estimate], k: int = 4) -> list[Estimate]:
    """The best estimate of each other (tp, pp, dp) split, up to ``k``, after the winner's split."""
    seen = {(estimates[0].layout.tp, estimates[0].layout.pp, estimates[0].layout.dp)} if estimates else set()
    out = []
    for e in estimates[1:]:
        key = (e.layout.tp, e.layout.pp, e.layout.dp)
        if key in seen:
            continue
        seen.add(key)
        out.append(e)
        if len(out) == k:
            break
    return out

