"""Registered backbones: timm models built without weights, and a tiny CNN for tests and CPU demos.

Each builder returns a module with `forward_features(x) -> (B, C, h, w)` and `num_features`. timm's `in_chans`
builds grayscale stems directly (1 input channel), so ultrasound frames are not copied into three channels.
Layers that timm keeps for its own classifier but that `forward_features` never runs (VGG's 4096-wide
pre-logits, MobileNetV3's conv head after pooling) are pruned so they do not inflate memory and parameter counts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sonokit.models.registry import register_model


def _timm(timm_name: str, in_chans: int, prune_head: bool = False, **kw: Any) -> nn.Module:
    import timm

    kw.pop("pretrained", None)  # never download: weights come only from a local file
    model = timm.create_model(
        timm_name, pretrained=False, num_classes=0, global_pool="", in_chans=in_chans, **kw
    )
    if prune_head:
        model.prune_intermediate_layers(indices=1, prune_norm=False, prune_head=True)
    return model


@register_model(
    "tinycnn",
    family="sonokit",
    description="4 conv blocks, 128 features, stride 8",
    min_img_size=8,
    default_img_size=112,
)
def tinycnn(in_chans: int = 1, width: int = 16, **_: Any) -> nn.Module:
    return TinyCNN(in_chans, width)


class TinyCNN(nn.Module):
    """Four conv-BN-ReLU blocks (width, 2w, 4w, 8w), the first three followed by 2x2 max pooling.

    Small enough to train in seconds on a CPU, deep enough to localise a bright structure (stride 8 keeps a
    14x14 feature map at 112 px for Grad-CAM).
    """

    def __init__(self, in_chans: int = 1, width: int = 16) -> None:
        super().__init__()
        chans = [in_chans, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.num_features = chans[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


@register_model("efficientnet_b0", family="efficientnet", description="timm efficientnet_b0, 1280 features")
def efficientnet_b0(in_chans: int = 1, **kw: Any) -> nn.Module:
    return _timm("efficientnet_b0", in_chans, **kw)


@register_model("efficientnet_b4", family="efficientnet", description="timm efficientnet_b4, 1792 features")
def efficientnet_b4(in_chans: int = 1, **kw: Any) -> nn.Module:
    return _timm("efficientnet_b4", in_chans, **kw)


@register_model(
    "mobilenetv3_small", family="mobilenet", description="timm mobilenetv3_small_100, 576 features"
)
def mobilenetv3_small(in_chans: int = 1, **kw: Any) -> nn.Module:
    return _timm("mobilenetv3_small_100", in_chans, prune_head=True, **kw)


@register_model(
    "mobilenetv3_large", family="mobilenet", description="timm mobilenetv3_large_100, 960 features"
)
def mobilenetv3_large(in_chans: int = 1, **kw: Any) -> nn.Module:
    return _timm("mobilenetv3_large_100", in_chans, prune_head=True, **kw)


@register_model("mobilenetv2", family="mobilenet", description="timm mobilenetv2_100, 1280 features")
def mobilenetv2(in_chans: int = 1, **kw: Any) -> nn.Module:
    return _timm("mobilenetv2_100", in_chans, **kw)


@register_model("resnet18", family="resnet", description="timm resnet18 (torchvision layout), 512 features")
def resnet18(in_chans: int = 1, **kw: Any) -> nn.Module:
    return _timm("resnet18", in_chans, **kw)


def _small_resnet(in_chans: int, width: int, **kw: Any) -> nn.Module:
    """timm's ResNet-10 layout (one basic block per stage, stride 32) at a fraction of resnet18's widths: the
    receptive field covers the whole image, which the 4-block tinycnn (about 30 px) does not, at tinycnn's cost."""
    from timm.models.resnet import BasicBlock, ResNet

    kw.pop("pretrained", None)
    return ResNet(
        BasicBlock,
        (1, 1, 1, 1),
        num_classes=0,
        global_pool="",
        in_chans=in_chans,
        channels=(width, 2 * width, 4 * width, 8 * width),
        **kw,
    )


@register_model(
    "resnet10_w16",
    family="resnet",
    description="timm ResNet-10 layout, widths 16-128, 128 features, 0.3M params",
)
def resnet10_w16(in_chans: int = 1, **kw: Any) -> nn.Module:
    return _small_resnet(in_chans, 16, **kw)


@register_model(
    "resnet10_w32",
    family="resnet",
    description="timm ResNet-10 layout, widths 32-256, 256 features, 1.2M params",
)
def resnet10_w32(in_chans: int = 1, **kw: Any) -> nn.Module:
    return _small_resnet(in_chans, 32, **kw)


@register_model("resnet50", family="resnet", description="timm resnet50 (torchvision layout), 2048 features")
def resnet50(in_chans: int = 1, **kw: Any) -> nn.Module:
    return _timm("resnet50", in_chans, **kw)


@register_model(
    "resnet152", family="resnet", description="timm resnet152, 2048 features (aortic-valve paper)"
)
def resnet152(in_chans: int = 1, **kw: Any) -> nn.Module:
    return _timm("resnet152", in_chans, **kw)


@register_model("vgg16", family="vgg", description="timm vgg16 conv layers (no 4096-wide FC), 512 features")
def vgg16(in_chans: int = 1, **kw: Any) -> nn.Module:
    """Built on the meta device and pruned before any memory is touched: timm's VGG carries a 120M-parameter
    pre-logits block that forward_features never uses; initialising it would cost seconds and ~500 MB."""
    import timm

    kw.pop("pretrained", None)
    target = torch.get_default_device()
    model = timm.create_model(
        "vgg16", pretrained=False, num_classes=0, global_pool="", in_chans=in_chans, device="meta", **kw
    )
    model.prune_intermediate_layers(indices=1, prune_head=True)
    if target.type != "meta":
        model.to_empty(device=target)
        model._initialize_weights()
    return model


@register_model(
    "xception", family="xception", description="timm legacy_xception (Chollet 2017), 2048 features"
)
def xception(in_chans: int = 1, **kw: Any) -> nn.Module:
    return _timm("legacy_xception", in_chans, **kw)
