"""The training engine shared by every task: config, checkpoints, model cards, distributed runs, k-fold."""

from sonokit.core.config import TrainConfig, load_run_config, resolve_config

__all__ = ["TrainConfig", "load_run_config", "resolve_config", "train"]


def train(cfg, callbacks=()):
    """See sonokit.train.engine.train (imported lazily: it needs torch)."""
    from sonokit.train.engine import train as _train

    return _train(cfg, callbacks)
