"""``python -m pipelines.quality_train`` on bad input and bad flags: one line on stderr and exit 2, never a
traceback, a dead process (fastText's SIGFPE) or a model file left behind."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import quality_train
from pipelines.quality_train import TrainingError, check_params, main, read_jsonl, train_quality_classifier

_HQ = "the museum published a careful study of regional history and its methods".split()
_LQ = "click here buy now cheap free bonus casino win prize hot deals".split()


def _rows(n: int) -> list[tuple[str, str]]:
    rng = random.Random(0)
    return [(" ".join(rng.choices(_HQ if i % 2 else _LQ, k=20)), "hq" if i % 2 else "lq") for i in range(n)]


def _jsonl(path: Path, n: int = 40) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in _rows(n)), encoding="utf-8")
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return code, err


@pytest.mark.parametrize("line,message", [
    (b'{"text": "caf\xe9", "label": "hq"}\n', ":2: not valid UTF-8 (invalid continuation byte at byte "),
    (b"[" * 100_000 + b"]" * 100_000 + b"\n", ":2: not valid JSON (nested too deeply)"),
    (b'{"text": "a", "label": ' + b"1" * 5000 + b"}\n", ":2: not valid JSON ("),
    (b'{"text": "lone \\ud800 surrogate", "label": "hq"}\n', ":2: field 'text' is not valid Unicode"),
], ids=["latin-1", "deeply nested", "huge integer", "lone surrogate"])
def test_bad_second_line_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], line: bytes,
                                            message: str) -> None:
    data = tmp_path / "in.jsonl"
    data.write_bytes(b'{"text": "fine", "label": "lq"}\n' + line)
    code, err = _run(["--input", str(data), "--output", str(tmp_path / "m.bin")], capsys)
    assert code == 2 and message in err


def test_a_utf8_bom_is_still_accepted(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_bytes(b'\xef\xbb\xbf{"text": "a", "label": "hq"}\r\n{"text": "b", "label": 0}\n')
    assert read_jsonl(data) == [("a", "__label__hq"), ("b", "__label__lq")]


def test_output_that_is_a_directory_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models"
    out.mkdir()
    code, err = _run(["--input", str(_jsonl(tmp_path / "in.jsonl")), "--output", str(out)], capsys)
    assert code == 2 and f"--output {out} is a directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "models"]  # no models.tmp


def test_output_under_a_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    out = tmp_path / "afile" / "sub" / "m.bin"
    code, err = _run(["--input", str(_jsonl(tmp_path / "in.jsonl")), "--output", str(out)], capsys)
    assert code == 2 and "is not a directory" in err


@pytest.mark.parametrize("flags,flag", [
    (["--dim", "0"], "--dim"),
    (["--epoch", "0"], "--epoch"),
    (["--epoch", str(2**31)], "--epoch"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--wordNgrams", "0"], "--wordNgrams"),
    (["--minCount", "0"], "--minCount"),
    (["--bucket", "-1"], "--bucket"),
    (["--seed", "-1"], "--seed"),
])
def test_bad_numeric_flags_exit_2_naming_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  flags: list[str], flag: str) -> None:
    out = tmp_path / "m.bin"
    # The input is never read: a missing file would be the error if the flags were checked after it.
    code, err = _run(["--input", str(tmp_path / "absent.jsonl"), "--output", str(out), *flags], capsys)
    assert code == 2 and err.startswith(f"error: {flag} must be ")
    assert not out.exists()


def test_check_params_accepts_no_buckets_without_word_ngrams() -> None:
    assert check_params(bucket=0, wordNgrams=1)["bucket"] == 0
    with pytest.raises(TrainingError, match="--lr must be a positive finite number"):
        train_quality_classifier(_rows(40), Path("unused.bin"), lr=-1.0)


def test_no_temporary_model_is_left_when_saving_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied", dst)

    monkeypatch.setattr(quality_train.os, "replace", refuse)
    out = tmp_path / "m.bin"
    with pytest.raises(TrainingError, match="cannot write the model to .*Permission denied"):
        train_quality_classifier(_rows(60), out, dim=8, bucket=1000, epoch=2)
    assert list(tmp_path.iterdir()) == []


def test_zero_buckets_with_ngrams_does_not_kill_the_process(tmp_path: Path) -> None:
    # In a subprocess: before the check, fastText divided by zero here and SIGFPE killed it (rc 136).
    data = _jsonl(tmp_path / "in.jsonl")
    proc = subprocess.run([sys.executable, "-m", "pipelines.quality_train", "--input", str(data), "--output",
                           str(tmp_path / "m.bin"), "--bucket", "0", "--wordNgrams", "2"],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2 and "error: --bucket must be at least 1 with --wordNgrams 2" in proc.stderr
