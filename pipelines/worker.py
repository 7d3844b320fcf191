"""Worker processes of a local multi-process build: Beam's SDK harness, started early, forked from one
importing process, and left without Python's teardown.

**Started early.** The runner starts its workers when the first stage runs, and each then spends ~1.7 s
importing Beam and the stages' libraries while the build waits; before that, the driver spends ~2.7 s
alone on one core importing Beam and building and translating the graph. :func:`standby_workers` starts
the workers at the beginning of a build instead, as standbys that wait on Unix sockets. When the runner
later starts ``python -m pipelines.worker`` (see :mod:`pipelines.runner`), that small launcher hands its
environment (the runner's control address, the pipeline options, the worker id) to a waiting standby,
which runs the harness with it, and relays its exit status. With no standby free (or none started, as in
Beam's own test harness), the launcher runs the harness itself.

**Started first.** ``python -m pipelines.build`` (and ``bench.timed_build``) call :func:`start_early`
before they import Beam, which alone takes the driver ~1.7 s: the standbys import on the other core
meanwhile, and :func:`standby_workers` adopts them when the build reaches it (a build whose flags ask for
another number of workers stops them and starts its own). Without the early start the driver finished
building the graph ~2 s before its workers were ready to run the first stage.

**Forked from one importing process.** One process binds every standby's socket (launchers that come
early wait in its backlog), imports once, then forks the other standbys and serves the first socket
itself. When each standby imported on its own, the imports of two workers and the driver's start-up
(~5.5 CPU-s) shared the two cores, and the first stage waited ~0.7 s more for its workers than now (a
100-document build: 5.8 → 4.9 s, docs/benchmarks.md). Nothing the imports load starts what a fork would
break: no gRPC channel exists before the harness runs, and the threads that numpy's OpenBLAS and
pyarrow's jemalloc start at import are looked after by those libraries' own fork handlers.

**Left without teardown.** When the last stage is done the runner waits for its workers to exit, one
after another. The harness returns within ~20 ms, but the interpreter then spent ~0.4 s per worker
freeing every object and module (~0.9 s of a two-worker build, timed around each worker's close in the
runner). Nothing depends on it: every bundle's output has reached the runner over gRPC, files are closed
inside the bundles that write them, and the harness has torn its DoFns down and closed its channels. So
once the harness returns the process flushes logging and its streams and exits at once.
(``python -m pipelines.build`` ends the same way once its version is published, ~0.3 s sooner.)

A standby lives no longer than the build: it exits when its pipe from the driver closes (the build
ended or died), and when its launcher goes away (the runner gave up on that worker). The forking
standby exits after the standbys it forked, so the driver's wait for it is a wait for all. Their
sockets' folder is named after the build's process; a build killed together with its standbys (SIGKILL
to the process group) leaves the folder behind, and the next build on the machine removes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn

from pipelines import beamlog

STANDBY_DIR_ENV = "TOKENMILL_WORKER_STANDBY_DIR"
FOLDER_PREFIX = "tokenmill-workers-"  # then the build's pid, "-", mkdtemp's random part
_READY = b"ok\n"
_PIPE_FROM_BUILD = 0  # a standby's stdin: the build holds its other end
_IMPORT_NICENESS = 10
# What the harness and the stages import, loaded while the process waits rather than in the first bundle.
_WARM_MODULES = ("apache_beam.runners.worker.sdk_worker_main", "pipelines.runner", "pipelines.transforms",
                 "fasttext", "datasketch", "tokenizers", "pyarrow.parquet", "zstandard")


DIRECT_RUNNER_NAMES = frozenset({"direct", "directrunner", "switchingdirectrunner"})


@dataclass
class _Standbys:
    folder: Path
    count: int
    process: subprocess.Popen  # the standby that forks the others; it exits after them


_early: _Standbys | None = None


def _start(count: int) -> _Standbys:
    folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
    process = subprocess.Popen([sys.executable, "-m", "pipelines.worker", "--standbys", str(folder), str(count)],
                               stdin=subprocess.PIPE)
    return _Standbys(folder, count, process)


def _stop(standbys: _Standbys) -> None:
    process = standbys.process
    process.stdin.close()  # every unclaimed standby exits on this; a claimed one has finished
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    shutil.rmtree(standbys.folder, ignore_errors=True)


def local_worker_count(beam_args: list[str]) -> int:
    """The worker processes a local build with these flags starts, read without importing Beam.

    The same answer as ``pipelines.runner.local_worker_processes`` gives from Beam's parsed options
    (tests/test_worker.py compares them); it only decides whether :func:`start_early` starts any."""
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False, exit_on_error=False)
    parser.add_argument("--runner")
    parser.add_argument("--direct_running_mode", default="in_memory")
    parser.add_argument("--direct_num_workers", type=int, default=1)
    try:
        flags, _ = parser.parse_known_args(beam_args)
    except argparse.ArgumentError:  # a malformed flag: Beam reports it when the build parses its options
        return 0
    if flags.runner is not None and flags.runner.lower() not in DIRECT_RUNNER_NAMES:
        return 0
    if flags.direct_running_mode != "multi_processing":
        return 0
    return flags.direct_num_workers or os.cpu_count() or 1


def start_early(beam_args: list[str]) -> None:
    """Starts the standbys a build with these flags will want, for :func:`standby_workers` to adopt.

    For entry points, before they import Beam. If the build never gets that far (a config or input
    error), the standbys exit with this process: their pipe from it closes."""
    global _early
    remove_abandoned_folders(Path(tempfile.gettempdir()))
    count = local_worker_count(beam_args)
    if count > 0 and _early is None:
        _early = _start(count)


def stop_early() -> None:
    """Stops standbys that :func:`start_early` started and no build adopted (an in-process caller's)."""
    global _early
    if _early is not None:
        _stop(_early)
        _early = None


@contextlib.contextmanager
def standby_workers(count: int) -> Iterator[subprocess.Popen | None]:
    """``count`` warm worker processes for the runner's launchers to claim while the block runs.

    Yields the process that forks them (the others are its children), or None when ``count`` is 0."""
    global _early
    early, _early = _early, None
    if early is not None and early.count != count:
        _stop(early)
        early = None
    remove_abandoned_folders(Path(tempfile.gettempdir()))
    if count <= 0:
        yield None
        return
    standbys = early or _start(count)
    previous = os.environ.get(STANDBY_DIR_ENV)
    os.environ[STANDBY_DIR_ENV] = str(standbys.folder)
    try:
        yield standbys.process
    finally:
        if previous is None:
            os.environ.pop(STANDBY_DIR_ENV, None)
        else:
            os.environ[STANDBY_DIR_ENV] = previous
        _stop(standbys)


def remove_abandoned_folders(parent: Path) -> list[Path]:
    """Removes this user's standby folders whose build process no longer exists; returns them.

    Standbys remove their own sockets and folder when they exit, unless they are killed with the build.
    A folder whose build is alive, or whose pid now names another process, is left alone."""
    removed = []
    for folder in parent.glob(f"{FOLDER_PREFIX}*"):
        pid = folder.name[len(FOLDER_PREFIX):].split("-", 1)[0]
        with contextlib.suppress(OSError):
            if pid.isdigit() and folder.stat().st_uid == os.getuid() and not process_exists(int(pid)):
                shutil.rmtree(folder)
                removed.append(folder)
    return removed


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _run_harness() -> None:
    from apache_beam.runners.worker import sdk_worker_main

    from pipelines.bpe import PARALLELISM_ENV
    from pipelines.runner import bundles_end_promptly, introspection_memoized

    # The build's workers encode at the same time, one per core, and each one's tokenizers thread pool
    # added a thread per core on top: two processes encoding side by side on two cores spent 1.00-1.09
    # CPU-ms per document with their pools, 0.87-0.98 without (docs/benchmarks.md). Training, which runs
    # alone, turns the pool back on (pipelines.bpe).
    os.environ.setdefault(PARALLELISM_ENV, "false")

    # Each stage's first bundle in a worker builds the stage's operators, and Beam inspects every DoFn's
    # methods on the way, each time anew. Per worker over a 100-document build's 42 stages: 0.69 s with
    # each DoFn's state and timer specs kept, 0.48 s with every signature kept too (1.02 s, 44 stages
    # then, with nothing kept).
    with introspection_memoized(), bundles_end_promptly():
        sdk_worker_main.main(sys.argv)


_forked: list[int] = []  # in the forking standby, the standbys it forked


def exit_now(code: int) -> NoReturn:
    """Exits with ``code`` once logging and the standard streams are flushed, without Python's teardown
    (freeing every object and module: ~0.4 s for a worker, ~0.3 s for a build's driver). For processes
    that are done: their files closed and their threads finished or expendable."""
    for pid in _forked:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that went away, or a closed stream
            stream.flush()
    os._exit(code)


def _exit_when_closed(fd: int, code: int, paths: list[str], finished: threading.Event | None = None) -> None:
    """Exits with ``code`` when the other end of descriptor ``fd`` closes, unless ``finished`` is set by
    then (the process is already on its way out with its own status). A descriptor, never a Python file
    object: a fork would copy a buffered reader's lock as the watcher holds it."""
    def watch() -> None:
        while os.read(fd, 4096):
            pass
        if finished is not None and finished.is_set():
            return
        _leave(paths)
        exit_now(code)

    threading.Thread(target=watch, name="standby-lifeline", daemon=True).start()


def _import_warm_modules() -> None:
    """Imports at low priority (Linux sets it per thread; this thread ends after): the driver, busy
    building the graph on one core meanwhile, keeps that core, and the imports take the idle one. At equal
    priority (when each standby imported on its own) the driver's start-up took ~1 s longer."""
    import importlib

    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _IMPORT_NICENESS)
    for module in _WARM_MODULES:
        importlib.import_module(module)


