"""Read-only view of a home's dataset versions: manifests, lineage, config differences and sample documents.

The dataset contract is files (ARCHITECTURE, "Pipeline"): ``<home>/data/versions/<v>/manifest.json``,
``docs/*.parquet`` (kept documents with their annotations), ``rejected/*.parquet`` (the same plus
``stage`` and ``reason``) and ``<home>/data/LATEST``. This module reads those files directly, so the
dashboard never imports the pipeline. Parquet is queried with an in-memory DuckDB and bound parameters;
a column name, which SQL cannot bind, is only used after it is found in the file's own schema.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

# Version names are path components: anything else is refused before a path is built from it.
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# Which config thresholds decide on which document signal: (config path, rule). Mirrors the rule table
# of pipelines/quality.py (and the language-ID threshold) so the histograms can draw the lines a
# document crosses to be rejected; "min" rejects below the line, "max" above it. A path ending in
# [i] indexes a list. tests/test_dashboard_data.py checks every path resolves in a real build's config.
THRESHOLDS: dict[str, list[tuple[str, str]]] = {
    "lang_score": [("langid.threshold", "min")],
    "q_word_count": [("quality.min_words", "min"), ("quality.max_words", "max")],
    "q_mean_word_length": [("quality.min_mean_word_length", "min"), ("quality.max_mean_word_length", "max")],
    "q_hash_word_ratio": [("quality.max_symbol_word_ratio", "max")],
    "q_ellipsis_word_ratio": [("quality.max_symbol_word_ratio", "max")],
    "q_bullet_line_frac": [("quality.max_bullet_lines_frac", "max")],
    "q_ellipsis_line_frac": [("quality.max_ellipsis_lines_frac", "max")],
    "q_alpha_word_frac": [("quality.min_alpha_words_frac", "min")],
    "q_stop_word_count": [("quality.min_stop_words", "min")],
    "q_dup_line_frac": [("quality.max_dup_line_frac", "max")],
    "q_dup_para_frac": [("quality.max_dup_para_frac", "max")],
    "q_dup_line_char_frac": [("quality.max_dup_line_char_frac", "max"), ("quality.max_char_dup_ratio", "max")],
    "q_dup_para_char_frac": [("quality.max_dup_para_char_frac", "max")],
    **{f"q_top_{n}gram_char_frac": [(f"quality.max_top_ngram_char_frac[{i}]", "max")] for i, n in enumerate((2, 3, 4))},
    **{f"q_dup_{n}gram_char_frac": [(f"quality.max_dup_ngram_char_frac[{i}]", "max")]
       for i, n in enumerate(range(5, 11))},
    "q_javascript_line_frac": [("quality.max_javascript_lines_frac", "max")],
    "q_policy_line_frac": [("quality.max_policy_lines_frac", "max")],
    "q_c4_removed_line_frac": [("quality.max_c4_removed_lines_frac", "max")],
    "q_c4_sentence_count": [("quality.min_c4_sentences", "min")],
    "q_terminal_punct_line_frac": [("quality.min_terminal_punct_lines_frac", "min")],
    "q_short_line_frac": [("quality.max_short_line_frac", "max")],
    "q_newline_word_ratio": [("quality.max_list_ratio", "max")],
    "q_classifier_hq": [("quality.classifier_threshold", "min")],
}


class CatalogError(ValueError):
    """A version that does not exist, whose name could not be a version, or whose manifest is unreadable."""


class BrokenManifest(CatalogError):
    """A version directory whose manifest.json cannot be used; ``reason`` says why in a few words.

    Reasons are fixed phrases, JSON parser messages and OS error strings: never the path, and of the
    file's content at most one character a parser message quotes, so a page can show them as Markdown.
    """

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def data_root(home: str | os.PathLike[str]) -> Path:
    return Path(home) / "data"


def latest(home: str | os.PathLike[str]) -> str | None:
    """The version ``data/LATEST`` points at, or None when nothing was published."""
    path = data_root(home) / "LATEST"
    if not path.is_file():
        return None
    name = path.read_text(encoding="utf-8").strip()
    return name if _VERSION_RE.match(name) else None


def _version_dir(home: str | os.PathLike[str], version: str) -> Path:
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise CatalogError(f"not a version name: {version!r}")
    folder = data_root(home) / "versions" / version
    if not (folder / "manifest.json").is_file():
        raise CatalogError(f"no dataset version {version!r} under {data_root(home)}")
    return folder


def manifest(home: str | os.PathLike[str], version: str) -> dict[str, Any]:
    return _read_manifest(_version_dir(home, version) / "manifest.json")


def _read_manifest(path: Path) -> dict[str, Any]:
    """A manifest as the pages use it, or BrokenManifest: a corrupt one must not take a page down with it."""
    try:
        if not path.is_file():  # checked first: reading a FIFO would hang the page
            raise BrokenManifest(path, f"{path.name} is {'not a file' if path.exists() else 'missing'}")
        raw = path.read_bytes()
    except OSError as err:  # permission denied, also on the version directory itself
        raise BrokenManifest(path, f"{path.name} cannot be read ({err.strerror})") from err
    try:
        m = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise BrokenManifest(path, f"{path.name} is not UTF-8 ({err.reason} at byte {err.start})") from err
    except (ValueError, RecursionError) as err:  # not JSON, an integer too long to parse, or nested too deep
        raise BrokenManifest(path, f"{path.name} is not valid JSON ({err})") from err
    if problem := _manifest_problem(m):
        raise BrokenManifest(path, f"{path.name} is not a dataset manifest ({problem})")
    return m


# The type the pages assume of each top-level key they read, when it is there (hand-made manifests leave
# keys out); pipelines/shards.py checks the same for its own readers.
_MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "parent": (str, type(None)), "created_at": str, "counts": dict, "config": dict, "tokenizer": (dict, type(None)),
    "shards": list,
}
_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def _manifest_problem(m: Any) -> str | None:
    """What keeps the pages from using a parsed manifest; only the keys they read are checked."""
    if not isinstance(m, dict):
        return f"a JSON {_JSON_NAMES[type(m)]}, not an object"
    for key, kind in _MANIFEST_TYPES.items():
        if key in m and not isinstance(m[key], kind):
            return f"'{key}' is a JSON {_JSON_NAMES[type(m[key])]}"
    for index, shard in enumerate(m.get("shards", [])):
        if not (isinstance(shard, dict) and isinstance(shard.get("tokens", 0), int)):
            return f"shard {index} has no integer 'tokens'"
    return None


def scan_versions(home: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Published versions as :func:`versions` lists them, and the version directories left out of that
    list because their manifest is missing or unusable (name → reason, by name).

    Publishing renames a finished directory with its manifest into ``versions/``, so any directory there
    without a usable manifest was damaged afterwards: it is reported, not silently dropped. Entries whose
    name could not be a version are not versions and are skipped.
    """
    rows, broken = [], {}
    folder = data_root(home) / "versions"
    current = latest(home)
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not (_VERSION_RE.match(path.name) and path.is_dir()):
            continue
        try:
            m = _read_manifest(path / "manifest.json")
        except BrokenManifest as err:
            broken[path.name] = err.reason
            continue
        counts = m.get("counts", {})
        shards = m.get("shards", [])
        rows.append({
            "version": path.name, "parent": m.get("parent"), "created_at": m.get("created_at"),
            "input": counts.get("input"), "kept": counts.get("kept"), "rejected": counts.get("rejected"),
            "dead_letter": counts.get("dead_letter"), "shards": len(shards),
            "tokens": sum(s.get("tokens", 0) for s in shards), "latest": path.name == current,
        })
    columns = ["version", "parent", "created_at", "input", "kept", "rejected", "dead_letter", "shards", "tokens",
               "latest"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["created_at", "version"], ascending=[False, True]).reset_index(drop=True), broken


