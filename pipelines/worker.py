"""Worker processes of a local multi-process build: Beam's SDK harness, started early and left without
Python's teardown.

**Started early.** The runner starts its workers when the first stage runs, and each then spends ~1.7 s
importing Beam and the stages' libraries while the build waits; before that, the driver spends ~2.7 s
alone on one core importing Beam and building and translating the graph. :func:`standby_workers` starts the processes at
the beginning of a build instead: each imports everything, then waits on a Unix socket. When the runner
later starts ``python -m pipelines.worker`` (see :mod:`pipelines.runner`), that small launcher hands its
environment (the runner's control address, the pipeline options, the worker id) to a waiting process,
which runs the harness with it, and relays its exit status. With no standby free (or none started, as in
Beam's own test harness), the launcher runs the harness itself.

**Started first.** ``python -m pipelines.build`` (and ``bench.timed_build``) call :func:`start_early`
before they import Beam, which alone takes the driver ~1.7 s: the standbys import on the other core
meanwhile, and :func:`standby_workers` adopts them when the build reaches it (a build whose flags ask for
another number of workers stops them and starts its own). Without the early start the driver finished
building the graph ~2 s before its workers were ready to run the first stage.

**Left without teardown.** When the last stage is done the runner waits for its workers to exit, one
after another. The harness returns within ~20 ms, but the interpreter then spent ~0.4 s per worker
freeing every object and module (~0.9 s of a two-worker build, timed around each worker's close in the
runner). Nothing depends on it: every bundle's output has reached the runner over gRPC, files are closed
inside the bundles that write them, and the harness has torn its DoFns down and closed its channels. So
once the harness returns the process flushes logging and its streams and exits at once.

A standby lives no longer than the build: it exits when its pipe from the driver closes (the build
ended or died), and when its launcher goes away (the runner gave up on that worker). Its socket's folder
is named after the build's process; a build killed together with its standbys (SIGKILL to the process
group) leaves the folder behind, and the next build on the machine removes it.
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

STANDBY_DIR_ENV = "TOKENMILL_WORKER_STANDBY_DIR"
FOLDER_PREFIX = "tokenmill-workers-"  # then the build's pid, "-", mkdtemp's random part
_READY = b"ok\n"
_IMPORT_NICENESS = 10
# What the stages import in their setup, loaded while the process waits rather than in the first bundle.
_WARM_MODULES = ("apache_beam.runners.worker.sdk_worker_main", "pipelines.transforms", "fasttext", "datasketch",
                 "tokenizers", "pyarrow.parquet", "zstandard")


DIRECT_RUNNER_NAMES = frozenset({"direct", "directrunner", "switchingdirectrunner"})


@dataclass
class _Standbys:
    folder: Path
    processes: list[subprocess.Popen]


_early: _Standbys | None = None


def _start(count: int) -> _Standbys:
    folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
    processes = [
        subprocess.Popen([sys.executable, "-m", "pipelines.worker", "--standby", str(folder / f"{i}.sock")],
                         stdin=subprocess.PIPE)
        for i in range(count)
    ]
    return _Standbys(folder, processes)


def _stop(standbys: _Standbys) -> None:
    for process in standbys.processes:
        process.stdin.close()  # an unclaimed standby exits on this; a claimed one has finished
    for process in standbys.processes:
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
def standby_workers(count: int) -> Iterator[list[subprocess.Popen]]:
    """``count`` warm worker processes for the runner's launchers to claim while the block runs."""
    global _early
    early, _early = _early, None
    if early is not None and len(early.processes) != count:
        _stop(early)
        early = None
    remove_abandoned_folders(Path(tempfile.gettempdir()))
    if count <= 0:
        yield []
        return
    standbys = early or _start(count)
    previous = os.environ.get(STANDBY_DIR_ENV)
    os.environ[STANDBY_DIR_ENV] = str(standbys.folder)
    try:
        yield standbys.processes
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

    sdk_worker_main.main(sys.argv)


def _exit_now(code: int) -> NoReturn:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_when_closed(read_end: BinaryIO, code: int, path: str, finished: threading.Event | None = None) -> None:
    """Exits with ``code`` when ``read_end`` closes, unless ``finished`` is set by then (the process is
    already on its way out with its own status)."""
    def watch() -> None:
        while read_end.read(4096):
            pass
        if finished is not None and finished.is_set():
            return
        _leave(path)
        _exit_now(code)

    threading.Thread(target=watch, name="standby-lifeline", daemon=True).start()


def _import_warm_modules() -> None:
    """Imports at low priority (Linux sets it per thread; this thread ends after): the driver, busy
    building the graph on one core meanwhile, keeps that core, and the imports take the idle one. At equal
    priority the three processes shared two cores and the driver's start-up took ~1 s longer."""
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


def _leave(path: str) -> None:
    """Removes this standby's socket and, once the last one is gone, their folder: a build that was
    killed never reaches the cleanup in :func:`standby_workers`."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))


def standby(path: str) -> NoReturn:
    """Bind ``path``, import the harness and the stages' libraries, then serve one launcher."""
    _exit_when_closed(sys.stdin.buffer, 0, path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
    except OSError:
        # A build that ends at once closes every standby's pipe, and the first to see it removes the
        # (still empty) folder before a slower sibling binds: nothing is left to serve.
        if not os.path.isdir(os.path.dirname(path)):
            _exit_now(0)
        raise
    listener.listen(8)  # launchers that connect while this imports wait in the backlog
    warm = threading.Thread(target=_import_warm_modules, name="standby-imports")
    warm.start()
    warm.join()
    conn, _ = listener.accept()
    listener.close()  # queued launchers are turned away and try another standby
    _leave(path)
    environment = json.loads(_receive(conn))
    os.environ.clear()
    os.environ.update(environment)
    conn.sendall(_READY)
    # The launcher exits as soon as it reads the status below: that must not count as going away.
    finished = threading.Event()
    _exit_when_closed(conn.makefile("rb"), 1, path, finished)
    status = 0
    try:
        _run_harness()
    except BaseException:
        logging.exception("worker harness failed")
        status = 1
    finished.set()
    conn.sendall(b"%d\n" % status)
    _exit_now(status)


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
        _exit_now(0)
    status = standby_status.readline().strip()
    return int(status) if status.isdigit() else 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["--standby"] and len(argv) == 2:
        standby(argv[1])  # does not return
    return launch()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
