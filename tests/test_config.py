"""Loading BuildConfig from TOML and overrides (pipelines.config)."""

from __future__ import annotations

import json
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


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("sede = 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="sede"):
        load_config(path)


def test_unknown_nested_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[dedup]\nthreshhold = 0.5\n", encoding="utf-8")
    with pytest.raises(ValueError, match="threshhold") as info:
        load_config(path)
    assert "dedup" in str(info.value)


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


def test_section_must_be_a_table(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('pack = "big"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="pack"):
        load_config(path)


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
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[pack\nseq_len = 3\n", encoding="utf-8")
    with pytest.raises(ValueError):  # tomllib.TOMLDecodeError is a ValueError
        load_config(path)


def test_bundled_default_config_loads() -> None:
    default = Path(__file__).resolve().parents[1] / "pipelines" / "configs" / "default.toml"
    if not default.is_file():
        pytest.skip("no bundled default.toml")
    config = load_config(default)
    assert isinstance(config, BuildConfig)

