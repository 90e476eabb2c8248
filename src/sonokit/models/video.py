"""Video networks for ejection fraction: the two-stream 3D-CNN with attention fusion, and EchoNet's R(2+1)D-18.

Both take a normalised clip (B, C, T, H, W) and return (B, 1) EF in percent. They are registered with kind "video"
in the one model registry (sonokit.models.registry), so `sonokit models list` shows them beside the image
backbones and the `ef` task builds them by name like every other task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from sonokit.errors import ModelError
from sonokit.models.inference import GrayInputConv
from sonokit.models.registry import Builder, register_model


def _video(name: str, family: str, description: str) -> Callable[[Builder], Builder]:
    """register_model for an EF video network: EchoNet's 112 px clips; it runs on clips from 8 px up."""
    return register_model(
        name, kind="video", family=family, description=description, default_img_size=112, min_img_size=8
    )


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

    def forward_windows(self, seq: torch.Tensor, offsets: Sequence[int], frames: int) -> torch.Tensor:
        """forward() of the clips seq[:, :, o : o + frames] for each offset o, seq being (1, C, L, H, W): the
        first stage runs once over the frames the clips share (see first_stage_windows)."""
        return self.stages[1:](first_stage_windows(self.stages[0], seq, offsets, frames))


def _time_geometry(conv: nn.Module) -> tuple[int, int, int, int] | None:
    conv = getattr(conv, "gray", conv)  # sonokit.models.inference.GrayInputConv: both convolutions alike
    if not isinstance(conv, nn.Conv3d) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    return conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]


def shares_first_stage(block: nn.Module) -> bool:
    """A first stage of two 3D convolutions of 3 frames, stride 1 and zero padding 1 in time, the rest pointwise
    (eval BatchNorm, ReLU, or nothing after folding): its output at a frame depends on 5 input frames around it."""
    if not isinstance(block, nn.Sequential) or block.training:
        return False
    convs = [m for m in block if _time_geometry(m) is not None]
    pointwise = (nn.Identity, nn.ReLU, nn.BatchNorm3d)
    return (
        len(convs) == 2
        and all(_time_geometry(c) == (3, 1, 1, 1) for c in convs)
        and all(_time_geometry(m) is not None or isinstance(m, pointwise) for m in block)
    )


