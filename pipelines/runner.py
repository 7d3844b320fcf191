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
:class:`CachedViewOptions` and :func:`introspection_memoized` ask each once.

Its translation writes the inputs of a Flatten that only a GroupByKey reads straight into the grouping,
where Beam's gives the Flatten a stage of its own (:func:`sink_flattens_into_groups`): a 10k build's
records crossed the runner's process 22% less (329 → 257 MB both ways).

Its data plane moves a stage's input in pieces (:func:`data_in_pieces`): Beam's encodes all of a grouped
input into one buffer per worker and sends each as a single message, several full copies of a stage's
input in the runner's process at once.

Its bundles end when their work does (:func:`bundles_end_promptly`): Beam's end each with a wait of up
to a tenth of the bundle's length, up to 200 ms.

In ``multi_processing`` mode the workers are started as ``python -m pipelines.worker`` instead of
``python -m apache_beam.runners.worker.sdk_worker_main``: Beam's own harness, run by a process that a
build can start before it needs it, and that exits without Python's teardown (see that module).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import sys
import types
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.coders.coder_impl import create_OutputStream
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.portability.fn_api_runner import execution, fn_runner, translations
from apache_beam.runners.runner import PipelineRunner
from apache_beam.runners.worker import bundle_processor, statesampler
from apache_beam.transforms import core, environments, ptransform, userstate, window
from apache_beam.transforms import util as transforms_util
from apache_beam.typehints import decorators
from apache_beam.utils import windowed_value

from pipelines import memory
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


# The modules that call ``get_signature`` by its own name.
_SIGNATURE_USERS = (decorators, core, ptransform, transforms_util)


@contextlib.contextmanager
def introspection_memoized() -> Iterator[None]:
    """While the block runs, Beam inspects each function's signature, and each DoFn's methods for state
    and timer parameters, once.

    Every ``ParDo`` Beam builds calls ``inspect.signature`` on every method of its DoFn (~35 of them,
    ~8,000 calls for a build's ~190 ParDos), then asks for the DoFn's state and timer specs six times
    while building and translating the graph, each time inspecting every method again (~1.2 s in all).
    A worker does the same for each DoFn it unpickles when it first runs a stage (see
    :mod:`pipelines.worker`). Neither answer changes in between: a function's signature is fixed when it
    is defined (a bound method's is its function's without the first parameter), and so are a DoFn's
    methods. Only functions and methods of functions are remembered (other callables can compute their
    signature); :class:`inspect.Signature` is immutable, and callers get their own copies of the spec
    sets. What is remembered stays referenced until the block ends: the build's graph, or a worker's
    share of the build.
    """
    original_specs, original_signature = userstate.get_dofn_specs, decorators.get_signature
    seen: dict[int, tuple[Any, tuple[set, set]]] = {}  # the DoFn is held so that its id is not reused
    signatures: dict[Any, inspect.Signature] = {}

    def get_dofn_specs(dofn: Any) -> tuple[set, set]:
        entry = seen.get(id(dofn))
        if entry is None or entry[0] is not dofn:
            entry = seen[id(dofn)] = (dofn, original_specs(dofn))
        state_specs, timer_specs = entry[1]
        return set(state_specs), set(timer_specs)

    def get_signature(func: Any) -> inspect.Signature:
        if isinstance(func, types.FunctionType):
            key: Any = func
        elif isinstance(func, types.MethodType) and isinstance(func.__func__, types.FunctionType):
            key = (types.MethodType, func.__func__)
        else:
            return original_signature(func)
        signature = signatures.get(key)
        if signature is None:
            signature = signatures[key] = original_signature(func)
        return signature

    userstate.get_dofn_specs = get_dofn_specs
    for module in _SIGNATURE_USERS:
        module.get_signature = get_signature
    try:
        yield
    finally:
        userstate.get_dofn_specs = original_specs
        for module in _SIGNATURE_USERS:
            module.get_signature = original_signature


PIECE_BYTES = 8 << 20  # Beam's data plane flushes at 10 MB; a piece is cut at the first element past this
# The groups freed while encoding stay resident until handed back: 3-18 ms per hand-back on a 700 MB heap.
RELEASE_EVERY_PIECES = 8


