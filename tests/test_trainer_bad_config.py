"""Bad settings are usage errors: ``ConfigError`` from ``build_config``, exit 2 with one line from the CLI, and no
run directory, never a traceback, a silently wrong run or an out-of-memory kill."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench.train_gpu import write_synthetic_version
from pipelines import shards
from tests.trainer_fixtures import one_torch_thread
from trainer import cli, sweep
from trainer.config import ConfigError, build_config, parse_set

# 64 rows, of which min(eval_rows = 32, 64 // 10) = 6 are held out: 58 training rows.
SEQ_LEN, VOCAB, ROWS, TRAIN_ROWS = 33, 64, 64, 58

one_thread = pytest.fixture(scope="module", autouse=True)(one_torch_thread)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("bad-config-home")
    write_synthetic_version(home / "data", ROWS, SEQ_LEN, VOCAB)
    return home


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli.main(["--preset", "tiny", "--device", "cpu", "--max-steps", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trainer: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # A negative count sliced the held-out split from the end: 5 training rows, the rest validation.
        ({"eval_rows": -5}, "eval_rows must be at least 0"),
        ({"seed": -1}, r"seed must be in \[0, 2\*\*64\)"),
        ({"peak_flops": float("nan")}, "peak_flops must be a finite number >= 0"),
        ({"model": {"n_heads": 0}}, "model.n_heads must be at least 1, got 0"),
        ({"model": {"d_model": -8}}, "model.d_model must be at least 1, got -8"),
        ({"model": {"n_layers": 0}}, "model.n_layers must be at least 1"),
        ({"model": {"ffn_hidden": -1}}, "model.ffn_hidden must be at least 0"),
        ({"model": {"dropout": 2.0}}, r"model.dropout must be in \[0, 1\), got 2.0"),
        ({"model": {"dropout": 1.0}}, r"model.dropout must be in \[0, 1\)"),
        ({"model": {"rope_base": 0.0}}, "model.rope_base must be a finite number above 1"),
        ({"model": {"vocab_size": -1}}, "model.vocab_size must be at least 0"),
        ({"model": {"seq_len": -1}}, "model.seq_len must be at least 0"),
        ({"optim": {"lr": float("nan")}}, "optim.lr must be a finite number above 0, got nan"),
        ({"optim": {"lr": -1e-3}}, "optim.lr must be a finite number above 0"),
        ({"optim": {"lr": 0.0}}, "optim.lr must be a finite number above 0"),
        ({"optim": {"lr": float("inf")}}, "optim.lr must be a finite number above 0"),
        ({"optim": {"min_lr_ratio": 1.5}}, r"optim.min_lr_ratio must be in \[0, 1\]"),
        ({"optim": {"warmup_steps": -1}}, "optim.warmup_steps must be at least 0"),
        ({"optim": {"decay_frac": -0.1}}, r"optim.decay_frac must be in \[0, 1\]"),
        ({"optim": {"weight_decay": -0.1}}, "optim.weight_decay must be a finite number >= 0"),
        ({"optim": {"beta1": 1.0}}, r"optim.beta1 must be in \[0, 1\)"),
        ({"optim": {"beta2": -0.5}}, r"optim.beta2 must be in \[0, 1\)"),
        ({"optim": {"eps": 0.0}}, "optim.eps must be a finite number above 0"),
        ({"optim": {"grad_clip": float("nan")}}, "optim.grad_clip must be a finite number >= 0"),
        ({"guard": {"window": 0}}, "guard.window must be at least 1, got 0"),
        ({"guard": {"k": 0.0}}, "guard.k must be a finite number above 0"),
        ({"guard": {"min_rel_std": -0.1}}, "guard.min_rel_std must be a finite number >= 0"),
        ({"guard": {"grad_min_rel_std": float("nan")}}, "guard.grad_min_rel_std must be a finite number >= 0"),
        ({"guard": {"persist": 0}}, "guard.persist must be at least 1"),
        ({"guard": {"max_rollbacks": -1}}, "guard.max_rollbacks must be at least 0"),
        ({"guard": {"rollback_skip_batches": -1}}, "guard.rollback_skip_batches must be at least 0"),
        ({"guard": {"lr_factor_on_rollback": 0.0}}, r"guard.lr_factor_on_rollback must be in \(0, 1\]"),
        ({"scaler": {"init_scale": -1.0}}, "scaler.init_scale must be a finite number above 0"),
        ({"scaler": {"growth_factor": 1.0}}, "scaler.growth_factor must be a finite number above 1"),
        ({"scaler": {"backoff_factor": 1.0}}, r"scaler.backoff_factor must be in \(0, 1\)"),
        ({"scaler": {"growth_interval": 0}}, "scaler.growth_interval must be at least 1"),
        ({"log_every": 0}, "log_every must be at least 1, got 0"),
    ],
)
def test_out_of_range_settings_are_refused(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config("tiny", None, override)


def test_edge_values_the_docs_and_tests_rely_on_are_accepted() -> None:
    config = build_config("tiny", None, {
        "eval_rows": 0, "seed": 2**64 - 1,
        "model": {"dropout": 0.1, "ffn_hidden": 0, "vocab_size": 0, "seq_len": 0},
        "optim": {"warmup_steps": 0, "grad_clip": 0.0, "min_lr_ratio": 1.0, "decay_frac": 0.0, "beta1": 0.0},
        "guard": {"window": 1, "k": 1.0, "persist": 1, "max_rollbacks": 0, "rollback_skip_batches": 0,
                  "min_rel_std": 0.0, "lr_factor_on_rollback": 1.0},
    })
    assert config.guard.window == 1 and config.eval_rows == 0


@pytest.mark.parametrize("setting", ["model.n_heads=0", "guard.window=0", "optim.lr=nan", "model.dropout=2.0"])
def test_out_of_range_setting_exits_2_before_reading_data(setting: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(capsys, "--home", str(tmp_path), "--set", setting)
    assert setting.split("=")[0] in err and not (tmp_path / "runs").exists()


def test_a_sweep_size_with_no_heads_is_a_grid_error() -> None:
    grid = sweep.Grid("zero-heads", sizes=({"n_layers": 1, "d_model": 8, "n_heads": 0},), tokens=(1000,))
    with pytest.raises(sweep.GridError, match="sizes\\[1\\]: model.n_heads must be at least 1"):
        sweep.check_grid(grid)


def test_a_setting_and_a_table_under_it_conflict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'seed.x=2': seed is already set to 1, not a table"):
        parse_set(["seed=1", "seed.x=2"])
    with pytest.raises(ConfigError, match="model.ffn is already set to 'gelu'"):
        parse_set(["model.ffn=gelu", "model.ffn.x.y=2"])
    err = _usage_error(capsys, "--home", str(tmp_path), "--set", "seed=1", "--set", "seed.x=2")
    assert "seed.x=2" in err


@pytest.mark.parametrize(("setting", "message"), [
    ("model.vocab_size=32", f"model.vocab_size 32 cannot embed dataset .*vocabulary of {VOCAB}"),
    ("model.seq_len=4096", f"model.seq_len 4096 must be 0 or dataset .* row length {SEQ_LEN}"),
])
def test_a_model_that_cannot_read_the_dataset_exits_2(setting: str, message: str, home: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(capsys, "--home", str(home), "--out", str(tmp_path / "run"), "--set", setting)
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("settings", [["batch_size=59"], ["batch_size=30", "grad_accum=2"]])
def test_a_global_batch_larger_than_the_training_rows_exits_2(settings: list[str], home: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    sets = [arg for s in settings for arg in ("--set", s)]
    err = _usage_error(capsys, "--home", str(home), "--out", str(tmp_path / "run"), *sets)
    assert "global batch" in err and f"{TRAIN_ROWS} training rows" in err
    assert not (tmp_path / "run").exists()


def test_a_global_batch_of_all_the_training_rows_trains(home: Path, tmp_path: Path) -> None:
    args = ["--preset", "tiny", "--device", "cpu", "--max-steps", "1", "--home", str(home), "--out",
            str(tmp_path / "run"), "--set", f"batch_size={TRAIN_ROWS}", "--set", "model.d_model=16",
            "--set", "model.n_layers=1"]
    assert cli.main(args) == 0
    assert (tmp_path / "run" / "run.json").is_file()


@pytest.mark.parametrize("under", ["", "sub"])
def test_out_through_a_file_exits_2(under: str, home: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a run\n")
    err = _usage_error(capsys, "--home", str(home), "--out", str(blocker / under))
    assert f"{blocker} is a file" in err
    assert blocker.read_text() == "not a run\n"


@pytest.mark.parametrize("tokenizer", [{"sha256": ""}, None, "leave out"])
def test_a_manifest_without_a_vocabulary_exits_2(tokenizer: object, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Token shards whose manifest does not say the tokenizer's vocabulary: the trainer and the sweep have no
    model size to build, and say so (this was a KeyError traceback)."""
    home = tmp_path / "home"
    name = write_synthetic_version(home / "data", ROWS, SEQ_LEN, VOCAB)
    path = home / "data" / shards.VERSIONS / name / shards.MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if tokenizer == "leave out":
        del manifest["tokenizer"]
    else:
        manifest["tokenizer"] = tokenizer
    path.write_text(json.dumps(manifest), encoding="utf-8")
    err = _usage_error(capsys, "--home", str(home), "--out", str(tmp_path / "run"))
    assert f"dataset version {name}" in err and "tokenizer" in err and "pipelines.build" in err
    assert not (tmp_path / "run").exists()
    assert sweep.main(["--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sweep: error: ") and "tokenizer" in err and err.count("\n") == 1


def test_a_sweep_over_a_version_without_token_shards_exits_2(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A version built without the pack stage (its manifest says seq_len null, no shards): this was a TypeError
    traceback from the sweep."""
    home = tmp_path / "home"
    name = write_synthetic_version(home / "data", ROWS, SEQ_LEN, VOCAB)
    path = home / "data" / shards.VERSIONS / name / shards.MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**manifest, "seq_len": None, "shards": []}), encoding="utf-8")
    assert sweep.main(["--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sweep: error: ") and "no token shards" in err and err.count("\n") == 1
