"""Backbones shipped inside the package: what `--init ultrasound|auto` starts from.

Users of this field ask for trained weights more than for anything else, and nothing can be downloaded here, so
the wheel carries small ultrasound backbones: resnet10_w32 (the 2D classifiers' default network) and tinycnn
(src/sonokit/weights; cards in MODEL_CARD.md and in each file's metadata). `--init` chooses the initial weights of
a network that is not given `--weights`:
    none         random weights (from scratch): the default
    ultrasound   the shipped backbone; an error when none fits
    auto         the shipped backbone when one fits the network (architecture and input channels), else random
`imagenet` and any other name are refused: no weights can be downloaded.

Why not the default: it was trained on every real development set (BUS-BRA, the fetal-plane subset, HC18), so a
default start from it would leak those sets' test images into anyone's benchmark on them, and it has not yet
measured a gain on sets it never saw (README, "Shipped backbone").
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from sonokit.errors import ModelError

INIT_CHOICES = ("auto", "ultrasound", "none")
# (architecture, input channels) -> file in sonokit/weights
SHIPPED = {
    ("tinycnn", 1): "ultrasound-tinycnn-1ch-v1.safetensors",
    ("resnet10_w32", 1): "ultrasound-resnet10_w32-1ch-v1.safetensors",  # float16: 2.5 MB
}
CARD_KEY = "sonokit_pretrain"  # the metadata key of a backbone's card (`sonokit pretrain` writes it too)


def shipped_backbone(name: str, in_chans: int) -> Path | None:
    """The packaged backbone file for this architecture and channel count, or None."""
    file = SHIPPED.get((name, int(in_chans)))
    if file is None:
        return None
    path = Path(str(resources.files("sonokit") / "weights" / file))
    return path if path.is_file() else None


def init_weights(init: str | None, name: str, in_chans: int) -> Path | None:
    """The weights file `--init` stands for (None: random). Raises for a name it cannot honour."""
    if init in (None, "", "none", False):
        return None
    if init not in INIT_CHOICES:
        from sonokit.models.registry import refuse_download

        refuse_download(init)  # raises: no weights can be downloaded
    path = shipped_backbone(name, in_chans)
    if path is None and init == "ultrasound":
        have = ", ".join(f"{n} with {c} channel(s)" for n, c in SHIPPED)
        raise ModelError(
            f"--init ultrasound: no shipped backbone for {name} with {in_chans} channel(s) (have: {have}; "
            "choose one with --model)"
        )
    return path


def backbone_card(path: Path) -> dict[str, Any]:
    """The card in a backbone file's metadata (`sonokit pretrain` runs and the shipped file); {} if none."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta.get(CARD_KEY, "{}"))


@cache
def shipped_card(path: Path) -> dict[str, Any]:
    """The shipped backbone's card (data, licences, method, measured transfer), read once."""
    return backbone_card(path)