def versions(home: str | os.PathLike[str]) -> pd.DataFrame:
    """Published versions, newest first: version, parent, created_at, counts, tokens, shards, latest."""
    return scan_versions(home)[0]


def lineage(home: str | os.PathLike[str], version: str) -> list[dict[str, Any]]:
    """The version and its ancestors, child first; stops at a parent that is not in this home."""
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    current: str | None = version
    while current and current not in seen:
        seen.add(current)
        try:
            m = manifest(home, current)
        except CatalogError:
            chain.append({"version": current, "created_at": None, "code_version": None, "present": False})
            break
        chain.append({"version": current, "created_at": m.get("created_at"), "code_version": m.get("code_version"),
                      "present": True})
        current = m.get("parent")
    return chain


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists stay whole (they are compared as values)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_diff(home: str | os.PathLike[str], a: str, b: str) -> pd.DataFrame:
    """Config settings (and code version, tokenizer) that differ between two versions: key, a, b."""
    def view(m: dict[str, Any]) -> dict[str, Any]:
        return flatten({"config": m.get("config", {}), "code_version": m.get("code_version"),
                        "tokenizer": {k: v for k, v in (m.get("tokenizer") or {}).items() if k != "path"}})

    left, right = view(manifest(home, a)), view(manifest(home, b))
    rows = [{"key": k, a: json.dumps(left.get(k)), b: json.dumps(right.get(k))}
            for k in sorted(set(left) | set(right)) if left.get(k) != right.get(k)]
    return pd.DataFrame(rows, columns=["key", a, b] if a != b else ["key", a])


