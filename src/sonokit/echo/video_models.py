"""Video networks for ejection fraction: the two-stream 3D-CNN with attention fusion, and EchoNet's R(2+1)D-18.

Both take a normalised clip (B, 3, T, H, W) and return (B, 1) EF in percent. They live apart from the 2D registry
because their input is a clip, not an image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sonokit.models.inference import GrayInputConv

VIDEO_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_video_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        VIDEO_MODELS[name] = fn
        return fn

    return wrap


def create_video_model(name: str, **kwargs: object) -> nn.Module:
    """The front door for video models (`two-stream`, `two-stream-tiny`, `r2plus1d_18`)."""
    from sonokit.errors import ModelError

    if name not in VIDEO_MODELS:
        raise ModelError(f"unknown video model {name!r}; choose one of {sorted(VIDEO_MODELS)}")
    return VIDEO_MODELS[name](**kwargs)


def _conv_block(c_in: int, c_out: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv3d(c_out, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    )


class Stream3D(nn.Module):
    """A plain 3D-CNN: each stage halves space; time is halved from the second stage on."""

    def __init__(self, in_chans: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        stages, c = [], in_chans
        for i, w in enumerate(widths):
            stages.append(_conv_block(c, w, stride=(1 if i == 0 else 2, 2, 2)))
            c = w
        self.stages = nn.Sequential(*stages)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)


class TemporalAttentionPool(nn.Module):
    """Pool (B, C, T, H, W) to (B, C): average over space, then attention weights over time (which frames matter)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Conv1d(channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.mean(dim=(3, 4))  # (B, C, T)
        weights = torch.softmax(self.score(seq), dim=-1)  # (B, 1, T)
        return (seq * weights).sum(dim=-1)


def frame_differences(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Differences of consecutive frames, z-scored per clip, padded to keep T (the temporal stream's input)."""
    diff = x[:, :, 1:] - x[:, :, :-1]
    diff = torch.cat([diff, diff[:, :, -1:]], dim=2)
    std, mean = torch.std_mean(diff, dim=(1, 2, 3, 4), keepdim=True)
    return (diff - mean) / (std + eps)


class TwoStreamEF(nn.Module):
    """Spatial stream on frames + temporal stream on frame differences, fused by learned attention.

    Squeeze-excitation runs over both streams' pooled features, then a per-clip softmax weighs the streams, so the
    network can lean on motion when the image is poor and on anatomy when the motion is ambiguous.
    """

    def __init__(
        self,
        in_chans: int = 3,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        hidden: int = 64,
        dropout: float = 0.2,
        ef_mean: float = 55.0,
    ) -> None:
        super().__init__()
        self.spatial = Stream3D(in_chans, widths)
        self.temporal = Stream3D(in_chans, widths)
        c = self.spatial.out_channels
        self.pool_s = TemporalAttentionPool(c)
        self.pool_t = TemporalAttentionPool(c)
        self.se = nn.Sequential(
            nn.Linear(2 * c, c // 2), nn.ReLU(inplace=True), nn.Linear(c // 2, 2 * c), nn.Sigmoid()
        )
        self.stream_gate = nn.Linear(2 * c, 2)
        self.head = nn.Sequential(
            nn.Linear(c, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )
        nn.init.constant_(self.head[-1].bias, ef_mean)
        self.spec = {"name": "two-stream", "in_chans": in_chans, "widths": list(widths), "feature_dim": c}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        f_s = self.pool_s(self.spatial(x))
        f_t = self.pool_t(self.temporal(frame_differences(x)))
        both = torch.cat([f_s, f_t], dim=1)
        both = both * self.se(both)
        f_s, f_t = both.chunk(2, dim=1)
        gate = torch.softmax(self.stream_gate(both), dim=1)  # (B, 2)
        return gate[:, :1] * f_s + gate[:, 1:] * f_t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def accept_gray_input(self) -> None:
        """Also take (B, 1, T, H, W) grey clips, with the outputs of the grey copied into every channel
        (prediction only: the state dict changes; see sonokit.models.inference)."""
        for stream in (self.spatial, self.temporal):
            stream.stages[0][0] = GrayInputConv(stream.stages[0][0])


@register_video_model("two-stream")
def two_stream(widths: tuple[int, ...] = (16, 32, 64, 128), **kw: object) -> nn.Module:
    return TwoStreamEF(widths=tuple(widths), **kw)  # type: ignore[arg-type]


@register_video_model("two-stream-tiny")
def two_stream_tiny(**kw: object) -> nn.Module:
    """Narrow widths for tests and CPU demos."""
    return TwoStreamEF(widths=(8, 16, 32), hidden=32, **kw)  # type: ignore[arg-type]


class R2Plus1DEF(nn.Module):
    """torchvision's R(2+1)D-18 with EchoNet-Dynamic's one-output head.

    The attribute names are torchvision's, so an EchoNet checkpoint loads once its `module.` prefix is stripped.
    """

    def __init__(self, ef_mean: float = 55.6) -> None:
        super().__init__()
        import torchvision

        net = torchvision.models.video.r2plus1d_18(weights=None)
        net.fc = nn.Linear(net.fc.in_features, 1)
        nn.init.constant_(net.fc.bias, ef_mean)
        self.stem, self.layer1, self.layer2 = net.stem, net.layer1, net.layer2
        self.layer3, self.layer4, self.avgpool, self.fc = net.layer3, net.layer4, net.avgpool, net.fc
        self.spec = {"name": "r2plus1d_18", "in_chans": 3, "feature_dim": net.fc.in_features}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.avgpool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))

    def accept_gray_input(self) -> None:
        """As TwoStreamEF.accept_gray_input: the stem's first convolution also takes one channel."""
        self.stem[0] = GrayInputConv(self.stem[0])


@register_video_model("r2plus1d_18")
def r2plus1d_18(**kw: object) -> nn.Module:
    return R2Plus1DEF(**kw)  # type: ignore[arg-type]
