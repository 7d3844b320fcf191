"""A build's process-level memory settings: at most two glibc malloc arenas per process, and handing
freed memory back to the system after the steps that peak.

glibc gives each thread that allocates concurrently with others its own malloc arena (up to eight per core)
and seldom hands an arena's freed memory back to the system. A build's processes are full of threads
(gRPC's in the runner and the workers, the tokenizer's thread pool in the workers), so their resident
memory kept the high-water mark of every arena. Measured on 30,000 benchmark documents (docs/benchmarks.md):
peak RSS of the build's process tree 3.25-3.31 GiB with glibc's default, 2.55-2.66 GiB with two arenas,
and no slower.

Even with few arenas, glibc keeps freed memory mapped unless it sits at the top of the heap, so a
process's resident size stays at its high-water mark: training the tokenizer or encoding a bundle
left a worker hundreds of MB larger for the rest of the build, and Arrow's allocator kept what writing
Parquet and shards took. :func:`release_free_memory` returns those pages; the steps that allocate the
most call it when they finish.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import platform
import sys
import threading
from collections.abc import Iterator

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c"))


def release_free_memory() -> bool:
    """Hands this process's free memory back to the system: glibc malloc's, and that of Arrow's own
    allocator (mimalloc or jemalloc, which ``malloc_trim`` does not reach) once Arrow is in use.
    Returns whether glibc released any."""
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


@contextlib.contextmanager
def releasing_free_memory(every_s: float = 2.0) -> Iterator[None]:
    """Releases free memory every ``every_s`` seconds while the block runs: for the process that runs the
    pipeline, whose peaks are the runner's in-memory shuffles between stages."""
    done = threading.Event()

    def release() -> None:
        while not done.wait(every_s):
            release_free_memory()

    thread = threading.Thread(target=release, name="release-free-memory", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap malloc arenas in this process (for threads that start allocating from now on) and, through
    ``MALLOC_ARENA_MAX``, in every process started from it, such as the runner's workers. A value the user
    already put in ``MALLOC_ARENA_MAX`` wins. Returns whether this process's allocator took the setting."""
    wanted = os.environ.setdefault("MALLOC_ARENA_MAX", str(arenas))
    libc = _glibc()
    if libc is None or not wanted.isdigit() or int(wanted) < 1:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, int(wanted)))
