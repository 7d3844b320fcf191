"""Atomic, verified checkpoints: ``RUN_DIR/checkpoints/step-NNNNNNNN/{state.pt,meta.json}``.

Save: write both files into a hidden temporary directory, fsync them and the directory, rename it into
place, fsync the parent. A crash at any instant leaves either no new checkpoint or a complete one;
leftover temporary directories are removed on the next start. Re-saving a step (after a rollback) moves
the old checkpoint aside before the new one takes its name; the next start puts it back if the crash came
in between. ``meta.json`` holds the sha256 of ``state.pt``; load verifies it, loads with
``weights_only=True`` (no pickled code runs) and, when the newest checkpoint is corrupt, falls back to the
one before it. A checkpoint made for a different model shape or dataset version is refused with a clear
error instead of being silently used or skipped.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metrics.store import fsync_dir
from pipelines.shards import sha256_file

FORMAT = "tokenmill.ckpt.v1"
STATE, META = "state.pt", "meta.json"
PREFIX = "step-"
OLD = ".old-"  # a checkpoint being replaced by a re-save of its step


class CheckpointError(RuntimeError):
    """No usable checkpoint, or one incompatible with the requested run."""


@dataclass(frozen=True)
class Loaded:
    step: int
    path: Path
    state: dict[str, Any]
    rejected: tuple[str, ...]  # newer checkpoints that failed verification, with the reason


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def save(run_dir: Path, step: int, state: dict[str, Any], identity: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain Python values only) as the checkpoint of ``step``."""
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{PREFIX}{step:08d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    with open(tmp / STATE, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    meta = {"format": FORMAT, "step": step, "sha256": sha256_file(tmp / STATE), "identity": identity}
    with open(tmp / META, "w", encoding="utf-8") as handle:
        json.dump(meta, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(tmp)
    if not final.exists():
        os.rename(tmp, final)
        fsync_dir(root)
        return final
    # A rollback re-saves a step it already has. The old checkpoint is moved aside, not deleted, until the new
    # one is in place: a crash between the renames leaves it for clean_temporaries to put back.
    old = root / f"{OLD}{final.name}-{os.getpid()}"
    os.rename(final, old)
    os.rename(tmp, final)
    fsync_dir(root)
    shutil.rmtree(old)
    return final


def _discard(path: Path) -> None:
    # Rename first so a crash mid-delete never leaves a half-deleted directory under a checkpoint's name.
    trash = path.with_name(f".del-{path.name}-{os.getpid()}")
    os.rename(path, trash)
    shutil.rmtree(trash)


def clean_temporaries(run_dir: Path) -> None:
    """Remove what a crash left: unfinished saves and deletions. A checkpoint that a crashed re-save had moved
    aside goes back under its name when the new one never arrived (the state just before that save)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return
    for leftover in sorted(root.glob(f"{OLD}{PREFIX}*")):
        final = root / leftover.name[len(OLD):].rsplit("-", 1)[0]
        if not final.exists():
            os.rename(leftover, final)
    fsync_dir(root)
    for leftover in root.glob(".*"):
        shutil.rmtree(leftover, ignore_errors=True)


def steps(run_dir: Path) -> list[int]:
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted(int(p.name[len(PREFIX):]) for p in root.glob(f"{PREFIX}*") if p.name[len(PREFIX):].isdigit())


def prune(run_dir: Path, keep_last: int, keep_every: int) -> list[int]:
    """Delete all but the newest ``keep_last`` checkpoints and those at multiples of ``keep_every``."""
    all_steps = steps(run_dir)
    keep = set(all_steps[-keep_last:]) | {s for s in all_steps if s % keep_every == 0}
    removed = [s for s in all_steps if s not in keep]
    for s in removed:
        _discard(checkpoint_dir(run_dir) / f"{PREFIX}{s:08d}")
    return removed


def _verify(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(meta, state) of one checkpoint directory; raises ValueError describing any corruption."""
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable {META}: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"format {meta.get('format')!r} is not {FORMAT}")
    state_path = path / STATE
    if not state_path.is_file():
        raise ValueError(f"{STATE} missing")
    digest = sha256_file(state_path)
    if digest != meta.get("sha256"):
        raise ValueError(f"{STATE} sha256 {digest[:12]}… does not match meta.json {str(meta.get('sha256'))[:12]}…")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "corrupt"
        raise ValueError(f"{STATE} does not load: {exc}") from exc
    return meta, state


def intact(run_dir: Path, step: int, identity: dict[str, Any]) -> bool:
    """Whether the checkpoint of ``step`` exists, belongs to ``identity`` and matches its recorded sha256."""
    path = checkpoint_dir(run_dir) / f"{PREFIX}{step:08d}"
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        return (meta.get("format") == FORMAT and meta.get("identity") == identity
                and sha256_file(path / STATE) == meta.get("sha256"))
    except (OSError, json.JSONDecodeError):
        return False


def load_latest(run_dir: Path, identity: dict[str, Any], before: int | None = None) -> Loaded | None:
    """The newest verified checkpoint (with step < ``before`` when given), or None when there is none.

    Corrupt checkpoints are passed over (and reported in ``rejected``); one whose identity (model shape,
    dataset version) differs from ``identity`` raises CheckpointError.
    """
    rejected: list[str] = []
    for step in reversed(steps(run_dir)):
        if before is not None and step >= before:
            continue
        path = checkpoint_dir(run_dir) / f"{PREFIX}{step:08d}"
        try:
            meta, state = _verify(path)
        except ValueError as exc:
            rejected.append(f"{path.name}: {exc}")
            continue
        if meta.get("identity") != identity:
            diff = {
                k: (meta.get("identity", {}).get(k), identity.get(k))
                for k in sorted(set(identity) | set(meta.get("identity", {})))
                if meta.get("identity", {}).get(k) != identity.get(k)
            }
            raise CheckpointError(
                f"checkpoint {path} was made for a different run (checkpoint vs requested: {diff}). "
                f"Use a new --out directory, or the original settings, to resume it."
            )
        return Loaded(step, path, state, tuple(rejected))
    if rejected:
        raise CheckpointError(
            f"no checkpoint under {checkpoint_dir(run_dir)} verifies: {'; '.join(rejected)}. "
            "Delete the run directory to start over."
        )
    return None
