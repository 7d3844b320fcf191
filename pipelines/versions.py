"""``python -m pipelines.versions``: list dataset versions, show one, trace its lineage, verify it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipelines import shards


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data).resolve() if args.data else shards.workspace_home(args.home) / "data"


def _describe(manifest: dict) -> str:
    # Hand-made versions (bench.train_gpu's) lack what a build records: "-" rather than a KeyError.
    c = manifest.get("counts", {})
    tokens = sum(s["tokens"] for s in manifest.get("shards", []))
    return (f"{manifest['version']}  {manifest.get('created_at', '-')}  in {c.get('input', '-')}  "
            f"kept {c.get('kept', '-')}  rejected {c.get('rejected', '-')}  dead-letter {c.get('dead_letter', '-')}  "
            f"shards {len(manifest.get('shards', []))}  tokens {tokens}  parent {manifest.get('parent') or '-'}")


def summary(m: dict, path: Path, verb: str = "") -> str:
    """The human-readable account of one version: counts per stage, languages, PII, shards."""
    lines = [" ".join(filter(None, (verb, "dataset version", m["version"]))), f"  path: {path}"]
    # Hand-made versions (bench.train_gpu's) have no counts, stages or tokenizer file: leave those lines out.
    if {"input", "kept", "rejected", "dead_letter"} <= (c := m.get("counts", {})).keys():
        lines.append(f"  documents: {c['input']} in = {c['kept']} kept + {c['rejected']} rejected + "
                     f"{c['dead_letter']} dead-lettered")
    for stage in ("input", *m.get("config", {}).get("stages", [])):
        if not isinstance(n := m.get("stages", {}).get(stage), dict):
            continue
        reasons = ", ".join(f"{r}={k}" for r, k in n["rejected"].items()) or "-"
        lines.append(f"  {stage:<9} in {n['in']:>7}  kept {n['kept']:>7}  dropped: {reasons}")
    dist = m.get("distributions", {})
    if "lang" in dist.get("langid", {}):
        langs = sorted(dist["langid"]["lang"].items(), key=lambda kv: -kv[1])
        lines.append(f"  languages kept: {len(langs)}: " + ", ".join(f"{k}={v}" for k, v in langs[:12]))
    if "replaced" in dist.get("pii", {}):
        lines.append("  pii replaced: " + ", ".join(f"{k}={v}" for k, v in dist["pii"]["replaced"].items()))
    if m.get("shards"):
        tokens = sum(s["tokens"] for s in m["shards"])
        rows = sum(s["rows"] for s in m["shards"])
        lines.append(f"  shards: {len(m['shards'])} files, {rows} rows of {m.get('seq_len')} tokens, "
                     f"{tokens} tokens; tokenizer vocab {(m.get('tokenizer') or {}).get('vocab_size')}")
    return "\n".join(lines)


def lineage(data_dir: Path, version: str) -> list[dict]:
    """The version and its ancestors, newest first, as far as they are still on disk."""
    chain, seen = [], set()
    name: str | None = version
    while name and name not in seen:
        seen.add(name)
        try:
            manifest = shards.read_manifest(data_dir / shards.VERSIONS / name)
        except shards.ManifestError as err:
            chain.append({"version": name, "error": str(err)})
            break
        except FileNotFoundError:
            chain.append({"version": name, "missing": True})
            break
        chain.append(manifest)
        name = manifest.get("parent")
    return chain


def _listing(manifest: dict, latest: str | None) -> dict:
    """``list --json``: one version's line of ``list`` as an object (``_broken_listing`` for the unreadable)."""
    return {"version": manifest["version"], "latest": manifest["version"] == latest,
            "created_at": manifest.get("created_at"), "parent": manifest.get("parent"),
            "counts": manifest.get("counts"), "shard_files": len(manifest.get("shards", [])),
            "tokens": sum(s["tokens"] for s in manifest.get("shards", []))}


def _broken_listing(name: str, error: str, latest: str | None) -> dict:
    return {"version": name, "latest": name == latest, "error": error}


def _options(parser: argparse.ArgumentParser, command: bool) -> None:
    """--home, --data and --json, before or after the command (README writes them after). A command's
    parser leaves out what it was not given, so that it does not reset what came before the command."""
    unset: dict = {"default": argparse.SUPPRESS} if command else {}
    parser.add_argument("--home", **unset, help="workspace root (env TOKENMILL_HOME, default: current directory)")
    parser.add_argument("--data", **unset, help="dataset directory (default: <home>/data)")
    parser.add_argument("--json", action="store_true", **unset, help="print JSON")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.versions", description=__doc__)
    _options(parser, command=False)
    sub = parser.add_subparsers(dest="command", required=True)
    _options(sub.add_parser("list", help="every published version, oldest first"), command=True)
    for name, text in (("show", "one version's manifest summary"), ("lineage", "a version and its parents"),
                       ("verify", "check every file (shards, tokenizer, Parquet tables) against the manifest")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("version", nargs="?", help="default: LATEST")
        _options(cmd, command=True)
    args = parser.parse_args(argv)
    data_dir = _data_dir(args)

    if args.command == "list":
        latest = shards.latest_version(data_dir)
        versions, broken = shards.scan_versions(data_dir)
        if args.json:
            print(json.dumps([*(_listing(manifest, latest) for manifest in versions),
                              *(_broken_listing(name, error, latest) for name, error in broken.items())], indent=2))
            return 0
        if not versions and not broken:
            print(f"no dataset versions in {data_dir}")
        for manifest in versions:
            print(("* " if manifest["version"] == latest else "  ") + _describe(manifest))
        for name, error in broken.items():
            print(f"! {name}  UNREADABLE: {error}")
        return 0

    version = args.version or shards.latest_version(data_dir)
    if version is None:
        print(f"no LATEST in {data_dir}: build a dataset first", file=sys.stderr)
        return 2
    try:
        version_dir = shards.resolve_version(data_dir, version)
    except shards.ManifestError as err:
        if args.command != "verify":
            print(err, file=sys.stderr)
            return 2
        version_dir = err.version_dir  # verify_version reports the manifest as the version's problem
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    if args.command == "show":
        manifest = shards.read_manifest(version_dir)
        print(json.dumps(manifest, indent=2) if args.json else summary(manifest, version_dir))
    elif args.command == "lineage":
        chain = lineage(data_dir, version)
        if args.json:
            keys = ("version", "parent", "created_at", "code_version", "inputs", "counts", "missing", "error")
            print(json.dumps([{k: m.get(k) for k in keys} for m in chain], indent=2))
            return 0
        for depth, manifest in enumerate(chain):
            text = (f"{manifest['version']} (no longer on disk)" if manifest.get("missing") else
                    f"{manifest['version']} (UNREADABLE: {manifest['error']})" if "error" in manifest else
                    _describe(manifest))
            print("  " * depth + ("└─ " if depth else "") + text)
    else:
        problems = shards.verify_version(version_dir)
        if args.json:
            print(json.dumps({"version": version, "path": str(version_dir), "ok": not problems,
                              "problems": problems}, indent=2))
        else:
            for problem in problems:
                print(problem)
            print(f"{version}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
