"""The accelerator catalogue: compute peak, memory, and the links a parallel layout communicates over.

Peaks are NVIDIA's datasheet dense BF16 tensor-core throughput (no 2:4 sparsity), which is what an MFU is
measured against; the sparse figures on the same datasheets are twice these. Bandwidths are per GPU and per
direction: NVLink is the datasheet total (both directions) halved; inter-node is the GPU's share of the node's
network (one 200 Gb/s HDR NIC per A100 in a DGX A100, one 400 Gb/s NDR NIC per H100/H200/B200).

The built-in entries can be extended or overridden from a TOML file (``--hardware FILE``)::

    [gpu.a100-80-opa]
    name = "A100 80GB, 4 x 100 Gb/s Omni-Path per node"
    base = "a100-80"          # optional: copy every field not given here
    internode_gbps = 6.25     # GB/s per GPU per direction

A key the file format does not have, at the top level or in a table, is refused, never skipped.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

SECONDS_PER_DAY = 86_400
GIB = 2**30  # memory sizes are GiB throughout the planner, labelled GB as GPU datasheets and nvidia-smi do


@dataclass(frozen=True)
class Gpu:
    name: str
    peak_bf16_flops: float  # dense, FLOP/s
    hbm_gb: float  # capacity as quoted by the vendor, which is GiB (an "80GB" H100 holds 80 GiB = 85.9e9 bytes)
    hbm_gbps: float  # HBM bandwidth, GB/s
    nvlink_gbps: float  # per GPU, per direction, GB/s
    internode_gbps: float  # per GPU, per direction, GB/s
    gpus_per_node: int
    # Fraction of peak that large BF16 GEMMs sustain in practice (cuBLAS/cuDNN on the real model shapes);
    # the layout model scales it further down for small per-GPU matrices (see planner.layout).
    matmul_efficiency: float
    source: str

    @property
    def hbm_bytes(self) -> float:
        return self.hbm_gb * GIB


CATALOGUE: dict[str, Gpu] = {
    # A100 datasheet: 312 TFLOPS BF16 dense, 40 GB HBM2 at 1,555 GB/s or 80 GB HBM2e at 2,039 GB/s; NVLink 3
    # 600 GB/s total; DGX A100: 8 x 200 Gb/s HDR InfiniBand for 8 GPUs.
    "a100-40": Gpu("A100 SXM 40GB", 312e12, 40, 1555, 300, 25, 8, 0.80,
                   "NVIDIA A100 datasheet; DGX A100 network"),
    "a100-80": Gpu("A100 SXM 80GB", 312e12, 80, 2039, 300, 25, 8, 0.80,
                   "NVIDIA A100 datasheet; DGX A100 network"),
    # H100 SXM5: 1,979 TFLOPS BF16 with sparsity, so 989 dense; 80 GB HBM3 at 3.35 TB/s; NVLink 4 900 GB/s total;
    # DGX H100: 8 x 400 Gb/s NDR ConnectX-7.
    "h100": Gpu("H100 SXM 80GB", 989e12, 80, 3350, 450, 50, 8, 0.60,
                "NVIDIA H100 datasheet (SXM), BF16 dense = sparse / 2; DGX H100 network"),
    # H200: the H100 compute die with 141 GB HBM3e at 4.8 TB/s; same NVLink and network as DGX H100.
    "h200": Gpu("H200 SXM 141GB", 989e12, 141, 4800, 450, 50, 8, 0.60,
                "NVIDIA H200 datasheet, BF16 dense = sparse / 2"),
    # HGX B200: 4.5 PFLOPS BF16 with sparsity per GPU, so 2.25 dense; 180 GB HBM3e at 8 TB/s; NVLink 5 1.8 TB/s
    # total; DGX B200: 8 x 400 Gb/s ConnectX-7. Its matmul efficiency is assumed equal to Hopper's: no
    # published training run here calibrates it.
    "b200": Gpu("B200 180GB", 2250e12, 180, 8000, 900, 50, 8, 0.60,
                "NVIDIA HGX/DGX B200 datasheet, BF16 dense = sparse / 2"),
}


class HardwareError(ValueError):
    """An unknown GPU type or a malformed hardware TOML file."""


def closest(word: str, options: list[str] | tuple[str, ...]) -> str:
    """The option spelled most like ``word`` (for 'did you mean' messages); the first option if none is close."""
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.0)
    return match[0] if match else options[0]


def load_catalogue(path: str | os.PathLike[str] | None = None) -> dict[str, Gpu]:
    """The built-in catalogue, extended/overridden by the ``[gpu.NAME]`` tables of a TOML file."""
    catalogue = dict(CATALOGUE)
    if path is None:
        return catalogue
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HardwareError(f"{path}: cannot read hardware TOML ({exc})") from None
    if unknown := _unknown(data, ("gpu",)):
        raise HardwareError(f"{path}: unknown top-level key(s) {unknown}; the file holds only [gpu.NAME] tables")
    names = {f.name for f in fields(Gpu)}
    valid = sorted(names | {"base"})
    gpus = data.get("gpu", {})
    if not isinstance(gpus, dict):
        raise HardwareError(f"{path}: gpu must be a table of [gpu.NAME] tables, got {gpus!r}")
    for key, table in gpus.items():
        if not isinstance(table, dict):
            raise HardwareError(f"{path}: [gpu.{key}] must be a table, got {table!r}")
        if unknown := _unknown(table, valid):
            raise HardwareError(f"{path}: [gpu.{key}] unknown field(s) {unknown}; valid: {', '.join(valid)}")
        table = dict(table)
        base_name = table.pop("base", None)
        for field_name, value in table.items():
            _check_field(f"{path}: [gpu.{key}]", field_name, value)
        if base_name is not None:
            if not isinstance(base_name, str):
                raise HardwareError(f"{path}: [gpu.{key}] base must be a GPU name (a string), got {base_name!r}")
            if base_name not in catalogue:
                raise HardwareError(f"{path}: [gpu.{key}] base {base_name!r} is not in the catalogue; "
                                    f"closest: {closest(base_name, sorted(catalogue))}")
            gpu = replace(catalogue[base_name], **table)
        else:
            missing = names - set(table) - {"source"}
            if missing:
                raise HardwareError(f"{path}: [gpu.{key}] needs {sorted(missing)} (or a `base` to copy them from)")
            gpu = Gpu(**{"source": str(path), **table})
        catalogue[key] = gpu
    return catalogue


def _unknown(keys: Iterable[str], valid: Sequence[str]) -> str:
    """The keys not in ``valid``, each with the valid key it is most likely a typo of; empty when there are none.

    TOML has no schema: a misspelt key would be read without complaint and the plan made with the default it was
    meant to replace, which the user would then trust as describing their hardware.
    """
    named = []
    for key in keys:
        if key not in valid:
            match = difflib.get_close_matches(key, valid, n=1)
            named.append(f"{key!r}" + (f" (did you mean {match[0]!r}?)" if match else ""))
    return ", ".join(named)


def _check_field(where: str, name: str, value: object) -> None:
    """Raise :class:`HardwareError` naming ``name`` unless ``value`` is of its type and range.

    TOML has no schema: a quoted number arrives as a string and ``inf``/``nan`` are valid floats, and either would
    otherwise surface later as a traceback or as a plan of inf/nan; a bool is an int to Python, never a count here.
    """
    if name in ("name", "source"):
        if not isinstance(value, str):
            raise HardwareError(f"{where} {name} must be a string, got {value!r}")
    elif name == "gpus_per_node":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HardwareError(f"{where} gpus_per_node must be a positive integer, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise HardwareError(f"{where} {name} must be a finite positive number, got {value!r}")
    elif name == "matmul_efficiency" and value > 1:
        raise HardwareError(f"{where} matmul_efficiency must be in (0, 1], got {value!r}")


def get_gpu(name: str, catalogue: dict[str, Gpu] | None = None) -> Gpu:
    catalogue = CATALOGUE if catalogue is None else catalogue
    if name not in catalogue:
        raise HardwareError(f"unknown GPU type {name!r}; closest: {closest(name, sorted(catalogue))} "
                            f"(known: {', '.join(sorted(catalogue))})")
    return catalogue[name]


def training_time(compute: float, gpus: int, gpu: Gpu, mfu: float) -> dict[str, float]:
    """Days and GPU-hours to spend ``compute`` FLOPs at ``mfu`` of peak: days = C / (gpus * peak * mfu) / 86400."""
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1, got {gpus}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    seconds = compute / (gpus * gpu.peak_bf16_flops * mfu)
    return {"days": seconds / SECONDS_PER_DAY, "gpu_hours": seconds * gpus / 3600}
