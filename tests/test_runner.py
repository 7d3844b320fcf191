"""A local build runs on Beam's FnApiRunner directly, never by way of the Prism runner."""

from __future__ import annotations

import contextlib
import copy
import inspect
import pickle
import shutil
import sys
import types

import apache_beam as beam
import pytest
from apache_beam import coders
from apache_beam.coders.coder_impl import create_InputStream, create_OutputStream
from apache_beam.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    PipelineOptions,
    StandardOptions,
    TypeOptions,
)
from apache_beam.runners.portability import prism_runner
from apache_beam.runners.portability.fn_api_runner import execution
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
from apache_beam.runners.worker import data_plane, statesampler
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import core, ptransform, userstate, window
from apache_beam.transforms import util as transforms_util
from apache_beam.typehints import decorators
from apache_beam.utils.counters import CounterFactory

from pipelines import runner
from tests.conftest import MULTI_PROCESS


@pytest.mark.parametrize(
    ("args", "direct"),
    [
        ([], True),
        (["--runner", "DirectRunner"], True),
        (["--runner=direct"], True),
        (["--runner", "SwitchingDirectRunner"], True),
        (["--runner", "FnApiRunner"], False),
        (["--runner", "PrismRunner"], False),
        (["--runner", "DataflowRunner"], False),
    ],
)
def test_which_runner_names_mean_the_local_direct_runner(args: list[str], direct: bool) -> None:
    assert runner.is_direct(PipelineOptions(args)) is direct


def test_direct_runner_builds_run_on_the_fn_api_runner_with_their_options(monkeypatch: pytest.MonkeyPatch) -> None:
    prism_started: list[bool] = []

    def no_prism(*args, **kwargs):
        prism_started.append(True)
        raise RuntimeError("a local build must not start the Prism runner")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", no_prism)
    pipeline = runner.make_pipeline([*MULTI_PROCESS, "--default_sdk_harness_log_level=ERROR"])
    assert isinstance(pipeline.runner, runner.LocalRunner)
    # The workers receive the pipeline's options, as under DirectRunner.
    options = pipeline.runner._provision_info.provision_info.pipeline_options
    assert options["beam:option:default_sdk_harness_log_level:v1"] == "ERROR"
    with pipeline:
        assert_that(pipeline | beam.Create(range(10)) | beam.Map(lambda v: v * v), equal_to([v * v for v in range(10)]))
    assert prism_started == []


def test_other_runners_are_left_to_beam() -> None:
    pipeline = runner.make_pipeline(["--runner", "FnApiRunner", "--direct_num_workers=1"])
    assert type(pipeline.runner) is FnApiRunner  # Beam's own, not our LocalRunner subclass
    assert pipeline.runner._provision_info.provision_info.pipeline_options.fields == {}
    shutil.rmtree(pipeline.local_tempdir)  # Beam removes it only when a pipeline runs


def _main_module(_: object) -> str:
    return sys.modules["__main__"].__spec__.name


def test_multi_process_workers_run_the_fast_exit_worker() -> None:
    pipeline = runner.make_pipeline([*MULTI_PROCESS, "--default_sdk_harness_log_level=ERROR"])
    with pipeline:
        mains = pipeline | beam.Create(range(4)) | beam.Map(_main_module) | beam.Distinct()
        assert_that(mains, equal_to(["pipelines.worker"]))


FLAGS = ["--runner", "DirectRunner", "--direct_num_workers=2", "--experiments=a", "--experiments=b", "--unknown=1"]


def test_cached_views_read_and_write_the_same_values_as_beams_views() -> None:
    cached, plain = runner.CachedViewOptions(FLAGS), PipelineOptions(FLAGS)
    for options in (cached, plain):
        options.view_as(DebugOptions).add_experiment("c")
        options.view_as(TypeOptions).pipeline_type_check = False
    assert cached.view_as(DirectOptions) is cached.view_as(DirectOptions)
    assert cached.get_all_options(retain_unknown_options=True) == plain.get_all_options(retain_unknown_options=True)
    for view in (StandardOptions, DirectOptions, DebugOptions, TypeOptions):
        assert cached.view_as(view).get_all_options() == plain.view_as(view).get_all_options()
    assert cached.view_as(DebugOptions).experiments == ["a", "b", "c"]
    copied = pickle.loads(pickle.dumps(cached))
    assert "_views" not in copied.__dict__ and "_views" not in copy.deepcopy(cached).__dict__
    assert copied.get_all_options() == cached.get_all_options()


