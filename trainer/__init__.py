"""GPT trainer on tokenmill dataset versions: ``train(config) -> RunResult`` and ``python -m trainer``."""

from trainer.config import TrainConfig, build_config
from trainer.loop import RunResult, SpikeGuardGaveUp, train

__all__ = ["RunResult", "SpikeGuardGaveUp", "TrainConfig", "build_config", "train"]
