"""A local build runs on Beam's FnApiRunner directly, never by way of the Prism runner."""

from __future__ import annotations

import sys

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability import prism_runner
from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

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


def _main_module(_: object) -> str:
    return sys.modules["__main__"].__spec__.name


def test_multi_process_workers_run_the_fast_exit_worker() -> None:
    pipeline = runner.make_pipeline([*MULTI_PROCESS, "--default_sdk_harness_log_level=ERROR"])
    with pipeline:
        mains = pipeline | beam.Create(range(4)) | beam.Map(_main_module) | beam.Distinct()
        assert_that(mains, equal_to(["pipelines.worker"]))
