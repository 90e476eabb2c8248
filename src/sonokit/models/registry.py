"""One front door for every network: `create(name, ...)` builds a registered backbone plus a head.

timm's pattern: builders register themselves by name with a decorator, and one function turns a name and a few
options into a ready model. Backbones here never download anything; weights come from a local file or not at all.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sonokit.errors import ModelError
from sonokit.models.heads import HEADS, build_head
from sonokit.utils import get_logger

log = get_logger(__name__)

BackboneBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    description: str
    builder: BackboneBuilder
    default_img_size: int
    min_img_size: int


_REGISTRY: dict[str, ModelEntry] = {}
_PARAMS_CACHE: dict[str, int] = {}


def register_model(
    name: str, *, family: str, description: str, default_img_size: int = 224, min_img_size: int = 32
) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator: register `builder(in_chans=..., **kw) -> backbone` under `name`.

    A backbone is an nn.Module with `forward_features(x) -> (B, C, h, w)` and an int `num_features` (= C).
    """

    def deco(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _REGISTRY:
            raise ModelError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, family, description, builder, default_img_size, min_img_size)
        return builder

    return deco


def _ensure_builtin() -> None:
    # Importing the module runs its @register_model decorators; kept lazy to avoid an import cycle.
    from sonokit.models import backbones  # noqa: F401


def get_entry(name: str) -> ModelEntry:
    _ensure_builtin()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(_REGISTRY))}"
        raise ModelError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def model_names() -> list[str]:
    _ensure_builtin()
    return list(_REGISTRY)


class SonoModel(nn.Module):
    """Backbone + head with the hooks the rest of sonokit relies on.

    `feature_tap` is an identity placed right after the backbone's last convolutional stage. Grad-CAM hooks it
    (`gradcam_layer`) so every family is explained on the same tensor, its final conv feature map, even where
    the last registered Conv2d is not that (timm's MobileNetV3 keeps `conv_head` after pooling, a ResNet's last
    conv sits before its residual add).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, spec: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_tap = nn.Identity()
        self.head = head
        self.spec = spec

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.feature_tap

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_tap(self.backbone.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feature_map(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, D): the input of the last linear layer, used for retrieval."""
        return self.head.embed(self.feature_map(x))


def _feature_shape(backbone: nn.Module, in_chans: int, img_size: int) -> tuple[int, int, int]:
    """(C, h, w) of the backbone's feature map at img_size: one probe forward, needed by the flatten head."""
    param = next(backbone.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone.forward_features(torch.zeros(1, in_chans, img_size, img_size, device=device))
    except RuntimeError as err:
        raise ModelError(f"input size {img_size} is too small for this backbone ({err})") from err
    finally:
        backbone.train(was_training)
    return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])


def create(
    name: str,
    *,
    num_classes: int = 1,
    in_chans: int = 1,
    head: str = "linear",
    pretrained: str | None = None,
    weights: str | Path | None = None,
    dropout: float = 0.0,
    img_size: int | None = None,
    hidden: int | None = None,
    strict: bool = False,
    **kw: Any,
) -> SonoModel:
    """Build a registered backbone with a head; optionally load a local weights file.

    head: "linear" (global average pool + one linear layer), "avg" / "max" / "none" (pooling, or flatten, then
    a hidden dense layer and the output layer), "attention-mlp" (channel + spatial attention, then a 3-layer MLP).
    img_size matters only for head="none" (the flatten size); it defaults to the backbone's usual size.
    Extra keyword arguments go to the backbone builder (e.g. timm's drop_path_rate).
    """
    entry = get_entry(name)
    if pretrained not in (None, "", "none", False):
        raise ModelError(
            f"--pretrained {pretrained}: no weights can be downloaded here; "
            "pass --weights PATH with a local weights file (timm/torchvision state dict or .safetensors)"
        )
    if head not in HEADS:
        raise ModelError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {num_classes}")
    if in_chans < 1:
        raise ModelError(f"in_chans must be >= 1, got {in_chans}")
    size = int(img_size or entry.default_img_size)
    if size < entry.min_img_size:
        raise ModelError(f"{name} needs inputs of at least {entry.min_img_size} px, got img_size={size}")

    try:
        backbone = entry.builder(in_chans=in_chans, **kw)
    except TypeError as err:  # an option this backbone does not take, e.g. width= on a timm model
        raise ModelError(f"{name}: unsupported option ({err})") from err
    channels = int(backbone.num_features)
    spatial = _feature_shape(backbone, in_chans, size)[1:] if head == "none" else (1, 1)
    head_mod = build_head(head, channels, num_classes, dropout=dropout, hidden=hidden, spatial=spatial)
    spec = {
        "name": name,
        "family": entry.family,
        "head": head,
        "in_chans": in_chans,
        "num_classes": num_classes,
        "feature_dim": int(head_mod.embed_dim),
        "backbone_dim": channels,
        "img_size": size,
        "dropout": dropout,
        "hidden": hidden,
    }
    model = SonoModel(backbone, head_mod, spec)
    if weights is not None:
        from sonokit.models.weights import load_weights

        load_weights(model, weights, strict=strict)
    return model


def create_from_spec(spec: dict[str, Any], **overrides: Any) -> SonoModel:
    """Rebuild a model from its `.spec` (as stored in a model card)."""
    keys = ("num_classes", "in_chans", "head", "dropout", "img_size", "hidden")
    kwargs = {k: spec[k] for k in keys if k in spec}
    kwargs.update(overrides)
    return create(spec["name"], **kwargs)


def count_params(name: str) -> int:
    """Parameter count for 1 class, 1 channel, linear head; built on the meta device so nothing is allocated."""
    if name not in _PARAMS_CACHE:
        with torch.device("meta"):
            model = create(name, num_classes=1, in_chans=1, head="linear")
        _PARAMS_CACHE[name] = sum(p.numel() for p in model.parameters())
    return _PARAMS_CACHE[name]


def list_models() -> list[dict[str, Any]]:
    """Every registered model: name, family, description, params (1 class, 1 channel), default and min size."""
    _ensure_builtin()
    return [
        {
            "name": e.name,
            "family": e.family,
            "description": e.description,
            "params": count_params(e.name),
            "default_img_size": e.default_img_size,
            "min_img_size": e.min_img_size,
        }
        for e in _REGISTRY.values()
    ]
