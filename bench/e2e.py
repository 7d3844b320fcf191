"""End-to-end builds: ``python -m pipelines.build`` as a subprocess at several corpus sizes.

Each build runs all stages on DirectRunner in multi-processing mode with 2 workers, in a fresh temporary
workspace. While it runs, the resident memory of the whole process tree (the build and Beam's worker
subprocesses) is sampled every 0.2 s with psutil and summed; the peak is reported. CPU seconds come from
``getrusage(RUSAGE_CHILDREN)`` around the build (the build's waited-for descendants included).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TARGET_DOCS_PER_CORE = 250.0
TARGET_PEAK_RSS_GB = 3.0  # at 100k documents
CORES = 2
REPO = Path(__file__).resolve().parents[1]


@dataclass
class BuildRun:
    docs: int
    wall_s: float
    cpu_s: float
    peak_rss: int  # bytes, summed over the process tree
    peak_main_rss: int  # bytes, the build process alone
    peak_procs: int
    returncode: int
    counts: dict
    stages: dict
    tail: str
    timeline: dict | None = None  # from bench.timed_build: each fused stage's wall time
    home: Path | None = None
    samples: list[tuple[float, int, int]] | None = None  # (epoch s, build process RSS, tree RSS) every 0.2 s

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.wall_s

    @property
    def kept(self) -> int:
        return self.counts.get("kept", 0)


class TreeSampler(threading.Thread):
    """Peak of the summed RSS of a process and all its descendants, sampled every ``interval`` s."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.peak_main = 0  # the build's own process: the runner, which holds DirectRunner's shuffles
        self.peak_procs = 0
        self.samples: list[tuple[float, int, int]] = []  # (epoch s, build process RSS, tree RSS)
        self.cpu: dict[int, float] = {}  # pid -> latest CPU seconds seen (user + system)
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop_event.is_set():
            total, procs, main = 0, 0, 0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for proc in tree:
                try:
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                    self.cpu[proc.pid] = times.user + times.system
                    total += rss
                    procs += 1
                    if proc is root:
                        main = rss
                        self.peak_main = max(self.peak_main, rss)
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    pass
            if total > self.peak:
                self.peak = total
            self.peak_procs = max(self.peak_procs, procs)
            self.samples.append((time.time(), main, total))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


@dataclass
class TreeRun:
    wall_s: float
    cpu_s: float
    peak_rss: int
    peak_main_rss: int
    peak_procs: int
    returncode: int
    tail: str
    samples: list[tuple[float, int, int]]


