"""One feature vector per input from any sonokit network, captured by a forward hook.

The applicability check (sonokit.uncertainty.applicability) compares an input's features with the training
data's, so every kind of run needs a place to read them, and the same place at fitting and at prediction:

    a classifier head with embed()    embed(head input): the head's own embedding (as retrieval uses)
    another head / fc                 its input, pooled over space when it is a map: the pooled clip feature
                                      of the video nets, the backbone feature map of the valve detector
    a backbone (torchvision seg)      the backbone's last feature map, pooled over space
    a U-Net (down path)               the deepest encoder block's output, pooled over space
    a landmark net (`net` inside)     the wrapped network's place (unet-points: its U-Net's deepest block)
(pooled: each channel's mean and standard deviation over the map.)

The hook reads the features on the model's own forward pass, so nothing runs twice. Features are kept per
thread: `sonokit ef predict` measures two studies at once on one model, and each takes back its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from sonokit.errors import ModelError

Extract = Callable[[nn.Module, tuple[Any, ...], Any], torch.Tensor]


def _pooled(x: Any) -> torch.Tensor:
    """A feature map's per-channel mean and standard deviation over space (the spread keeps texture that the mean
    alone averages away); a vector as it is."""
    if isinstance(x, dict):  # torchvision segmentation backbones return {"out": ...}
        x = x.get("out", next(iter(x.values())))
    x = x.float()
    if x.ndim <= 2:
        return x
    flat = x.flatten(2)
    return torch.cat([flat.mean(dim=2), flat.std(dim=2)], dim=1)


def feature_site(model: nn.Module) -> tuple[nn.Module, Extract]:
    """Where to read `model`'s per-input features, and how (see the module docstring)."""
    head = getattr(model, "head", None)
    if head is not None and hasattr(head, "embed"):
        return head, lambda m, inputs, out: m.embed(inputs[0])
    for name in ("head", "fc"):
        last = getattr(model, name, None)
        if isinstance(last, nn.Module):
            return last, lambda m, inputs, out: _pooled(inputs[0])
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module):
        return backbone, lambda m, inputs, out: _pooled(out)
    down = getattr(model, "down", None)
    if isinstance(down, nn.ModuleList) and len(down):
        return down[-1], lambda m, inputs, out: _pooled(out)
    inner = getattr(model, "net", None)
    if isinstance(inner, nn.Module):  # SoftArgmaxPoints: lv-trace runs get an applicability check too
        return feature_site(inner)
    raise ModelError(
        f"{type(model).__name__}: no known place to read features from (no head, backbone or fc)"
    )


class FeatureTap:
    """While attached, keeps the features of every forward pass of `model` (use as a context manager)."""

    def __init__(self, model: nn.Module) -> None:
        module, self._extract = feature_site(model)
        self._local = threading.local()
        self._handle = module.register_forward_hook(self._hook)

    def _parts(self) -> list[np.ndarray]:
        if not hasattr(self._local, "parts"):
            self._local.parts = []
        return self._local.parts

    def _hook(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        with torch.no_grad():
            self._parts().append(self._extract(module, inputs, output).float().cpu().numpy())

    def take(self) -> np.ndarray:
        """(N, D) features this thread's forward passes gave since its last call, in forward order."""
        parts = self._parts()
        feats = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        parts.clear()
        return feats

    def close(self) -> None:
        self._handle.remove()

    def __enter__(self) -> FeatureTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