def _partition_in_pieces(buffer: execution.GroupingBuffer, n: int) -> list[list[bytes]]:
    """``GroupingBuffer.partition`` (Beam 2.77) for the global window, the same groups in the same order,
    each worker's share encoded in pieces of ~:data:`PIECE_BYTES`, every group dropped once encoded.

    Beam's keeps every decoded group until all are encoded, grows one buffer per worker (reallocating as
    it doubles) and then copies it out whole.
    """
    if buffer._grouped_output:
        return buffer._grouped_output
    pane = windowed_value.PaneInfo(is_first=True, is_last=True, timing=windowed_value.PaneInfoTiming.ON_TIME,
                                   index=0, nonspeculative_index=0)
    in_window = window.GlobalWindows.windowed_value(
        None, timestamp=window.GlobalWindow().max_timestamp(), pane_info=pane).with_value
    encode = buffer._post_grouped_coder.get_impl().encode_to_stream
    decode_key = buffer._key_coder.get_impl().decode
    table = buffer._table
    pieces: list[list[bytes]] = [[] for _ in range(n)]
    streams = [create_OutputStream() for _ in range(n)]
    encoded = 0
    for index, encoded_key in enumerate(list(table)):
        stream = streams[index % n]
        encode(in_window((decode_key(encoded_key), table.pop(encoded_key))), stream, True)
        if stream.size() >= PIECE_BYTES:
            pieces[index % n].append(stream.get())
            streams[index % n] = create_OutputStream()
            encoded += 1
            if encoded % RELEASE_EVERY_PIECES == 0:
                memory.release_free_memory()
    for share, stream in zip(pieces, streams, strict=True):
        if stream.size() or not share:
            share.append(stream.get())
    buffer._grouped_output = pieces
    memory.release_free_memory()
    return pieces


def _send_input_in_pieces(manager: fn_runner.BundleManager, process_bundle_id: str, read_transform_id: str,
                          byte_streams: Iterable[bytes] | None) -> None:
    """``BundleManager._send_input_to_worker`` (Beam 2.77), sending a message whenever the data plane's
    buffer passes its size threshold: Beam's writes a bundle's whole input into the buffer and sends it
    as one message at the end. Every piece holds whole elements, which a message must."""
    assert manager._worker_handler is not None
    data_out = manager._worker_handler.data_conn.output_stream(process_bundle_id, read_transform_id)
    for byte_stream in byte_streams or []:
        data_out.write(byte_stream)
        data_out.maybe_flush()
    data_out.close()


@contextlib.contextmanager
def data_in_pieces() -> Iterator[None]:
    """While the block runs, FnApiRunners hand stage inputs to workers in pieces of ~10 MB.

    Beam 2.77 encodes a grouped stage input whole and sends each worker's share as one message, which
    the runner's process held several times over while it was sent: the decoded groups, the growing
    encode buffer, its copy, the send buffer, its copy and the message. At the start of a 100k build's
    last Parquet stage the runner held ~610 MB of such buffers for 175 MB of grouped rows (docs/benchmarks.md).
    In pieces, each group is freed once encoded and each message is sent as soon as it is full; a piece
    holds whole groups, so one group larger than a piece (a Parquet file's rows) is a piece of its own.
    """
    original_partition = execution.GroupingBuffer.partition
    original_send = fn_runner.BundleManager._send_input_to_worker

    def partition(buffer: execution.GroupingBuffer, n: int) -> list[list[bytes]]:
        if buffer._windowing.is_default():
            return _partition_in_pieces(buffer, n)
        return original_partition(buffer, n)

    execution.GroupingBuffer.partition = partition
    fn_runner.BundleManager._send_input_to_worker = _send_input_in_pieces
    try:
        yield
    finally:
        execution.GroupingBuffer.partition = original_partition
        fn_runner.BundleManager._send_input_to_worker = original_send


# The longest a bundle waits at its end for the state sampler's thread (Beam's: 200 ms).
SAMPLING_PERIOD_MS = 10


class PromptStateSampler(statesampler.StateSampler):
    """Beam's state sampler, sampling every :data:`SAMPLING_PERIOD_MS` at most."""

    def __init__(self, prefix: str, counter_factory: Any, sampling_period_ms: int = SAMPLING_PERIOD_MS):
        super().__init__(prefix, counter_factory, min(sampling_period_ms, SAMPLING_PERIOD_MS))


@contextlib.contextmanager
def bundles_end_promptly() -> Iterator[None]:
    """While the block runs, a bundle's end waits for the state sampler at most :data:`SAMPLING_PERIOD_MS`.

    Every bundle a worker runs starts a thread that samples which step the bundle is in: it sleeps 2 ms,
    then each sleep 1.2 times longer than the last, up to 200 ms. The bundle's end joins that thread,
    which first finishes its current sleep, so a bundle of length L waited up to 0.2 L + 2 ms (200 ms at
    most), a tenth of L on average: dead time in every stage of a build, per worker. The per-stage bench
    timed it: a 0.65 s dedup bundle ended 0-130 ms after its last element, whichever side of a sleep
    boundary it finished (docs/benchmarks.md). Sampling at most every 10 ms bounds the wait at 10 ms;
    the thread's wake-ups take a lock and add the elapsed time to a counter, without the GIL.
    """
    original = statesampler.StateSampler
    statesampler.StateSampler = PromptStateSampler
    try:
        yield
    finally:
        statesampler.StateSampler = original