def _receive(conn: socket.socket) -> bytes:
    chunks = []
    while not chunks or not chunks[-1].endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("launcher went away before sending its environment")
        chunks.append(chunk)
    return b"".join(chunks)


def _leave(paths: list[str]) -> None:
    """Removes these standbys' sockets and, once the last one is gone, their folder: a build that was
    killed never reaches the cleanup in :func:`standby_workers`."""
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(paths[0]))


def standbys(folder: str, count: int) -> NoReturn:
    """Bind ``count`` sockets in ``folder``, import the harness and the stages' libraries, fork a standby
    for every socket but the first, and serve the first here."""
    paths = [os.path.join(folder, f"{index}.sock") for index in range(count)]
    # Until it forks, this process stands for every socket.
    _exit_when_closed(_PIPE_FROM_BUILD, 0, paths)
    listeners = []
    for path in paths:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
        except OSError:
            # A build that ends at once closes the pipe, and the folder may be gone before we bind:
            # nothing is left to serve.
            if not os.path.isdir(folder):
                exit_now(0)
            raise
        listener.listen(8)  # launchers that connect while this imports wait in the backlog
        listeners.append(listener)
    warm = threading.Thread(target=_import_warm_modules, name="standby-imports")
    warm.start()
    warm.join()
    for index in range(1, count):
        pid = os.fork()
        if pid == 0:
            _forked.clear()
            for other, listener in enumerate(listeners):
                if other != index:
                    listener.close()
            _exit_when_closed(_PIPE_FROM_BUILD, 0, [paths[index]])  # threads are not forked
            _serve(listeners[index], paths[index])
        _forked.append(pid)
    for listener in listeners[1:]:
        listener.close()
    _serve(listeners[0], paths[0])


