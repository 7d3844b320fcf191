"""The ``planner`` command: ``planner [plan] --compute C ...``, ``planner fit CSV|HOME ...`` and ``planner layout ...``.

This module owns argument parsing, the text tables, the JSON objects (keys documented in docs/planner.md) and
recording every plan and fit in the metrics store (docs/metrics.md). The maths lives in :mod:`planner.laws`,
:mod:`planner.fit`, :mod:`planner.shape`, :mod:`planner.hardware` and :mod:`planner.layout`.
Exit codes: 0 success, 2 bad input (bad flags, unreadable or unfittable runs, no layout that fits).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import sys
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from planner import fit as fitting
from planner import layout as lay
from planner.hardware import GIB, Gpu, HardwareError, closest, get_gpu, load_catalogue
from planner.laws import (
    BESIROGLU2024,
    HOFFMANN2022,
    KAPLAN2020,
    PF_DAY,
    PRESETS,
    ChinchillaLaw,
    KaplanLaw,
    data_constrained,
    inference_aware,
)
from planner.shape import DEFAULT_VOCAB, MLPS, ModelShape, ShapeError, shape_for

SUBCOMMANDS = ("plan", "fit", "layout")
# Gopher's budget: the compute at which Hoffmann et al. compare their approaches; a familiar default.
DEFAULT_FIT_COMPUTE = 5.76e23
DEFAULT_SEQ = 4096
PLAN_FIT_BOOTSTRAP = 100
EXTRAPOLATION_NOTE = 100.0  # a plan beyond this multiple of the largest fitted run's compute says so
KAPLAN_LOSS_NOTE = "Kaplan L(N, D) in nats/token on WebText2; not comparable with Chinchilla's MassiveText loss"


class PlanError(ValueError):
    """Input the planner cannot turn into a plan; the message names the closest valid option."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a non-negative finite number, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that names the closest valid choice when a value is not one of them."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if "invalid choice:" in message and "(choose from" in message:
            given = message.split("invalid choice:")[1].split("(choose from")[0].strip(" '\"")
            options = [o.strip(" '\"") for o in message.split("(choose from")[1].rstrip(")").split(",")]
            message += f"; closest: {closest(given, options)}"
        super().error(message)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hardware", metavar="FILE.toml", help="extra or overriding [gpu.NAME] tables (docs/planner.md)")
    p.add_argument("--home", help="workspace for the metrics store (default $TOKENMILL_HOME or the current dir)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="planner", description="Scaling-law plans, fits and parallel layouts.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    plan = sub.add_parser("plan", help="compute-optimal model, data, shape and layout for a FLOP budget (default)")
    plan.add_argument("--compute", type=_positive, required=True, help="training compute C in FLOPs (C = 6ND)")
    plan.add_argument("--gpus", type=_count, help="number of GPUs; adds the layout, memory, step time and days")
    plan.add_argument("--gpu", default="h100", help="GPU type (default h100; see docs/planner.md)")
    plan.add_argument("--law", choices=("chinchilla", "kaplan"), default="chinchilla",
                      help="which law allocates N and D (both are always shown side by side)")
    plan.add_argument("--fit", metavar="NAME|CSV|HOME", default="hoffmann2022",
                      help=f"Chinchilla parameters: a preset ({', '.join(PRESETS)}), a runs CSV, or a workspace "
                           f"whose metrics store holds completed trainer runs (fitted with bootstrap intervals)")
    data = plan.add_mutually_exclusive_group()
    data.add_argument("--unique-tokens", type=_positive, help="unique tokens available (Muennighoff et al. 2023)")
    data.add_argument("--data", metavar="VERSION",
                      help="take unique tokens from a dataset version: a name under HOME/data, 'latest', or a path")
    plan.add_argument("--inference-tokens", type=_non_negative,
                      help="tokens the model will serve over its life (Sardana et al. 2023)")
    plan.add_argument("--seq", type=_count, default=DEFAULT_SEQ, help=f"sequence length (default {DEFAULT_SEQ})")
    plan.add_argument("--vocab", type=_count, default=DEFAULT_VOCAB, help=f"vocabulary (default {DEFAULT_VOCAB})")
    plan.add_argument("--mlp", choices=MLPS, default="swiglu", help="MLP kind (default swiglu, FFN 8/3 d)")
    plan.add_argument("--batch-tokens", type=_positive,
                      help="global batch in tokens (default DeepSeek's B_opt = 0.292 C^0.3271, clipped to 0.5M-16M)")
    _common(plan)

    fit = sub.add_parser("fit", help="fit Chinchilla (Approach 3, and 1, 2 where possible) and Kaplan forms to runs")
    fit.add_argument("runs", nargs="?", metavar="CSV_OR_METRICS",
                     help="runs CSV (parameters, loss, tokens or FLOPs), or a workspace / its metrics folder")
    fit.add_argument("--metrics", metavar="HOME", help="read completed trainer runs from the store under HOME")
    fit.add_argument("--compute", type=_positive, default=DEFAULT_FIT_COMPUTE,
                     help=f"FLOPs at which to report the compute-optimal N, D (default {DEFAULT_FIT_COMPUTE:g})")
    fit.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples (default 200; 0 = none)")
    fit.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    fit.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                     help="leave out the K highest-loss runs (Epoch's replication drops 5)")
    fit.add_argument("--exhaustive", action="store_true",
                     help="run scipy L-BFGS-B from all 4500 grid starts (slow; the default screens them in batch)")
    fit.add_argument("--home", help="workspace for the metrics store the fit is recorded in (default $TOKENMILL_HOME, "
                     "else the workspace whose runs were read, else the current dir)")
    fit.add_argument("--json", action="store_true", help="print one JSON object")

    layout = sub.add_parser("layout", help="evaluate a parallel layout, or search for the fastest one")
    for name, helptext in (("--layers", "transformer layers"), ("--hidden", "d_model"),
                           ("--heads", "attention heads"), ("--seq", "sequence length"), ("--gpus", "GPU count"),
                           ("--global-batch", "global batch in sequences")):
        layout.add_argument(name, type=_count, required=True, help=helptext)
    layout.add_argument("--vocab", type=_count, default=DEFAULT_VOCAB, help=f"vocabulary (default {DEFAULT_VOCAB})")
    layout.add_argument("--gpu", default="h100", help="GPU type (default h100)")
    layout.add_argument("--ffn", type=_count, help="MLP width (default 4 x hidden for gelu, 8/3 x for swiglu)")
    layout.add_argument("--mlp", choices=MLPS, default="gelu", help="MLP kind (default gelu)")
    layout.add_argument("--kv-heads", type=_count, help="key/value heads (grouped-query attention; default = heads)")
    layout.add_argument("--tied-embeddings", action="store_true", help="output head shares the input embedding")
    layout.add_argument("--attention", choices=("flash", "eager"), default="flash",
                        help="flash never stores the s x s scores (default); eager does (Korthikanti et al.)")
    layout.add_argument("--dropout", action="store_true", help="count dropout masks (Korthikanti et al.'s setup)")
    for name in ("--tp", "--pp", "--dp", "--micro-batch", "--interleave"):
        layout.add_argument(name, type=_count)
    layout.add_argument("--zero", type=int, choices=lay.ZERO_STAGES)
    layout.add_argument("--recompute", choices=lay.RECOMPUTE)
    layout.add_argument("--sequence-parallel", action=argparse.BooleanOptionalAction, default=None)
    layout.add_argument("--top", type=_count, default=5, help="alternatives to list (default 5)")
    _common(layout)
    return parser


