"""``python -m pipelines.build``: raw documents → a published, versioned dataset (see README).

The Beam graph writes every file of the new version into a private staging directory; only after
the pipeline has finished does the driver check that every input document is accounted for, write
the manifest, rename the staging directory into ``versions/`` and point ``LATEST`` at it. A build
killed at any point before that leaves nothing visible, and the next build starts afresh.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines import beamlog, worker

if __name__ == "__main__":
    beamlog.quiet_beam_chatter(worker=False)
    # Before this process imports Beam (~1.7 s), so that the workers import beside it (pipelines/worker.py).
    worker.start_early(sys.argv[1:])

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsSingleton

import metrics
from pipelines import bpe, memory, packed, readers, runner, shards, transit
from pipelines import transforms as T
from pipelines.config import STAGES, BuildConfig, load_config, to_dict
from pipelines.dedup import DATASKETCH_SCHEME, SHINGLE_HASH, s_curve
from pipelines.transit import CheckedGroupByKey
from pipelines.versions import summary

STAGING = ".staging"
OWNER = "owner.json"  # in a staging directory: the build writing it (see _owner_dead)
STALE_STAGING_SECONDS = 7 * 24 * 3600
# The first 4 bytes of every fastText model file (FASTTEXT_FILEFORMAT_MAGIC_INT32, little-endian).
FASTTEXT_MAGIC = (793712314).to_bytes(4, "little")


def expand_inputs(spec: str) -> list[str]:
    """Comma-separated files, globs or directories → sorted, de-duplicated file paths.

    A directory's hidden (``.``) and ``_`` files are skipped, as Spark, Hadoop and Arrow readers skip
    them: they are the writers' bookkeeping (``_SUCCESS``, ``.part-00000.parquet.crc``), not data.
    """
    patterns = [p.strip() for p in spec.split(",") if p.strip()]
    if not patterns:
        raise ValueError(f"--input {spec!r} names no files")
    paths: set[str] = set()
    for pattern in patterns:
        directory = os.path.isdir(pattern)
        if directory:
            pattern = os.path.join(pattern, "*")
        matches = FileSystems.match([pattern])[0].metadata_list
        files = [m.path if "://" in m.path else os.path.abspath(m.path)
                 for m in matches if not os.path.isdir(m.path)
                 and not (directory and os.path.basename(m.path).startswith((".", "_")))]
        if not files:
            skipped = " (hidden and _ files skipped)" if directory else ""
            raise FileNotFoundError(f"no input files match {pattern!r}{skipped}")
        for path in files:
            # Beam's coders and the Parquet `source` column need UTF-8; such a name would crash the build.
            if readers.has_lone_surrogate(path):
                raise ValueError(f"{path!r}: file name is not valid UTF-8; rename the file")
        paths.update(files)
    return sorted(paths)


def check_model_files(config: BuildConfig) -> None:
    """The fastText models the workers load once the pipeline runs: a bad path is a usage error now."""
    models = []
    if "langid" in config.stages and config.langid.model_path:
        models.append(("langid.model_path", config.langid.model_path))
    if "quality" in config.stages and config.quality.classifier_model:
        models.append(("quality.classifier_model", config.quality.classifier_model))
    for key, path in models:
        try:
            with open(path, "rb") as handle:
                magic = handle.read(len(FASTTEXT_MAGIC))
        except OSError as err:
            raise ValueError(f"{key} {path!r}: {err.strerror or err}") from err
        if magic != FASTTEXT_MAGIC:
            raise ValueError(f"{key} {path!r} is not a fastText model file")


def check_tokenizer_file(config: BuildConfig) -> None:
    """A ``--tokenizer`` / ``tokenizer.path`` that cannot be loaded, as a usage error before any work."""
    path = config.tokenizer.path
    if not path or "tokenize" not in config.stages:
        return
    try:
        with FileSystems.open(path) as handle:
            payload = handle.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--tokenizer (tokenizer.path) {path!r}: {getattr(err, 'strerror', None) or err}") from err
    try:
        bpe.tokenizer_from_json(payload)
    # ``tokenizers`` raises a plain Exception for JSON that is not a tokenizer.
    except Exception as err:
        reason = " ".join(str(err).split())
        raise ValueError(f"--tokenizer (tokenizer.path) {path!r} is not a usable tokenizer.json: {reason}") from err


def writable_directory(path: Path, what: str) -> None:
    """Creates ``path`` if need be; a file there, or a root nothing can be written under, is a usage error."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{what} {path}: cannot create the directory: {err.strerror or err}") from err
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: directory is not writable")


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        label = f"tokenmill {version('tokenmill')}"
    except PackageNotFoundError:
        label = "tokenmill (not installed)"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10).stdout
        return f"{label} git:{commit}{'+dirty' if dirty.strip() else ''}"
    except (OSError, subprocess.SubprocessError):
        return label


