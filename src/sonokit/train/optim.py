"""The optimizer and the learning-rate schedule every task trains with."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sonokit.core.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum (`optimizer: sgd`); biases and normalisation parameters (1-D) get no
    weight decay."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, mode: str) -> Any:
    """Per-epoch schedule: linear warmup then cosine to lr * min_lr_ratio; or reduce-on-plateau; or constant."""
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    if cfg.scheduler == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    warm, total, floor = cfg.warmup_epochs, cfg.epochs, cfg.min_lr_ratio

    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        span = max(total - warm, 1)
        progress_ = min((epoch - warm) / span, 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress_))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step_scheduler(scheduler: Any, metric: float, mode: str) -> None:
    """Advance the schedule one epoch; a plateau schedule reads the metric (a non-finite one counts as worst)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(metric if math.isfinite(metric) else (-math.inf if mode == "max" else math.inf))
    else:
        scheduler.step()
