"""A small accelerator catalogue and the training-time arithmetic that uses it.

Peak numbers are NVIDIA's datasheet dense BF16 tensor-core throughput (no 2:4 sparsity), which is what an
MFU is measured against; the sparse figures on the same datasheets are twice these. HBM is per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Gpu:
    name: str
    peak_bf16_flops: float  # dense, FLOP/s
    hbm_gb: float
    source: str


CATALOGUE: dict[str, Gpu] = {
    # A100 datasheet: 312 TFLOPS BF16 dense (624 with sparsity), 40 GB HBM2 or 80 GB HBM2e.
    "a100-40": Gpu("A100 SXM 40GB", 312e12, 40, "NVIDIA A100 datasheet, BF16 dense"),
    "a100-80": Gpu("A100 SXM 80GB", 312e12, 80, "NVIDIA A100 datasheet, BF16 dense"),
    # H100 SXM5 datasheet: 1,979 TFLOPS BF16 *with sparsity*, so 989 dense; 80 GB HBM3.
    "h100": Gpu("H100 SXM 80GB", 989e12, 80, "NVIDIA H100 datasheet (SXM), BF16 dense = sparse / 2"),
    # H200 is the H100 compute die with 141 GB HBM3e: same 989 TFLOPS dense BF16.
    "h200": Gpu("H200 SXM 141GB", 989e12, 141, "NVIDIA H200 datasheet, BF16 dense = sparse / 2"),
    # B200 (HGX B200): 4.5 PFLOPS BF16 with sparsity per GPU, so 2.25 dense; 180 GB usable of 192 GB HBM3e.
    "b200": Gpu("B200 180GB", 2250e12, 180, "NVIDIA HGX B200 datasheet, BF16 dense = sparse / 2"),
}


def training_time(compute: float, gpus: int, gpu: Gpu, mfu: float) -> dict[str, float]:
    """Days and GPU-hours to spend ``compute`` FLOPs at ``mfu`` of peak: days = C / (gpus * peak * mfu) / 86400."""
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1, got {gpus}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    seconds = compute / (gpus * gpu.peak_bf16_flops * mfu)
    return {"days": seconds / SECONDS_PER_DAY, "gpu_hours": seconds * gpus / 3600}
