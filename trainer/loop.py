"""The training loop: ``train(config) -> RunResult``.

The loop itself is small (``Trainer._step``); everything stateful (model, optimizer, loss scaler, spike
guard, data cursor, RNG, progress counters, event log) is saved and restored as one unit by
``_state``/``_restore``, and checkpoints, metrics and spike handling hang off the loop. The same entry
point runs as one CPU process, under ``torchrun`` with DDP (gloo on CPU, NCCL on CUDA), in-process from a
sweep, or from the command line; running it again on the same run directory resumes from the newest
verified checkpoint, or returns at once when the run has already completed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from pipelines.shards import workspace_home
from trainer import checkpoint
from trainer.config import ConfigError, TrainConfig
from trainer.data import Batch, TokenData, random_batch, resolve_data
from trainer.faults import active, parse_faults
from trainer.guard import SpikeGuard
from trainer.model import GPT, count_params, decay_groups, flops_per_token
from trainer.telemetry import Reporter, format_eta, memory_gb, peak_flops, recorded_run_dir, write_json_atomic

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class SpikeGuardGaveUp(RuntimeError):
    """The loss kept spiking after the configured number of rollbacks."""


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    run_id: str
    status: str
    final_step: int
    final_loss: float  # validation loss at the final step (the last training loss when eval_rows = 0)
    first_loss: float
    params_sha256: str
    params: int
    non_embedding_params: int
    tokens_trained: int
    events: list[dict[str, Any]]
    steps_run: int = 0  # optimizer steps taken by this call (0 when the run was already complete)
    loop_seconds: float = 0.0  # wall time of those steps, checkpoints and logging included


@dataclass
class Progress:
    """The loop's counters; checkpointed with everything else."""

    step: int = 0
    cursor: int = 0  # rows of the training stream consumed, over all ranks
    tokens_trained: int = 0  # non-padding target tokens in applied updates
    first_loss: float = float("nan")
    last_loss: float = float("nan")
    rollbacks: int = 0
    lr_scale: float = 1.0
    skipped_steps: int = 0
    clipped_steps: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup, then cosine (or warmup-stable-decay) down to ``min_lr_ratio * lr`` at max_steps."""
    o, total = config.optim, config.max_steps
    floor = o.lr * o.min_lr_ratio
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "wsd":
        decay_start = int(total * (1 - o.decay_frac))
        if step < decay_start:
            return o.lr
        return o.lr - (o.lr - floor) * (step - decay_start) / max(1, total - decay_start)
    progress = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
    return floor + 0.5 * (o.lr - floor) * (1 + math.cos(math.pi * progress))


def params_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def default_run_dir(home: Path, config: TrainConfig, version: str) -> Path:
    """A stable name, so that the same command finds (and resumes) the same run."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("home", "data", "out")}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return home / "runs" / f"{config.preset}-{version}-seed{config.seed}-{digest}"


def pick_device(name: str) -> str:
    """``auto`` is ``cuda`` when torch sees a CUDA device, else ``cpu``; any other name stays as given."""
    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_device(name: str, world: int, local_rank: int) -> torch.device:
    """The device this process trains on. A CUDA device always carries an index, because
    torch.cuda.set_device refuses a bare ``cuda``: under torchrun the local rank's GPU, in one process the
    index asked for or else the current device (0 unless CUDA_VISIBLE_DEVICES or the caller chose another)."""
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"--device {name!r} is not a device torch knows: use auto, cpu, cuda or cuda:N") from exc
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {name} was asked for but torch sees no CUDA device")
    if world > 1:
        return torch.device("cuda", local_rank)
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def _check_run_dir(run_dir: Path) -> None:
    """Refuse a run directory that a file stands in the way of (the path itself, or a parent)."""
    for path in (run_dir, *run_dir.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"out {run_dir}: {path} is a file; the run directory must be a directory or "
                                  "not exist yet")
            return