def _config_value(config: dict[str, Any], path: str) -> float | None:
    match = re.match(r"^(.*)\[(\d+)\]$", path)
    index = int(match.group(2)) if match else None
    node: Any = config
    for part in (match.group(1) if match else path).split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if index is not None:
        node = node[index] if isinstance(node, list) and index < len(node) else None
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def thresholds(m: dict[str, Any], signal: str) -> list[dict[str, Any]]:
    """The thresholds of this version's config that act on ``signal``: setting, rule, value."""
    config = m.get("config", {})
    out = []
    for path, rule in THRESHOLDS.get(signal, []):
        value = _config_value(config, path)
        if value is not None:
            out.append({"setting": path, "rule": rule, "value": value})
    return out


def _files(home: str | os.PathLike[str], version: str, kind: str) -> list[str]:
    if kind not in ("docs", "rejected"):
        raise CatalogError(f"kind must be 'docs' or 'rejected', got {kind!r}")
    return sorted(str(p) for p in (_version_dir(home, version) / kind).glob("*.parquet"))


def _columns(con: duckdb.DuckDBPyConnection, files: list[str]) -> dict[str, str]:
    rows = con.execute("DESCRIBE SELECT * FROM read_parquet(?, union_by_name = true)", [files]).fetchall()
    return {name: kind for name, kind, *_ in rows}


def signal_columns(home: str | os.PathLike[str], version: str) -> list[str]:
    """Numeric per-document signals in the kept documents: language score, quality signals, sizes."""
    files = _files(home, version, "docs")
    if not files:
        return []
    con = duckdb.connect(":memory:")
    columns = _columns(con, files)
    numeric = [c for c, t in columns.items() if t in ("DOUBLE", "FLOAT", "BIGINT", "INTEGER") and c != "position"]
    return numeric


def signal_histogram(home: str | os.PathLike[str], version: str, column: str, bins: int = 40) -> pd.DataFrame:
    """Histogram of one signal over kept and rejected documents: lo, hi, kept, rejected.

    The range runs from the minimum to the 99th percentile (the last bin takes everything above), so one
    outlier does not squash the picture. Values below zero are the pipeline's "not applicable" marker
    and are left out.
    """
    if not 1 <= bins <= 500:
        raise ValueError(f"bins must be in 1..500, got {bins}")
    con = duckdb.connect(":memory:")
    kept, rejected = _files(home, version, "docs"), _files(home, version, "rejected")
    parts = []
    for label, files in (("kept", kept), ("rejected", rejected)):
        if files:
            if column not in _columns(con, files):
                raise CatalogError(f"no column {column!r} in {version}/{'docs' if label == 'kept' else label}")
            # The column name has been checked against the file's schema and is quoted as an identifier.
            quoted = '"' + column.replace('"', '""') + '"'
            parts.append(con.execute(
                f"SELECT ?::VARCHAR AS side, {quoted}::DOUBLE AS v FROM read_parquet(?, union_by_name = true) "
                f"WHERE {quoted} IS NOT NULL AND {quoted} >= 0",
                [label, files],
            ).df())
    empty = pd.DataFrame({"lo": pd.Series(dtype=float), "hi": pd.Series(dtype=float),
                          "kept": pd.Series(dtype="int64"), "rejected": pd.Series(dtype="int64")})
    if not parts:
        return empty
    con.register("values_", pd.concat(parts, ignore_index=True))
    lo, hi = con.execute("SELECT min(v), quantile_cont(v, 0.99) FROM values_").fetchone()
    if lo is None:
        return empty
    width = (hi - lo) / bins if hi > lo else 1.0
    frame = con.execute(
        """
        SELECT least(floor((v - $lo) / $w), $bins - 1)::BIGINT AS b,
               count(*) FILTER (WHERE side = 'kept') AS kept,
               count(*) FILTER (WHERE side = 'rejected') AS rejected
        FROM values_ GROUP BY b ORDER BY b
        """,
        {"lo": lo, "w": width, "bins": bins},
    ).df()
    return pd.DataFrame({"lo": lo + frame["b"] * width, "hi": lo + (frame["b"] + 1) * width,
                         "kept": frame["kept"].astype("int64"), "rejected": frame["rejected"].astype("int64")})