_COUNT = userstate.CombiningValueStateSpec("count", sum)
_COUNT_PARAM = beam.DoFn.StateParam(_COUNT)


class _Stateful(beam.DoFn):
    def process(self, item, count=_COUNT_PARAM):
        count.add(1)
        yield item


def _graph(with_shortcuts: bool) -> bytes:
    options = runner.CachedViewOptions([]) if with_shortcuts else PipelineOptions([])
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    with runner.introspection_memoized() if with_shortcuts else contextlib.nullcontext():
        keyed = pipeline | beam.Create([("a", 1), ("b", 2)]) | "Stateful" >> beam.ParDo(_Stateful())
        _ = keyed | beam.GroupByKey() | beam.MapTuple(lambda key, values: (key, sorted(values)))
        graph = pipeline.to_runner_api().SerializeToString(deterministic=True)
    shutil.rmtree(pipeline.local_tempdir)  # Beam removes it only when a pipeline runs
    return graph


def test_dofn_specs_are_memoized_only_inside_the_block_and_give_beams_answers() -> None:
    original = userstate.get_dofn_specs
    stateful, stateless = _Stateful(), beam.DoFn()
    with runner.introspection_memoized():
        assert userstate.get_dofn_specs is not original
        for dofn in (stateful, stateless, stateful):
            assert userstate.get_dofn_specs(dofn) == original(dofn)
        assert userstate.is_stateful_dofn(stateful) and not userstate.is_stateful_dofn(stateless)
        userstate.get_dofn_specs(stateful)[0].clear()  # a caller's copy: the next caller still sees the spec
        assert userstate.get_dofn_specs(stateful)[0] == {_COUNT}
    assert userstate.get_dofn_specs is original


class _Callable:
    """A callable whose signature is computed: it must be asked again every time."""

    def __init__(self, parameter: str):
        self.parameter = parameter

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.Signature([inspect.Parameter(self.parameter, inspect.Parameter.POSITIONAL_OR_KEYWORD)])

    def __call__(self, *args: object) -> None:
        pass


def test_signatures_are_memoized_for_functions_and_their_methods_only_inside_the_block() -> None:
    original = decorators.get_signature
    bound, other_instance = _Stateful().process, _Stateful().process
    callable_object = _Callable("first")
    with runner.introspection_memoized():
        for module in (decorators, core, ptransform, transforms_util):
            assert module.get_signature is not original
        for func in (_Callable.__init__, bound, other_instance, len, callable_object):
            assert core.get_signature(func) == original(func)
        assert core.get_signature(bound) is core.get_signature(other_instance)  # one function, any instance
        assert core.get_signature(_Callable.__init__) is core.get_signature(_Callable.__init__)
        assert list(core.get_signature(bound).parameters) == ["item", "count"]  # bound: no self
        callable_object.parameter = "second"
        assert list(core.get_signature(callable_object).parameters) == ["second"]
    for module in (decorators, core, ptransform, transforms_util):
        assert module.get_signature is original


def test_the_shortcuts_translate_a_graph_exactly_as_beam_does() -> None:
    assert _graph(with_shortcuts=True) == _graph(with_shortcuts=False)


def _joins(args: list[str]) -> beam.Pipeline:
    """A CoGroupByKey (a Flatten read by a GroupByKey) beside a Flatten read by a Map, results asserted."""
    from pipelines import transit

    pipeline = runner.make_pipeline(args)
    left = pipeline | "Left" >> beam.Create([(k % 5, k) for k in range(40)])
    right = pipeline | "Right" >> beam.Create([(k % 3, str(k)) for k in range(12)])
    joined = (
        {"l": left, "r": right}
        | "Join" >> transit.CheckedCoGroupByKey("test/join")
        | beam.MapTuple(lambda key, groups: (key, sorted(groups["l"]), sorted(groups["r"])))
    )
    keys = (left, right) | "Both" >> beam.Flatten() | "Keys" >> beam.MapTuple(lambda key, _: key)
    expected = [(key, [k for k in range(40) if k % 5 == key], sorted(str(k) for k in range(12) if k % 3 == key))
                for key in range(5)]
    assert_that(joined, equal_to(expected), label="joined")
    assert_that(keys, equal_to([k % 5 for k in range(40)] + [k % 3 for k in range(12)]), label="keys")
    return pipeline


