"""The one model registry: every network sonokit trains is registered here by name, with its kind.

timm's pattern: builders register themselves by name with a decorator, and one function turns a name and a few
options into a ready model. Kinds (KINDS): "image" backbones get a head from `create(name, ...)` (classifiers,
regressors, the valve detector's backbone); "video", "segmentation" and "landmarks" builders return the whole
network, and `build(name, kind=...)` is the front door for every kind. Nothing is ever downloaded; weights come
from a local file or not at all. The names are the `model:` of runs' config.yaml, so a name, once used, stays.
"""

from __future__ import annotations

import difflib
import importlib
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

Builder = Callable[..., nn.Module]

#: What a network of each kind takes and gives (`sonokit models list` shows the kind of each).
KINDS: dict[str, str] = {
    "image": "backbone (B, C, H, W) -> feature map, plus a head from create(): classifiers, regressors, detectors",
    "video": "clip (B, C, T, H, W) -> (B, 1) (ejection fraction)",
    "segmentation": "frame (B, C, H, W) -> logit map (B, 1, H, W)",
    "landmarks": "frame (B, C, H, W) -> (B, 2 * points) x, y in units of the side",
}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    description: str
    builder: Builder
    default_img_size: int
    min_img_size: int
    kind: str = "image"


_REGISTRY: dict[str, ModelEntry] = {}
_PARAMS_CACHE: dict[str, int] = {}
# Modules whose import registers the built-in networks; lazy, so `import sonokit.models` stays light.
_BUILTIN = ("sonokit.models.backbones", "sonokit.models.video", "sonokit.models.segmentation")


def register_model(
    name: str,
    *,
    family: str,
    description: str,
    kind: str = "image",
    default_img_size: int = 224,
    min_img_size: int = 32,
) -> Callable[[Builder], Builder]:
    """Decorator: register `builder(in_chans=..., **kw)` under `name`.

    An "image" builder returns a backbone: an nn.Module with `forward_features(x) -> (B, C, h, w)` and an int
    `num_features` (= C), which `create` tops with a head. Builders of the other kinds return the whole network.
    """
    if kind not in KINDS:
        raise ModelError(f"{name}: unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")

    def deco(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ModelError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, family, description, builder, default_img_size, min_img_size, kind)
        return builder

    return deco


def _ensure_builtin() -> None:
    # Importing a module runs its @register_model decorators; kept lazy to avoid an import cycle.
    for module in _BUILTIN:
        importlib.import_module(module)


def get_entry(name: str, kind: str | None = None) -> ModelEntry:
    """The entry of `name`; with `kind`, a ModelError unless the network is of that kind (a video network
    asked for as a segmentation model fails here, with the names that would do, not deep inside a task)."""
    names = model_names(kind)
    if name in names:
        return _REGISTRY[name]
    what = f"{kind} model" if kind else "model"
    if name in _REGISTRY:
        found = _REGISTRY[name].kind
        raise ModelError(
            f"{name} is {_article(found)} {found} model, not {_article(what)} {what}; "
            f"choose one of {', '.join(names)}"
        )
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    if kind is not None or not close:  # a kind's names are few: list them all
        hint += f"; known: {', '.join(sorted(names))}"
    raise ModelError(f"unknown {what} {name!r}{hint}")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def model_names(kind: str | None = None) -> list[str]:
    """Registered names in registration order, all or those of one kind."""
    _ensure_builtin()
    return [n for n, e in _REGISTRY.items() if kind is None or e.kind == kind]


def refuse_download(pretrained: str | None, what: str = "this network") -> None:
    """A ModelError for an initialisation that cannot be had: nothing can be downloaded here, and only 2D image
    backbones are shipped in the package (`auto` means random weights for the others)."""
    if pretrained in (None, "", "none", "auto", False):
        return
    if pretrained == "ultrasound":
        raise ModelError(
            f"--init ultrasound: no shipped backbone for {what}; use --init none or --weights PATH"
        )
    raise ModelError(
        f"--init {pretrained}: no weights can be downloaded here; "
        "pass --weights PATH with a local weights file (timm/torchvision state dict or .safetensors)"
    )


def _call_builder(entry: ModelEntry, **kw: Any) -> nn.Module:
    try:
        return entry.builder(**kw)
    except TypeError as err:  # an option this network does not take, e.g. width= on a timm model
        raise ModelError(f"{entry.name}: unsupported option ({err})") from err


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
    from sonokit.models.shipped import init_weights

    entry = get_entry(name, "image")
    shipped = init_weights(pretrained, name, in_chans)  # checked even when --weights wins
    if head not in HEADS:
        raise ModelError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1, got {num_classes}")
    if in_chans < 1:
        raise ModelError(f"in_chans must be >= 1, got {in_chans}")
    size = int(img_size or entry.default_img_size)
    if size < entry.min_img_size:
        raise ModelError(f"{name} needs inputs of at least {entry.min_img_size} px, got img_size={size}")

    backbone = _call_builder(entry, in_chans=in_chans, **kw)
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
        "init": "weights" if weights is not None else (f"shipped:{shipped.name}" if shipped else "random"),
    }
    model = SonoModel(backbone, head_mod, spec)
    if weights is not None or shipped is not None:
        from sonokit.models.weights import load_weights

        if weights is None:
            log.info(
                "%s starts from the shipped ultrasound backbone %s (--init none: random)", name, shipped.name
            )
        load_weights(model, weights if weights is not None else shipped, strict=strict)
    return model


def build(
    name: str,
    *,
    kind: str,
    pretrained: str | None = None,
    weights: str | Path | None = None,
    strict: bool = False,
    **kw: Any,
) -> nn.Module:
    """The front door for every kind: the network `name`, which must be of `kind`, with a local weights file.

    "image" goes through `create` (kw: num_classes, in_chans, head, ...); the other kinds pass kw to their
    builder (e.g. in_chans, ef_mean for video, points for landmarks). Each task builds its network here.
    """
    if kind == "image":
        return create(name, pretrained=pretrained, weights=weights, strict=strict, **kw)
    entry = get_entry(name, kind)
    refuse_download(pretrained, f"{kind} networks")
    model = _call_builder(entry, **kw)
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
    """Parameter count: image backbones with 1 class, 1 channel and the linear head, other kinds as their
    builder makes them by default (3 channels, as the echo tasks train); built on the meta device so nothing
    is allocated."""
    if name not in _PARAMS_CACHE:
        entry = get_entry(name)
        with torch.device("meta"):
            if entry.kind == "image":
                model = create(name, num_classes=1, in_chans=1, head="linear")
            else:
                model = _call_builder(entry)
        _PARAMS_CACHE[name] = sum(p.numel() for p in model.parameters())
    return _PARAMS_CACHE[name]


def list_models(kind: str | None = None) -> list[dict[str, Any]]:
    """Every registered model (or those of one kind): name, kind, family, description, params (count_params),
    default and min size."""
    return [
        {
            "name": e.name,
            "kind": e.kind,
            "family": e.family,
            "description": e.description,
            "params": count_params(e.name),
            "default_img_size": e.default_img_size,
            "min_img_size": e.min_img_size,
        }
        for e in (_REGISTRY[n] for n in model_names(kind))
    ]
