"""Shared fixtures: a small, messy input corpus and a helper to run builds in-process."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from pipelines.build import main as build_main

SHARED_EVAL = Path(__file__).resolve().parents[1].parent / "shared" / "eval"

# Fast in-process runner; multi-processing runs are the ones that say so.
IN_PROCESS = ["--runner", "FnApiRunner"]
MULTI_PROCESS = ["--runner", "DirectRunner", "--direct_running_mode", "multi_processing",
                 "--direct_num_workers", "2"]
SMALL = ["--vocab-size", "600", "--seq-len", "128", "--set", "pack.rows_per_shard=64"]

BAD_LINES = [
    b'{"id": "broken", "text": "unterminated\n',
    b'{"id": "badutf8", "text": "caf\xe9 \xff"}\n',
    b'{"id": "numtext", "text": 12345}\n',
    b'{"id": "listtext", "text": ["a", "b"]}\n',
    b'{"id": "nulltext", "text": null}\n',
    b'["not", "an", "object"]\n',
    b'{"id": "nul", "text": "hello\\u0000world this has a nul byte"}\n',
    b'{"id": "empty", "text": "   "}\n',
]


def write_fixture(folder: Path, every: int = 6) -> Path:
    """Every ``every``-th sample document, exact copies of a few, and lines that must not crash a build."""
    from pipelines.sample import SAMPLE_CORPUS

    with gzip.open(SAMPLE_CORPUS, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle][::every]
    path = folder / "fixture.jsonl"
    with open(path, "wb") as out:
        for index, record in enumerate(records):
            out.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
            if index % 25 == 0 and len(record["text"]) > 500:
                copy = dict(record, id=f"{record.get('id', index)}-copy")
                out.write(json.dumps(copy, ensure_ascii=False).encode() + b"\n")
        out.writelines(BAD_LINES)
    return path


@pytest.fixture(scope="session")
def fixture_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("corpus"))


def run_build(home: Path, *args: str) -> int:
    return build_main(["--home", str(home), *args])


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, fixture_corpus: Path) -> Path:
    """One in-process build of the fixture, shared by the read-only tests."""
    home = tmp_path_factory.mktemp("home")
    assert run_build(home, "--input", str(fixture_corpus), *IN_PROCESS, *SMALL) == 0
    return home
