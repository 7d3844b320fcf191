"""Trainer parts in isolation: config, model, learning-rate schedule, spike guard, checkpoints, faults."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path, PurePosixPath

import pytest
import torch

from pipelines.shards import sha256_file
from trainer import checkpoint, cli, telemetry
from trainer.config import ConfigError, GuardConfig, ModelConfig, build_config, parse_set
from trainer.data import Batch, random_batch
from trainer.faults import parse_faults
from trainer.guard import SpikeGuard
from trainer.loop import lr_at, pick_device, torch_device
from trainer.model import GPT, count_params, decay_groups, document_mask

# ------------------------------------------------------------------------------------------- config


def test_presets_resolve_and_grow() -> None:
    shapes = {name: build_config(name).model for name in ("tiny", "small", "medium", "1b")}
    widths = [shapes[n].d_model for n in ("tiny", "small", "medium", "1b")]
    assert widths == sorted(widths) and len(set(widths)) == 4
    assert build_config("small").model.n_layers == 12


@pytest.mark.parametrize(("preset", "low", "high"), [("small", 110e6, 140e6), ("medium", 330e6, 370e6),
                                                    ("1b", 1.0e9, 1.3e9)])
def test_preset_sizes_at_gpt2_vocab(preset: str, low: float, high: float) -> None:
    cfg = dataclasses.replace(build_config(preset).model, vocab_size=50304, seq_len=64)
    with torch.device("meta"):
        params = count_params(GPT(cfg))["params"]
    assert low < params < high


def test_toml_file_and_set_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('max_steps = 7\n[model]\nd_model = 96\nffn = "gelu"\n[optim]\nlr = 1\n')
    config = build_config("tiny", path, {"seed": 3}, parse_set(["model.n_heads=3", "optim.schedule=wsd"]))
    assert (config.max_steps, config.seed, config.model.d_model, config.model.ffn) == (7, 3, 96, "gelu")
    assert config.model.n_heads == 3 and config.optim.schedule == "wsd"
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"modle": {"d_model": 8}}, "unknown setting 'modle'"),
        ({"model": {"ffn": "relu"}}, "model.ffn: 'relu' is not one of"),
        ({"max_steps": "ten"}, "max_steps: expected int"),
        ({"model": {"n_heads": 5}}, "must split into 5 heads"),
        ({"inject_faults": ["meteor@3"]}, "expected KIND@STEP"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
    ],
)
def test_bad_settings_are_refused_clearly(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config("tiny", None, override)


def test_device_defaults_to_auto() -> None:
    assert build_config("tiny").device == "auto"
    assert build_config("1b").device == "auto"  # torchrun ... --preset 1b must not train on CPU by default


def test_cuda_devices_get_an_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cuda.set_device refuses a bare "cuda"; CUDA is stubbed here (no GPU), set_device's checks are real."""
    selected: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    monkeypatch.setattr(torch._C, "_cuda_setDevice", selected.append, raising=False)
    assert pick_device("auto") == "cuda" and pick_device("cpu") == "cpu"
    assert torch_device("cuda", world=1, local_rank=0) == torch.device("cuda", 2)  # the current device
    assert torch_device("cuda:3", world=1, local_rank=0) == torch.device("cuda", 3)
    assert torch_device("cuda", world=8, local_rank=5) == torch.device("cuda", 5)  # torchrun: the local rank's
    assert torch_device("cpu", world=1, local_rank=0) == torch.device("cpu")
    torch.cuda.set_device(torch_device("cuda", world=1, local_rank=0))
    assert selected == [2]
    with pytest.raises(ValueError):
        torch.cuda.set_device(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device"):
        torch_device("cuda", world=1, local_rank=0)


@pytest.mark.parametrize(("device", "message"), [("cuda", "no CUDA device"), ("gpu0", "not a device torch knows")])
def test_unusable_device_is_a_usage_error(device: str, message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 2 with one line, before any data is read (the home here has none), not a traceback."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["--preset", "tiny", "--home", str(tmp_path), "--device", device]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trainer: error: --device") and message in err and "Traceback" not in err


def test_cpu_peak_measurement_leaves_the_global_rng_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_cpu_peak", None)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    assert telemetry.peak_flops(torch.device("cpu"), "fp32") > 0
    assert torch.equal(torch.get_rng_state(), before)


def test_fault_specs() -> None:
    bad, nan = parse_faults(["bad_batch@10-12", "nan@4"])
    assert [bad.hits(i) for i in (9, 10, 12, 13)] == [False, True, True, False]
    assert nan.kind == "nan" and nan.hits(4) and not nan.hits(5)


# -------------------------------------------------------------------------------------------- model

TINY = ModelConfig(n_layers=2, d_model=32, n_heads=4, vocab_size=50, seq_len=16)


def test_parameter_counts_tied_and_untied() -> None:
    tied = count_params(GPT(TINY))
    untied = count_params(GPT(dataclasses.replace(TINY, tie_embeddings=False)))
    assert untied["params"] - tied["params"] == 50 * 32
    assert tied["non_embedding_params"] == untied["non_embedding_params"] == tied["params"] - 50 * 32


def test_initialisation_scales_residual_projections() -> None:
    torch.manual_seed(0)
    model = GPT(dataclasses.replace(TINY, n_layers=8, d_model=256, n_heads=4))
    assert model.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.blocks[0].mlp.proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)