# ------------------------------------------------------------------------------------ the graph


def construct(pipeline: beam.Pipeline, config: BuildConfig, inputs: list[str], staging: str) -> None:
    spread = not all(readers.splittable(path) for path in inputs)
    batches, dead_letter, digests = (
        pipeline | "Inputs" >> beam.Create(inputs) | "Read" >> T.ReadInputs(config.input, spread))
    statistics = [batches | "CountParsed" >> beam.ParDo(T.SumPerBundle(T.parsed_statistics))]

    text_stages: list[T.DocStage] = [T.InputCheck(config.input)]
    if "langid" in config.stages:
        text_stages.append(T.LangIdStage(config.langid))
    if "quality" in config.stages:
        text_stages.append(T.QualityStage(config.quality))
    docs, dropped = T.run_stages(batches, text_stages)
    rejected = [dropped]
    if "dedup" in config.stages:
        docs, dropped, unconverged = docs | "Dedup" >> T.Deduplicate(config.dedup)
        rejected.append(dropped)
        statistics.append(unconverged)
    if "pii" in config.stages:
        docs, dropped = T.run_stage(docs, T.PiiStage(config.pii))
        rejected.append(dropped)

    doc_count = None
    if "tokenize" in config.stages:
        # Encoding passes every document on: counted before it, their file assignment fuses into it.
        doc_count = docs | "CountDocs" >> T.CountRows("count/docs")
        payload = T.tokenizer_json(docs, config.tokenizer, pipeline, config.seed)
        _ = payload | "WriteTokenizer" >> beam.ParDo(T.WriteText(f"{staging}/tokenizer.json"))
        encoded = (
            docs
            | "PackDocs" >> beam.Map(packed.pack)
            | "Batch" >> beam.BatchElements(min_batch_size=config.tokenizer.batch_size,
                                            max_batch_size=config.tokenizer.batch_size)
            | "Encode" >> beam.ParDo(T.Encode(), AsSingleton(payload)).with_outputs("tokens", main="docs")
        )
        docs = encoded.docs
        if "pack" in config.stages:
            meta = payload | "TokenizerMeta" >> beam.Map(T.tokenizer_meta)
            shard_infos = T.pack_shards(encoded.tokens, meta, staging, config.pack)
            _ = (shard_infos | "ShardList" >> beam.combiners.ToList().without_defaults()
                 | "WriteShardList" >> beam.ParDo(T.WriteJson(f"{staging}/_shards.json")))

    per_file = config.output.rows_per_file
    schemas = {"docs": T.docs_schema(config), "rejected": T.rejected_schema(config),
               "dead_letter": T.DEAD_LETTER_SCHEMA}
    assigned = (
        *(docs | "FileDocs" >> T.AssignParquetFiles("docs", per_file, doc_count)),
        # Each source of rejects is packed and counted where it is made, never flattened as documents.
        *(tuple(rejected) | "FileRejected" >> T.AssignParquetFiles("rejected", per_file)),
        *(dead_letter | "FileDeadLetter" >> T.AssignParquetFiles("dead_letter", per_file)),
    )
    _ = assigned | "WriteFiles" >> T.WriteParquetFiles(staging, schemas)
    # The lists have no default (a runner stage each): publishing reads a missing list as empty.
    _ = (digests | "InputList" >> beam.combiners.ToList().without_defaults()
         | "WriteInputList" >> beam.ParDo(T.WriteJson(f"{staging}/_inputs.json")))

    # Summed per bundle where the records are (one row per key and bundle, not ~10 per document), then
    # grouped straight from there (a Flatten before a grouping costs no stage of its own, see runner.py).
    statistics += [
        docs | "KeptStats" >> beam.ParDo(T.SumPerBundle(T.kept_statistics)),
        *(source | f"RejectedStats[{i}]" >> beam.ParDo(T.SumPerBundle(T.rejected_statistics))
          for i, source in enumerate(rejected)),
        dead_letter | "DeadLetterStats" >> beam.ParDo(T.SumPerBundle(T.dead_letter_statistics)),
    ]
    _ = (
        tuple(statistics)
        | "SumStats" >> CheckedGroupByKey("statistics")
        | "StatRows" >> beam.MapTuple(lambda key, counts: [*key, sum(counts)])
        | "StatList" >> beam.combiners.ToList().without_defaults()
        | "WriteStats" >> beam.ParDo(T.WriteJson(f"{staging}/_stats.json"))
    )