def _stage_names(fn_api_runner: FnApiRunner, pipeline: beam.Pipeline) -> list[str]:
    _, stages = fn_api_runner.create_stages(pipeline.to_runner_api())
    return [stage.name for stage in stages]


def test_a_flatten_read_by_a_groupbykey_becomes_writes_into_the_grouping() -> None:
    pipeline = _joins(["--runner", "DirectRunner"])
    ours, beams = _stage_names(pipeline.runner, pipeline), _stage_names(FnApiRunner(), pipeline)
    # Beam gives the join's Flatten a stage of its own (a round trip of every record through the runner);
    # ours writes each input into the grouping from the stage that makes it.
    assert any("(Join/Group/Flatten/Read)" in name for name in beams)
    assert not any("Join/Group/Flatten/Read" in name for name in ours)
    for index, tag in enumerate(("l", "r")):
        (producer,) = [name for name in ours if f"Join-Tag-{tag}-" in name]
        assert f"(Join/Group/Flatten/Write/{index})" in producer
    # A Flatten read by anything else keeps Beam's translation.
    assert any("(Both/Read)" in name for name in ours)
    shutil.rmtree(pipeline.local_tempdir)


@pytest.mark.parametrize("args", [["--runner", "DirectRunner"], MULTI_PROCESS], ids=["in-memory", "multi-process"])
def test_sunk_flattens_group_every_record(args: list[str]) -> None:
    from pipelines import transit

    pipeline = _joins([*args, "--default_sdk_harness_log_level=ERROR"])
    result = pipeline.run()
    result.wait_until_finish()  # the asserted results hold
    assert transit.problems(result, pipeline) == []


# ------------------------------------------------------------------------------------ data in pieces

_PRE_GROUPED = coders.WindowedValueCoder(coders.TupleCoder([coders.StrUtf8Coder(), coders.BytesCoder()]))
_POST_GROUPED = coders.WindowedValueCoder(
    coders.TupleCoder([coders.StrUtf8Coder(), coders.IterableCoder(coders.BytesCoder())]))


def _filled_grouping_buffer(records: list[tuple[str, bytes]]) -> execution.GroupingBuffer:
    buffer = execution.GroupingBuffer(_PRE_GROUPED, _POST_GROUPED, core.Windowing(window.GlobalWindows()))
    stream = create_OutputStream()
    for record in records:
        _PRE_GROUPED.get_impl().encode_to_stream(window.GlobalWindows.windowed_value(record), stream, True)
    buffer.append(stream.get())
    return buffer


def _decoded(piece: bytes) -> list:
    stream, values = create_InputStream(piece), []
    while stream.size() > 0:
        values.append(_POST_GROUPED.get_impl().decode_from_stream(stream, True).value)
    return values


def _records(n: int) -> list[tuple[str, bytes]]:
    return [(f"key-{i % 97}", bytes([i % 251]) * (100 + i % 700)) for i in range(n)]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_grouped_input_in_pieces_is_beams_partition_byte_for_byte(monkeypatch: pytest.MonkeyPatch,
                                                                  workers: int) -> None:
    records = _records(3_000)
    beams = execution.GroupingBuffer.partition(_filled_grouping_buffer(records), workers)
    monkeypatch.setattr(runner, "PIECE_BYTES", 20_000)
    buffer = _filled_grouping_buffer(records)
    ours = runner._partition_in_pieces(buffer, workers)
    assert buffer._table == {}  # every group was let go once encoded
    assert [len(share) for share in beams] == [1] * workers
    assert all(len(share) > 3 for share in ours)  # ~1.2 MB of values in pieces of ~20 KB
    for beams_share, our_share in zip(beams, ours, strict=True):
        assert b"".join(our_share) == beams_share[0]
        # Each piece decodes alone: pieces are cut between elements, as a data-plane message must be.
        assert [value for piece in our_share for value in _decoded(piece)] == _decoded(beams_share[0])
    assert runner._partition_in_pieces(buffer, workers) is ours  # read again by a second consumer


def test_an_empty_grouping_gives_each_worker_one_empty_piece_as_beams_does() -> None:
    beams = execution.GroupingBuffer.partition(_filled_grouping_buffer([]), 2)
    assert runner._partition_in_pieces(_filled_grouping_buffer([]), 2) == beams == [[b""], [b""]]