def _human(x: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _home(value: str | None, read_from: str | None = None) -> Path:
    """Where results are recorded: --home, else $TOKENMILL_HOME, else the workspace whose runs were read, else ".".

    Recording a fit of HOME's runs into HOME keeps the runs, their fit and the plans made with it together.
    """
    if value or os.environ.get("TOKENMILL_HOME"):
        return Path(value or os.environ["TOKENMILL_HOME"])
    if read_from and Path(read_from).is_dir():
        return fitting.workspace(read_from)
    return Path(".")


# ---------------------------------------------------------------------------------------------------- data


def unique_tokens_from(data: str, home: Path) -> tuple[float, str]:
    """Unique tokens of a dataset version: the sum of its manifest's ``shards[].tokens``, and the manifest path.

    ``data`` is a version name under ``HOME/data/versions/``, ``latest`` (``HOME/data/LATEST``), a version
    directory, or a manifest.json path. Read as plain JSON: the planner imports nothing from pipelines.
    """
    candidates = [Path(data)]
    data_dir = home / "data"
    if data == "latest" and (data_dir / "LATEST").is_file():
        candidates.insert(0, data_dir / "versions" / (data_dir / "LATEST").read_text(encoding="utf-8").strip())
    candidates.append(data_dir / "versions" / data)
    for c in candidates:
        manifest = c if c.name == "manifest.json" else c / "manifest.json"
        if manifest.is_file():
            try:
                shards = json.loads(manifest.read_text(encoding="utf-8")).get("shards") or []
                tokens = float(sum(int(s["tokens"]) for s in shards))
            except (ValueError, KeyError, TypeError) as exc:
                raise PlanError(f"{manifest}: not a dataset manifest with shards[].tokens ({exc})") from None
            if tokens <= 0:
                raise PlanError(f"{manifest}: the version has no tokenized shards (was it built with tokenize,pack?)")
            return tokens, str(manifest)
    versions = sorted(p.name for p in (data_dir / "versions").glob("*") if (p / "manifest.json").is_file())
    hint = f"; closest: {closest(data, versions)}" if versions else f"; no versions under {data_dir / 'versions'}"
    raise PlanError(f"no dataset version {data!r}{hint}")


# ---------------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class ResolvedFit:
    """The Chinchilla law a plan uses and, when it was fitted on the spot, the runs and fits behind it."""

    law: ChinchillaLaw
    name: str
    result: fitting.FitResult | None = None
    kaplan: fitting.KaplanFit | None = None
    runs: fitting.Runs | None = None


def resolve_fit(spec: str, kaplan: bool) -> ResolvedFit:
    """A preset name, a runs CSV or a workspace -> the law to plan with (CSV and workspace are fitted here)."""
    if spec in PRESETS:
        return ResolvedFit(PRESETS[spec], spec)
    path = Path(spec)
    if path.is_file():
        runs = fitting.read_csv(path)
    elif path.is_dir():
        runs = fitting.read_metrics(path)
    else:
        raise PlanError(f"--fit {spec!r} is neither a preset nor an existing CSV or workspace; closest preset: "
                        f"{closest(spec, list(PRESETS))}")
    result = fitting.fit(runs, bootstrap=PLAN_FIT_BOOTSTRAP, seed=0)
    kfit = fitting.fit_kaplan(runs, bootstrap=0) if kaplan else None
    return ResolvedFit(result.law, str(path), result, kfit, runs)


def fit_notes(fitted: ResolvedFit, compute: float) -> list[str]:
    """What a plan made with a law fitted on the spot must say: the fit's warnings and how far it extrapolates."""
    if fitted.result is None or fitted.runs is None:
        return []
    notes = [f"fit warning: {w}" for w in fitting.warnings_for(fitted.runs, fitted.result)]
    largest = float(np.max(6.0 * fitted.runs.n * fitted.runs.d))
    if compute > EXTRAPOLATION_NOTE * largest:
        notes.append(f"C is {compute / largest:.2g}x the compute of the largest fitted run ({largest:.3g} FLOPs): "
                     f"an extrapolation over {math.log10(compute / largest):.0f} decades")
    return notes


def _batch_target_tokens(compute: float) -> float:
    """DeepSeek LLM (Bi et al. 2024) fitted B_opt = 0.292 C^0.3271 tokens, clipped to [0.5M, 16M]: 16M is the
    largest batch a published dense run used (Llama 3 405B), beyond which the fit is an extrapolation."""
    return min(max(0.292 * compute**0.3271, 0.5e6), 16e6)


def _estimate_json(e: lay.Estimate, seq: int) -> dict[str, Any]:
    return {
        "layout": {**e.layout.as_dict(), "global_batch": e.layout.global_batch,
                   "global_batch_tokens": e.layout.global_batch * seq},
        "feasible": e.feasible,
        "memory_gb_per_gpu": e.memory_gb,
        "memory_breakdown_gb": {k: v / GIB for k, v in e.memory.items() if k != "total"},
        "memory_stage": e.worst_stage,
        "step_time_s": e.step_time_s,
        "time_breakdown_s": dict(e.times),
        "mfu": e.mfu,
        "hfu": e.hfu,
        "model_tflops_per_gpu": e.model_tflops_per_gpu,
        "hardware_tflops_per_gpu": e.hardware_tflops_per_gpu,
        "tokens_per_s": e.tokens_per_s,
        "layout_notes": list(e.notes),
    }


GPU_COUNT_LIMIT = 2**20
NO_PINS = lay.Constraints()


def _counts_above(gpus: int, per_node: int) -> list[int]:
    """GPU counts above ``gpus`` that a cluster is built from, ascending: a part of one node that divides it, then
    whole nodes, up to :data:`GPU_COUNT_LIMIT`."""
    partial = [k for k in range(gpus + 1, per_node) if per_node % k == 0]
    return partial + list(range((gpus // per_node + 1) * per_node, GPU_COUNT_LIMIT + 1, per_node))


def _doubling_positions(n: int) -> Iterator[int]:
    """0, 1, 3, 7, ... below ``n``, then ``n - 1``: positions a galloping search probes."""
    position = 0
    while position < n - 1:
        yield position
        position = 2 * position + 1
    if n:
        yield n - 1


def _pinned_flags(fixed: lay.Constraints) -> str:
    """The flags that pinned ``fixed``, as the user typed them: ``--tp 8 --interleave 2``."""
    flags = []
    for name, value in asdict(fixed).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        elif value is not None:
            flags.append(f"{flag} {value}")
    return " ".join(flags)


def _fits(work: lay.Workload, gpu: Gpu, gpus: int, global_batch: int | None, batch_target: float | None,
          fixed: lay.Constraints) -> bool:
    try:
        found = lay.search(work, gpu, gpus, global_batch, batch_target, fixed)
    except lay.LayoutError:  # the pins leave no layout at this count (a ZeRO stage with no DP left to shard over)
        return False
    return bool(found) and found[0].feasible


def closest_fitting_gpus(work: lay.Workload, gpu: Gpu, gpus: int, global_batch: int | None,
                         batch_target: float | None, fixed: lay.Constraints = NO_PINS) -> int | None:
    """The smallest GPU count above ``gpus`` (a part of a node, or whole nodes) with a layout that fits, if any,
    keeping the degrees ``fixed`` pins (a count that only fits with other degrees would fail again when tried).

    Counts are probed at doubling positions of the ascending list until one fits, then tried in ascending order
    from the start, so the search costs about (answer / GPUs per node) layout searches. Fitting is not monotone
    in the count (divisors decide which TP x PP splits exist), hence the ascending pass; a model none of the
    probes fits gets None rather than a scan of every count up to the limit."""
    # The leanest settings are searched (a count the lean layout does not fit, no other does), within the pins.
    restricted = replace(lay.Constraints(recompute="full", micro_batch=1, interleave=1),
                         **{k: v for k, v in asdict(fixed).items() if v is not None})
    # Pinned degrees multiply into the count, so only their multiples can hold them; probing others would leave
    # the galloping search no count that fits.
    unit = math.prod(d for d in (fixed.tp, fixed.pp, fixed.dp) if d is not None)
    counts = [g for g in _counts_above(gpus, gpu.gpus_per_node) if g % unit == 0]

    @functools.cache
    def fits(g: int) -> bool:
        return _fits(work, gpu, g, global_batch, batch_target, restricted)

    if fixed.dp is not None:
        # The count is then tp x pp x dp with tp within a node and pp at most the layers: a short range, in which
        # fitting is far from monotone (past the largest tp x pp nothing fits), so it is scanned in order.
        top = (fixed.tp or gpu.gpus_per_node) * (fixed.pp or work.shape.layers) * fixed.dp
        return next((g for g in itertools.takewhile(lambda g: g <= top, counts) if fits(g)), None)
    for probe in _doubling_positions(len(counts)):
        if fits(counts[probe]):
            return next(g for g in counts[: probe + 1] if fits(g))
    return None


def _no_layout_message(work: lay.Workload, gpu_name: str, gpu: Gpu, gpus: int, estimates: list[lay.Estimate],
                       global_batch: int | None, batch_target: float | None, catalogue: dict[str, Gpu],
                       fixed: lay.Constraints = NO_PINS) -> str:
    """Why nothing fits, and the closest GPU count or type that does with the same pinned degrees."""
    pins = _pinned_flags(fixed)
    if not estimates:
        head = f"no valid layout of {gpus} GPUs for this model" + (f" with {pins}" if pins else "") + \
               f" (TP must divide {work.shape.heads} heads and " \
               f"the {gpu.gpus_per_node}-GPU node, PP at most {work.shape.layers} layers" + \
               (f", and DP x micro-batch must divide the global batch {global_batch})" if global_batch else ")")
    else:
        best = min(estimates, key=lambda e: e.memory["total"])
        head = (f"nothing fits in {gpu.hbm_gb:g} GB on {gpus} x {gpu.name}: the leanest layout needs "
                f"{best.memory_gb:.1f} GB (DP {best.layout.dp} TP {best.layout.tp} PP {best.layout.pp}, ZeRO-"
                f"{best.layout.zero}, recompute {best.layout.recompute})")
    options = []
    more = closest_fitting_gpus(work, gpu, gpus, global_batch, batch_target, fixed)
    if more is not None:
        options.append(f"--gpus {more}")
    for name, other in sorted(catalogue.items(), key=lambda kv: kv[1].hbm_gb):
        if other.hbm_gb > gpu.hbm_gb and name != gpu_name and _fits(work, other, gpus, global_batch, batch_target,
                                                                     fixed):
            options.append(f"--gpu {name}")
            break
    if options:
        return head + f"; closest valid option{f' keeping {pins}' if pins else ''}: " + " or ".join(options)
    if pins:
        return head + f"; no larger GPU count or larger-memory GPU fits with {pins}: unpin some of them"
    return head + "; no nearby option fits"


def plan(compute: float, gpus: int | None = None, gpu: str = "h100", law: str = "chinchilla",
         fit_spec: str = "hoffmann2022", unique_tokens: float | None = None, data: str | None = None,
         inference_tokens: float | None = None, seq: int = DEFAULT_SEQ, vocab: int = DEFAULT_VOCAB,
         mlp: str = "swiglu", batch_tokens: float | None = None, home: Path | None = None,
         hardware: str | None = None, fitted: ResolvedFit | None = None) -> dict[str, Any]:
    """The ``planner plan --json`` object (keys in docs/planner.md, "JSON output"). ``fitted`` saves refitting
    when the caller already resolved ``fit_spec``."""
    home = Path(".") if home is None else home
    catalogue = load_catalogue(hardware)
    spec = get_gpu(gpu, catalogue)
    fitted = fitted or resolve_fit(fit_spec, kaplan=(law == "kaplan"))
    chinchilla, cfit, kfit, fit_name = fitted.law, fitted.result, fitted.kaplan, fitted.name
    data_source = None
    if data is not None:
        unique_tokens, data_source = unique_tokens_from(data, home)
    if data_source is None and unique_tokens is not None:
        data_source = "--unique-tokens"
    kaplan: KaplanLaw = kfit.law if kfit is not None else KAPLAN2020

    n_c, d_c = chinchilla.optimal(compute)
    n_k, d_k = kaplan.optimal(compute)
    laws = {
        "chinchilla": {"name": fit_name, "params": n_c, "params_counted": "total", "tokens": d_c,
                       "tokens_per_param": d_c / n_c, "loss": chinchilla.loss(n_c, d_c), "law": chinchilla.as_dict()},
        "kaplan": {"name": "kaplan2020" if kfit is None else f"kaplan fit of {fit_name}", "params": n_k,
                   "params_counted": "non_embedding", "tokens": d_k, "tokens_per_param": d_k / n_k,
                   "loss": kaplan.loss(n_k, d_k), "loss_note": KAPLAN_LOSS_NOTE},
    }
    remarks = fit_notes(fitted, compute)
    notes = list(remarks)
    constrained = inference = None
    if law == "chinchilla":
        n, d, loss = n_c, d_c, laws["chinchilla"]["loss"]
        if unique_tokens is not None:
            constrained = {**data_constrained(chinchilla, compute, unique_tokens), "source": data_source}
            n, d, loss = constrained["params"], constrained["tokens"], constrained["loss"]
            notes.append(f"data-constrained optimum: {constrained['epochs']:.2f} epochs over {unique_tokens:.3g} "
                         f"unique tokens")
        if inference_tokens:
            inference = {**inference_aware(chinchilla, compute, inference_tokens, unique_tokens),
                         "inference_tokens": inference_tokens}
            overflowed = sorted(k for k, v in inference.items() if not math.isfinite(v))
            if overflowed:
                # Past float range the trade-off has nothing left to compare: every model's lifetime cost is inf.
                raise PlanError(f"--inference-tokens {inference_tokens:g} is too large to plan with: the "
                                f"inference-aware allocation overflows ({', '.join(overflowed)} are inf)")
            n, d = inference["params"], inference["tokens"]
            notes.append(f"inference-aware: training compute {inference['training_compute']:.3g} FLOPs (> C) buys "
                         f"the same loss with a smaller model; lifetime FLOPs {inference['total_compute']:.3g} vs "
                         f"{inference['chinchilla_total_compute']:.3g}")
            if unique_tokens is not None:
                notes.append(f"with the data constraint: {inference['epochs']:.2f} epochs over the unique tokens")
        counted = "total"
    else:
        if unique_tokens is not None or inference_tokens:
            raise PlanError("--unique-tokens/--data/--inference-tokens apply to --law chinchilla; drop --law kaplan")
        n, d, loss = n_k, d_k, laws["kaplan"]["loss"]
        counted = "non_embedding"

    shape = shape_for(n, counted=counted, vocab=vocab, mlp=mlp)
    exact = shape.total if counted == "total" else shape.non_embedding
    ci = {"params_ci95": None, "tokens_ci95": None, "loss_ci95": None}
    if cfit is not None and len(cfit.samples) and law == "chinchilla" and constrained is None and inference is None:
        iv = cfit.optimal_interval(compute)
        losses = [ChinchillaLaw(*row).loss(n, d) for row in cfit.samples]
        ci = {"params_ci95": list(iv["params"]), "tokens_ci95": list(iv["tokens"]),
              "loss_ci95": list(fitting.percentile_interval(losses, cfit.level))}

    out: dict[str, Any] = {
        "compute": compute, "compute_pf_days": compute / PF_DAY, "law": law, "fit": fit_name,
        "params": n, "params_counted": counted, "tokens": d, "tokens_per_param": d / n, "loss": loss, **ci,
        "shape": {"layers": shape.layers, "d_model": shape.d_model, "heads": shape.heads, "ffn": shape.ffn,
                  "vocab": shape.vocab, "kv_heads": shape.n_kv_heads, "mlp": shape.mlp, "seq": seq,
                  "params_total": shape.total, "params_non_embedding": shape.non_embedding,
                  "params_error": exact / n - 1},
        "gpu": gpu if gpus is not None else None, "gpus": gpus,
        "layout": None, "feasible": None, "memory_gb_per_gpu": None, "memory_breakdown_gb": None,
        "step_time_s": None, "time_breakdown_s": None, "mfu": None, "hfu": None, "model_tflops_per_gpu": None,
        "hardware_tflops_per_gpu": None, "steps": None, "days": None, "gpu_hours": None, "runners_up": [],
        "laws": laws, "data_constrained": constrained, "inference": inference, "notes": notes,
    }
    if gpus is None:
        return out
    assert spec is not None
    work = lay.Workload(shape, seq)
    target = (batch_tokens or _batch_target_tokens(compute)) / seq
    estimates = lay.search(work, spec, gpus, batch_target=target)
    if not estimates or not estimates[0].feasible:
        raise PlanError(_no_layout_message(work, gpu, spec, gpus, estimates, None, target, catalogue)
                        + "".join(f"\n  {r}" for r in remarks))
    best = estimates[0]
    if best.layout.global_batch > 2 * target:
        notes.append(f"the global batch ({best.layout.global_batch} sequences) is over twice the target "
                     f"({target:.0f}): this many GPUs cannot all be used at a batch this model trains well with")
    steps = math.ceil(d / (best.layout.global_batch * seq))
    seconds = steps * best.step_time_s
    out.update(_estimate_json(best, seq))
    out.update({"steps": steps, "days": seconds / 86_400, "gpu_hours": seconds * gpus / 3600,
                "runners_up": [{**_estimate_json(e, seq), "why": lay.why_lost(best, e, spec.hbm_gb)}
                               for e in lay.runners_up(estimates)]})
    return out


def _laws_table(result: dict[str, Any]) -> list[str]:
    c, k = result["laws"]["chinchilla"], result["laws"]["kaplan"]
    cols = [(f"Chinchilla ({c['name']})", [
        f"{c['params']:.3e} ({_human(c['params'])})", f"{c['tokens']:.3e} ({_human(c['tokens'])})",
        f"{c['tokens_per_param']:.1f}", f"{c['loss']:.3f} (MassiveText)", "total"]),
        (k["name"].replace("kaplan2020", "Kaplan 2020"), [
            f"{k['params']:.3e} ({_human(k['params'])})", f"{k['tokens']:.3e} ({_human(k['tokens'])})",
            f"{k['tokens_per_param']:.2f}", f"{k['loss']:.3f} (WebText2, not comparable)", "NON-embedding"])]
    labels = ["parameters N", "tokens D", "tokens per parameter", "predicted loss (nats/token)", "N counts"]
    widths = [max(len(h), *(len(v) for v in vals)) for h, vals in cols]
    lines = [" " * 29 + "   ".join(h.ljust(w) for (h, _), w in zip(cols, widths, strict=True))]
    for i, label in enumerate(labels):
        lines.append(label.ljust(29) + "   ".join(vals[i].ljust(w) for (_, vals), w in zip(cols, widths, strict=True)))
    return lines


def _layout_words(layout: dict[str, Any]) -> str:
    words = f"DP {layout['dp']} x TP {layout['tp']} x PP {layout['pp']}"
    if layout["interleave"] > 1:
        words += f" (interleaved x{layout['interleave']})"
    return (f"{words}, micro-batch {layout['micro_batch']}, grad accum {layout['grad_accum']}, ZeRO-{layout['zero']}, "
            f"recompute {layout['recompute']}" + (", sequence parallel" if layout["sequence_parallel"] else ""))


def _estimate_lines(r: dict[str, Any], hbm_gb: float | None) -> list[str]:
    mem = r["memory_breakdown_gb"]
    parts = " + ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in mem.items() if v > 0.05)
    fits = "fits" if r["feasible"] else "DOES NOT FIT"
    cap = f" of {hbm_gb:g}" if hbm_gb else ""
    times = [f"{k.replace('_', ' ')} {v:.3g}" for k, v in r["time_breakdown_s"].items() if v > 0]
    lines = [f"  layout     {_layout_words(r['layout'])}",
             f"             global batch {r['layout']['global_batch']} x {r['layout']['global_batch_tokens'] // max(1, r['layout']['global_batch'])} = {_human(r['layout']['global_batch_tokens'])} tokens",  # noqa: E501
             f"  memory     {r['memory_gb_per_gpu']:.1f}{cap} GB per GPU ({r['memory_stage']} pipeline stage), {fits}",
             f"             {parts} GB",
             f"  step       {r['step_time_s']:.3g} s = " + " + ".join(times[:4]),
             *(["             + " + " + ".join(times[4:])] if times[4:] else []),
             f"  MFU {r['mfu']:.1%}   HFU {r['hfu']:.1%}   ({r['model_tflops_per_gpu']:.0f} model / "
             f"{r['hardware_tflops_per_gpu']:.0f} hardware TFLOP/s per GPU)"]
    lines += [f"  note       {n}" for n in r["layout_notes"]]
    return lines


def _runner_lines(runners: list[dict[str, Any]]) -> list[str]:
    if not runners:
        return []
    lines = ["", "Runner-up layouts (best of each other DP x TP x PP split):",
             f"  {'DP':>5} {'TP':>3} {'PP':>3} {'v':>2} {'mb':>3} {'ZeRO':>4} {'recompute':<9} {'SP':<3} "
             f"{'step s':>8} {'MFU':>6} {'GB':>6}  why it lost"]
    for r in runners:
        lo = r["layout"]
        lines.append(f"  {lo['dp']:>5} {lo['tp']:>3} {lo['pp']:>3} {lo['interleave']:>2} {lo['micro_batch']:>3} "
                     f"{lo['zero']:>4} {lo['recompute']:<9} {'yes' if lo['sequence_parallel'] else 'no':<3} "
                     f"{r['step_time_s']:>8.3g} {r['mfu']:>6.1%} {r['memory_gb_per_gpu']:>6.1f}  {r['why']}")
    return lines


def _plan_text(result: dict[str, Any], catalogue: dict[str, Gpu]) -> str:
    c = result["compute"]
    where = f" on {result['gpus']} x {catalogue[result['gpu']].name}" if result["gpus"] else ""
    lines = [f"Plan for C = {c:.3g} FLOPs ({result['compute_pf_days']:,.3g} PF-days){where}; C = 6ND", ""]
    lines += _laws_table(result)
    counted = "total" if result["params_counted"] == "total" else "non-embedding"
    lines += ["", f"Chosen ({result['law']}, {result['fit']}): N = {_human(result['params'])} {counted} parameters, "
                  f"D = {_human(result['tokens'])} tokens ({result['tokens_per_param']:.1f} per parameter), "
                  f"predicted loss {result['loss']:.3f}"]
    if result["loss_ci95"]:
        p, t, lo = result["params_ci95"], result["tokens_ci95"], result["loss_ci95"]
        lines.append(f"  95% intervals (bootstrap of the fit): N [{_human(p[0])}, {_human(p[1])}], "
                     f"D [{_human(t[0])}, {_human(t[1])}], loss [{lo[0]:.3f}, {lo[1]:.3f}]")
    for note in result["notes"]:
        lines.append(f"  {note}")
    s = result["shape"]
    lines += ["", f"Model shape: {s['layers']} layers x d_model {s['d_model']}, {s['heads']} heads "
                  f"(head dim {s['d_model'] // s['heads']}), {s['mlp']} FFN {s['ffn']}, vocab {s['vocab']}, "
                  f"seq {s['seq']}",
              f"  {s['params_total']:,} parameters ({s['params_non_embedding']:,} non-embedding), "
              f"{s['params_error']:+.2%} from the target"]
    if result["layout"] is None:
        lines += ["", "(add --gpus N for the parallel layout, memory, step time and days)"]
        return "\n".join(line.rstrip() for line in lines)
    gpu = catalogue[result["gpu"]]
    lines += ["", f"Layout on {result['gpus']} x {gpu.name} ({gpu.peak_bf16_flops / 1e12:.0f} TFLOPS dense BF16, "
                  f"{gpu.hbm_gb:g} GB):"]
    lines += _estimate_lines(result, gpu.hbm_gb)
    lines += [f"  training   {result['steps']:,} steps, {result['days']:.3g} days, "
              f"{result['gpu_hours']:,.0f} GPU-hours"]
    lines += _runner_lines(result["runners_up"])
    return "\n".join(line.rstrip() for line in lines)


# ---------------------------------------------------------------------------------------------------- fit


def _read_runs(args: argparse.Namespace) -> fitting.Runs:
    if (args.runs is None) == (args.metrics is None):
        raise fitting.FitError("give exactly one of a runs CSV / workspace, or --metrics HOME")
    if args.metrics is not None:
        return fitting.read_metrics(args.metrics)
    path = Path(args.runs)
    return fitting.read_metrics(path) if path.is_dir() else fitting.read_csv(path)


def fit_report(result: fitting.FitResult, runs: fitting.Runs, compute: float, dropped: int, exhaustive: bool,
               kaplan: fitting.KaplanFit | None = None) -> dict[str, Any]:
    """The ``planner fit --json`` object."""
    n, d = result.law.optimal(compute)
    intervals = result.intervals()
    opt_iv = result.optimal_interval(compute)
    a1, a2 = fitting.approach1(runs), fitting.approach2(runs)
    return {
        **result.law.as_dict(),
        "ci95": {k: list(v) for k, v in intervals.items()},
        "n_points": result.n_runs,
        "source": runs.source,
        "n_runs": result.n_runs,
        "dropped_highest_loss": dropped,
        "method": "lbfgsb-every-start" if exhaustive else "batched-bfgs-screen+lbfgsb",
        "starts": result.starts,
        "huber_delta": fitting.HUBER_DELTA,
        "objective": result.objective,
        "law": result.law.as_dict(),
        "intervals": {k: list(v) for k, v in intervals.items()},
        "bootstrap": {"resamples": len(result.samples), "seed": result.seed, "level": result.level},
        "compute_flops": compute,
        "optimal": {
            "params": n, "tokens": d, "tokens_per_param": d / n,
            "params_interval": list(opt_iv["params"]) if opt_iv else None,
            "tokens_interval": list(opt_iv["tokens"]) if opt_iv else None,
            "a": result.law.beta / (result.law.alpha + result.law.beta),
            "b": result.law.alpha / (result.law.alpha + result.law.beta),
        },
        "approach1": a1,
        "approach2": a2,
        "kaplan": None if kaplan is None else {
            **kaplan.as_dict(), "ci95": {k: list(v) for k, v in kaplan.intervals().items()},
            "objective": kaplan.objective, "n_points": kaplan.n_runs,
            "params_counted": "non_embedding" if runs.n_kaplan is not None else "as given"},
        "warnings": fitting.warnings_for(runs, result),
        "reference": {"hoffmann2022": HOFFMANN2022.as_dict(), "besiroglu2024": BESIROGLU2024.as_dict()},
    }


def _fit_text(report: dict[str, Any]) -> str:
    level = report["bootstrap"]["level"]
    lines = [f"Approach 3 fit of L(N, D) = E + A/N^alpha + B/D^beta to {report['n_runs']} runs from "
             f"{report['source']}" + (f" ({report['dropped_highest_loss']} highest-loss runs left out)"
                                       if report["dropped_highest_loss"] else ""),
             f"Huber(delta={report['huber_delta']:g}) on log loss, {report['starts']} starts, "
             f"objective {report['objective']:.6g}, {report['bootstrap']['resamples']} bootstrap resamples "
             f"(seed {report['bootstrap']['seed']})", "",
             f"{'param':<7}{'fit':>12}   {f'{level:.0%} interval':<26}{'Hoffmann 2022':>14}{'Besiroglu 2024':>16}"]
    for key, value in report["law"].items():
        iv = report["intervals"].get(key)
        iv_text = f"[{iv[0]:.4g}, {iv[1]:.4g}]" if iv else "-"
        lines.append(f"{key:<7}{value:>12.4g}   {iv_text:<26}{report['reference']['hoffmann2022'][key]:>14.4g}"
                     f"{report['reference']['besiroglu2024'][key]:>16.4g}")
    o = report["optimal"]
    lines += ["", f"Compute-optimal at C = {report['compute_flops']:.3g} FLOPs:"]
    for key, label in (("params", "N"), ("tokens", "D")):
        iv = o[f"{key}_interval"]
        iv_text = f"  {level:.0%} interval [{_human(iv[0])}, {_human(iv[1])}]" if iv else ""
        lines.append(f"  {label} = {o[key]:.3e} ({_human(o[key])}){iv_text}")
    lines.append(f"  tokens per parameter = {o['tokens_per_param']:.1f}")
    lines += ["", "N_opt ∝ C^a, D_opt ∝ C^b (Hoffmann et al. 2022 found a = 0.50, 0.49, 0.46 by Approaches 1, 2, 3):",
              f"  Approach 3 (this fit)                  a = {o['a']:.3f}, b = {o['b']:.3f}"]
    for key, label, unit in (("approach1", "Approach 1 (min-loss envelope)", "points"),
                             ("approach2", "Approach 2 (IsoFLOP parabolas)", "groups")):
        r = report[key]
        lines.append(f"  {label:<38} " + (f"a = {r['a']:.3f}, b = {r['b']:.3f} ({r[unit]} {unit})" if r else
                                           "not applicable: the runs lack that structure"))
    k = report["kaplan"]
    if k is not None:
        iv = k["ci95"]
        fmt = lambda key: f"{k[key]:.4g}" + (f" [{iv[key][0]:.4g}, {iv[key][1]:.4g}]" if key in iv else "")  # noqa: E731
        lines += ["", f"Kaplan joint form L = [(N_c/N)^(aN/aD) + D_c/D]^aD (N {k['params_counted']}):",
                  f"  N_c {fmt('N_c')}   D_c {fmt('D_c')}", f"  alpha_N {fmt('alpha_N')}   alpha_D {fmt('alpha_D')}",
                  "  (published: N_c 8.8e13, D_c 5.4e13, alpha_N 0.076, alpha_D 0.095)"]
    for w in report["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- layout


def _nearest(value: int, valid: Iterable[int]) -> int:
    return min(valid, key=lambda k: (abs(k - value), k))


def _check_depth_pins(args: argparse.Namespace, layers: int) -> None:
    """A pinned --pp or --interleave that the model's depth rules out at every GPU count, said up front: searched,
    it would read as no layout at this count and send the user to other counts that fail the same way."""
    if args.pp is not None and args.pp > layers:
        per_tp = args.gpus // (args.tp or 1)
        valid = [k for k in range(1, layers + 1) if per_tp % k == 0]
        raise lay.LayoutError(f"--pp {args.pp} exceeds the model's {layers} layers (a stage holds whole layers): "
                              f"closest valid {_nearest(args.pp, valid)}")
    if args.interleave is None or args.interleave == 1:
        return
    if args.pp is not None:
        valid = lay.interleaves(layers, args.pp)
        if args.interleave not in valid:
            raise lay.LayoutError(f"--interleave {args.interleave} needs --pp > 1 with its largest stage's "
                                  f"{math.ceil(layers / args.pp)} layers divisible by it: closest valid "
                                  f"{_nearest(args.interleave, valid)}")
        return
    valid = sorted({v for p in range(1, layers + 1) for v in lay.interleaves(layers, p)})
    if args.interleave not in valid:
        raise lay.LayoutError(f"--interleave {args.interleave} must divide the layers of a pipeline stage (at most "
                              f"{math.ceil(layers / 2)} of {layers}): closest valid {_nearest(args.interleave, valid)}")


def layout_report(args: argparse.Namespace) -> tuple[dict[str, Any], Gpu]:
    catalogue = load_catalogue(args.hardware)
    gpu = get_gpu(args.gpu, catalogue)
    ffn = args.ffn
    if ffn is None:
        ffn = 4 * args.hidden if args.mlp == "gelu" else 256 * math.ceil(8 * args.hidden / 3 / 256)
    shape = ModelShape(args.layers, args.hidden, args.heads, ffn, args.vocab, kv_heads=args.kv_heads, mlp=args.mlp,
                       tied_embeddings=args.tied_embeddings)
    work = lay.Workload(shape, args.seq, flash=args.attention == "flash", dropout=args.dropout)
    if args.tp and args.pp and args.dp and args.tp * args.pp * args.dp != args.gpus:
        raise lay.LayoutError(f"tp {args.tp} x pp {args.pp} x dp {args.dp} = {args.tp * args.pp * args.dp} "
                              f"!= --gpus {args.gpus}")
    for name in ("tp", "pp"):
        value = getattr(args, name)
        if value is not None and args.gpus % value:
            valid = [k for k in range(1, args.gpus + 1) if args.gpus % k == 0]
            raise lay.LayoutError(f"--{name} {value} does not divide --gpus {args.gpus}: closest valid "
                                  f"{_nearest(value, valid)}")
    fixed = lay.Constraints(tp=args.tp, pp=args.pp, dp=args.dp, micro_batch=args.micro_batch, zero=args.zero,
                            recompute=args.recompute, sequence_parallel=args.sequence_parallel,
                            interleave=args.interleave)
    if args.tp is not None:
        lay.check(work, gpu, lay.Layout(1, args.tp, 1, 1, 1, 0, "none", False, 1))
    _check_depth_pins(args, shape.layers)
    estimates = lay.search(work, gpu, args.gpus, global_batch=args.global_batch, fixed=fixed)
    if not estimates or not estimates[0].feasible:
        raise PlanError(_no_layout_message(work, args.gpu, gpu, args.gpus, estimates, args.global_batch, None,
                                           catalogue, fixed))
    best = estimates[0]
    out = {
        "shape": {"layers": shape.layers, "d_model": shape.d_model, "heads": shape.heads, "ffn": shape.ffn,
                  "vocab": shape.vocab, "kv_heads": shape.n_kv_heads, "mlp": shape.mlp, "seq": args.seq,
                  "params_total": shape.total, "params_non_embedding": shape.non_embedding},
        "params": shape.total, "gpu": args.gpu, "gpus": args.gpus, "searched": len(estimates),
        **_estimate_json(best, args.seq),
        "runners_up": [{**_estimate_json(e, args.seq), "why": lay.why_lost(best, e, gpu.hbm_gb)}
                       for e in lay.runners_up(estimates, args.top)],
    }
    return out, gpu


def _layout_text(r: dict[str, Any], gpu: Gpu) -> str:
    s = r["shape"]
    lines = [f"{s['layers']} layers x d_model {s['d_model']}, {s['heads']} heads, {s['mlp']} FFN {s['ffn']}, "
             f"vocab {s['vocab']}, seq {s['seq']}: {s['params_total']:,} parameters",
             f"Best of {r['searched']} layouts on {r['gpus']} x {gpu.name} ({gpu.hbm_gb:g} GB):"]
    lines += _estimate_lines(r, gpu.hbm_gb)
    lines += _runner_lines(r["runners_up"])
    return "\n".join(line.rstrip() for line in lines)


# ---------------------------------------------------------------------------------------------------- recording


def _run_id(kind: str) -> str:
    return f"{kind}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


PLAN_NUMBERS = ("compute", "gpus", "params", "tokens", "loss", "days", "gpu_hours", "mfu", "hfu", "memory_gb_per_gpu",
                "step_time_s")
SHAPE_NUMBERS = ("layers", "d_model", "heads", "ffn", "vocab")
LAYOUT_NUMBERS = ("dp", "tp", "pp", "micro_batch", "grad_accum", "zero")


def plan_rows(result: dict[str, Any], run: str) -> list[Any]:
    """Rows of docs/metrics.md "What the planner writes", stage ``plan``; unknown numbers (no --gpus) are left out."""
    from metrics.store import MetricRow

    numbers = {k: result[k] for k in PLAN_NUMBERS}
    numbers.update({k: result["shape"][k] for k in SHAPE_NUMBERS})
    if result["layout"] is not None:
        numbers.update({k: result["layout"][k] for k in LAYOUT_NUMBERS})
    rows = [MetricRow("planner", run, "plan", k, float(v)) for k, v in numbers.items() if v is not None]
    strings = {"law": result["law"], "fit": result["fit"], "gpu": result["gpu"],
               "recompute": result["layout"]["recompute"] if result["layout"] else None}
    rows += [MetricRow("planner", run, "plan", k, 0.0, key=str(v)) for k, v in strings.items() if v is not None]
    return rows


def fit_rows(report: dict[str, Any], runs: fitting.Runs, run: str, form: str, source: str) -> list[Any]:
    """Rows of stages ``fit`` and ``fit_point`` for one form (chinchilla or kaplan)."""
    from metrics.store import MetricRow

    if form == "chinchilla":
        params, ci = {k: report[k] for k in ("E", "A", "B", "alpha", "beta")}, report["ci95"]
    else:
        k = report["kaplan"]
        params, ci = {key: k[key] for key in ("N_c", "D_c", "alpha_N", "alpha_D")}, k["ci95"]
    rows = [MetricRow("planner", run, "fit", name, float(v)) for name, v in params.items()]
    rows.append(MetricRow("planner", run, "fit", "n_points", float(report["n_points"])))
    for name, (lo, hi) in ci.items():
        rows += [MetricRow("planner", run, "fit", "ci95_lo", lo, key=name),
                 MetricRow("planner", run, "fit", "ci95_hi", hi, key=name)]
    rows += [MetricRow("planner", run, "fit", "form", 0.0, key=form),
             MetricRow("planner", run, "fit", "input", 0.0, key=source)]
    n = runs.n if form == "chinchilla" or runs.n_kaplan is None else runs.n_kaplan
    for i, (ni, di, li) in enumerate(zip(n, runs.d, runs.loss, strict=True)):
        rows += [MetricRow("planner", run, "fit_point", "params", float(ni), step=i),
                 MetricRow("planner", run, "fit_point", "tokens", float(di), step=i),
                 MetricRow("planner", run, "fit_point", "loss", float(li), step=i)]
    return rows


def _record(home: Path, rows: list[Any]) -> None:
    """Append to the metrics store; a store that cannot be written warns but does not fail the command."""
    from metrics.store import MetricsStore

    try:
        MetricsStore(home).append(rows)
    except OSError as exc:
        print(f"planner: warning: not recorded in the metrics store under {home}: {exc}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------- main


def _attach_negative_numbers(argv: list[str]) -> list[str]:
    """``--compute -1e21`` -> ``--compute=-1e21``: argparse takes '-1e21' for a flag and would say only 'expected
    one argument'; attached, the value reaches its validator, which says what is wrong with it."""
    out: list[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and token.startswith("-"):
            try:
                float(token)
            except ValueError:
                pass
            else:
                out[-1] = f"{out[-1]}={token}"
                continue
        out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `planner --compute ...` means `planner plan --compute ...`.
    if not args_list or (args_list[0] not in SUBCOMMANDS and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "plan")
    args_list = _attach_negative_numbers(args_list)
    try:
        args = _parser().parse_args(args_list)
    except SystemExit as exc:  # argparse already printed the message; hand back its code (2 for bad input)
        return int(exc.code or 0)
    read_from = {"plan": lambda: args.fit, "fit": lambda: args.metrics or args.runs}.get(args.command, lambda: None)()
    home = _home(args.home, read_from)
    try:
        if args.command == "plan":
            fitted = resolve_fit(args.fit, kaplan=args.law == "kaplan")
            result = plan(args.compute, args.gpus, args.gpu, args.law, args.fit, args.unique_tokens, args.data,
                          args.inference_tokens, args.seq, args.vocab, args.mlp, args.batch_tokens, home,
                          args.hardware, fitted)
            result["run"] = _run_id("plan")
            # A law fitted for this plan is recorded as a fit too, so the dashboard can show what the plan used.
            result["fit_run"] = _run_id("fit") if fitted.result is not None else None
            # Print first: recording imports pyarrow (and through it pandas), the slowest part of a plan.
            print(json.dumps(result, indent=2) if args.json else _plan_text(result, load_catalogue(args.hardware)),
                  flush=True)
            rows = plan_rows(result, result["run"])
            if fitted.result is not None and fitted.runs is not None:
                report = fit_report(fitted.result, fitted.runs, args.compute, 0, False, fitted.kaplan)
                # Input named as `planner fit` names it ("metrics:HOME" or the CSV), so both fits of one
                # set of runs read as the same input on the dashboard.
                rows += fit_rows(report, fitted.runs, result["fit_run"], "chinchilla", fitted.runs.source)
                if fitted.kaplan is not None:
                    rows += fit_rows(report, fitted.runs, result["fit_run"] + "-kaplan", "kaplan", fitted.runs.source)
            _record(home, rows)
            return 0
        if args.command == "layout":
            result, gpu = layout_report(args)
            print(json.dumps(result, indent=2) if args.json else _layout_text(result, gpu))
            return 0
        if args.bootstrap < 0 or args.drop_highest_loss < 0:
            raise fitting.FitError("--bootstrap and --drop-highest-loss must be non-negative")
        runs = _read_runs(args)
        if args.drop_highest_loss >= len(runs):
            raise fitting.FitError(f"--drop-highest-loss {args.drop_highest_loss} leaves no runs of {len(runs)}")
        runs = fitting.drop_highest_loss(runs, args.drop_highest_loss)
        result = fitting.fit(runs, bootstrap=args.bootstrap, seed=args.seed, exhaustive=args.exhaustive)
        kaplan = fitting.fit_kaplan(runs, bootstrap=min(args.bootstrap, 100), seed=args.seed)
        report = fit_report(result, runs, args.compute, args.drop_highest_loss, args.exhaustive, kaplan)
        report["run"] = _run_id("fit")
        rows = fit_rows(report, runs, report["run"], "chinchilla", runs.source)
        rows += fit_rows(report, runs, report["run"] + "-kaplan", "kaplan", runs.source)
        print(json.dumps(report, indent=2) if args.json else _fit_text(report), flush=True)
        _record(home, rows)
        for w in report["warnings"] if args.json else ():
            print(f"planner: warning: {w}", file=sys.stderr)
        return 0
    except (fitting.FitError, PlanError, ShapeError, HardwareError, lay.LayoutError, ValueError) as exc:
        print(f"planner: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