# ------------------------------------------------------------------------------------ publishing


@dataclass(frozen=True)
class BuildResult:
    version: str
    path: Path
    manifest: dict[str, Any]
    reused: bool


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else default


def _take_json(path: Path, default: Any) -> Any:
    data = _read_json(path, default)
    path.unlink(missing_ok=True)
    return data


class AccountingError(RuntimeError):
    """The build's documents do not add up; the staging directory is left in place as evidence."""

    def __init__(self, staging: Path, counts: dict[str, int], per_stage: dict[str, Any], problems: list[str]):
        lines = [f"document accounting does not add up, refusing to publish: {counts}", *problems,
                 "per stage (in → kept, rejected by reason):"]
        lines += [f"  {stage:<9} {n['in']:>10,} → {n['kept']:>10,}  {n['rejected']}" for stage, n in per_stage.items()]
        lines.append(f"staged files kept for inspection in {staging} (removed by the next build)")
        super().__init__("\n".join(lines))
        self.staging, self.counts, self.problems = staging, counts, problems


class TransitError(RuntimeError):
    """The runner lost records between stages (see pipelines/transit.py); nothing is published."""

    def __init__(self, staging: Path, problems: list[str]):
        lines = ["the runner lost records between pipeline stages, refusing to publish:",
                 *(f"  {problem}" for problem in problems),
                 "the input is intact; rerunning the build is safe",
                 f"staged files kept for inspection in {staging} (removed by the next build)"]
        super().__init__("\n".join(lines))
        self.staging, self.problems = staging, problems


def _parquet_rows(folder: Path) -> int:
    return sum(pq.ParquetFile(path).metadata.num_rows for path in folder.glob("*.parquet"))


def accounting_problems(staging: Path, counts: dict[str, int], inputs: list[dict]) -> list[str]:
    """Checks the counts three independent ways: the statistics add up, they match the rows actually
    written, and they match what the readers saw in each input file."""
    problems = []
    if counts["input"] != counts["kept"] + counts["rejected"] + counts["dead_letter"]:
        missing = counts["input"] - counts["kept"] - counts["rejected"] - counts["dead_letter"]
        problems.append(f"input - kept - rejected - dead_letter = {missing:,}")
    for folder, name in (("docs", "kept"), ("rejected", "rejected"), ("dead_letter", "dead_letter")):
        written = _parquet_rows(staging / folder)
        if written != counts[name]:
            problems.append(f"{folder}/ holds {written:,} rows but the statistics count {counts[name]:,} {name}")
    read = sum(i["records"] + i["dead_letters"] for i in inputs)
    if read != counts["input"]:
        problems.append(f"the readers saw {read:,} records in {len(inputs)} input files, "
                        f"the statistics count {counts['input']:,}")
    return problems