class _DataConnection:
    def __init__(self, threshold: int):
        self.messages: list[bytes] = []
        self.threshold = threshold

    def output_stream(self, instruction_id: str, transform_id: str) -> data_plane.ClosableOutputStream:
        return data_plane.SizeBasedBufferingClosableOutputStream(
            close_callback=self.messages.append, flush_callback=self.messages.append,
            size_flush_threshold=self.threshold)


def test_a_stage_input_leaves_in_messages_of_whole_pieces_once_the_buffer_is_full() -> None:
    connection = _DataConnection(threshold=10)
    manager = types.SimpleNamespace(_worker_handler=types.SimpleNamespace(data_conn=connection))
    pieces = [b"a" * 6, b"b" * 6, b"c" * 4, b"d" * 12, b"e" * 3]
    runner._send_input_in_pieces(manager, "bundle", "read", pieces)
    assert connection.messages == [b"a" * 6 + b"b" * 6, b"c" * 4 + b"d" * 12, b"e" * 3]
    connection.messages.clear()
    runner._send_input_in_pieces(manager, "bundle", "read", None)
    assert connection.messages == [b""]  # the end of an empty input, as Beam's sends it


@pytest.mark.parametrize("args", [["--runner", "DirectRunner"], MULTI_PROCESS], ids=["in-memory", "multi-process"])
def test_groups_sent_in_many_pieces_arrive_whole(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    from pipelines import transit

    records = _records(4_000)
    expected: dict[str, list[bytes]] = {}
    for key, value in records:
        expected.setdefault(key, []).append(value)
    monkeypatch.setattr(runner, "PIECE_BYTES", 64 << 10)  # ~1.8 MB of values: ~14 pieces per worker
    pieces_per_share: list[int] = []

    def partition_in_pieces(buffer: execution.GroupingBuffer, n: int) -> list[list[bytes]]:
        shares = in_pieces(buffer, n)
        pieces_per_share.extend(len(share) for share in shares)
        return shares

    in_pieces = runner._partition_in_pieces
    monkeypatch.setattr(runner, "_partition_in_pieces", partition_in_pieces)
    pipeline = runner.make_pipeline([*args, "--default_sdk_harness_log_level=ERROR"])
    grouped = (pipeline | beam.Create(records, reshuffle=False)
               | transit.CheckedGroupByKey("pieces") | beam.MapTuple(lambda key, values: (key, sorted(values))))
    assert_that(grouped, equal_to([(key, sorted(values)) for key, values in expected.items()]))
    original_partition = execution.GroupingBuffer.partition
    result = pipeline.run()
    result.wait_until_finish()
    assert transit.problems(result, pipeline) == []
    assert max(pieces_per_share) > 10
    assert execution.GroupingBuffer.partition is original_partition  # Beam's again once the run is over


def _sampling_period_ms(_: object) -> int:
    return statesampler.get_current_tracker().sampling_period_ms


@pytest.mark.parametrize("args", [["--runner", "DirectRunner"], MULTI_PROCESS], ids=["in-memory", "multi-process"])
def test_bundles_sample_their_state_often_so_their_end_waits_little(args: list[str]) -> None:
    beams_sampler = statesampler.StateSampler
    pipeline = runner.make_pipeline([*args, "--default_sdk_harness_log_level=ERROR"])
    with pipeline:
        periods = pipeline | beam.Create(range(4)) | beam.Map(_sampling_period_ms) | beam.Distinct()
        assert_that(periods, equal_to([runner.SAMPLING_PERIOD_MS]))
    assert runner.SAMPLING_PERIOD_MS <= 10 < statesampler.DEFAULT_SAMPLING_PERIOD_MS
    assert statesampler.StateSampler is beams_sampler  # Beam's again once the run is over


def test_a_bundles_sampler_never_sleeps_longer_than_the_period() -> None:
    with runner.bundles_end_promptly():
        asked_for_less = statesampler.StateSampler("stage", CounterFactory(), sampling_period_ms=5)
        asked_for_more = statesampler.StateSampler("stage", CounterFactory(), sampling_period_ms=1000)
    assert (asked_for_less.sampling_period_ms, asked_for_more.sampling_period_ms) == (5, runner.SAMPLING_PERIOD_MS)
    assert isinstance(asked_for_more, statesampler.StateSampler)
