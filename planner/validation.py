"""Published training runs, the layout model's prediction for each, and what the search finds on the same cluster.

Every figure here is an input copied from its publication (model shape, cluster, layout, measured MFU); the
predictions are computed. docs/planner.md carries the resulting error table and tests/test_planner.py checks it.
Knobs a publication does not state are marked in ``assumed`` and chosen as the fastest in our model among
layouts that keep every published knob (memory is reported, not used to choose them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from planner import layout as lay
from planner.hardware import CATALOGUE, Gpu
from planner.shape import ModelShape

A100 = CATALOGUE["a100-80"]
H100 = CATALOGUE["h100"]
# Jean Zay (BLOOM): 8 A100 80GB per node but 4 x 100 Gb/s Omni-Path per node = 6.25 GB/s per GPU.
JEAN_ZAY = replace(A100, name="A100 SXM 80GB (Jean Zay, 4 x 100 Gb/s Omni-Path per node)", internode_gbps=6.25)


@dataclass(frozen=True)
class PublishedRun:
    name: str
    source: str
    shape: ModelShape
    seq: int
    flash: bool
    dropout: bool
    gpu: Gpu
    layout: lay.Layout
    mfu: float  # published model FLOPs utilisation
    assumed: tuple[str, ...] = ()  # Layout fields the publication does not state (searched over)


def _gpt(layers: int, hidden: int, heads: int, vocab: int = 51_200, tied: bool = False) -> ModelShape:
    return ModelShape(layers, hidden, heads, 4 * hidden, vocab, mlp="gelu", tied_embeddings=tied)


KORTHIKANTI = "Korthikanti et al. 2022, Tables 3 and 5 (selective recompute + sequence parallelism)"
PUBLISHED: tuple[PublishedRun, ...] = (
    PublishedRun("GPT 22B", KORTHIKANTI, _gpt(48, 6144, 64), 2048, False, True, A100,
                 lay.Layout(1, 8, 1, 1, 4, 0, "selective", True, 1), 0.415),
    PublishedRun("GPT 175B", KORTHIKANTI, _gpt(96, 12288, 96), 2048, False, True, A100,
                 lay.Layout(1, 8, 8, 1, 64, 0, "selective", True, 1), 0.514),
    PublishedRun("GPT 530B", KORTHIKANTI, _gpt(105, 20480, 128), 2048, False, True, A100,
                 lay.Layout(1, 8, 35, 1, 280, 0, "selective", True, 1), 0.560),
    PublishedRun("GPT 1T", KORTHIKANTI, _gpt(128, 25600, 160), 2048, False, True, A100,
                 lay.Layout(1, 8, 64, 1, 512, 0, "selective", True, 1), 0.563),
    # BigScience: ~150 TFLOPs per GPU counted with the recompute factor (Megatron-DeepSpeed's 4x formula), i.e.
    # HFU 150/312; MFU is 3/4 of it. ZeRO-1, full activation checkpointing, micro-batch 2, global batch 2048.
    PublishedRun("BLOOM-176B", "BigScience BLOOM model card / Le Scao et al. 2022 (~150 TFLOPs/GPU with recompute)",
                 _gpt(70, 14336, 112, vocab=250_880, tied=True), 2048, False, False, JEAN_ZAY,
                 lay.Layout(8, 4, 12, 2, 128, 1, "full", False, 1), 0.75 * 150 / 312),
    PublishedRun("MPT-7B", "MosaicML llm-foundry benchmarks, H100 80GB BF16 (FSDP FULL_SHARD, no checkpointing)",
                 _gpt(32, 4096, 32, vocab=50_368, tied=True), 2048, True, False, H100,
                 lay.Layout(8, 1, 1, 6, 1, 3, "none", False, 1), 0.4644),
    PublishedRun("MPT-70B", "MosaicML llm-foundry benchmarks, H100 80GB BF16 (FSDP FULL_SHARD, checkpointing)",
                 _gpt(80, 8192, 64, vocab=50_368, tied=True), 2048, True, False, H100,
                 lay.Layout(64, 1, 1, 8, 4, 3, "full", False, 1), 0.4257),
    PublishedRun("Llama 3 405B", "Dubey et al. 2024 (The Llama 3 Herd of Models), Table 4: 8192 GPUs, 430 TFLOPs",
                 ModelShape(126, 16384, 128, 53248, 128_256, kv_heads=8, mlp="swiglu"), 8192, True, False, H100,
                 lay.Layout(64, 8, 16, 1, 32, 1, "none", True, 1), 0.43,
                 assumed=("zero", "recompute", "interleave")),
)


@dataclass(frozen=True)
class Validation:
    run: PublishedRun
    ours: lay.Estimate  # the published layout (assumed knobs filled in) under our model
    best: lay.Estimate  # the fastest feasible layout our search finds on the same cluster and global batch

    @property
    def error(self) -> float:
        return self.ours.mfu / self.run.mfu - 1

    @property
    def search_speedup(self) -> float:
        """Time per step of the published layout over the search's best (>= 1: the search is at least as fast)."""
        return self.ours.step_time_s / self.best.step_time_s


def validate(run: PublishedRun) -> Validation:
    work = lay.Workload(run.shape, run.seq, flash=run.flash, dropout=run.dropout)
    fixed = {k: getattr(run.layout, k) for k in ("tp", "pp", "dp", "micro_batch", "zero", "recompute",
                                                  "sequence_parallel", "interleave") if k not in run.assumed}
    published = lay.search(work, run.gpu, run.layout.gpus, global_batch=run.layout.global_batch,
                           fixed=lay.Constraints(**fixed))
    ours = min(published, key=lambda e: e.step_time_s)  # fastest fill-in of the unpublished knobs
    searched = lay.search(work, run.gpu, run.layout.gpus, global_batch=run.layout.global_batch)
    return Validation(run, ours, searched[0])
