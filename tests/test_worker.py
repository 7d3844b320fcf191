"""Worker processes started ahead of the runner (pipelines/worker.py): claimed, relayed, never left behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import apache_beam as beam
import psutil
import pytest
from apache_beam.testing.util import assert_that, equal_to

from pipelines import bpe, runner, worker
from tests.conftest import MULTI_PROCESS, SMALL, write_fixture


def _role(_: object, forking_pid: int) -> str:
    """Which standby runs this bundle: the one the build started, one it forked, or none."""
    if os.getpid() == forking_pid:
        return "forking"
    return "forked" if psutil.Process().ppid() == forking_pid else "not a standby"


def _inspection(_: object) -> tuple[str, str]:
    from apache_beam.transforms import core, userstate

    return userstate.get_dofn_specs.__qualname__, core.get_signature.__qualname__


def _tokenizers_parallelism(_: object) -> str:
    return os.environ.get(bpe.PARALLELISM_ENV, "unset")


def test_a_local_build_runs_its_bundles_in_the_standby_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(bpe.PARALLELISM_ENV, raising=False)
    pipeline = runner.make_pipeline([*MULTI_PROCESS, "--default_sdk_harness_log_level=ERROR"])
    assert runner.local_worker_processes(pipeline.options) == 2
    with worker.standby_workers(2) as forking:
        folder = Path(os.environ[worker.STANDBY_DIR_ENV])
        with pipeline:
            numbers = pipeline | beam.Create(range(200), reshuffle=True)
            roles = numbers | "Role" >> beam.Map(_role, forking.pid)
            assert_that(roles | "Roles" >> beam.Distinct(), equal_to(["forking", "forked"]))
            # The harness runs with Beam's introspection memoized (see pipelines.runner).
            inspection = numbers | "Inspection" >> beam.Map(_inspection) | "Inspections" >> beam.Distinct()
            memoized = ("introspection_memoized.<locals>.get_dofn_specs",
                        "introspection_memoized.<locals>.get_signature")
            assert_that(inspection, equal_to([memoized]), label="Memoized")
            # Each worker encodes on its own thread: the workers already take every core.
            parallelism = numbers | "Parallelism" >> beam.Map(_tokenizers_parallelism) | "Settings" >> beam.Distinct()
            assert_that(parallelism, equal_to(["false"]), label="OneThreadEach")
    assert worker.STANDBY_DIR_ENV not in os.environ
    assert not folder.exists()
    assert forking.returncode == 0


def test_unclaimed_standbys_exit_when_the_build_ends() -> None:
    started = time.monotonic()
    with worker.standby_workers(2) as forking:
        folder = Path(os.environ[worker.STANDBY_DIR_ENV])
        deadline = time.monotonic() + 60
        while len(psutil.Process(forking.pid).children()) < 1:  # imported and forked
            assert time.monotonic() < deadline, "the standby never forked"
            time.sleep(0.05)
        forked = psutil.Process(forking.pid).children()
    assert forking.returncode == 0
    assert not any(p.is_running() for p in forked)  # the forking standby exited after them
    assert not folder.exists()
    assert time.monotonic() - started < 70


def test_no_standbys_unless_the_workers_are_processes() -> None:
    assert runner.local_worker_processes(runner.CachedViewOptions([])) == 0
    in_process = runner.CachedViewOptions(["--runner", "DirectRunner", "--direct_num_workers", "2"])
    assert runner.local_worker_processes(in_process) == 0
    mode = ["--direct_running_mode", "multi_processing"]
    assert runner.local_worker_processes(runner.CachedViewOptions(mode)) == 1  # Beam's default count
    every_cpu = runner.CachedViewOptions([*mode, "--direct_num_workers", "0"])
    assert runner.local_worker_processes(every_cpu) == os.cpu_count()
    other = runner.CachedViewOptions(["--runner", "FnApiRunner", *mode])
    assert runner.local_worker_processes(other) == 0
    with worker.standby_workers(0) as forking:
        assert forking is None and worker.STANDBY_DIR_ENV not in os.environ


@pytest.mark.parametrize("flags", [
    [], ["--runner", "DirectRunner", "--direct_num_workers", "2"], ["--direct_running_mode", "multi_processing"],
    ["--direct_running_mode=multi_processing", "--direct_num_workers=0"],
    ["--runner=direct", *MULTI_PROCESS], ["--runner", "FnApiRunner", *MULTI_PROCESS],
    ["--home", "h", "--input", "x.jsonl", *MULTI_PROCESS, "--direct_num_workers", "3"],
])
def test_the_early_count_reads_the_flags_as_beam_does(flags: list[str]) -> None:
    assert worker.local_worker_count(flags) == runner.local_worker_processes(runner.CachedViewOptions(flags))


def test_the_early_count_leaves_malformed_flags_to_beam(capsys: pytest.CaptureFixture[str]) -> None:
    assert worker.local_worker_count([*MULTI_PROCESS[:4], "--direct_num_workers", "two"]) == 0
    assert worker.local_worker_count([*MULTI_PROCESS[:4], "--direct_num_workers"]) == 0
    assert capsys.readouterr() == ("", "")


def test_standbys_started_early_are_adopted_or_replaced() -> None:
    worker.start_early(MULTI_PROCESS)
    early = worker._early
    assert early is not None and early.count == 2
    with worker.standby_workers(2) as forking:
        assert forking is early.process and os.environ[worker.STANDBY_DIR_ENV] == str(early.folder)
    assert worker._early is None and not early.folder.exists()

    worker.start_early(MULTI_PROCESS)
    early = worker._early
    with worker.standby_workers(1) as forking:
        assert early.process.returncode == 0 and not early.folder.exists()
        assert forking is not early.process and forking.args[-1] == "1"
    worker.start_early(MULTI_PROCESS[:2])  # in-process workers: nothing to start
    assert worker._early is None
    worker.start_early(MULTI_PROCESS)
    early = worker._early
    worker.stop_early()  # never adopted
    assert worker._early is None and early.process.returncode == 0
    assert not early.folder.exists()


def test_a_build_that_stops_before_its_graph_leaves_no_standbys(tmp_path: Path) -> None:
    build = subprocess.Popen([sys.executable, "-m", "pipelines.build", "--home", str(tmp_path), *MULTI_PROCESS,
                              "--stages", "langid,bogus"], stderr=subprocess.PIPE, text=True)
    folder_pattern = f"{worker.FOLDER_PREFIX}{build.pid}-*"
    started = []
    while build.poll() is None and not started:
        started = list(Path(tempfile.gettempdir()).glob(folder_pattern))
        time.sleep(0.02)
    _, err = build.communicate(timeout=120)
    assert build.returncode == 2 and "unknown stage" in err
    assert len(started) == 1, "the build started no standbys before it parsed its config"

    def standbys_left() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if str(started[0]) in " ".join(p.info["cmdline"] or [])]

    deadline = time.monotonic() + 30
    while (started[0].exists() or standbys_left()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not started[0].exists() and standbys_left() == []


def _standby(tmp_path: Path) -> tuple[subprocess.Popen, socket.socket]:
    path = tmp_path / "0.sock"
    process = subprocess.Popen([sys.executable, "-m", "pipelines.worker", "--standbys", str(tmp_path), "1"],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline and process.poll() is None, "standby never listened"
        time.sleep(0.02)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(path))
    return process, conn


def test_a_harness_that_fails_reports_a_failure_to_its_launcher(tmp_path: Path) -> None:
    process, conn = _standby(tmp_path)
    # No control address: Beam's harness cannot start.
    conn.sendall(json.dumps({"PATH": os.environ.get("PATH", "")}).encode() + b"\n")
    reader = conn.makefile("rb")
    assert reader.readline() == b"ok\n"
    assert reader.readline() == b"1\n"
    assert process.wait(timeout=30) == 1
    assert b"worker harness failed" in process.stderr.read()
    process.stdin.close()


def test_a_claimed_standby_exits_when_its_launcher_goes_away(tmp_path: Path) -> None:
    process, conn = _standby(tmp_path)
    with socket.socket() as silent:  # a control address that accepts and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        descriptor = f'url: "127.0.0.1:{silent.getsockname()[1]}"'
        environment = {"PATH": os.environ.get("PATH", ""), "CONTROL_API_SERVICE_DESCRIPTOR": descriptor,
                       "PIPELINE_OPTIONS": "{}"}
        conn.sendall(json.dumps(environment).encode() + b"\n")
        assert conn.makefile("rb").readline() == b"ok\n"
        time.sleep(0.5)
        assert process.poll() is None  # the harness is waiting for its runner
        conn.close()
        assert process.wait(timeout=30) == 1
    process.stdin.close()
    process.stderr.close()


def test_a_killed_build_leaves_no_standby_or_socket_behind() -> None:
    import psutil

    script = ("import os, sys, time\n"
              "from pipelines import worker\n"
              "standbys = worker.standby_workers(2)\n"
              "standbys.__enter__()\n"
              "print(os.environ[worker.STANDBY_DIR_ENV], flush=True)\n"
              "time.sleep(120)\n")
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    folder = Path(driver.stdout.readline().strip())
    deadline = time.monotonic() + 60
    while len(psutil.Process(driver.pid).children(recursive=True)) < 2:
        assert time.monotonic() < deadline, "the standby never forked"
        time.sleep(0.05)
    standbys = psutil.Process(driver.pid).children(recursive=True)
    assert len(standbys) == 2 and len(list(folder.glob("*.sock"))) == 2
    driver.kill()
    driver.wait()
    driver.stdout.close()
    gone, alive = psutil.wait_procs(standbys, timeout=30)
    assert alive == []
    assert not folder.exists()


def test_folders_of_builds_killed_with_their_standbys_are_removed_by_the_next_build(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    abandoned = tmp_path / f"{worker.FOLDER_PREFIX}{gone.pid}-abc123"
    live = tmp_path / f"{worker.FOLDER_PREFIX}{os.getpid()}-def456"
    unrelated = tmp_path / f"{worker.FOLDER_PREFIX}oldstyle"
    for folder in (abandoned, live, unrelated):
        folder.mkdir()
        (folder / "0.sock").write_bytes(b"")
    assert worker.remove_abandoned_folders(tmp_path) == [abandoned]
    assert not abandoned.exists() and live.exists() and unrelated.exists()


def test_a_builds_standby_folder_is_named_after_its_process() -> None:
    with worker.standby_workers(1):
        folder = Path(os.environ[worker.STANDBY_DIR_ENV])
        assert folder.name.startswith(f"{worker.FOLDER_PREFIX}{os.getpid()}-")


def test_a_standby_whose_folder_is_already_gone_exits_cleanly(tmp_path: Path) -> None:
    # A build that ends at once removes the folder in its cleanup, maybe before the standby binds.
    standby = subprocess.Popen([sys.executable, "-m", "pipelines.worker", "--standbys", str(tmp_path / "removed"), "2"],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert standby.wait(timeout=60) == 0
        assert b"Traceback" not in standby.stderr.read()
    finally:
        standby.stdin.close()
        standby.stderr.close()


def test_a_build_prints_no_beam_start_up_notices_but_still_names_a_mistyped_flag(tmp_path: Path) -> None:
    corpus = write_fixture(tmp_path, every=40)
    build = subprocess.run([sys.executable, "-m", "pipelines.build", "--home", str(tmp_path), "--input", str(corpus),
                            *MULTI_PROCESS, *SMALL, "--direct_num_worker=3"],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    for notice in ("apitools not found", "semi_persistent_directory", "Logging handler created", "INFO:"):
        assert notice not in build.stderr
    discarded = [line for line in build.stderr.splitlines() if "Discarding unparseable args" in line]
    assert len(discarded) == 1 and "--direct_num_worker=3" in discarded[0]
