"""Bad input to the planner exits 2 with one line, and a suggested fix, when given, works when followed."""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

import pytest

from planner import hardware
from planner import layout as L
from planner.cli import main
from planner.hardware import CATALOGUE, HardwareError, load_catalogue
from planner.shape import ModelShape

LLAMA_7B = ["layout", "--layers", "32", "--hidden", "4096", "--heads", "32", "--seq", "2048", "--global-batch", "64"]
LLAMA_70B = ["layout", "--layers", "80", "--hidden", "8192", "--heads", "64", "--seq", "2048", "--global-batch", "64"]


@pytest.fixture(autouse=True)
def _workspace(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TOKENMILL_HOME", str(tmp_path / "home"))


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("planner: error: ") and err.count("\n") == 1, err
    return err


# ------------------------------------------------------------------------------------------------ hardware TOML


@pytest.mark.parametrize("body, message", [
    ('[gpu.x]\nbase = "h100"\nhbm_gb = "80"\n', "[gpu.x] hbm_gb must be a finite positive number, got '80'"),
    ("gpu = 5\n", "gpu must be a table of [gpu.NAME] tables, got 5"),
    ("[gpu]\nx = 3\n", "[gpu.x] must be a table, got 3"),
    ('[gpu.x]\nbase = "h100"\npeak_bf16_flops = inf\n', "[gpu.x] peak_bf16_flops must be a finite positive number"),
    ('[gpu.x]\nbase = "h100"\ninternode_gbps = -inf\n', "[gpu.x] internode_gbps must be a finite positive number"),
    ('[gpu.x]\nbase = "h100"\nhbm_gbps = [4800]\n', "[gpu.x] hbm_gbps must be a finite positive number"),
    ('[gpu.x]\nbase = "h100"\ngpus_per_node = true\n', "[gpu.x] gpus_per_node must be a positive integer, got True"),
    ('[gpu.x]\nbase = "h100"\ngpus_per_node = 8.0\n', "[gpu.x] gpus_per_node must be a positive integer, got 8.0"),
    ('[gpu.x]\nbase = "h100"\nmatmul_efficiency = true\n', "[gpu.x] matmul_efficiency must be a finite positive"),
    ('[gpu.x]\nbase = "h100"\nname = 3\n', "[gpu.x] name must be a string, got 3"),
    ("[gpu.x]\nbase = 5\n", "[gpu.x] base must be a GPU name (a string), got 5"),
])
def test_malformed_hardware_toml_names_the_key(body: str, message: str, tmp_path, capsys) -> None:
    path = tmp_path / "hw.toml"
    path.write_text(body)
    with pytest.raises(HardwareError, match=re.escape(message)):
        load_catalogue(path)
    assert message in _error(["--compute", "1e21", "--gpus", "8", "--gpu", "x", "--hardware", str(path)], capsys)


def test_valid_hardware_toml_still_loads(tmp_path) -> None:
    path = tmp_path / "hw.toml"
    path.write_text('[gpu.x]\nbase = "h100"\nhbm_gb = 96\ngpus_per_node = 4\nmatmul_efficiency = 1\n')
    x = load_catalogue(path)["x"]
    assert (x.hbm_gb, x.gpus_per_node, x.matmul_efficiency) == (96, 4, 1)
    assert x.peak_bf16_flops == CATALOGUE["h100"].peak_bf16_flops


@pytest.mark.parametrize("body, message", [
    # A misspelt field in a table: the plan would have used h100's own value for it.
    pytest.param('[gpu.h100]\nbase = "h100"\nhbm_gbs = 4000\n',
                 "[gpu.h100] unknown field(s) 'hbm_gbs' (did you mean 'hbm_gbps'?); valid: base, gpus_per_node, "
                 "hbm_gb, hbm_gbps, internode_gbps, matmul_efficiency, name, nvlink_gbps, peak_bf16_flops, source",
                 id="misspelt-field"),
    pytest.param('[gpu.h100]\nbase = "h100"\ntflops_bf16 = 500e12\n',
                 "[gpu.h100] unknown field(s) 'tflops_bf16'; valid: base,", id="unknown-field-nothing-close"),
    pytest.param('[gpu.h100]\nbase = "h100"\n[gpu.h100.nvlink]\ngbps = 100\n',
                 "[gpu.h100] unknown field(s) 'nvlink' (did you mean 'nvlink_gbps'?); valid: base,",
                 id="table-inside-a-gpu-table"),
    # An unknown top-level table or key: every GPU in it was dropped and the built-in h100 planned with.
    pytest.param('[gpus.h100]\nbase = "h100"\ninternode_gbps = 5\n',
                 "unknown top-level key(s) 'gpus' (did you mean 'gpu'?); the file holds only [gpu.NAME] tables",
                 id="misspelt-top-level-table"),
    pytest.param('[hardware.h100]\ninternode_gbps = 5\n',
                 "unknown top-level key(s) 'hardware'; the file holds only [gpu.NAME] tables",
                 id="unknown-top-level-table"),
    pytest.param('internode_gbps = 5\n',
                 "unknown top-level key(s) 'internode_gbps'; the file holds only [gpu.NAME] tables",
                 id="unknown-top-level-key"),
    pytest.param('internode_gbps = 5\n[gpu.h100]\nbase = "h100"\n', "unknown top-level key(s) 'internode_gbps';",
                 id="unknown-top-level-key-beside-gpu-tables"),
])
def test_unknown_hardware_keys_are_refused_naming_file_and_key(body: str, message: str, tmp_path, capsys) -> None:
    path = tmp_path / "hw.toml"
    path.write_text(body)
    with pytest.raises(HardwareError, match=re.escape(message)):
        load_catalogue(path)
    assert f"{path}: {message}" in _error(["--compute", "1e21", "--gpus", "8", "--hardware", str(path)], capsys)


def _example_hardware_files() -> list[object]:
    """The hardware TOML the repository shows users: docs/planner.md's toml blocks and planner.hardware's docstring
    (there is no .toml hardware file in the repository)."""
    docs = (Path(__file__).parents[1] / "docs" / "planner.md").read_text(encoding="utf-8")
    blocks = [pytest.param(b, id="docs/planner.md") for b in re.findall(r"```toml\n(.*?)```", docs, re.S)
              if "[gpu." in b]
    literal = re.search(r"::\n\n((?:    .*\n|\n)+)", hardware.__doc__ or "")
    assert blocks and literal, "an example hardware TOML moved: update this test to find it"
    return [*blocks, pytest.param(textwrap.dedent(literal.group(1)), id="planner/hardware.py")]


@pytest.mark.parametrize("body", _example_hardware_files())
def test_example_hardware_files_still_load(body: str, tmp_path) -> None:
    path = tmp_path / "hw.toml"
    path.write_text(body)
    assert set(tomllib.loads(body)["gpu"]) <= set(load_catalogue(path))


# ------------------------------------------------------------------------------------------------ pinned layouts


def _with(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag`` set to ``value``, replaced where given, else added."""
    if flag not in argv:
        return [*argv, flag, value]
    i = argv.index(flag)
    return [*argv[: i + 1], value, *argv[i + 2:]]


@pytest.mark.parametrize("pins, message", [
    (["--gpus", "64", "--pp", "64"], "--pp 64 exceeds the model's 32 layers (a stage holds whole layers): "
                                     "closest valid 32"),
    (["--gpus", "64", "--tp", "8", "--pp", "64"], "--pp 64 exceeds the model's 32 layers (a stage holds whole "
                                                  "layers): closest valid 8"),
    (["--gpus", "64", "--pp", "4", "--interleave", "64"], "--interleave 64 needs --pp > 1 with its largest stage's "
                                                          "8 layers divisible by it: closest valid 8"),
    (["--gpus", "64", "--pp", "1", "--interleave", "2"], "--interleave 2 needs --pp > 1 with its largest stage's "
                                                         "32 layers divisible by it: closest valid 1"),
    (["--gpus", "64", "--interleave", "64"], "--interleave 64 must divide the layers of a pipeline stage (at most "
                                             "16 of 32): closest valid 16"),
])
def test_pins_the_depth_rules_out_are_refused_up_front(pins: list[str], message: str, capsys) -> None:
    # These used to search, find nothing, and suggest --gpus 72 or --gpu h200, which failed the same way.
    assert message in _error(LLAMA_7B + pins, capsys)
    assert main(_with(LLAMA_7B + pins, message.split()[0], message.rsplit(" ", 1)[1])) == 0, capsys.readouterr().err


@pytest.mark.parametrize("pins, suggestion", [
    (["--gpus", "5", "--pp", "5"], "closest valid option keeping --pp 5: --gpus 40"),
    (["--gpus", "2", "--pp", "2", "--dp", "1"], "closest valid option keeping --pp 2 --dp 1: --gpus 16"),
    (["--gpus", "8", "--tp", "8", "--pp", "1", "--dp", "1"], "keeping --tp 8 --pp 1 --dp 1: --gpu h200"),
    (["--gpus", "8", "--tp", "1", "--pp", "2", "--dp", "4"], "keeping --tp 1 --pp 2 --dp 4: --gpu h200"),
])
def test_a_suggestion_keeps_the_pins_and_following_it_gives_a_plan(pins: list[str], suggestion: str,
                                                                   capsys) -> None:
    # Before, the search ignored the pins: --gpus 16 for --pp 5 (which 16 does not divide), and --gpus 16 for
    # tp x pp x dp pinned to 8.
    err = _error(LLAMA_70B + pins, capsys)
    assert suggestion in err
    flag, value = suggestion.rsplit(": ", 1)[1].split()
    assert main(_with(LLAMA_70B + pins, flag, value)) == 0, capsys.readouterr().err


def test_pins_nothing_can_satisfy_say_so_instead_of_suggesting(capsys) -> None:
    err = _error(LLAMA_70B + ["--gpus", "2", "--tp", "1", "--pp", "2", "--dp", "1"], capsys)
    assert "no larger GPU count or larger-memory GPU fits with --tp 1 --pp 2 --dp 1: unpin some of them" in err
    assert "closest valid option" not in err


def test_candidates_with_dp_pinned_are_the_unpinned_ones_with_that_dp() -> None:
    # Pinned DP picks the one PP it leaves rather than listing every divisor of the count; the same layouts.
    work = L.Workload(ModelShape(32, 4096, 32, 11008, 32000), 2048)
    every = L.candidates(work, CATALOGUE["h100"], 64, 64)
    for dp in (1, 2, 4, 8, 64, 3, 128):
        pinned = L.candidates(work, CATALOGUE["h100"], 64, 64, fixed=L.Constraints(dp=dp))
        assert pinned == [c for c in every if c.dp == dp]


# ------------------------------------------------------------------------------------------------ plan


def test_inference_tokens_past_float_range_are_refused(capsys) -> None:
    # It printed "lifetime FLOPs inf vs inf" and a plan for the compute-optimal model.
    err = _error(["--compute", "1e21", "--inference-tokens", "1e300"], capsys)
    assert "--inference-tokens 1e+300 is too large to plan with: the inference-aware allocation overflows" in err
    assert "total_compute" in err
