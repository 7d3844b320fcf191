"""pipelines.memory: the malloc arena cap really limits arenas, here and in child processes; freed memory
really goes back to the system."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pipelines import memory

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")

# Eight threads allocate at the same time (each holds its block until all have one), then glibc's own report
# (malloc_info) is searched for its heaps: one per arena.
ARENA_PROBE = """
import ctypes, ctypes.util, re, sys, tempfile, threading
if sys.argv[1] == "limit":
    from pipelines.memory import limit_malloc_arenas
    assert limit_malloc_arenas()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
gate = threading.Barrier(8)
def allocate():
    block = libc.malloc(1000)
    gate.wait()
    libc.free(block)
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with tempfile.NamedTemporaryFile() as report:
    handle = ctypes.c_void_p(libc.fopen(report.name.encode(), b"w"))
    libc.malloc_info(0, handle)
    libc.fclose(handle)
    print(len(re.findall("<heap nr=", open(report.name).read())))
"""


def _arenas(mode: str, env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", ARENA_PROBE, mode], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    return int(out.stdout.strip())


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}


def test_the_cap_limits_arenas_of_threads_started_after_it() -> None:
    assert _arenas("default", _clean_env()) > 2
    assert _arenas("limit", _clean_env()) <= 2


def test_child_processes_inherit_the_cap_and_a_users_value_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.memory import limit_malloc_arenas

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas()
    assert os.environ["MALLOC_ARENA_MAX"] == "2"
    assert _arenas("default", dict(os.environ)) <= 2

    monkeypatch.setenv("MALLOC_ARENA_MAX", "6")
    limit_malloc_arenas()
    assert os.environ["MALLOC_ARENA_MAX"] == "6"
    assert _arenas("default", dict(os.environ)) > 2


def test_release_free_memory_returns_what_malloc_and_arrow_keep() -> None:
    # In a fresh process: free 200 MB of small malloc blocks and 200 MB of Arrow buffers, then release.
    probe = textwrap.dedent("""
        import ctypes, ctypes.util, psutil, pyarrow as pa
        from pipelines import memory
        process = psutil.Process()
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        blocks = [libc.malloc(4000) for _ in range(50_000)]
        for block in blocks[:-1]:
            libc.free(block)  # the last one pins the heap's top, so glibc cannot shrink it on its own
        buffers = [pa.allocate_buffer(4000) for _ in range(50_000)]
        del buffers
        before = process.memory_info().rss
        memory.release_free_memory()
        print((before - process.memory_info().rss) >> 20)
    """)
    released = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert int(released.stdout.split()[-1]) > 300  # both halves: glibc alone gives back ~190


def test_releasing_free_memory_runs_while_the_block_runs_and_stops_after(monkeypatch) -> None:
    calls: list[float] = []
    monkeypatch.setattr(memory, "release_free_memory", lambda: calls.append(time.monotonic()) or True)
    with memory.releasing_free_memory(every_s=0.02):
        time.sleep(0.3)
        assert any(t.name == "release-free-memory" for t in threading.enumerate())
    during = len(calls)
    time.sleep(0.1)
    assert during >= 3 and len(calls) == during
    assert not any(t.name == "release-free-memory" for t in threading.enumerate())