def reasons(home: str | os.PathLike[str], version: str) -> list[str]:
    files = _files(home, version, "rejected")
    if not files:
        return []
    con = duckdb.connect(":memory:")
    return [r[0] for r in con.execute(
        "SELECT DISTINCT reason FROM read_parquet(?, union_by_name = true) WHERE reason IS NOT NULL ORDER BY 1",
        [files]).fetchall()]


def languages(home: str | os.PathLike[str], version: str, kind: str) -> list[str]:
    """Languages of a version's documents; none when langid did not run (the files have no ``lang``)."""
    files = _files(home, version, kind)
    if not files:
        return []
    con = duckdb.connect(":memory:")
    if "lang" not in _columns(con, files):
        return []
    return [r[0] for r in con.execute(
        "SELECT DISTINCT lang FROM read_parquet(?, union_by_name = true) WHERE lang IS NOT NULL ORDER BY 1",
        [files]).fetchall()]


def sample_documents(home: str | os.PathLike[str], version: str, kind: str = "docs", *, reason: str | None = None,
                     lang: str | None = None, contains: str = "", limit: int = 20, offset: int = 0) -> pd.DataFrame:
    """Documents of a version, filtered by reject reason, language and a literal substring of the text.

    Columns: id, lang, quality_score, stage and reason (rejected only), text. Text comes back as stored:
    showing it safely (escaped, never as HTML) is the caller's job. A version built without langid or quality
    has no ``lang`` or ``quality_score`` in its files: those columns come back null (and a language filter
    matches nothing).
    """
    if not 1 <= limit <= 500 or offset < 0:
        raise ValueError("limit must be in 1..500 and offset non-negative")
    files = _files(home, version, kind)
    if not files:
        return pd.DataFrame(columns=["id", "lang", "quality_score", "text"])
    con = duckdb.connect(":memory:")
    columns = _columns(con, files)
    lang_column = _or_null(columns, "lang", "VARCHAR")
    extra = ", stage, reason" if kind == "rejected" and {"stage", "reason"} <= set(columns) else ""
    reason_filter = "AND reason = $reason" if extra and reason else ""
    params: dict[str, Any] = {"files": files, "lang": lang, "q": contains, "limit": limit, "offset": offset}
    if reason_filter:
        params["reason"] = reason
    return con.execute(
        f"""
        SELECT id, {lang_column} AS lang, {_or_null(columns, "quality_score", "DOUBLE")} AS quality_score{extra},
               text
        FROM read_parquet($files, union_by_name = true)
        WHERE ($lang IS NULL OR {lang_column} = $lang) AND contains(lower(text), lower($q)) {reason_filter}
        ORDER BY id LIMIT $limit OFFSET $offset
        """,
        params,
    ).df()


def _or_null(columns: dict[str, str], name: str, sql_type: str) -> str:
    """The column when the files have it, else a typed NULL: annotations exist only when their stage ran."""
    return name if name in columns else f"NULL::{sql_type}"