def stage_counts(stats: list[list], stages: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, int]]:
    table: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for stage, name, key, value in stats:
        table[(stage, name)][key] = value
    parsed = table[("read", "parsed")].get("", 0)
    dead = sum(table[("read", "dead_letter")].values())
    per_stage: dict[str, Any] = {}
    flowing = parsed
    for stage in ("input", *stages):
        dropped = dict(sorted(table[(stage, "rejected")].items()))
        kept = flowing - sum(dropped.values())
        per_stage[stage] = {"in": flowing, "kept": kept, "rejected": dropped}
        flowing = kept
    counts = {
        "input": parsed + dead,
        "kept": table[("output", "kept")].get("", 0),
        "rejected": sum(sum(v.values()) for (_, name), v in table.items() if name == "rejected"),
        "dead_letter": dead,
    }
    return per_stage, counts


def _ensure_parquet(folder: Path, schema) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.glob("*.parquet")):
        (folder / "part-00000-of-00001.parquet").write_bytes(T.parquet_bytes([], schema))


def staged_checksums(staging: Path) -> dict[str, str]:
    """sha256 of every file the version will publish, by path relative to ``staging``, in digest order."""
    return {str(path.relative_to(staging)): shards.sha256_file(path)
            for path in sorted(p for p in staging.rglob("*") if p.is_file() and p != staging / OWNER)}


def content_digest(checksums: dict[str, str], config: dict, inputs: list) -> str:
    """A digest over every published file and the build's config and inputs: the version name."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(json.dumps({"config": config, "inputs": inputs}, sort_keys=True).encode())
    for path, sha256 in checksums.items():
        digest.update(path.encode() + b"\0" + sha256.encode())
    return digest.hexdigest()


def _table_file(staging: Path, path: Path, checksums: dict[str, str]) -> dict[str, Any]:
    relative = str(path.relative_to(staging))
    return {"path": relative, "sha256": checksums[relative], "rows": pq.read_metadata(path).num_rows}


def _reuse(staging: Path, data_dir: Path, final: Path) -> BuildResult:
    """The version already exists: its name is the digest of this build's content, so it is the same."""
    shutil.rmtree(staging)
    shards.write_latest(data_dir, final.name)
    return BuildResult(final.name, final, shards.read_manifest(final), reused=True)


def publish(staging: Path, data_dir: Path, config: BuildConfig, parent: str | None,
            started: float) -> BuildResult:
    stats = _read_json(staging / "_stats.json", [])
    inputs = readers.merge_digests(_read_json(staging / "_inputs.json", []))
    per_stage, counts = stage_counts(stats, config.stages)
    problems = accounting_problems(staging, counts, inputs)
    if problems:
        raise AccountingError(staging, counts, per_stage, problems)
    for name in ("_stats.json", "_inputs.json"):
        (staging / name).unlink(missing_ok=True)
    shard_list = sorted(_take_json(staging / "_shards.json", []), key=lambda s: s["path"])
    _ensure_parquet(staging / "docs", T.docs_schema(config))
    _ensure_parquet(staging / "rejected", T.rejected_schema(config))
    _ensure_parquet(staging / "dead_letter", T.DEAD_LETTER_SCHEMA)

    resolved = to_dict(config)
    # Hashing a large version takes minutes; all along, owner.json tells other builds we are alive.
    checksums = staged_checksums(staging)
    name = "v" + content_digest(checksums, resolved, inputs)[:16]
    final = data_dir / shards.VERSIONS / name
    if (final / shards.MANIFEST).is_file():
        return _reuse(staging, data_dir, final)

    tokenizer = None
    if (staging / "tokenizer.json").is_file():
        meta = T.tokenizer_meta((staging / "tokenizer.json").read_text(encoding="utf-8"))
        tokenizer = {"sha256": meta["sha256"], "vocab_size": meta["vocab_size"], "eos_id": meta["eos_id"],
                     "pad_id": meta["pad_id"], "path": "tokenizer.json"}
    distributions: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for stage, stat, key, value in stats:
        if stat not in ("parsed", "rejected", "dead_letter", "kept"):
            distributions[stage][stat][key] = value
    dedup_cfg = config.dedup
    manifest = {
        "version": name,
        "parent": parent if parent != name else None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(time.time() - started, 2),
        "code_version": code_version(),
        "config": resolved,
        "inputs": inputs,
        "counts": counts,
        "stages": per_stage,
        "distributions": {s: {k: dict(sorted(v.items())) for k, v in d.items()} for s, d in distributions.items()},
        "dedup": {
            "library": "datasketch 2.0.0",
            "scheme": DATASKETCH_SCHEME,
            "shingle_hash": SHINGLE_HASH,
            "num_perm": dedup_cfg.num_perm, "bands": dedup_cfg.bands, "rows": dedup_cfg.rows,
            "threshold": dedup_cfg.threshold, "ngram": dedup_cfg.ngram, "seed": dedup_cfg.seed,
            "s_curve": {f"{s:.1f}": round(s_curve(s, dedup_cfg.bands, dedup_cfg.rows), 4)
                        for s in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)},
        } if "dedup" in config.stages else None,
        "tokenizer": tokenizer,
        "seq_len": config.pack.seq_len if "pack" in config.stages else None,
        "shards": [{k: s[k] for k in ("path", "sha256", "rows", "tokens", "documents")} for s in shard_list],
        "files": {folder: [_table_file(staging, path, checksums)
                           for path in sorted((staging / folder).glob("*.parquet"))] for folder in shards.TABLES},
    }
    tmp = staging / f".{shards.MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, staging / shards.MANIFEST)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Last, so that no concurrent build's pruning takes this for a dead build's folder before now.
    (staging / OWNER).unlink(missing_ok=True)
    try:
        os.rename(staging, final)
    except OSError:
        if not (final / shards.MANIFEST).is_file():
            raise
        return _reuse(staging, data_dir, final)  # an identical build renamed the same version first
    shards.write_latest(data_dir, name)
    return BuildResult(name, final, manifest, reused=False)