def _group_write_buffer(stage: translations.Stage) -> bytes | None:
    """The grouping buffer a stage writes to, when the stage is nothing but a GroupByKey's write."""
    (transform,) = stage.transforms
    if transform.spec.urn == bundle_processor.DATA_OUTPUT_URN:
        kind, _ = translations.split_buffer_id(transform.spec.payload)
        if kind == "group":
            return transform.spec.payload
    return None


def sink_flattens_into_groups(stages: Iterable[translations.Stage],
                              context: translations.TransformContext) -> Iterator[translations.Stage]:
    """Beam's ``sink_flattens`` phase, except that a Flatten read only by a GroupByKey goes away: each of
    its inputs writes straight into the GroupByKey's buffer.

    Beam 2.77's FnApiRunner turns every Flatten of several inputs into a stage of its own: the inputs are
    written to the runner, read back by a worker and written to the runner again for the GroupByKey
    behind it ("TODO: Actually attempt to sink rather than always materialize"). Every record of a
    CoGroupByKey (a Flatten before a GroupByKey) made that extra round trip through the runner's single
    process, which moves ~50 MB/s here. Writing each input into the grouping buffer groups exactly the
    same records: the Flatten's inputs already carry its output's coder (``fix_flatten_coders``), which
    is the coder the grouping buffer decodes with. Any other Flatten is left to Beam's phase.
    """
    return translations.sink_flattens(_flattens_into_groups(stages, context), context)


def _flattens_into_groups(stages: Iterable[translations.Stage],
                          context: translations.TransformContext) -> Iterator[translations.Stage]:
    stages = list(translations.fix_flatten_coders(stages, context))
    readers: dict[str, list[translations.Stage]] = defaultdict(list)
    for stage in stages:
        for pcoll in translations.only_transform(stage.transforms).inputs.values():
            readers[pcoll].append(stage)
    replaced: dict[translations.Stage, list[translations.Stage]] = {}  # GroupByKey writes → their new writes
    successors: dict[translations.Stage, list[translations.Stage]] = {}  # removed stages → what follows them
    kept = []
    for stage in stages:
        flatten = translations.only_transform(stage.transforms)
        if flatten.spec.urn != common_urns.primitives.FLATTEN.urn or len(flatten.inputs) < 2:
            kept.append(stage)
            continue
        (output,) = flatten.outputs.values()
        consumers = readers[output]
        buffer = _group_write_buffer(consumers[0]) if len(consumers) == 1 else None
        if buffer is None:
            kept.append(stage)
            continue
        group_write = consumers[0]
        replaced[group_write] = [
            translations.Stage(
                f"{flatten.unique_name}/Write/{local_in}",
                [beam_runner_api_pb2.PTransform(
                    unique_name=f"{flatten.unique_name}/Write/{local_in}",
                    inputs={local_in: pcoll},
                    spec=beam_runner_api_pb2.FunctionSpec(urn=bundle_processor.DATA_OUTPUT_URN, payload=buffer),
                    environment_id=flatten.environment_id)],
                downstream_side_inputs=frozenset(),
                must_follow=stage.must_follow | group_write.must_follow)
            for local_in, pcoll in flatten.inputs.items()
        ]
        successors[stage] = successors[group_write] = replaced[group_write]
        # The runner creates the grouping buffer with the data-channel coder of the GroupByKey's input.
        context.add_data_channel_coder(output)
    for stage in kept:
        if stage in replaced:
            yield from replaced[stage]
            continue
        if stage.must_follow & successors.keys():
            stage.must_follow = frozenset().union(
                *(successors.get(before, [before]) for before in stage.must_follow))
        yield stage


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

    def run_pipeline(self, pipeline: beam.Pipeline, options: PipelineOptions) -> Any:
        with data_in_pieces(), bundles_end_promptly():
            return super().run_pipeline(pipeline, options)

    def create_stages(self, pipeline_proto: beam_runner_api_pb2.Pipeline
                      ) -> tuple[translations.TransformContext, list[translations.Stage]]:
        """``FnApiRunner.create_stages`` (Beam 2.77) with :func:`sink_flattens_into_groups` in place of
        Beam's ``sink_flattens``."""
        return translations.create_and_optimize_stages(
            copy.deepcopy(pipeline_proto),
            phases=[
                translations.annotate_downstream_side_inputs,
                translations.fix_side_input_pcoll_coders,
                translations.pack_combiners,
                translations.lift_combiners,
                translations.expand_sdf,
                translations.expand_gbk,
                sink_flattens_into_groups,
                translations.greedily_fuse,
                translations.read_to_impulse,
                translations.impulse_to_input,
                translations.sort_stages,
                translations.add_impulse_to_dangling_transforms,
                translations.setup_timer_mapping,
                translations.populate_data_channel_coders,
            ],
            known_runner_urns=frozenset([common_urns.primitives.FLATTEN.urn,
                                         common_urns.primitives.GROUP_BY_KEY.urn]),
            use_state_iterables=self._use_state_iterables,
            is_drain=self._is_drain)


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
