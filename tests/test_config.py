"""Loading BuildConfig from TOML and overrides (pipelines.config)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipelines.config import STAGES, BuildConfig, OutputConfig, from_dict, load_config, to_dict
from pipelines.dedup import DedupConfig
from pipelines.langid import LangIdConfig
from pipelines.pack import PackConfig

TOML = """
stages = ["langid", "dedup", "tokenize", "pack"]
seed = 7

[input]
text_field = "content"
max_record_bytes = 1024

[langid]
threshold = 0.65
allowed = ["en", "fr"]

[dedup]
threshold = 0.8
near = false

[pack]
seq_len = 256
best_fit = true

[tokenizer]
vocab_size = 4096

[output]
rows_per_file = 10
"""


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "build.toml"
    path.write_text(TOML, encoding="utf-8")
    return path


def test_defaults() -> None:
    config = load_config()
    assert config == BuildConfig()
    assert config.stages == STAGES
    assert config.pack == PackConfig()


def test_load_toml_nested_sections(toml_file: Path) -> None:
    config = load_config(toml_file)
    assert config.stages == ("langid", "dedup", "tokenize", "pack")
    assert config.seed == 7
    assert config.input.text_field == "content"
    assert config.input.id_field == "id"  # untouched default
    assert config.input.max_record_bytes == 1024
    assert config.langid == LangIdConfig(threshold=0.65, allowed=("en", "fr"))
    assert config.dedup.threshold == 0.8
    assert config.dedup.near is False
    assert config.dedup.exact is True
    assert config.pack == PackConfig(seq_len=256, best_fit=True)
    assert config.tokenizer.vocab_size == 4096
    assert config.output == OutputConfig(rows_per_file=10)


def test_overrides_win_over_file(toml_file: Path) -> None:
    config = load_config(
        toml_file,
        {"pack.seq_len": "128", "dedup.near": "true", "seed": 3, "langid.threshold": "0.9", "quality.min_words": 5},
    )
    assert config.pack.seq_len == 128
    assert config.pack.best_fit is True  # other keys of the file section stay
    assert config.dedup.near is True
    assert config.seed == 3
    assert config.langid.threshold == 0.9
    assert config.quality.min_words == 5


def test_string_values_are_converted() -> None:
    config = load_config(
        overrides={"pack.rows_per_shard": "64", "dedup.threshold": "0.75", "pack.best_fit": "yes", "seed": "11"}
    )
    assert config.pack.rows_per_shard == 64
    assert config.dedup.threshold == 0.75
    assert config.pack.best_fit is True
    assert config.seed == 11
    assert load_config(overrides={"pack.best_fit": "0"}).pack.best_fit is False
    assert load_config(overrides={"pack.best_fit": "FALSE"}).pack.best_fit is False


def test_string_lists_for_tuple_fields() -> None:
    config = load_config(overrides={"stages": "langid,dedup", "langid.allowed": " en , de,,fr "})
    assert config.stages == ("langid", "dedup")
    assert config.langid.allowed == ("en", "de", "fr")


def test_unknown_override_key() -> None:
    with pytest.raises(ValueError, match="seq_length"):
        load_config(overrides={"pack.seq_length": 10})


def test_unknown_section() -> None:
    with pytest.raises(ValueError, match="packing"):
        load_config(overrides={"packing.seq_len": 10})


@pytest.mark.parametrize(
    "overrides",
    [
        {"pack.seq_len": "abc"},
        {"pack.seq_len": [1, 2]},
        {"dedup.threshold": "high"},
        {"dedup.near": "maybe"},
        {"langid.allowed": 5},
        {"seed": "1.5"},
    ],
    ids=str,
)
def test_wrong_type(overrides: dict) -> None:
    with pytest.raises(ValueError):
        load_config(overrides=overrides)


@pytest.mark.parametrize(
    "overrides",
    [{"pack.seq_len": 512.9}, {"quality.min_words": 0.5}, {"input.text_field": 5}, {"input.text_field": ["a"]}],
    ids=str,
)
def test_wrong_type_not_silently_coerced(overrides: dict) -> None:
    with pytest.raises(ValueError):
        load_config(overrides=overrides)


def test_value_errors_from_stage_configs_propagate() -> None:
    with pytest.raises(ValueError):
        load_config(overrides={"pack.seq_len": 1})
    with pytest.raises(ValueError):
        load_config(overrides={"dedup.bands": 30})  # 30 * 6 > 120 permutations


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # NaN compares false with every score: it silently disabled the langid filter.
        ("langid.threshold", "nan"), ("langid.threshold", "inf"), ("langid.threshold", "-0.1"),
        ("langid.threshold", "1.5"),
        ("quality.max_dup_line_frac", "nan"), ("quality.max_top_ngram_char_frac", "0.2,nan,0.1"),
        # 0: ZeroDivisionError in a worker; -1: files named part--0012-of--0021.
        ("output.rows_per_file", "0"), ("output.rows_per_file", "-1"),
        # 0 trained on nothing: a 258-token vocabulary, silently.
        ("tokenizer.sample_docs", "0"), ("tokenizer.sample_chars_per_doc", "0"), ("tokenizer.batch_size", "0"),
        ("dedup.num_perm", "0"), ("dedup.bands", "0"), ("dedup.bands", "-2"), ("dedup.rows", "0"),
        ("dedup.ngram", "0"), ("dedup.ngram", "-1"), ("dedup.seed", "-1"), ("dedup.seed", str(2**32)),
        # 1e12 allocated 4 TiB rows.
        ("pack.seq_len", str(10**12)), ("pack.seq_len", str(2**20 + 1)),
        ("input.max_record_bytes", "0"), ("input.max_record_bytes", "-1"), ("input.max_doc_chars", "0"),
        ("seed", str(2**63)),
    ],
)
def test_out_of_range_values_are_config_errors_naming_the_key(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=re.escape(key)) as info:
        load_config(overrides={key: value})
    assert "\n" not in str(info.value)


def test_range_bounds_are_accepted() -> None:
    config = load_config(overrides={"langid.threshold": "0", "pack.seq_len": str(2**20), "output.rows_per_file": "1",
                                    "tokenizer.sample_docs": "1", "dedup.seed": str(2**32 - 1), "seed": "-5"})
    assert config.langid.threshold == 0.0 and config.pack.seq_len == 2**20
    assert LangIdConfig(threshold=1.0).threshold == 1.0
    # Infinity is a meaningful "no limit" for a max_* rule; only NaN is refused everywhere.
    assert load_config(overrides={"quality.max_list_ratio": "inf"}).quality.max_list_ratio == float("inf")
    assert DedupConfig(num_perm=256, bands=256, rows=1).bands == 256
    with pytest.raises(ValueError, match=r"dedup\.bands must be within \[1, 256\]"):
        DedupConfig(num_perm=300, bands=257, rows=1)  # a band's key holds its index in one byte


@pytest.mark.parametrize(
    "overrides",
    [{"a": "1", "a.b": "2"}, {"pack": "3", "pack.seq_len": "64"}, {"input.text_field": "t", "input.text_field.x": "1"}],
    ids=str,
)
def test_setting_a_key_under_a_value_is_a_config_error(overrides: dict) -> None:
    # Once a TypeError from assigning into a str.
    with pytest.raises(ValueError, match="not a table"):
        load_config(overrides=overrides)


def test_stages_reordered_to_canonical_order() -> None:
    config = load_config(overrides={"stages": "pack,tokenize,langid,quality"})
    assert config.stages == ("langid", "quality", "tokenize", "pack")
    assert BuildConfig(stages=("dedup", "langid")).stages == ("langid", "dedup")
    assert BuildConfig(stages=("dedup", "dedup")).stages == ("dedup",)


def test_unknown_stage() -> None:
    with pytest.raises(ValueError, match="bogus"):
        load_config(overrides={"stages": "langid,bogus"})


def test_pack_without_tokenize() -> None:
    with pytest.raises(ValueError, match="tokenize"):
        load_config(overrides={"stages": "langid,pack"})
    with pytest.raises(ValueError):
        BuildConfig(stages=("pack",))


def test_to_dict_json_round_trip(toml_file: Path) -> None:
    config = load_config(toml_file)
    data = to_dict(config)
    text = json.dumps(data)
    restored = from_dict(BuildConfig, json.loads(text))
    assert restored == config
    assert isinstance(data["stages"], list)
    assert data["pack"]["seq_len"] == 256
    assert data["langid"]["allowed"] == ["en", "fr"]


def test_to_dict_defaults_round_trip() -> None:
    config = BuildConfig()
    assert from_dict(BuildConfig, json.loads(json.dumps(to_dict(config)))) == config


def test_from_dict_partial_and_nested() -> None:
    config = from_dict(BuildConfig, {"dedup": {"cc_rounds": 9}})
    assert config.dedup == DedupConfig(cc_rounds=9)
    assert config.pack == PackConfig()


def test_config_file_not_found(tmp_path: Path) -> None:
    # A ValueError is what the CLI reports as a config error (exit 2); an OSError was a traceback.
    with pytest.raises(ValueError, match="cannot read config file .*missing.toml.*No such file"):
        load_config(tmp_path / "missing.toml")


def test_config_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read config file .*Is a directory"):
        load_config(tmp_path)


def test_config_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"seed = 1\n\xff\xfe\n")
    with pytest.raises(ValueError, match="binary.toml.* is not valid TOML"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "overrides", "match"),
    [
        ("sede = 1\n", None, "sede"),  # unknown top-level key
        ("[dedup]\nthreshhold = 0.5\n", None, r"dedup.*threshhold"),  # unknown key, named with its section
        ('pack = "big"\n', None, "pack"),  # a section must be a table
        ("[langid]\nthreshold = nan\n", None, "langid.threshold"),  # NaN is refused in a file too
        ("seed = 3\n", {"seed.x": "1"}, "'seed' is set to a value"),  # a key under a file's value
        ("[pack\nseq_len = 3\n", None, "is not valid TOML"),  # tomllib.TOMLDecodeError is a ValueError
    ],
    ids=["unknown-key", "unknown-nested-key", "section-not-table", "nan", "key-under-value", "invalid-toml"],
)
def test_bad_toml_file_is_a_config_error(tmp_path: Path, text: str, overrides: dict | None, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        load_config(path, overrides)


def test_bundled_default_config_loads() -> None:
    default = Path(__file__).resolve().parents[1] / "pipelines" / "configs" / "default.toml"
    if not default.is_file():
        pytest.skip("no bundled default.toml")
    config = load_config(default)
    assert isinstance(config, BuildConfig)