def run_tree(
    cmd: list[str],
    log_path: Path,
    cwd: Path | None = None,
    timeout: float | None = None,
    env: dict | None = None,
) -> TreeRun:
    """Run ``cmd``, sampling the RSS of its process tree; its output goes to ``log_path``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd or REPO, env=env)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            returncode = proc.wait()
        finally:
            sampler.stop()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Descendants that their parent never waited for (forkserver workers) escape getrusage; the
    # sampler saw them until their last 0.2 s.
    cpu = max(
        (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), sum(sampler.cpu.values())
    )
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
    return TreeRun(wall, cpu, sampler.peak, sampler.peak_main, sampler.peak_procs, returncode, tail,
                   sampler.samples)


def build_command(inputs: str, home: Path, extra: list[str] | None = None) -> list[str]:
    # bench.timed_build is pipelines.build's main() plus a log handler that times each fused stage.
    return [
        sys.executable,
        "-m",
        "bench.timed_build",
        "--input",
        inputs,
        "--home",
        str(home),
        "--runner",
        "DirectRunner",
        "--direct_running_mode",
        "multi_processing",
        "--direct_num_workers",
        str(CORES),
        *(extra or []),
    ]


def run_build(
    corpus: Path | str,
    docs: int,
    workdir: Path,
    extra: list[str] | None = None,
    timeout: float | None = None,
    name: str | None = None,
) -> BuildRun:
    from pipelines import shards

    home = workdir / (name or f"build-{docs}")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    stage_log = home / "stages.json"
    env = {**os.environ, "TOKENMILL_BENCH_STAGE_LOG": str(stage_log)}
    run = run_tree(build_command(str(corpus), home, extra), home / "build.log", timeout=timeout, env=env)
    timeline = json.loads(stage_log.read_text(encoding="utf-8")) if stage_log.is_file() else None
    counts: dict = {}
    stages: dict = {}
    data = home / "data"
    version = shards.latest_version(data) if data.is_dir() else None
    if run.returncode == 0 and version:
        manifest = shards.read_manifest(data / shards.VERSIONS / version)
        counts, stages = manifest["counts"], manifest["stages"]
    return BuildRun(
        docs,
        run.wall_s,
        run.cpu_s,
        run.peak_rss,
        run.peak_main_rss,
        run.peak_procs,
        run.returncode,
        counts,
        stages,
        run.tail,
        timeline,
        home,
        run.samples,
    )


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        root = psutil.Process(pid)
        for child in root.children(recursive=True):
            child.kill()
        root.kill()
    except psutil.NoSuchProcess:
        pass


def run(
    corpora: dict[int, Path],
    workdir: Path | None = None,
    keep: bool = False,
    timeout: float | None = None,
    log: Callable[[str], None] = print,
) -> list[BuildRun]:
    own = workdir is None
    keep_failed = False
    workdir = Path(workdir or tempfile.mkdtemp(prefix="tokenmill-bench-"))
    results = []
    try:
        for docs, corpus in sorted(corpora.items()):
            log(f"  building {docs:,} documents ...")
            result = run_build(corpus, docs, workdir, timeout=timeout)
            if result.returncode != 0:
                keep_failed = True
                log(
                    f"  build of {docs:,} documents failed (exit {result.returncode}); its workspace is kept "
                    f"at {result.home}:\n{result.tail}"
                )
            else:
                log(
                    f"  {docs:,} documents: {result.wall_s:.1f} s, peak RSS {result.peak_rss / 2**30:.2f} GiB"
                )
                if not keep:
                    shutil.rmtree(workdir / f"build-{docs}", ignore_errors=True)
            results.append(result)
    finally:
        if own and not keep and not keep_failed:
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def tables(results: list[BuildRun]) -> str:
    from bench.report import table

    ok = [r for r in results if r.returncode == 0]
    rows = []
    for r in results:
        if r.returncode != 0:
            rows.append([r.docs, f"failed ({r.returncode})", None, None, None, None, None, None, None])
            continue
        per_core = r.docs_per_s / CORES
        rows.append(
            [
                r.docs,
                r.wall_s,
                r.docs_per_s,
                per_core,
                "ok" if per_core >= TARGET_DOCS_PER_CORE else "missed",
                f"{r.cpu_s / r.wall_s:.2f}",
                f"{r.peak_rss / 2**30:.2f}",
                f"{r.peak_main_rss / 2**30:.2f}",
                r.peak_procs,
            ]
        )
    first = table(
        [
            "docs",
            "wall s",
            "docs/s",
            f"docs/s per core ({CORES} cores)",
            f"target >= {TARGET_DOCS_PER_CORE:.0f}/core",
            "cores busy (CPU s / wall s)",
            "peak RSS GiB (tree)",
            "of which runner process GiB",
            "processes",
        ],
        rows,
    )

    rows = []
    for r in ok:
        c = r.counts
        rejected_by = {stage: sum(v["rejected"].values()) for stage, v in r.stages.items()}
        rows.append(
            [
                r.docs,
                c.get("input"),
                c.get("kept"),
                f"{c.get('kept', 0) / max(1, r.docs):.1%}",
                c.get("rejected"),
                c.get("dead_letter"),
                ", ".join(f"{s} {n:,}" for s, n in rejected_by.items() if n) or "-",
            ]
        )
    second = table(
        ["docs", "input", "kept", "kept fraction", "rejected", "dead letters", "rejected by stage"], rows
    )

    parts = [first, second]
    if len(ok) >= 2:
        small, large = ok[0], ok[-1]
        size_ratio = large.docs / small.docs
        rss_ratio = large.peak_rss / max(1, small.peak_rss)
        rss_ok = "sub-linear" if rss_ratio < size_ratio else "NOT sub-linear"
        at_large = large.peak_rss / 2**30
        parts.append(
            table(
                ["", "value", "target"],
                [
                    [f"size ratio {large.docs:,}/{small.docs:,}", f"{size_ratio:.1f}x", ""],
                    ["peak RSS ratio", f"{rss_ratio:.2f}x", f"< size ratio ({rss_ok})"],
                    [
                        f"peak RSS at {large.docs:,}",
                        f"{at_large:.2f} GiB",
                        f"< {TARGET_PEAK_RSS_GB:.0f} GB at 100k"
                        + (" (ok)" if at_large * 2**30 / 1e9 < TARGET_PEAK_RSS_GB else " (missed)"),
                    ],
                ],
            )
        )
    timed = [r for r in ok if r.timeline and r.timeline.get("stages")]
    if timed:
        parts.append(timeline_table(timed[-1]))
    return "\n\n".join(parts)


def stage_memory(run: BuildRun) -> dict[str, tuple[int, int]]:
    """Per fused stage label: the peak (tree RSS, build process RSS) sampled while it ran."""
    timeline, samples = run.timeline or {}, run.samples or []
    epoch = timeline.get("epoch")
    if epoch is None:
        return {}
    peaks: dict[str, tuple[int, int]] = {}
    for stage in timeline["stages"]:
        start = epoch + stage["start"]
        during = [(tree, main) for t, main, tree in samples if start <= t < start + stage["seconds"]]
        if during:
            tree, main = max(t for t, _ in during), max(m for _, m in during)
            old = peaks.get(stage["stage"], (0, 0))
            peaks[stage["stage"]] = (max(old[0], tree), max(old[1], main))
    return peaks


def timeline_table(run: BuildRun, top: int = 10) -> str:
    """Where the wall time and memory of one build went, by fused stage (the runner runs them one at a time)."""
    from bench.report import table

    timeline = run.timeline or {}
    by_stage: dict[str, float] = {}
    for stage in timeline["stages"]:
        by_stage[stage["stage"]] = by_stage.get(stage["stage"], 0.0) + stage["seconds"]
    memory = stage_memory(run)
    ranked = sorted(by_stage.items(), key=lambda kv: -kv[1])
    # The stages that held the most memory are listed even when they were quick.
    shown = [name for name, _ in ranked[:top]]
    shown += [name for name, _ in sorted(memory.items(), key=lambda kv: -kv[1][0])[:3] if name not in shown]

    def gib(name: str, which: int) -> str:
        return f"{memory[name][which] / 2**30:.2f}" if name in memory else "-"

    rows = [["start-up: imports, graph, runner (before the first stage)", timeline.get("first_bundle") or 0.0,
             "-", "-"]]
    rows += [[name, by_stage[name], gib(name, 0), gib(name, 1)] for name in shown]
    rest = [name for name in by_stage if name not in shown]
    rows.append([f"{len(rest)} other stages", sum(by_stage[name] for name in rest),
                 f"{max((memory[n][0] for n in rest if n in memory), default=0) / 2**30:.2f}",
                 f"{max((memory[n][1] for n in rest if n in memory), default=0) / 2**30:.2f}"])
    total = run.wall_s
    return (
        f"Where the {run.docs:,}-document build's {total:.0f} s and memory went, by fused stage (the runner "
        "runs one stage at a time, each split over the workers; the last stage's time includes publishing; "
        "peak RSS sampled every 0.2 s while the stage ran):\n\n"
        + table(
            ["fused stage (its transforms)", "wall s", "share", "peak RSS GiB (tree)", "of which runner GiB"],
            [[name, seconds, f"{seconds / total:.0%}", tree, main] for name, seconds, tree, main in rows],
        )
    )