def record_metrics(home: Path, result: BuildResult) -> None:
    manifest = result.manifest
    rows = []
    for stage, numbers in manifest["stages"].items():
        rows.append(metrics.MetricRow("pipeline", result.version, stage, "in", numbers["in"]))
        rows.append(metrics.MetricRow("pipeline", result.version, stage, "kept", numbers["kept"]))
        for reason, n in numbers["rejected"].items():
            rows.append(metrics.MetricRow("pipeline", result.version, stage, "rejected", n, key=reason))
    for stage, named in manifest["distributions"].items():
        for name, buckets in named.items():
            for key, n in buckets.items():
                rows.append(metrics.MetricRow("pipeline", result.version, stage, name, n, key=key))
    rows.append(metrics.MetricRow("pipeline", result.version, "read", "dead_letter",
                                  manifest["counts"]["dead_letter"]))
    metrics.MetricsStore(home).append(rows)


def _prune_stale_staging(data_dir: Path) -> None:
    """Remove staging dirs of builds that died (their process is gone) or that are very old."""
    root = data_dir / STAGING
    if not root.is_dir():
        return
    for folder in root.iterdir():
        age = time.time() - folder.stat().st_mtime
        if _owner_dead(folder, age) or age > STALE_STAGING_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)


def _owner_dead(folder: Path, age: float) -> bool:
    try:
        owner = json.loads((folder / OWNER).read_text())
    except (OSError, ValueError):
        # A build writes owner.json right after creating its folder; give it a minute.
        return age > 60
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int) or not 0 < pid < 2**31:
        return False  # another machine's build, or not a pid: left to the age limit
    return not worker.process_exists(pid)


