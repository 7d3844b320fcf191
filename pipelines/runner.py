"""Which Beam runner a build runs on: ``--runner DirectRunner`` (Beam's default) means its FnApiRunner.

Beam 2.77's ``DirectRunner`` first tries the Prism runner: it converts the pipeline to its portable form
(~1 s for a build's graph here), then downloads a Go binary from GitHub and, where that works, runs the
build on it, ignoring ``--direct_running_mode`` and ``--direct_num_workers``; offline the download fails
and it falls back to the FnApiRunner. A build should neither fetch executables nor change engines with
the network: the data-plane fix and the per-stage count checks in :mod:`pipelines.transit` are written
for the FnApiRunner, and so is ``bench/timed_build.py``. So a local build goes straight to the runner
that DirectRunner picks for a batch pipeline offline, configured the way DirectRunner configures it.
Any other ``--runner`` (Dataflow, Flink, Spark, Prism, ...) is Beam's to create.

Building and translating a build's graph took ~3.3 s on one core before any stage ran, three quarters
of it in two of Beam's introspections that give the same answer every time they are asked:
:class:`CachedViewOptions` and :func:`dofn_specs_memoized` ask each once (~1 s left).

In ``multi_processing`` mode the workers are started as ``python -m pipelines.worker`` instead of
``python -m apache_beam.runners.worker.sdk_worker_main``: Beam's own harness, run by a process that a
build can start before it needs it, and that exits without Python's teardown (see that module).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.runner import PipelineRunner
from apache_beam.transforms import environments, userstate

from pipelines.worker import DIRECT_RUNNER_NAMES

ViewT = TypeVar("ViewT", bound=PipelineOptions)


class CachedViewOptions(PipelineOptions):
    """Pipeline options whose view of each options class is made once.

    Beam asks the pipeline's options for a view at every ``apply`` and every type check (~1,300 times
    for a build's graph), and each new view parses the flags again with a fresh argparse parser: ~1.2 s.
    Every view of one options object reads and writes the same values (``_all_options``), so the view
    made first answers exactly as a new one would.
    """

    def view_as(self, cls: type[ViewT]) -> ViewT:
        views = self.__dict__.get("_views")
        if views is None:
            views = {}
            object.__setattr__(self, "_views", views)  # PipelineOptions refuses unknown attributes
        if cls not in views:
            views[cls] = super().view_as(cls)
        return views[cls]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_views", None)
        return state


@contextlib.contextmanager
def dofn_specs_memoized() -> Iterator[None]:
    """While the block runs, Beam inspects each DoFn's methods for state and timer parameters once.

    It asks six times per ``ParDo`` while building and translating the graph, each time calling
    ``inspect.signature`` on every method of the DoFn (~1.2 s for a build's ~170 ParDos); a DoFn's
    methods do not change in between. Callers get their own copies of the sets.
    """
    original = userstate.get_dofn_specs
    seen: dict[int, tuple[Any, tuple[set, set]]] = {}  # the DoFn is held so that its id is not reused

    def get_dofn_specs(dofn: Any) -> tuple[set, set]:
        entry = seen.get(id(dofn))
        if entry is None or entry[0] is not dofn:
            entry = seen[id(dofn)] = (dofn, original(dofn))
        state_specs, timer_specs = entry[1]
        return set(state_specs), set(timer_specs)

    userstate.get_dofn_specs = get_dofn_specs
    try:
        yield
    finally:
        userstate.get_dofn_specs = original


def is_direct(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    return runner is None or runner.lower() in DIRECT_RUNNER_NAMES


def local_worker_processes(options: PipelineOptions) -> int:
    """How many worker processes a local build starts (0 when its workers are not processes)."""
    direct = options.view_as(DirectOptions)
    if not is_direct(options) or direct.direct_running_mode != "multi_processing":
        return 0
    if direct.direct_num_workers == 0:  # as FnApiRunner reads it: one per CPU
        return os.cpu_count() or 1
    return direct.direct_num_workers or 1


BEAM_WORKER_COMMAND = f"{sys.executable} -m apache_beam.runners.worker.sdk_worker_main"
WORKER_COMMAND = f"{sys.executable} -m pipelines.worker"


class LocalRunner(fn_runner.FnApiRunner):
    """The FnApiRunner, starting ``pipelines.worker`` processes where it would start Beam's worker.

    ``FnApiRunner.run_pipeline`` picks the workers' environment from ``--direct_running_mode`` and
    assigns it to ``_default_environment`` with the worker command built in; this catches that one
    assignment (Beam is pinned; ``tests/test_runner.py`` checks the workers really run our module).
    """

    @property
    def _default_environment(self) -> environments.Environment:
        return self._environment

    @_default_environment.setter
    def _default_environment(self, environment: environments.Environment) -> None:
        if (isinstance(environment, environments.SubprocessSDKEnvironment)
                and environment.command_string == BEAM_WORKER_COMMAND):
            environment = environments.SubprocessSDKEnvironment.from_command_string(WORKER_COMMAND)
        self._environment = environment


def direct_batch_runner(options: PipelineOptions) -> PipelineRunner:
    """The FnApiRunner as ``SwitchingDirectRunner`` builds it, workers given the pipeline's options."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    return LocalRunner(provision_info=fn_runner.ExtendedProvisionInfo(provision))


def make_pipeline(beam_args: list[str]) -> beam.Pipeline:
    options = CachedViewOptions(beam_args)
    if is_direct(options):
        return beam.Pipeline(runner=direct_batch_runner(options), options=options)
    return beam.Pipeline(options=options)