def first_stage_windows(
    block: nn.Sequential, seq: torch.Tensor, offsets: Sequence[int], frames: int
) -> torch.Tensor:
    """block(x) for the clips x = seq[:, :, o : o + frames] of one sequence (1, C, L, H, W), stacked on the batch
    axis, for a block where `shares_first_stage` holds.

    Clips that overlap (EF's all-clips protocol: 16 frames every 4th, a clip every 16 frames, so neighbours share
    12 of 16 frames) give the same output at every frame whose 5 input frames lie inside the clip, wherever the
    clip starts: the block runs once over the whole sequence, and only the first two and last two frames of each
    clip, where the clip's own zero padding enters, are computed again from the clip's own frames. Equal to
    running the block on every clip to float rounding."""
    names = list(block._modules)
    second = [i for i, n in enumerate(names) if _time_geometry(block._modules[n]) is not None][1]
    part1, part2 = block[:second], block[second:]
    length, n = seq.shape[2], len(offsets)
    if seq.shape[0] != 1 or frames < 4 or min(offsets) < 0 or max(offsets) + frames > length:
        raise ValueError(
            "first_stage_windows needs one sequence (1, C, L, H, W) holding every clip of 4+ frames"
        )
    # The sequence as two overlapping halves (a batch of one would run PyTorch's slow CPU convolution). The first
    # half is right up to frame piece - 2 after part1 and piece - 3 after part2 (its end is padding, unless it is
    # the sequence's end); the second from frame start + 1 and start + 2 on; every frame is right in one of them.
    piece = (length + 1) // 2 + 2
    start = length - piece
    a = part1(torch.cat([seq[:, :, :piece], seq[:, :, start:]]))
    b = part2(a)

    def put(dst: torch.Tensor, src: torch.Tensor, lo: int, hi: int, split: int) -> None:
        """dst (C, hi - lo, h, w) = frames lo..hi-1 of the sequence from src (the halves), split: the first
        frame taken from the second half."""
        k = min(max(split - lo, 0), hi - lo)
        if k:
            dst[:, :k] = src[0, :, lo : lo + k]
        if k < hi - lo:
            dst[:, k:] = src[1, :, lo + k - start : hi - start]

    def empty(t: int, like: torch.Tensor, count: int) -> torch.Tensor:
        fmt = torch.channels_last_3d if like.is_contiguous(memory_format=torch.channels_last_3d) else None
        shape = (count, like.shape[1], t, *like.shape[3:])
        return torch.empty(
            shape, dtype=like.dtype, device=like.device, memory_format=fmt or torch.contiguous_format
        )

    out = empty(frames, b, n)
    for i, o in enumerate(offsets):  # the frames every clip shares with the sequence
        put(out[i, :, 2 : frames - 2], b, o + 2, o + frames - 2, piece - 2)
    # each clip's edges: part1 on its first and last two input frames (the clip's own zero padding enters) ...
    ends = torch.cat(
        [
            torch.stack([seq[0, :, o : o + 2] for o in offsets]),
            torch.stack([seq[0, :, o + frames - 2 : o + frames] for o in offsets]),
        ]
    )
    edge = part1(ends)  # a head's frame 0 and a tail's frame 1 are the clip's
    # ... and part2 on the clip's first three and last three frames of part1's output
    rim = empty(3, a, 2 * n)
    rim[:n, :, :1] = edge[:n, :, :1]
    rim[n:, :, 2:] = edge[n:, :, 1:]
    for i, o in enumerate(offsets):
        put(rim[i, :, 1:], a, o + 1, o + 3, piece - 1)
        put(rim[n + i, :, :2], a, o + frames - 3, o + frames - 1, piece - 1)
    fixed = part2(rim)  # frames 0, 1 of a head and 1, 2 of a tail are the clip's
    out[:, :, :2] = fixed[:n, :, :2]
    out[:, :, frames - 2 :] = fixed[n:, :, 1:]
    return out


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
    """Differences of consecutive frames, z-scored per clip, padded to keep T (the temporal stream's input).

    Without autograd (prediction, validation) in place and with a two-pass mean and standard deviation: the same
    values to float rounding, in a fifteenth of the time of torch.std_mean (a slow reduction on the CPU)."""
    if not torch.is_grad_enabled():
        diff = torch.empty_like(x)  # x's memory layout (channels-last stays channels-last)
        torch.sub(x[:, :, 1:], x[:, :, :-1], out=diff[:, :, :-1])
        diff[:, :, -1:] = diff[:, :, -2:-1]
        dims = tuple(range(1, x.ndim))
        diff.sub_(diff.mean(dim=dims, keepdim=True))
        std = torch.linalg.vector_norm(diff, dim=dims, keepdim=True).div_(max(diff[0].numel() - 1, 1) ** 0.5)
        return diff.div_(std.add_(eps))
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
        return self._fuse(self.pool_s(self.spatial(x)), self.pool_t(self.temporal(frame_differences(x))))

    def forward_windows(self, seq: torch.Tensor, offsets: Sequence[int], frames: int) -> torch.Tensor:
        """forward() of the clips seq[:, :, o : o + frames] (seq: (1, C, L, H, W)), the spatial stream's first stage
        run once over the frames they share (Stream3D.forward_windows). The temporal stream sees each clip's own
        z-scored frame differences, which overlapping clips do not share, so it runs clip by clip."""
        x = torch.stack([seq[0, :, o : o + frames] for o in offsets])
        if seq.is_contiguous(memory_format=torch.channels_last_3d):
            x = x.contiguous(memory_format=torch.channels_last_3d)
        f_s = self.pool_s(self.spatial.forward_windows(seq, offsets, frames))
        f_t = self.pool_t(self.temporal(frame_differences(x)))
        return self.head(self._fuse(f_s, f_t))

    def shares_clip_frames(self) -> bool:
        """Whether forward_windows applies (a first stage with 3-frame convolutions, stride 1 in time)."""
        return not self.training and shares_first_stage(self.spatial.stages[0])

    def _fuse(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
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


@_video(
    "two-stream", "two-stream", "3D-CNN on frames + 3D-CNN on frame differences, attention fusion; EF (B, 1)"
)
def two_stream(widths: tuple[int, ...] = (16, 32, 64, 128), **kw: object) -> nn.Module:
    return TwoStreamEF(widths=tuple(widths), **kw)  # type: ignore[arg-type]


@_video("two-stream-tiny", "two-stream", "two-stream with widths 8-16-32, for tests and CPU demos")
def two_stream_tiny(**kw: object) -> nn.Module:
    """Narrow widths for tests and CPU demos."""
    return TwoStreamEF(widths=(8, 16, 32), hidden=32, **kw)  # type: ignore[arg-type]


class R2Plus1DEF(nn.Module):
    """torchvision's R(2+1)D-18 with EchoNet-Dynamic's one-output head.

    The attribute names are torchvision's, so an EchoNet checkpoint loads once its `module.` prefix is stripped.
    """

    def __init__(self, in_chans: int = 3, ef_mean: float = 55.6) -> None:
        super().__init__()
        import torchvision

        if in_chans != 3:
            raise ModelError("r2plus1d_18 (EchoNet) takes 3 channels: set channels: 3")

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


@_video(
    "r2plus1d_18",
    "r2plus1d",
    "torchvision R(2+1)D-18 with EchoNet-Dynamic's one-output head (3 channels); EF (B, 1)",
)
def r2plus1d_18(**kw: object) -> nn.Module:
    return R2Plus1DEF(**kw)  # type: ignore[arg-type]