def test_no_decay_on_norms_and_biases() -> None:
    model = GPT(dataclasses.replace(TINY, bias=True, norm="layernorm"))
    decay, no_decay = decay_groups(model, 0.1)
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) > 0


@pytest.mark.parametrize("ffn", ["swiglu", "gelu"])
def test_model_is_causal(ffn: str) -> None:
    torch.manual_seed(0)
    model = GPT(dataclasses.replace(TINY, ffn=ffn)).eval()
    idx = torch.randint(0, 50, (1, 16))
    changed = idx.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 50
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[0, :10], b[0, :10])
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_document_mask_stops_attention_at_boundaries() -> None:
    torch.manual_seed(0)
    model = GPT(dataclasses.replace(TINY, doc_mask=True)).eval()
    segments = torch.tensor([[0] * 6 + [1] * 10])
    idx = torch.randint(0, 50, (1, 16))
    changed = idx.clone()
    changed[0, :6] = (changed[0, :6] + 7) % 50  # a different first document
    with torch.no_grad():
        a, b = model(idx, segments=segments), model(changed, segments=segments)
        c = GPT.forward(model, changed)  # without segments: ordinary causal attention sees document 0
    torch.testing.assert_close(a[0, 6:], b[0, 6:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a[0, 6:], c[0, 6:])
    mask = document_mask(segments)
    assert mask.shape == (1, 1, 16, 16) and not mask[0, 0, 7, 5] and mask[0, 0, 7, 6] and not mask[0, 0, 6, 7]


def test_loss_ignores_padding_targets() -> None:
    model = GPT(TINY)
    idx = torch.randint(0, 50, (2, 16))
    targets = torch.randint(0, 50, (2, 16))
    padded = targets.clone()
    padded[:, 12:] = -100
    full, part = model(idx, targets), model(idx, padded)
    logits = model(idx)
    expected = torch.nn.functional.cross_entropy(logits[:, :12].flatten(0, 1), targets[:, :12].flatten(),
                                                 reduction="sum")
    torch.testing.assert_close(part, expected)
    assert full > part


# ----------------------------------------------------------------------------------- lr schedule


def test_cosine_and_wsd_schedules() -> None:
    config = build_config("tiny", None, {"max_steps": 100, "optim": {"lr": 1.0, "warmup_steps": 10,
                                                                      "min_lr_ratio": 0.1}})
    assert lr_at(0, config) == pytest.approx(0.1)
    assert lr_at(9, config) == pytest.approx(1.0)
    assert lr_at(55, config) == pytest.approx(0.55)
    assert lr_at(100, config) == pytest.approx(0.1)
    wsd = build_config("tiny", None, {"max_steps": 100, "optim": {"lr": 1.0, "warmup_steps": 10,
                                                                   "schedule": "wsd", "decay_frac": 0.2}})
    assert lr_at(50, wsd) == lr_at(79, wsd) == 1.0
    assert lr_at(90, wsd) == pytest.approx(0.55)


# ------------------------------------------------------------------------------------------- guard


def _warm_guard(cfg: GuardConfig) -> SpikeGuard:
    guard = SpikeGuard(cfg)
    for i in range(cfg.window):
        assert guard.check(i, 3.0 + 0.01 * (i % 5), 1.0 + 0.01 * (i % 3), 0).action == "ok"
    return guard


def test_guard_skips_isolated_outlier_and_keeps_it_out_of_the_window() -> None:
    guard = _warm_guard(GuardConfig(window=20, persist=3))
    verdict = guard.check(20, 9.0, 1.0, 0)
    assert (verdict.action, verdict.kind) == ("skip", "spike") and "loss 9" in verdict.reason
    assert max(guard.losses) < 4
    assert guard.check(21, 3.02, 1.0, 0).action == "ok"
    assert guard.consecutive == 0


def test_guard_detects_grad_norm_outliers_and_non_finite_values() -> None:
    guard = _warm_guard(GuardConfig(window=20))
    assert guard.check(20, 3.0, 50.0, 0).reason.startswith("grad norm")
    guard = _warm_guard(GuardConfig(window=20))
    assert guard.check(20, float("nan"), 1.0, 0).kind == "nan"
    guard = SpikeGuard(GuardConfig(window=20))  # no warm-up needed for non-finite values
    assert guard.check(0, 3.0, float("inf"), 0).action == "skip"


def test_guard_waits_for_a_full_window() -> None:
    guard = SpikeGuard(GuardConfig(window=20))
    for i in range(19):
        guard.check(i, 3.0, 1.0, 0)
    assert guard.check(19, 50.0, 1.0, 0).action == "ok"


def test_guard_rolls_back_on_persistent_spike_then_gives_up() -> None:
    guard = _warm_guard(GuardConfig(window=20, persist=3, max_rollbacks=1))
    actions = [guard.check(20 + i, 9.0, 1.0, 0).action for i in range(3)]
    assert actions == ["skip", "skip", "rollback"] and guard.onset_step == 20
    actions = [guard.check(30 + i, 9.0, 1.0, 1).action for i in range(3)]
    assert actions == ["skip", "skip", "give_up"]


def test_guard_state_round_trip() -> None:
    guard = _warm_guard(GuardConfig(window=20))
    guard.check(20, 9.0, 1.0, 0)
    copy = SpikeGuard(GuardConfig(window=20))
    copy.load_state_dict(guard.state_dict())
    assert copy.state_dict() == guard.state_dict()
    assert copy.check(21, 9.0, 1.0, 0) == guard.check(21, 9.0, 1.0, 0)


# ------------------------------------------------------------------------------------- checkpoints

IDENTITY = {"model": {"d_model": 8}, "data_version": "v1"}


def _state(value: float) -> dict:
    return {"w": torch.full((3,), value), "progress": {"step": int(value), "events": [{"kind": "x", "loss": None}]}}


def test_checkpoint_round_trip_and_retention(tmp_path: Path) -> None:
    for step in range(0, 70, 10):
        checkpoint.save(tmp_path, step, _state(step), IDENTITY)
        checkpoint.prune(tmp_path, keep_last=2, keep_every=30)
    assert checkpoint.steps(tmp_path) == [0, 30, 50, 60]
    loaded = checkpoint.load_latest(tmp_path, IDENTITY)
    assert loaded is not None and loaded.step == 60 and loaded.rejected == ()
    assert torch.equal(loaded.state["w"], torch.full((3,), 60.0))
    assert loaded.state["progress"]["events"] == [{"kind": "x", "loss": None}]
    earlier = checkpoint.load_latest(tmp_path, IDENTITY, before=50)
    assert earlier is not None and earlier.step == 30


def test_corrupt_newest_checkpoint_falls_back(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, 10, _state(10), IDENTITY)
    newest = checkpoint.save(tmp_path, 20, _state(20), IDENTITY)
    data = bytearray((newest / checkpoint.STATE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (newest / checkpoint.STATE).write_bytes(bytes(data))
    assert not checkpoint.intact(tmp_path, 20, IDENTITY)
    loaded = checkpoint.load_latest(tmp_path, IDENTITY)
    assert loaded is not None and loaded.step == 10
    assert "step-00000020" in loaded.rejected[0] and "sha256" in loaded.rejected[0]


def test_all_checkpoints_corrupt_is_an_error(tmp_path: Path) -> None:
    path = checkpoint.save(tmp_path, 10, _state(10), IDENTITY)
    (path / checkpoint.META).write_text("{not json")
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint .* verifies"):
        checkpoint.load_latest(tmp_path, IDENTITY)


def test_incompatible_checkpoint_is_refused(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, 10, _state(10), IDENTITY)
    with pytest.raises(checkpoint.CheckpointError, match="different run.*data_version"):
        checkpoint.load_latest(tmp_path, {**IDENTITY, "data_version": "v2"})


def test_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    """A state.pt holding a pickled object (code on load) is rejected, not executed."""
    path = checkpoint.save(tmp_path, 10, _state(10), IDENTITY)
    torch.save({"w": PurePosixPath("not/allow/listed")}, path / checkpoint.STATE)
    fixed = json.loads((path / checkpoint.META).read_text()) | {"sha256": sha256_file(path / checkpoint.STATE)}
    (path / checkpoint.META).write_text(json.dumps(fixed))
    with pytest.raises(checkpoint.CheckpointError, match="does not load"):
        checkpoint.load_latest(tmp_path, IDENTITY)


def test_resave_interrupted_between_renames_keeps_the_old_checkpoint(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint.save(tmp_path, 10, _state(10), IDENTITY)
    rename, calls = checkpoint.os.rename, []

    def crash_on_second_rename(src: Path, dst: Path) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between the renames")
        rename(src, dst)

    monkeypatch.setattr(checkpoint.os, "rename", crash_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, 10, _state(11), IDENTITY)  # a rollback re-saving its target step
    monkeypatch.setattr(checkpoint.os, "rename", rename)
    checkpoint.clean_temporaries(tmp_path)
    assert [p.name for p in checkpoint.checkpoint_dir(tmp_path).iterdir()] == ["step-00000010"]
    loaded = checkpoint.load_latest(tmp_path, IDENTITY)
    assert loaded is not None and torch.equal(loaded.state["w"], torch.full((3,), 10.0))
    # Uninterrupted, the re-save replaces the checkpoint and leaves nothing aside.
    checkpoint.save(tmp_path, 10, _state(11), IDENTITY)
    assert [p.name for p in checkpoint.checkpoint_dir(tmp_path).iterdir()] == ["step-00000010"]
    loaded = checkpoint.load_latest(tmp_path, IDENTITY)
    assert loaded is not None and torch.equal(loaded.state["w"], torch.full((3,), 11.0))


def test_leftover_temporaries_are_cleaned(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, 10, _state(10), IDENTITY)
    (checkpoint.checkpoint_dir(tmp_path) / ".tmp-step-00000020-1").mkdir()
    (checkpoint.checkpoint_dir(tmp_path) / ".del-step-00000030-1").mkdir()  # a deletion stays deleted
    checkpoint.clean_temporaries(tmp_path)
    assert [p.name for p in checkpoint.checkpoint_dir(tmp_path).iterdir()] == ["step-00000010"]


def test_bad_batch_fault_takes_any_run_seed() -> None:
    """Seeds above ~2.8e8 made the fault's seed overflow torch's 64 bits; those that fit are unchanged."""
    like = Batch(torch.zeros(2, 8, dtype=torch.long), torch.zeros(2, 8, dtype=torch.long),
                 torch.zeros(2, 8, dtype=torch.long))
    huge = (2**63 * 1_000_003 + 7) * 64 * 1024
    assert torch.equal(random_batch(like, 50, huge).inputs, random_batch(like, 50, huge % 2**64).inputs)
    small = random_batch(like, 50, 12345).inputs
    assert torch.equal(small, torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(12345))[:, :-1])

