"""Build configuration: frozen dataclasses, loaded from TOML, overridden from the command line.

Each stage owns its config dataclass (thresholds live with the signals they judge); this module
assembles them, converts TOML values to the declared field types, and rejects unknown keys so a typo
in a config file is an error rather than a silently ignored threshold.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.bpe import TokenizerConfig
from pipelines.dedup import DedupConfig
from pipelines.langid import LangIdConfig
from pipelines.pack import PackConfig
from pipelines.pii import PiiConfig
from pipelines.quality import QualityConfig
from pipelines.readers import InputConfig

STAGES = ("langid", "quality", "dedup", "pii", "tokenize", "pack")


@dataclass(frozen=True)
class OutputConfig:
    # Rows per Parquet file for docs/, rejected/ and dead_letter/; the file count follows the data.
    rows_per_file: int = 10_000

    def __post_init__(self) -> None:
        if self.rows_per_file < 1:
            raise ValueError(f"output.rows_per_file must be >= 1, got {self.rows_per_file}")


@dataclass(frozen=True)
class BuildConfig:
    stages: tuple[str, ...] = STAGES
    seed: int = 0
    input: InputConfig = field(default_factory=InputConfig)
    langid: LangIdConfig = field(default_factory=LangIdConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    pack: PackConfig = field(default_factory=PackConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        # It salts the tokenizer sample as 8 signed bytes (pipelines.bpe.sample_key).
        if not -(2**63) <= self.seed < 2**63:
            raise ValueError(f"seed must be within [-2**63, 2**63 - 1], got {self.seed}")
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; choose from {','.join(STAGES)}")
        if "pack" in self.stages and "tokenize" not in self.stages:
            raise ValueError("stage 'pack' needs 'tokenize'")
        # Stages always run in the canonical order, whatever order the user listed them in.
        object.__setattr__(self, "stages", tuple(s for s in STAGES if s in self.stages))


_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a table, got {type(value).__name__}")
        return from_dict(hint, value, where)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _convert(value, options[0], where)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_convert(v, item, where) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOLS:
            return _BOOLS[value.lower()]
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        # NaN compares false with everything: a NaN threshold would silently disable its filter.
        if number is None or math.isnan(number):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    return cls(**{k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()})


def to_dict(config: Any) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (tuples become lists)."""
    return dataclasses.asdict(config, dict_factory=lambda items: {k: _plain(v) for k, v in items})


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Defaults, then the TOML file, then ``overrides`` ({"section.key": value} or {"key": value})."""
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except OSError as err:
            raise ValueError(f"cannot read config file {str(path)!r}: {err.strerror or err}") from err
        except ValueError as err:  # tomllib.TOMLDecodeError, or bytes that are not UTF-8
            raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from err
    for dotted, value in (overrides or {}).items():
        target = data
        *parents, leaf = dotted.split(".")
        for depth, part in enumerate(parents, 1):
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                table = ".".join(parents[:depth])
                raise ValueError(f"{dotted}: {table!r} is set to a value, not a table of keys")
        target[leaf] = value
    return from_dict(BuildConfig, data)
