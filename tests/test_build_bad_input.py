"""Bad command lines and config a build must refuse up front: one line on stderr and exit code 2, before any
pipeline runs (pipelines.build.main)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.build import expand_inputs
from pipelines.build import main as build_main


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "A document that would be built."}) + "\n", encoding="utf-8")
    return path


def _refused(home: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Runs the CLI, which must exit 2 without building; returns its one-line message."""
    assert build_main(["--home", str(home), "--runner", "FnApiRunner", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert not (home / "data" / "LATEST").exists()
    return err


@pytest.mark.parametrize("spec", ["", ",", " , ,"])
def test_an_input_naming_no_files_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str) -> None:
    # "" once built the bundled sample corpus; "," published an empty version and moved LATEST.
    with pytest.raises(ValueError, match="names no files"):
        expand_inputs(spec)
    assert _refused(tmp_path, capsys, "--input", spec) == f"input error: --input {spec!r} names no files"


def test_config_file_missing_or_a_directory(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(tmp_path, capsys, "--input", str(corpus), "--config", str(tmp_path / "missing.toml"))
    assert err.startswith("config error: cannot read config file") and "No such file" in err
    err = _refused(tmp_path, capsys, "--input", str(corpus), "--config", str(tmp_path))
    assert "Is a directory" in err


def test_set_without_equals_exits_2_not_1(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(tmp_path, capsys, "--input", str(corpus), "--set", "quality.min_words")
    assert err == "config error: --set expects SECTION.KEY=VALUE, got 'quality.min_words'"


def test_set_under_a_value_is_a_config_error(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(tmp_path, capsys, "--input", str(corpus), "--set", "a=1", "--set", "a.b=2")
    assert err.startswith("config error: a.b:")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("output.rows_per_file=0", "output.rows_per_file must be >= 1"),
        ("langid.threshold=nan", "langid.threshold"),
        ("input.max_record_bytes=-1", "input.max_record_bytes must be >= 1"),
        ("pack.seq_len=1000000000000", "pack.seq_len must be within [2, 1,048,576]"),
    ],
)
def test_out_of_range_config_values_exit_2(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str],
                                           setting: str, message: str) -> None:
    assert message in _refused(tmp_path, capsys, "--input", str(corpus), "--set", setting)


@pytest.mark.parametrize("key", ["langid.model_path", "quality.classifier_model"])
def test_model_files_are_checked_before_the_pipeline(tmp_path: Path, corpus: Path,
                                                     capsys: pytest.CaptureFixture[str], key: str) -> None:
    missing = tmp_path / "missing.bin"
    err = _refused(tmp_path, capsys, "--input", str(corpus), "--set", f"{key}={missing}")
    assert err == f"config error: {key} {str(missing)!r}: No such file or directory"
    assert "Is a directory" in _refused(tmp_path, capsys, "--input", str(corpus), "--set", f"{key}={tmp_path}")
    not_a_model = tmp_path / "model.bin"
    not_a_model.write_bytes(b"not fastText")
    err = _refused(tmp_path, capsys, "--input", str(corpus), "--set", f"{key}={not_a_model}")
    assert err.endswith("is not a fastText model file")


def test_a_model_file_is_checked_by_its_magic_only(tmp_path: Path) -> None:
    from pipelines.build import FASTTEXT_MAGIC, check_model_files
    from pipelines.config import load_config

    model = tmp_path / "model.bin"
    model.write_bytes(FASTTEXT_MAGIC + b"\0" * 8)
    check_model_files(load_config(overrides={"langid.model_path": str(model)}))
    # A stage that does not run loads no model, so its path is not held against the build.
    check_model_files(load_config(overrides={"stages": "dedup", "langid.model_path": str(tmp_path / "none")}))


def _tokenizer_without_special_tokens() -> str:
    from tokenizers import Tokenizer, models

    return Tokenizer(models.BPE()).to_str()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "No such file or directory"),
        ("directory", "Is a directory"),
        ('{"not": "a tokenizer"}', "is not a usable tokenizer.json"),
        (b"\xff\xfe", "can't decode byte 0xff"),
        (_tokenizer_without_special_tokens, "lacks special token(s) ['<|endoftext|>', '<|pad|>']"),
    ],
    ids=["missing", "directory", "not-a-tokenizer", "not-utf8", "no-special-tokens"],
)
def test_a_bad_tokenizer_exits_2_before_the_pipeline(tmp_path: Path, corpus: Path,
                                                     capsys: pytest.CaptureFixture[str], make, message: str) -> None:
    path = tmp_path / "tokenizer.json"
    if make == "directory":
        path.mkdir()
    elif isinstance(make, bytes):
        path.write_bytes(make)
    elif make is not None:
        path.write_text(make() if callable(make) else make, encoding="utf-8")
    err = _refused(tmp_path, capsys, "--input", str(corpus), "--tokenizer", str(path))
    assert err.startswith(f"config error: --tokenizer (tokenizer.path) {str(path)!r}") and message in err


def test_an_output_that_is_a_file_exits_2(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    err = _refused(tmp_path, capsys, "--input", str(corpus), "--output", str(a_file))
    assert err == f"output error: --output {a_file} exists and is not a directory"
    err = _refused(tmp_path, capsys, "--input", str(corpus), "--output", str(a_file / "data"))
    assert err.startswith(f"output error: --output {a_file / 'data'}: cannot create the directory")
    home_file = tmp_path / "home-file"
    home_file.write_text("")
    assert build_main(["--home", str(home_file), "--input", str(corpus)]) == 2
    assert capsys.readouterr().err.strip() == f"output error: --home {home_file} exists and is not a directory"


def test_an_output_under_a_root_nothing_can_be_created_in_exits_2(tmp_path: Path, corpus: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    err = _refused(tmp_path, capsys, "--input", str(corpus), "--output", "/proc/tokenmill-no/data")
    assert err.startswith("output error: --output /proc/tokenmill-no/data: cannot create the directory")
