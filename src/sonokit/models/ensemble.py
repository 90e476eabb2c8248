"""Several trained networks behind one: the mean of their outputs (for classifiers the mean of logits, a
normalised geometric mean of the folds' probabilities). Used to predict with every fold of a cross-validation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def _mean(outputs: Sequence[Any]) -> Any:
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return torch.stack([o.float() for o in outputs]).mean(0)
    if isinstance(first, (list, tuple)):
        return type(first)(_mean([o[i] for o in outputs]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _mean([o[k] for o in outputs]) for k in first}
    raise TypeError(f"cannot average outputs of type {type(first).__name__}")


class MeanEnsemble(nn.Module):
    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one network")
        self.members = nn.ModuleList(members)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return _mean([m(*args, **kwargs) for m in self.members])