def build(config: BuildConfig, inputs: list[str], data_dir: Path, beam_args: list[str],
          home: Path | None = None) -> BuildResult:
    started = time.time()
    data_dir.mkdir(parents=True, exist_ok=True)
    _prune_stale_staging(data_dir)
    parent = shards.latest_version(data_dir)
    staging = data_dir / STAGING / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    for folder in ("docs", "rejected", "dead_letter", "shards"):
        (staging / folder).mkdir(parents=True)
    (staging / OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    if not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        # Worker processes log every bundle at INFO; a build's own summary is what users read.
        beam_args = [*beam_args, "--default_sdk_harness_log_level=WARNING"]
    memory.limit_malloc_arenas()  # before any worker process starts: they inherit it
    pipeline = runner.make_pipeline(beam_args)
    # The workers import while the graph is built and translated (pipelines/worker.py).
    with worker.standby_workers(runner.local_worker_processes(pipeline.options)), runner.introspection_memoized():
        construct(pipeline, config, inputs, str(staging))
        transit.avoid_runner_flush_race()
        with memory.releasing_free_memory():
            run = pipeline.run()
            state = run.wait_until_finish()
    if state not in (None, "DONE"):
        raise RuntimeError(f"pipeline finished in state {state}; nothing published")
    lost = transit.problems(run, pipeline)
    if lost:
        raise TransitError(staging, lost)
    if not any((staging / "shards").iterdir()):
        (staging / "shards").rmdir()
    result = publish(staging, data_dir, config, parent, started)
    if home is not None:
        record_metrics(home, result)
    return result


# ------------------------------------------------------------------------------------ CLI


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.build",
        description="Build a versioned dataset: langid, quality, dedup, pii, tokenize, pack. "
                    "Unknown options go to Beam (e.g. --runner, --direct_num_workers).",
    )
    parser.add_argument("--home", help="workspace root (env TOKENMILL_HOME, default: current directory)")
    parser.add_argument("--input", help="file, glob, directory or comma list (default: the bundled sample)")
    parser.add_argument("--output", help="dataset directory (default: <home>/data)")
    parser.add_argument("--stages", help=f"comma subset of {','.join(STAGES)} (always run in that order)")
    parser.add_argument("--config", help="TOML config file")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override any config value, e.g. --set quality.min_words=30")
    parser.add_argument("--text-field")
    parser.add_argument("--id-field")
    parser.add_argument("--seq-len", type=int)
    parser.add_argument("--vocab-size", type=int)
    parser.add_argument("--tokenizer", help="reuse this tokenizer.json instead of training one")
    parser.add_argument("--seed", type=int, help="salts the tokenizer training sample")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    return parser.parse_known_args(argv)


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    flag_map = {"stages": "stages", "text_field": "input.text_field", "id_field": "input.id_field",
                "seq_len": "pack.seq_len", "vocab_size": "tokenizer.vocab_size", "tokenizer": "tokenizer.path",
                "seed": "seed"}
    for flag, key in flag_map.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    return load_config(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    args, beam_args = parse_args(argv)
    beamlog.quiet_worker_relay()
    try:
        config = config_from_args(args)
    except ValueError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    try:
        check_model_files(config)
        check_tokenizer_file(config)
    except ValueError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    home = shards.workspace_home(args.home)
    data_dir = Path(args.output).resolve() if args.output else home / "data"
    # An empty --input is a mistake (an unset variable, say), never a request for the bundled sample.
    if args.input is not None:
        try:
            inputs = expand_inputs(args.input)
        except (FileNotFoundError, ValueError) as err:
            print(f"input error: {err}", file=sys.stderr)
            return 2
    else:
        from pipelines.sample import SAMPLE_CORPUS

        inputs = [str(SAMPLE_CORPUS)]
    try:
        for path in inputs:
            readers.detect_format(path)
    except ValueError as err:
        print(f"input error: {err}", file=sys.stderr)
        return 2
    try:
        # The build's metrics go under the home, after the version is published: too late to fail.
        writable_directory(home, "--home" if args.home else "workspace home")
        writable_directory(data_dir, "--output" if args.output else "data directory")
    except ValueError as err:
        print(f"output error: {err}", file=sys.stderr)
        return 2
    try:
        result = build(config, inputs, data_dir, beam_args, home)
    except (AccountingError, TransitError) as err:
        print(f"build failed: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result.manifest, indent=2) if args.json else
          summary(result.manifest, result.path, "reused existing" if result.reused else "published"))
    if result.manifest["counts"]["input"] == 0:
        # Published all the same: an empty input is not invalid, but it is rarely what was meant.
        print(f"warning: the inputs hold no documents; version {result.version} is empty and is now LATEST",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    # Done: the version is published, files closed, threads joined and the standbys gone.
    worker.exit_now(main())
