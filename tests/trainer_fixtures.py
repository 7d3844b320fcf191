"""Shared helpers for the trainer tests: one small dataset version per pytest session, run settings."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# Vocabulary and row length small enough that the tiny preset takes ~50 ms a step on one core.
BUILD_ARGS = ["--runner", "FnApiRunner", "--vocab-size", "1024", "--seq-len", "128"]

# One thread: deterministic, and immune to other processes busy on the machine's two cores (OpenMP's
# spin-waiting makes two threads slower than one under contention). Subprocesses inherit it.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def dataset_home(factory: pytest.TempPathFactory) -> Path:
    """A home whose data/ holds a version of the bundled sample corpus, built once per session.

    Cached under the session's base temp dir, so every trainer test module shares one build.
    """
    home = factory.getbasetemp() / "trainer-data-home"
    if not (home / "data" / "LATEST").is_file():
        from pipelines.build import main as build_main

        staging = factory.getbasetemp() / "trainer-data-staging"
        shutil.rmtree(staging, ignore_errors=True)
        assert build_main(["--home", str(staging), *BUILD_ARGS]) == 0
        staging.rename(home)
    return home


def fresh_home(home: Path, tmp_path: Path) -> Path:
    """A new home that shares the built data (symlinked) but has its own runs/ and metrics/."""
    mine = tmp_path / "home"
    mine.mkdir()
    (mine / "data").symlink_to(home / "data")
    return mine


def one_torch_thread() -> Iterator[None]:
    """In-process training on one thread, for the same reason as SUBPROCESS_ENV; restored afterwards. A test
    module makes it a fixture: ``pytest.fixture(scope="module", autouse=True)(one_torch_thread)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
