"""The ``planner`` command: ``planner [plan] --compute C ...`` and ``planner fit CSV|--metrics HOME ...``.

This module owns argument parsing, the text tables and the JSON objects (keys documented in docs/planner.md);
the maths lives in :mod:`planner.laws`, :mod:`planner.fit` and :mod:`planner.hardware`.
Exit codes: 0 success, 2 bad input (bad flags, unreadable or unfittable runs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from planner import fit as fitting
from planner.hardware import CATALOGUE, training_time
from planner.laws import BESIROGLU2024, HOFFMANN2022, KAPLAN2020, PF_DAY

SUBCOMMANDS = ("plan", "fit")
# Gopher's budget: the compute at which Hoffmann et al. compare their approaches; a familiar default.
DEFAULT_FIT_COMPUTE = 5.76e23
KAPLAN_LOSS_NOTE = "Kaplan L(N, D) in nats/token on WebText2; not comparable with Chinchilla's MassiveText loss"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _positive(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="planner", description="Scaling-law plans and fits.")
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help="compute-optimal N and D for a FLOP budget (the default command)")
    plan.add_argument("--compute", type=_positive, required=True, help="training compute C in FLOPs (C = 6ND)")
    plan.add_argument("--gpus", type=_count, help="number of GPUs; adds training days and GPU-hours")
    plan.add_argument("--gpu", choices=sorted(CATALOGUE), default="h100", help="GPU type (default h100)")
    plan.add_argument("--mfu", type=_fraction, default=0.4, help="model FLOPs utilisation in (0, 1] (default 0.4)")
    plan.add_argument("--law", choices=("chinchilla", "kaplan", "both"), default="both")
    plan.add_argument("--json", action="store_true", help="print one JSON object")

    fit = sub.add_parser("fit", help="fit L(N, D) = E + A/N^alpha + B/D^beta to training runs (Approach 3)")
    fit.add_argument("csv", nargs="?", help="runs CSV: parameters, loss, and tokens or FLOPs columns")
    fit.add_argument("--metrics", metavar="HOME", help="read trainer runs from the metrics store under HOME")
    fit.add_argument("--compute", type=_positive, default=DEFAULT_FIT_COMPUTE,
                     help=f"FLOPs at which to report the compute-optimal N, D (default {DEFAULT_FIT_COMPUTE:g})")
    fit.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples (default 200; 0 = none)")
    fit.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    fit.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                     help="leave out the K highest-loss runs (Epoch's replication drops 5)")
    fit.add_argument("--exhaustive", action="store_true",
                     help="run scipy L-BFGS-B from all 4500 grid starts (slow; the default screens them in batch)")
    fit.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _human(x: float) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def plan(compute: float, law: str = "both", gpus: int | None = None, gpu: str = "h100",
         mfu: float = 0.4) -> dict[str, Any]:
    """The ``planner plan --json`` object."""
    out: dict[str, Any] = {"compute_flops": compute, "compute_pf_days": compute / PF_DAY, "laws": {}}
    if law in ("chinchilla", "both"):
        n, d = HOFFMANN2022.optimal(compute)
        out["laws"]["chinchilla"] = {
            "name": "hoffmann2022", "params": n, "params_counted": "total", "tokens": d,
            "tokens_per_param": d / n, "loss": HOFFMANN2022.loss(n, d), "law": HOFFMANN2022.as_dict(),
        }
    if law in ("kaplan", "both"):
        n, d = KAPLAN2020.optimal(compute)
        out["laws"]["kaplan"] = {
            "name": "kaplan2020", "params": n, "params_counted": "non_embedding", "tokens": d,
            "tokens_per_param": d / n, "loss": KAPLAN2020.loss(n, d), "loss_note": KAPLAN_LOSS_NOTE,
        }
    out["training"] = None
    if gpus is not None:
        spec = CATALOGUE[gpu]
        out["training"] = {"gpu": gpu, "gpu_name": spec.name, "gpus": gpus, "peak_bf16_flops": spec.peak_bf16_flops,
                           "hbm_gb": spec.hbm_gb, "mfu": mfu, **training_time(compute, gpus, spec, mfu)}
    return out


def _plan_text(result: dict[str, Any]) -> str:
    c = result["compute_flops"]
    pf_days = result["compute_pf_days"]
    lines = [f"Compute-optimal allocation for C = {c:.3g} FLOPs ({pf_days:,.3g} PF-days), C = 6ND", ""]
    cols = []
    if "chinchilla" in result["laws"]:
        r = result["laws"]["chinchilla"]
        cols.append(("Chinchilla (Hoffmann 2022, Appr. 3)", [
            f"{r['params']:.3e} ({_human(r['params'])})", f"{r['tokens']:.3e} ({_human(r['tokens'])})",
            f"{r['tokens_per_param']:.1f}", f"{r['loss']:.3f} (MassiveText)", "total"]))
    if "kaplan" in result["laws"]:
        r = result["laws"]["kaplan"]
        cols.append(("Kaplan 2020", [
            f"{r['params']:.3e} ({_human(r['params'])})", f"{r['tokens']:.3e} ({_human(r['tokens'])})",
            f"{r['tokens_per_param']:.2f}", f"{r['loss']:.3f} (WebText2, not comparable)", "NON-embedding"]))
    labels = ["parameters N", "tokens D", "tokens per parameter", "predicted loss (nats/token)", "N counts"]
    widths = [max(len(h), *(len(v) for v in vals)) for h, vals in cols]
    lines.append(" " * 29 + "   ".join(h.ljust(w) for (h, _), w in zip(cols, widths, strict=True)))
    for i, label in enumerate(labels):
        lines.append(label.ljust(29) + "   ".join(vals[i].ljust(w) for (_, vals), w in zip(cols, widths, strict=True)))
    t = result["training"]
    if t is not None:
        lines += ["", f"Training time on {t['gpus']} x {t['gpu_name']} at {t['mfu']:.0%} MFU "
                      f"({t['peak_bf16_flops'] / 1e12:.0f} TFLOPS dense BF16 peak each, {t['hbm_gb']:g} GB HBM):",
                  f"  {t['days']:.2f} days, {t['gpu_hours']:,.0f} GPU-hours (the same C, so the same for both laws)"]
    return "\n".join(line.rstrip() for line in lines)


def fit_report(result: fitting.FitResult, runs: fitting.Runs, compute: float, dropped: int,
               exhaustive: bool) -> dict[str, Any]:
    """The ``planner fit --json`` object."""
    n, d = result.law.optimal(compute)
    intervals = result.intervals()
    opt_iv = result.optimal_interval(compute)
    return {
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
        },
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
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `planner --compute ...` means `planner plan --compute ...`.
    if not args_list or (args_list[0] not in SUBCOMMANDS and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "plan")
    try:
        args = _parser().parse_args(args_list)
    except SystemExit as exc:  # argparse already printed the message; hand back its code (2 for bad input)
        return int(exc.code or 0)
    try:
        if args.command == "plan":
            result = plan(args.compute, args.law, args.gpus, args.gpu, args.mfu)
            print(json.dumps(result, indent=2) if args.json else _plan_text(result))
            return 0
        if (args.csv is None) == (args.metrics is None):
            raise fitting.FitError("give exactly one of a runs CSV or --metrics HOME")
        if args.bootstrap < 0 or args.drop_highest_loss < 0:
            raise fitting.FitError("--bootstrap and --drop-highest-loss must be non-negative")
        runs = fitting.read_csv(args.csv) if args.csv else fitting.read_metrics(args.metrics)
        if args.drop_highest_loss >= len(runs):
            raise fitting.FitError(f"--drop-highest-loss {args.drop_highest_loss} leaves no runs of {len(runs)}")
        runs = fitting.drop_highest_loss(runs, args.drop_highest_loss)
        result = fitting.fit(runs, bootstrap=args.bootstrap, seed=args.seed, exhaustive=args.exhaustive)
        report = fit_report(result, runs, args.compute, args.drop_highest_loss, args.exhaustive)
        print(json.dumps(report, indent=2) if args.json else _fit_text(report))
        return 0
    except (fitting.FitError, ValueError) as exc:
        print(f"planner: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
