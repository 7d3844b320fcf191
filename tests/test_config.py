"""Loading BuildConfig from TOML and overrides (pipelines.config)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipelines.bpe import TokenizerConfig
from pipelines.build import main as build_main
from pipelines.config import STAGES, BuildConfig, OutputConfig, from_dict, load_config, to_dict
from pipelines.dedup import DedupConfig
from pipelines.langid import LangIdConfig
from pipelines.pack import PackConfig
from pipelines.quality import QualityConfig

CONFIGS = Path(__file__).resolve().parents[1] / "pipelines" / "configs"

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
    default = CONFIGS / "default.toml"
    if not default.is_file():
        pytest.skip("no bundled default.toml")
    # Its header promises every setting with its default, so the range checks must accept it as is.
    assert load_config(default) == BuildConfig()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda path: path.name)
def test_bundled_config_files_load(path: Path) -> None:
    assert isinstance(load_config(path), BuildConfig)


def test_stage_config_defaults_pass_their_range_checks() -> None:
    assert BuildConfig().quality == QualityConfig()
    assert BuildConfig().dedup == DedupConfig()
    assert BuildConfig().pack == PackConfig()


NAN = float("nan")
INF = float("inf")
STAGE_CONFIGS = {"quality": QualityConfig, "dedup": DedupConfig, "pack": PackConfig, "tokenizer": TokenizerConfig}

# (settings, the key the message must name). Each once went through, dropping every document or
# silently switching a rule off; the percent-like values are a fraction written as a percentage.
OUT_OF_RANGE = [
    ({"quality.classifier_threshold": 1.5}, "quality.classifier_threshold"),
    ({"quality.classifier_threshold": -0.1}, "quality.classifier_threshold"),
    ({"quality.classifier_threshold": NAN}, "quality.classifier_threshold"),
    ({"quality.min_words": -1}, "quality.min_words"),
    ({"quality.max_words": 0}, "quality.max_words"),
    ({"quality.min_stop_words": -1}, "quality.min_stop_words"),
    ({"quality.min_c4_sentences": -5}, "quality.min_c4_sentences"),
    ({"quality.min_mean_word_length": -0.5}, "quality.min_mean_word_length"),
    ({"quality.min_mean_word_length": INF, "quality.max_mean_word_length": INF}, "quality.min_mean_word_length"),
    ({"quality.max_mean_word_length": 0.5}, "quality.max_mean_word_length"),
    ({"quality.max_symbol_word_ratio": -0.1}, "quality.max_symbol_word_ratio"),
    ({"quality.max_list_ratio": -1.0}, "quality.max_list_ratio"),
    ({"quality.max_list_ratio": NAN}, "quality.max_list_ratio"),
    ({"quality.max_bullet_lines_frac": 1.1}, "quality.max_bullet_lines_frac"),
    ({"quality.max_ellipsis_lines_frac": -0.1}, "quality.max_ellipsis_lines_frac"),
    ({"quality.min_alpha_words_frac": 80.0}, "quality.min_alpha_words_frac"),
    ({"quality.max_dup_line_frac": 30.0}, "quality.max_dup_line_frac"),
    ({"quality.max_dup_para_frac": NAN}, "quality.max_dup_para_frac"),
    ({"quality.max_dup_line_char_frac": -0.2}, "quality.max_dup_line_char_frac"),
    ({"quality.max_dup_para_char_frac": 1.2}, "quality.max_dup_para_char_frac"),
    ({"quality.max_javascript_lines_frac": 50.0}, "quality.max_javascript_lines_frac"),
    ({"quality.max_policy_lines_frac": -1.0}, "quality.max_policy_lines_frac"),
    ({"quality.max_c4_removed_lines_frac": 1.5}, "quality.max_c4_removed_lines_frac"),
    ({"quality.max_top_ngram_char_frac": (0.2, 1.8, 0.16)}, "quality.max_top_ngram_char_frac"),
    ({"quality.max_dup_ngram_char_frac": (0.15, 0.14, 0.13, 0.12, 0.11, -0.1)}, "quality.max_dup_ngram_char_frac"),
    # FineWeb's rules drop at the limit itself: these ends keep no document at all.
    ({"quality.min_terminal_punct_lines_frac": 1.0}, "quality.min_terminal_punct_lines_frac"),
    ({"quality.min_terminal_punct_lines_frac": -0.1}, "quality.min_terminal_punct_lines_frac"),
    ({"quality.max_short_line_frac": 0.0}, "quality.max_short_line_frac"),
    ({"quality.max_short_line_frac": 67.0}, "quality.max_short_line_frac"),
    ({"quality.max_char_dup_ratio": 0.0}, "quality.max_char_dup_ratio"),
    ({"quality.max_char_dup_ratio": 1.01}, "quality.max_char_dup_ratio"),
    ({"quality.min_words": 200, "quality.max_words": 100}, "quality.min_words"),
    ({"quality.min_mean_word_length": 5.0, "quality.max_mean_word_length": 4.0}, "quality.min_mean_word_length"),
    ({"dedup.cc_rounds": 0}, "dedup.cc_rounds"),
    ({"dedup.cc_rounds": -1}, "dedup.cc_rounds"),
    ({"dedup.threshold": 0.0}, "dedup.threshold"),
    ({"dedup.threshold": 1.5}, "dedup.threshold"),
    ({"dedup.bands": 30}, "dedup.bands"),  # 30 bands x 6 rows > 120 permutations
    ({"pack.rows_per_shard": 0}, "pack.rows_per_shard"),
    ({"tokenizer.min_frequency": -1}, "tokenizer.min_frequency"),
    ({"tokenizer.vocab_size": 299}, "tokenizer.vocab_size"),
    ({"tokenizer.vocab_size": 2**31}, "tokenizer.vocab_size"),  # aborted the worker: 141 GB reserved
]


def _as_set_value(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


OUT_OF_RANGE_IDS = [",".join(f"{k}={_as_set_value(v)}" for k, v in settings.items()) for settings, _ in OUT_OF_RANGE]


@pytest.mark.parametrize(("settings", "key"), OUT_OF_RANGE, ids=OUT_OF_RANGE_IDS)
def test_out_of_range_stage_settings_are_refused_by_their_dataclass(settings: dict, key: str) -> None:
    (section,) = {dotted.split(".")[0] for dotted in settings}
    with pytest.raises(ValueError, match=re.escape(key)) as info:
        STAGE_CONFIGS[section](**{dotted.split(".")[1]: value for dotted, value in settings.items()})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("settings", "key"), OUT_OF_RANGE, ids=OUT_OF_RANGE_IDS)
def test_out_of_range_stage_settings_exit_2_from_the_build_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               settings: dict, key: str) -> None:
    # An input the build refuses next: a setting the config check lets through fails the test as an
    # input error instead of running a build.
    (tmp_path / "data.csv").write_text("a,b\n")
    sets = [arg for dotted, value in settings.items() for arg in ("--set", f"{dotted}={_as_set_value(value)}")]
    assert build_main(["--home", str(tmp_path), "--input", str(tmp_path / "data.csv"), *sets]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("config error: ") and key in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize(
    "overrides",
    [
        # The ends that switch a rule off, or keep only the extreme documents, stay usable.
        {"quality.classifier_threshold": "0", "quality.max_c4_removed_lines_frac": "1", "quality.min_words": "0",
         "quality.min_stop_words": "0", "quality.min_c4_sentences": "0", "quality.max_dup_line_frac": "0",
         "quality.min_alpha_words_frac": "1", "quality.max_top_ngram_char_frac": "0,1,0.5"},
        {"quality.classifier_threshold": "1", "quality.min_terminal_punct_lines_frac": "0",
         "quality.max_short_line_frac": "1", "quality.max_char_dup_ratio": "1"},
        {"quality.max_symbol_word_ratio": "inf", "quality.max_list_ratio": "inf",
         "quality.max_mean_word_length": "inf", "quality.min_mean_word_length": "0"},
        {"quality.min_words": "7", "quality.max_words": "7", "quality.min_mean_word_length": "4",
         "quality.max_mean_word_length": "4"},
        {"quality.min_words": "0", "quality.max_words": "1", "quality.min_mean_word_length": "1",
         "quality.max_mean_word_length": "1", "quality.max_symbol_word_ratio": "3"},
        {"dedup.cc_rounds": "1", "dedup.threshold": "1", "pack.rows_per_shard": "1"},
    ],
    ids=["off-ends", "fineweb-ends", "no-limit", "min-equals-max", "low-ends", "dedup-pack"],
)
def test_range_ends_that_keep_documents_are_accepted(overrides: dict) -> None:
    config = load_config(overrides=overrides)
    for dotted, value in overrides.items():
        section, name = dotted.split(".")
        actual = getattr(getattr(config, section), name)
        assert actual == (tuple(map(float, value.split(","))) if isinstance(actual, tuple) else type(actual)(value))

