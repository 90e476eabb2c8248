"""LV segmentation networks: a small U-Net (fast on a CPU), torchvision's LR-ASPP, and EchoNet's DeepLabV3; and
the landmark networks built on the U-Net (one soft-argmax map per tracing point).

A segmentation model takes a normalised frame batch (B, C, H, W) and returns one logit map (B, 1, H, W) for
"inside the LV cavity"; a landmark model returns (B, 2 * points) coordinates. Both kinds live in the one model
registry (sonokit.models.registry) under kind "segmentation" and "landmarks". Nothing is ever downloaded:
torchvision models are built with weights=None.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from sonokit.models.registry import Builder, build, register_model


def _seg(name: str, description: str, family: str) -> Callable[[Builder], Builder]:
    """register_model for a segmentation network: EchoNet's 112 px frames, any size from 16 px up."""
    return register_model(
        name,
        kind="segmentation",
        family=family,
        description=description,
        default_img_size=112,
        min_img_size=16,
    )


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Ronneberger's U-Net, narrow: an LV cavity is one smooth blob, so a few channels per level suffice.

    Inputs whose side is not a multiple of 2**(levels - 1) are padded and the output cropped back.
    """

    def __init__(self, in_chans: int = 3, widths: tuple[int, ...] = (16, 32, 64, 128), num_classes: int = 1):
        super().__init__()
        self.down = nn.ModuleList()
        c = in_chans
        for w in widths:
            self.down.append(_double_conv(c, w))
            c = w
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(_double_conv(c + w, w))
            c = w
        self.out = nn.Conv2d(c, num_classes, 1)
        self.factor = 2 ** (len(widths) - 1)
        self.spec = {"name": "unet", "in_chans": in_chans, "widths": list(widths)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.factor, (-w) % self.factor
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.out(x)[..., :h, :w]


@_seg("unet", "U-Net 16-32-64-128, pads to a multiple of 8; LV logits (B, 1, H, W)", "unet")
def unet(in_chans: int = 3, **kw: object) -> nn.Module:
    return UNet(in_chans, widths=(16, 32, 64, 128), **kw)  # type: ignore[arg-type]


@_seg("unet-tiny", "U-Net 8-16-32, for tests and CPU demos", "unet")
def unet_tiny(in_chans: int = 3, **kw: object) -> nn.Module:
    """For tests and CPU demos."""
    model = UNet(in_chans, widths=(8, 16, 32), **kw)  # type: ignore[arg-type]
    model.spec["name"] = "unet-tiny"
    return model


class TorchvisionSeg(nn.Module):
    """A torchvision segmentation model with a one-logit classifier, returning the logit map as a tensor.

    The backbone and classifier keep torchvision's attribute names, so EchoNet-Dynamic's DeepLabV3 checkpoints
    load after their `module.` prefix is stripped (sonokit.models.load_weights does that).
    """

    def __init__(self, name: str, in_chans: int = 3) -> None:
        super().__init__()
        from torchvision.models import segmentation

        if name == "deeplabv3_resnet50":
            net = segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False)
            last = net.classifier[-1]
            net.classifier[-1] = nn.Conv2d(last.in_channels, 1, kernel_size=last.kernel_size)
            first = ("backbone", "conv1")
        elif name == "lraspp":
            net = segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=1)
            first = ("backbone", "0")
        else:  # pragma: no cover - guarded by the registry
            raise ValueError(name)
        self.backbone = net.backbone
        self.classifier = net.classifier
        if in_chans != 3:
            self._adapt_first_conv(first, in_chans)
        self.spec = {"name": name, "in_chans": in_chans}

    def _adapt_first_conv(self, where: tuple[str, str], in_chans: int) -> None:
        parent = getattr(self, where[0])
        old = parent._modules[where[1]]  # type: ignore[attr-defined]
        conv = old if isinstance(old, nn.Conv2d) else old[0]
        new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
        if isinstance(old, nn.Conv2d):
            parent._modules[where[1]] = new  # type: ignore[attr-defined]
        else:
            old[0] = new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = self.backbone(x)
        out = self.classifier(feats) if self.spec["name"] == "lraspp" else self.classifier(feats["out"])
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


@_seg("lraspp", "torchvision LR-ASPP on MobileNetV3-Large", "torchvision")
def lraspp(in_chans: int = 3, **kw: object) -> nn.Module:
    """torchvision LR-ASPP on MobileNetV3-Large (randomly initialised)."""
    return TorchvisionSeg("lraspp", in_chans)


@_seg(
    "deeplabv3_resnet50", "torchvision DeepLabV3 ResNet-50 (EchoNet-Dynamic's; slow on a CPU)", "torchvision"
)
def deeplabv3_resnet50(in_chans: int = 3, **kw: object) -> nn.Module:
    """EchoNet-Dynamic's segmentation network (slow on a CPU; use it with EchoNet's weights)."""
    return TorchvisionSeg("deeplabv3_resnet50", in_chans)


# ---------------------------------------------------------------------------------------------- landmark networks


class SoftArgmaxPoints(nn.Module):
    """Landmarks as the expected position of a spatial softmax (soft-argmax, DSNT-style) over a network's maps.

    A fully convolutional net (the U-Net) gives one logit map per point; the softmax over each map's pixels
    is a probability of where the point lies and its mean is the point: (B, 2 * points) as x, y pairs in units
    of the input side (pixel index / side, the normalised coordinates lv-trace regresses). Being
    translation-equivariant, it does not have to learn absolute position from a globally pooled feature
    vector, as a classifier backbone with a regression head does. `maps=True` also returns the log-probability
    maps, for a loss that pulls each map towards a small Gaussian at its point (dense supervision, so it
    learns in a few epochs like the segmentation U-Net).
    """

    def __init__(self, net: nn.Module, points: int, name: str) -> None:
        super().__init__()
        self.net = net
        self.points = points
        self.spec = {**getattr(net, "spec", {}), "name": name, "points": points}

    def forward(
        self, x: torch.Tensor, maps: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, 2 * points) coordinates; with `maps`, also the (B, points, H, W) log-probability maps."""
        logits = self.net(x).float()
        b, k, h, w = logits.shape
        log_prob = torch.log_softmax(logits.reshape(b, k, h * w), dim=-1).reshape(b, k, h, w)
        prob = log_prob.exp()
        xs = torch.arange(w, device=x.device, dtype=prob.dtype) / w
        ys = torch.arange(h, device=x.device, dtype=prob.dtype) / h
        px = (prob.sum(dim=2) * xs).sum(dim=-1)
        py = (prob.sum(dim=3) * ys).sum(dim=-1)
        coords = torch.stack([px, py], dim=-1).reshape(b, 2 * k)
        return (coords, log_prob) if maps else coords


def _points(base: str) -> Callable[..., nn.Module]:
    """The builder of `<base>-points`: the segmentation U-Net with one soft-argmax map per tracing point."""

    def builder(in_chans: int = 3, points: int = 42) -> nn.Module:
        net = build(base, kind="segmentation", in_chans=in_chans, num_classes=points)
        return SoftArgmaxPoints(net, points, f"{base}-points")

    return builder


for _base in ("unet", "unet-tiny"):
    register_model(
        f"{_base}-points",
        kind="landmarks",
        family="unet",
        description=f"{_base} with a soft-argmax map per point; (B, 2 * points) coordinates (lv-trace: 42)",
        default_img_size=112,
        min_img_size=16,
    )(_points(_base))