class Trainer:
    def __init__(self, config: TrainConfig):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.auto_device = config.device == "auto"
        # Resolved before anything reads the config: the default run directory's name hashes the settings, so
        # an "auto" run names (and finds again) the directory of the device it picked, as an explicit one does.
        self.config = config = dataclasses.replace(config, device=pick_device(config.device))
        self.device = torch_device(config.device, self.world, local_rank)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        self.precision = config.resolved_precision()

        self.home = workspace_home(config.home)
        self.data = TokenData(resolve_data(self.home, config.data), config.seed, config.eval_rows)
        m = config.model
        self.model_cfg = dataclasses.replace(
            m, vocab_size=m.vocab_size or self.data.vocab_size, seq_len=m.seq_len or self.data.seq_len
        )
        if self.model_cfg.vocab_size < self.data.vocab_size:
            raise ConfigError(
                f"model.vocab_size {m.vocab_size} cannot embed dataset {self.data.version}'s tokens: use 0 (the "
                f"dataset's) or at least its vocabulary of {self.data.vocab_size}"
            )
        if self.model_cfg.seq_len != self.data.seq_len:
            raise ConfigError(f"model.seq_len {m.seq_len} must be 0 or dataset {self.data.version}'s row length "
                              f"{self.data.seq_len}")
        self.global_batch = self.world * config.grad_accum * config.batch_size
        train_rows = len(self.data.train_rows)
        # Such a step would wrap into the next epoch and see rows twice: a batch size meant for a bigger dataset,
        # refused before the model and its activations are allocated (unchecked, the OOM killer ended the run).
        if self.global_batch > train_rows:
            raise ConfigError(
                f"global batch {self.global_batch} (world {self.world} x grad_accum {config.grad_accum} x batch_size "
                f"{config.batch_size}) must be at most the {train_rows} training rows of dataset {self.data.version}"
            )
        self.run_dir = Path(config.out) if config.out else default_run_dir(self.home, config, self.data.version)
        self.run_id = self.run_dir.name
        self.run_path = str(self.run_dir.resolve())  # as the metrics store records it, to tell runs of one id apart
        _check_run_dir(self.run_dir)
        self._check_run_id()
        self.faults = parse_faults(config.inject_faults)
        # Kept in memory, not read back from disk: every rank must take the same save decisions, and rank 0
        # may already have published a checkpoint that another rank has not yet looked for.
        self.checkpointed_step: int | None = None
        self.report = Reporter(self.home, self.run_id, enabled=self.rank == 0)

        torch.manual_seed(config.seed)  # same initial weights on every rank
        self.raw = GPT(self.model_cfg).to(self.device)
        counts = count_params(self.raw)
        self.params, self.non_embedding_params = counts["params"], counts["non_embedding_params"]
        self.flops_per_token = flops_per_token(self.model_cfg, self.non_embedding_params)
        self.peak = peak_flops(self.device, self.precision, config.peak_flops)
        self.fsdp = self.world > 1 and config.parallel == "fsdp"
        if self.fsdp:
            # FSDP2: each block is a unit, so only one block's full parameters exist at a time.
            for block in self.raw.blocks:
                fully_shard(block)
            fully_shard(self.raw)
        self.model: torch.nn.Module = self.raw
        if config.compile:
            self.model = torch.compile(self.model)
        if self.world > 1 and not self.fsdp:
            self.model = DistributedDataParallel(self.model, device_ids=[self.device.index] if cuda else None)
        o = config.optim
        self.optimizer = torch.optim.AdamW(
            decay_groups(self.raw, o.weight_decay), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps,
            fused=True if cuda else None,
        )
        s = config.scaler
        self.scaler = torch.amp.GradScaler(
            self.device.type, init_scale=s.init_scale, growth_factor=s.growth_factor,
            backoff_factor=s.backoff_factor, growth_interval=s.growth_interval,
        ) if self.precision == "fp16" else None
        self.guard = SpikeGuard(config.guard)
        self.progress = Progress()
        # What a checkpoint must match to be resumed by this run.
        self.identity = {
            "model": dataclasses.asdict(self.model_cfg), "data_version": self.data.version, "seed": config.seed,
            "global_batch": self.global_batch,
            # FSDP saves optimizer state keyed by parameter name, the others by index: not interchangeable.
            "optimizer_layout": "by_name" if self.fsdp else "by_index",
        }

    def _check_run_id(self) -> None:
        """Refuse to start a fresh run under an id that the metrics store gives another directory. The id is
        the directory's name, so ``--out /x/a`` and ``--out /y/a`` would otherwise write one mixed series.
        A directory with checkpoints resumes (or returns) its own run and keeps its series, wherever the
        store last saw it: a moved run directory still resumes."""
        problem: list[str | None] = [None]
        if self.rank == 0 and not checkpoint.steps(self.run_dir):
            recorded = recorded_run_dir(self.home, self.run_id)
            # A run recorded before runs recorded their directory, started again in a directory holding its
            # run.json (say a sweep point killed before its first checkpoint): that run's own directory.
            legacy_in_place = recorded == "" and (self.run_dir / "run.json").is_file()
            if recorded is not None and recorded != self.run_path and not legacy_in_place:
                problem[0] = (
                    f"run id {self.run_id!r} is taken: the metrics store {self.home / 'metrics'} already holds "
                    f"trainer run {self.run_id!r} of {recorded or 'a run directory it did not record'}, and a run's "
                    f"id is its directory's name (so {self.run_path} would add to that run's series); pick another "
                    "--out name"
                )
        if self.world > 1:
            # One rank reads the store; every rank must take the same decision or the others wait forever.
            dist.broadcast_object_list(problem, src=0)
        if problem[0]:
            raise ConfigError(problem[0])

    # ------------------------------------------------------------------------------- state

    def _model_and_optimizer_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Full (unsharded) state dicts. Under FSDP this is a collective and only rank 0 gets the tensors."""
        if self.fsdp:
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            if not self.optimizer.state:
                # get_state_dict would initialise the empty AdamW state with a zero-learning-rate step, which
                # still counts in Adam's bias correction; an optimizer that has not stepped is saved as {}.
                return get_model_state_dict(self.raw, options=options), {}
            return get_state_dict(self.raw, self.optimizer, options=options)
        return self.raw.state_dict(), self.optimizer.state_dict()

    def _state(self) -> dict[str, Any]:
        p = self.progress
        model_state, optimizer_state = self._model_and_optimizer_state()
        return {
            "model": model_state,
            "optimizer": optimizer_state,
            "scaler": self.scaler.state_dict() if self.scaler else {},
            "guard": self.guard.state_dict(),
            "progress": dataclasses.asdict(p),
        }

    def _restore(self, state: dict[str, Any], keep_lifetime: bool = False) -> None:
        """Load a checkpoint's state. ``keep_lifetime`` (a rollback) keeps what the run has learnt since:
        its data cursor, rollback count, learning-rate scale and event log."""
        if self.fsdp and not state["optimizer"]:
            set_model_state_dict(self.raw, state["model"], options=StateDictOptions(full_state_dict=True))
            self.optimizer.state.clear()  # the checkpoint's optimizer had not stepped
        elif self.fsdp:
            set_state_dict(self.raw, self.optimizer, model_state_dict=state["model"],
                           optim_state_dict=state["optimizer"], options=StateDictOptions(full_state_dict=True))
        else:
            self.raw.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        # A checkpoint of an fp32 or bf16 run has no scaler state: an fp16 run resuming it starts a fresh scaler.
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.guard.load_state_dict(state["guard"])
        saved = Progress(**state["progress"])
        if keep_lifetime:
            now = self.progress
            saved = dataclasses.replace(saved, cursor=now.cursor, rollbacks=now.rollbacks, lr_scale=now.lr_scale,
                                        skipped_steps=now.skipped_steps, clipped_steps=now.clipped_steps,
                                        events=now.events, first_loss=now.first_loss)
        self.progress = saved

    def _save(self) -> None:
        step = self.progress.step
        state = self._state()  # on every rank: gathering FSDP shards is a collective
        if self.rank == 0:
            path = checkpoint.save(self.run_dir, step, state, self.identity)
            checkpoint.prune(self.run_dir, self.config.keep_last, self.config.keep_every)
            self._event("checkpoint", path.name)
            self._write_run_json("running")
        self._barrier()
        self.checkpointed_step = step

    def _event(self, kind: str, detail: str, loss: float = float("nan"), step: int | None = None,
               report: bool = True) -> None:
        """Record an event at ``step`` (default: the completed-step count, as for checkpoints and resumes;
        events inside a step pass that step's 1-based number, the step its scalar rows are logged at).
        ``report=False`` adds it to the run's event log only."""
        step = self.progress.step if step is None else step
        self.progress.events.append({"step": step, "kind": kind, "detail": detail,
                                     "loss": None if math.isnan(loss) else loss})
        if not report:
            return
        self.report.event(step, kind, detail, loss)
        if kind != "checkpoint":
            self.report.console(f"[{kind}] step {step}: {detail}")

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def _all_sum(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item())

    # ------------------------------------------------------------------------------- run.json

    def _run_json(self, status: str, final_loss: float = float("nan"), digest: str = "") -> dict[str, Any]:
        p = self.progress
        finite = lambda x: None if x is None or not math.isfinite(x) else x  # noqa: E731
        return {
            "run": self.run_id,
            "status": status,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": dataclasses.replace(self.config, model=self.model_cfg).to_dict(),
            "data": {"version": self.data.version, "path": str(self.data.version_dir),
                     "manifest_sha256": self.data.manifest_sha256},
            "world_size": self.world,
            "precision": self.precision,
            "params": self.params,
            "non_embedding_params": self.non_embedding_params,
            "first_loss": finite(p.first_loss),
            "final_step": p.step,
            "final_loss": finite(final_loss),
            "final_train_loss": finite(p.last_loss),
            "tokens_trained": p.tokens_trained,
            "skipped_steps": p.skipped_steps,
            "rollbacks": p.rollbacks,
            "params_sha256": digest,
            "events": p.events,
        }

    def _write_run_json(self, status: str, final_loss: float = float("nan"), digest: str = "") -> None:
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.run_dir / "run.json", self._run_json(status, final_loss, digest))

    def _run_rows(self, status: str) -> None:
        c, m = self.config, self.model_cfg
        self.report.run_info(
            {"data_version": self.data.version, "preset": c.preset, "precision": self.precision,
             "device": self.device.type, "status": status, "run_dir": self.run_path},
            {"params": self.params, "non_embedding_params": self.non_embedding_params, "layers": m.n_layers,
             "d_model": m.d_model, "heads": m.n_heads, "seq_len": m.seq_len, "vocab": m.vocab_size,
             "max_steps": c.max_steps, "tokens_planned": c.max_steps * self.global_batch * (m.seq_len - 1)},
        )

    # ------------------------------------------------------------------------------- one step

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision])

    def _micro_batches(self) -> list[Batch]:
        c, p = self.config, self.progress
        batches = [self.data.train_micro_batch(p.cursor, self.rank, j, c.grad_accum, c.batch_size,
                                               self.model_cfg.doc_mask) for j in range(c.grad_accum)]
        number = p.cursor // self.global_batch + 1
        if active(self.faults, "bad_batch", number):
            seed = (c.seed * 1_000_003 + number) * 64 + self.rank
            batches = [random_batch(b, self.model_cfg.vocab_size, seed * 1024 + j) for j, b in enumerate(batches)]
            self._event("fault_injected", f"bad_batch: global batch {number} replaced with uniform random tokens",
                        step=p.step + 1)
        return batches

    def _step(self) -> dict[str, float]:
        """Forward, backward, guard, update for one global batch. Returns the step's scalars."""
        c, p = self.config, self.progress
        started = time.perf_counter()
        lr = lr_at(p.step, c) * p.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = self._micro_batches()
        n_targets = self._all_sum(sum(b.n_targets for b in batches))
        # Summed token losses over the global batch's target count: under DDP the gradient all-reduce
        # averages over ranks, hence the factor world.
        scale = self.world / max(n_targets, 1.0)
        loss_sum = torch.zeros((), device=self.device)
        for j, b in enumerate(batches):
            self._seed_dropout(j)
            sync = j == len(batches) - 1 or self.world == 1
            if self.fsdp:
                self.raw.set_requires_gradient_sync(sync)
            no_sync = not sync and not self.fsdp
            with (self.model.no_sync() if no_sync else contextlib.nullcontext()), self._autocast():
                loss = self.model(b.inputs.to(self.device), b.targets.to(self.device),
                                  b.segments.to(self.device) if self.model_cfg.doc_mask else None)
            scaled = loss * scale
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            loss_sum += loss.detach()
        number = p.cursor // self.global_batch + 1
        if active(self.faults, "nan", number):
            grad = next(self.raw.parameters()).grad
            (grad.to_local() if isinstance(grad, DTensor) else grad).view(-1)[0] = float("nan")
            self._event("fault_injected", f"nan: gradients of global batch {number} made non-finite", step=p.step + 1)
        loss_value = self._all_sum(float(loss_sum)) / max(n_targets, 1.0)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        clip = c.optim.grad_clip if c.optim.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.raw.parameters(), clip)
        grad_norm = float(norm.full_tensor() if isinstance(norm, DTensor) else norm)
        loss_scale = self.scaler.get_scale() if self.scaler else 1.0

        if self.scaler and math.isfinite(loss_value) and not math.isfinite(grad_norm):
            # fp16 overflow is the loss scaler's business: it skips the update and backs the scale off.
            self.scaler.step(self.optimizer)
            self.scaler.update()
            p.skipped_steps += 1
            self._event("nan", f"non-finite fp16 gradients: update skipped, loss scale {loss_scale:g} -> "
                               f"{self.scaler.get_scale():g}", loss_value, step=p.step + 1)
            verdict_action = "skip"
        else:
            verdict = self.guard.check(p.step + 1, loss_value, grad_norm, p.rollbacks)
            verdict_action = verdict.action
            if verdict.action == "ok":
                if self.scaler:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                p.tokens_trained += int(n_targets)
                p.clipped_steps += grad_norm > clip
            else:
                if self.scaler:
                    self.scaler.update()
                if verdict.action == "skip":
                    p.skipped_steps += 1
                    self._event("nan" if verdict.kind == "nan" else "spike_skip",
                                f"update skipped: {verdict.reason}", loss_value, step=p.step + 1)
                elif verdict.action == "rollback":
                    self.optimizer.zero_grad(set_to_none=True)
                    self._rollback(verdict.reason, loss_value)
                    return {}
                else:
                    self._event("rollback", f"giving up: {verdict.reason}", loss_value, step=p.step + 1)
                    raise SpikeGuardGaveUp(f"run {self.run_id} step {p.step + 1}: {verdict.reason}")
        self.optimizer.zero_grad(set_to_none=True)
        if math.isnan(p.first_loss):
            p.first_loss = loss_value
        if verdict_action == "ok":
            p.last_loss = loss_value
        p.step += 1
        p.cursor += self.global_batch
        seconds = time.perf_counter() - started
        tokens_per_s = self.global_batch * (self.model_cfg.seq_len - 1) / seconds
        return {
            "loss": loss_value, "lr": lr, "grad_norm": grad_norm, "loss_scale": loss_scale,
            "tokens_per_s": tokens_per_s,
            "mfu": self.flops_per_token * tokens_per_s / (self.peak * self.world) if self.peak else 0.0,
            "tokens_seen": p.tokens_trained, "clipped": float(grad_norm > clip),
        }

    def _seed_dropout(self, micro: int) -> None:
        """Dropout is a step's only random draw. Its generator is seeded afresh for every micro-batch from
        (seed, step, the micro-batch's index in the global batch, as the data slices it): ranks draw different
        masks, a resumed run draws those of the uninterrupted one with no RNG state in the checkpoint, nothing
        that ran earlier in the process changes them, and N ranks draw what one process accumulating N does."""
        c = self.config
        key = f"{c.seed}/{self.progress.step}/{self.rank * c.grad_accum + micro}"
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)

    def _rollback(self, reason: str, loss: float) -> None:
        """Back to the newest good checkpoint before the spike began, past the offending data."""
        p, g = self.progress, self.config.guard
        onset = self.guard.onset_step if self.guard.onset_step is not None else p.step + 1
        loaded = checkpoint.load_latest(self.run_dir, self.identity, before=onset)
        if loaded is None:
            raise SpikeGuardGaveUp(f"run {self.run_id}: spike at step {onset} and no checkpoint before it")
        p.rollbacks += 1
        p.lr_scale *= g.lr_factor_on_rollback
        p.cursor += self.global_batch * (1 + g.rollback_skip_batches)
        skipped_to = p.cursor
        self._event("rollback", f"{reason}; back to {loaded.path.name}, data skipped to row {skipped_to}, "
                                f"lr scale {p.lr_scale:g} (rollback {p.rollbacks}/{g.max_rollbacks})", loss,
                    step=p.step + 1)
        self._restore(loaded.state, keep_lifetime=True)
        if self.rank == 0:
            # Later checkpoints belong to the abandoned timeline; resuming from one would replay the spike.
            for stale in checkpoint.steps(self.run_dir):
                if stale > loaded.step:
                    checkpoint._discard(checkpoint.checkpoint_dir(self.run_dir) / f"{checkpoint.PREFIX}{stale:08d}")
        self._barrier()
        self._save()

    def _params_sha256(self) -> str:
        model_state, _ = self._model_and_optimizer_state()
        digest = [params_sha256(model_state) if self.rank == 0 else ""]
        if self.world > 1:
            dist.broadcast_object_list(digest, src=0)
        return digest[0]

    # ------------------------------------------------------------------------------- evaluation

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean token loss on the held-out rows (every rank evaluates all of them: they are few)."""
        rows = [int(r) for r in self.data.val_rows]
        if not rows:
            return float("nan")
        self.model.eval()
        total, count = 0.0, 0
        for start in range(0, len(rows), self.config.batch_size):
            b = self.data.batch(rows[start:start + self.config.batch_size], self.model_cfg.doc_mask)
            with self._autocast():
                total += float(self.raw(b.inputs.to(self.device), b.targets.to(self.device),
                                        b.segments.to(self.device) if self.model_cfg.doc_mask else None))
            count += b.n_targets
        self.model.train()
        return total / max(count, 1)

    # ------------------------------------------------------------------------------- the run

    def _latest_checkpoint(self) -> checkpoint.Loaded | None:
        """The checkpoint to resume, or None for a fresh run; CheckpointError when the directory holds
        checkpoints of another run, or none that verifies."""
        if self.rank == 0:
            checkpoint.clean_temporaries(self.run_dir)
        self._barrier()
        loaded = checkpoint.load_latest(self.run_dir, self.identity)
        self._barrier()  # rank 0's step-0 save must not be what a slower rank finds and resumes from
        return loaded

    def _resume(self, loaded: checkpoint.Loaded | None) -> None:
        if loaded is None:
            self._save()  # step 0: a rollback target before any spike
            return
        self._restore(loaded.state)
        self.checkpointed_step = loaded.step
        # The checkpoint's state was taken just before its own event was logged; the metrics store has it.
        self._event("checkpoint", loaded.path.name, report=False)
        detail = f"resumed from {loaded.path.name}"
        if loaded.rejected:
            detail += f"; passed over corrupt {'; '.join(loaded.rejected)}"
        if self.scaler and not loaded.state["scaler"]:
            detail += "; fresh fp16 loss scaler (the checkpoint has no scaler state)"
        self._event("resume", detail)

    def _completed_result(self) -> RunResult | None:
        """The recorded result when this run directory already holds this run, completed."""
        path = self.run_dir / "run.json"
        if not path.is_file():
            return None
        info = json.loads(path.read_text(encoding="utf-8"))
        if info.get("status") != "completed" or info.get("final_step") != self.config.max_steps:
            return None
        if checkpoint.steps(self.run_dir)[-1:] != [self.config.max_steps]:
            return None
        if not checkpoint.intact(self.run_dir, self.config.max_steps, self.identity):
            return None  # resume instead: that falls back past a corrupt checkpoint, or refuses a foreign one
        return RunResult(self.run_dir, self.run_id, "completed", info["final_step"], info["final_loss"],
                         info["first_loss"], info["params_sha256"], info["params"], info["non_embedding_params"],
                         info["tokens_trained"], info["events"])

    def run(self) -> RunResult:
        done = self._completed_result()
        if done is not None:
            return done
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._barrier()
        # Outside the try: until a checkpoint of this run has loaded, or the directory proved to hold none,
        # it may belong to another run, whose run.json and metrics a `failed` record would overwrite.
        loaded = self._latest_checkpoint()
        c = self.config
        try:
            self._resume(loaded)
            p = self.progress
            self._write_run_json("running")
            self._run_rows("running")
            self.report.flush()
            self.report.console(
                f"run {self.run_id}: {self.params / 1e6:.2f}M params ({self.non_embedding_params / 1e6:.2f}M "
                f"non-embedding), data {self.data.version}, {self.precision} on {self.device}"
                f"{' (--device auto)' if self.auto_device else ''} x{self.world}, "
                f"global batch {self.global_batch} x {self.model_cfg.seq_len - 1} tokens, "
                f"step {p.step}/{c.max_steps}"
            )
            steps_run, started = 0, time.perf_counter()
            # clip_rate covers the steps since its last row: a window is shorter than log_every at the end of
            # the run and after a resume.
            clipped_window, window_steps = 0.0, 0
            while self.progress.step < c.max_steps:
                scalars = self._step()
                p = self.progress
                if not scalars:  # rolled back
                    continue
                steps_run += 1
                window_steps += 1
                clipped_window += scalars.pop("clipped")
                scalars["memory_gb"] = memory_gb(self.device)
                self.report.scalars(p.step, scalars)
                if p.step % c.log_every == 0 or p.step == c.max_steps:
                    self.report.scalars(p.step, {"clip_rate": clipped_window / window_steps})
                    clipped_window, window_steps = 0.0, 0
                    elapsed = time.perf_counter() - started
                    eta = elapsed / steps_run * (c.max_steps - p.step)
                    self.report.console(
                        f"step {p.step}/{c.max_steps} | loss {scalars['loss']:.4f} | lr {scalars['lr']:.2e} | "
                        f"grad norm {scalars['grad_norm']:.3f} | {scalars['tokens_per_s'] / 1e3:.1f}k tok/s | "
                        f"mfu {100 * scalars['mfu']:.1f}% | eta {format_eta(eta)}"
                    )
                    self.report.flush()
                if p.step % c.eval_every == 0 and p.step < c.max_steps and self.data.val_rows.size:
                    self.report.scalars(p.step, {"val_loss": self.evaluate()}, stage="eval")
                if p.step % c.ckpt_every == 0 and p.step < c.max_steps:
                    self._save()
            loop_seconds = time.perf_counter() - started
            final_loss = self.evaluate() if self.data.val_rows.size else p.last_loss
            if math.isfinite(final_loss) and self.data.val_rows.size:
                self.report.scalars(p.step, {"val_loss": final_loss}, stage="eval")
            if self.checkpointed_step != p.step:
                self._save()
            digest = self._params_sha256()
            self._write_run_json("completed", final_loss, digest)
            self._run_rows("completed")
            self.report.run_info({}, {"final_step": p.step, "final_loss": final_loss, "first_loss": p.first_loss,
                                      "tokens_trained": p.tokens_trained})
            self.report.flush()
            self.report.console(f"run {self.run_id} completed: step {p.step}, final loss {final_loss:.4f}, "
                                f"params sha256 {digest[:16]}…")
            return RunResult(self.run_dir, self.run_id, "completed", p.step, final_loss, p.first_loss, digest,
                             self.params, self.non_embedding_params, p.tokens_trained, list(p.events),
                             steps_run, loop_seconds)
        except BaseException as exc:
            if self.rank == 0:
                self.progress.events.append({"step": self.progress.step, "kind": "failed",
                                             "detail": f"{type(exc).__name__}: {exc}", "loss": None})
                self._write_run_json("failed")
                # With its directory: a run that failed before its first checkpoint may be started again there.
                self.report.run_info({"status": "failed", "run_dir": self.run_path}, {})
                self.report.flush()
            raise

    def close(self) -> None:
        self.data.close()


def train(config: TrainConfig) -> RunResult:
    """Train (or resume, or return the recorded result of) the run ``config`` describes."""
    trainer = Trainer(config)
    try:
        return trainer.run()
    finally:
        trainer.close()
        if dist.is_initialized():
            # Gloo's worker threads may still be releasing the last collective's tensors, which takes the GIL,
            # and the process group's destructor joins them. Dropped by DDP's reducer (C++) the group would be
            # destroyed with the GIL held, a deadlock at exit; so the reducer goes first, and the last reference
            # is the one destroy_process_group() drops, whose destructor releases the GIL.
            trainer.model = trainer.raw
            gc.collect()
            dist.destroy_process_group()