def _serve(listener: socket.socket, path: str) -> NoReturn:
    """Serve one launcher: take its environment, run the harness with it, send back the exit status."""
    conn, _ = listener.accept()
    listener.close()  # queued launchers are turned away and try another standby
    _leave([path])
    environment = json.loads(_receive(conn))
    os.environ.clear()
    os.environ.update(environment)
    conn.sendall(_READY)
    # The launcher exits as soon as it reads the status below: that must not count as going away.
    finished = threading.Event()
    _exit_when_closed(conn.fileno(), 1, [path], finished)
    status = 0
    try:
        _run_harness()
    except BaseException:
        logging.exception("worker harness failed")
        status = 1
    finished.set()
    conn.sendall(b"%d\n" % status)
    exit_now(status)


def _claim_standby(folder: Path) -> BinaryIO | None:
    """A reader on the connection to the standby that took this launcher's environment, if any did."""
    payload = json.dumps(dict(os.environ)).encode() + b"\n"
    for path in sorted(folder.glob("*.sock")):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(path))
            conn.sendall(payload)
            reader = conn.makefile("rb")
            if reader.readline() == _READY:
                return reader
            reader.close()
        except OSError:
            pass
        conn.close()
    return None


def launch() -> int:
    """The process the runner starts: hand over to a standby if one is free, else run the harness here."""
    folder = os.environ.get(STANDBY_DIR_ENV)
    standby_status = _claim_standby(Path(folder)) if folder else None
    if standby_status is None:
        _run_harness()
        exit_now(0)
    status = standby_status.readline().strip()
    return int(status) if status.isdigit() else 1


def main(argv: list[str]) -> int:
    beamlog.quiet_beam_chatter(worker=True)
    if argv[:1] == ["--standbys"] and len(argv) == 3:
        standbys(argv[1], int(argv[2]))  # does not return
    return launch()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
