"""A build's process-level memory setting: at most two glibc malloc arenas per process.

glibc gives each thread that allocates concurrently with others its own malloc arena (up to eight per core)
and seldom hands an arena's freed memory back to the system. A build's processes are full of threads
(gRPC's in the runner and the workers, the tokenizer's thread pool in the workers), so their resident
memory kept the high-water mark of every arena. Measured on 30,000 benchmark documents (docs/benchmarks.md):
peak RSS of the build's process tree 3.25-3.31 GiB with glibc's default, 2.55-2.66 GiB with two arenas,
and no slower.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap malloc arenas in this process (for threads that start allocating from now on) and, through
    ``MALLOC_ARENA_MAX``, in every process started from it, such as the runner's workers. A value the user
    already put in ``MALLOC_ARENA_MAX`` wins. Returns whether this process's allocator took the setting."""
    wanted = os.environ.setdefault("MALLOC_ARENA_MAX", str(arenas))
    if platform.libc_ver()[0] != "glibc" or not wanted.isdigit() or int(wanted) < 1:
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return bool(libc.mallopt(_M_ARENA_MAX, int(wanted)))
