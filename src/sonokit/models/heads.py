"""Classifier heads on top of a backbone's (B, C, h, w) feature map.

Every head has `forward(feats) -> (B, num_classes)`, `embed(feats) -> (B, embed_dim)` (the input of its last
linear layer, used for retrieval) and an int `embed_dim`.

- "linear": global average pooling and one linear layer (timm's default classifier).
- "avg" / "max" / "none": the pooling choice the aortic-valve paper compares in its Table 4 (Keras' pooling=
  'avg' | 'max' | None, None meaning Flatten), then a hidden dense layer (ReLU, dropout) and the output layer.
- "attention-mlp": the fetal-plane paper's head: channel then spatial attention over the feature map (CBAM,
  Woo et al. 2018), average pooling, then a 3-layer MLP.
"""

from __future__ import annotations

import torch
from torch import nn

HEADS = ("linear", "avg", "max", "none", "attention-mlp")


class LinearHead(nn.Module):
    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self.embed_dim = channels

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(feats), 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.embed(feats)))


class PoolMLPHead(nn.Module):
    """Pooling ("avg", "max") or flattening ("none"), then Dense(hidden)-ReLU-Dropout-Dense(classes).

    hidden=0 drops the hidden layer (pooling straight into the output layer).
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        pool: str,
        hidden: int = 256,
        dropout: float = 0.0,
        spatial: tuple[int, int] = (1, 1),
    ) -> None:
        super().__init__()
        if pool == "avg":
            self.pool: nn.Module = nn.AdaptiveAvgPool2d(1)
            flat = channels
        elif pool == "max":
            self.pool = nn.AdaptiveMaxPool2d(1)
            flat = channels
        elif pool == "none":
            self.pool = nn.Identity()
            flat = channels * spatial[0] * spatial[1]
        else:
            raise ValueError(f"unknown pooling {pool!r}")
        self.pool_type = pool
        self.spatial = tuple(spatial)
        if hidden:
            self.hidden: nn.Module = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True))
            self.embed_dim = hidden
        else:
            self.hidden = nn.Identity()
            self.embed_dim = flat
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.embed_dim, num_classes)

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "none" and tuple(feats.shape[-2:]) != self.spatial:
            raise ValueError(
                f"head 'none' flattens a {self.spatial[0]}x{self.spatial[1]} feature map but got "
                f"{feats.shape[-2]}x{feats.shape[-1]}: feed images of the model's img_size"
            )
        return self.hidden(torch.flatten(self.pool(feats), 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.embed(feats)))


class ChannelAttention(nn.Module):
    """CBAM channel attention: a shared MLP over the average- and max-pooled channel descriptors."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        mid = max(channels // reduction, 8)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(torch.mean(x, dim=(2, 3), keepdim=True))
        mx = self.mlp(torch.amax(x, dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a 7x7 conv over the channel-wise mean and max maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(desc))


class AttentionMLPHead(nn.Module):
    """Channel + spatial attention (CBAM) over the features, average pooling, then a 3-layer MLP."""

    def __init__(
        self, channels: int, num_classes: int, hidden: tuple[int, int] = (512, 256), dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels)
        self.spatial = SpatialAttention()
        self.pool = nn.AdaptiveAvgPool2d(1)
        h1, h2 = hidden
        self.mlp = nn.Sequential(
            nn.Linear(channels, h1),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(h1, h2),
            nn.ReLU(inplace=True),
        )
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(h2, num_classes)
        self.embed_dim = h2

    def attend(self, feats: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(feats))

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.flatten(self.pool(self.attend(feats)), 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.embed(feats)))


def build_head(
    kind: str,
    channels: int,
    num_classes: int,
    *,
    dropout: float = 0.0,
    hidden: int | None = None,
    spatial: tuple[int, int] = (1, 1),
) -> nn.Module:
    """Head by name; `hidden` sizes the dense layer of avg/max/none (default 256) and the first MLP layer of
    attention-mlp (default 512, the second is half of it)."""
    if kind == "linear":
        return LinearHead(channels, num_classes, dropout)
    if kind in ("avg", "max", "none"):
        return PoolMLPHead(channels, num_classes, kind, 256 if hidden is None else hidden, dropout, spatial)
    if kind == "attention-mlp":
        h1 = 512 if hidden is None else max(int(hidden), 2)
        return AttentionMLPHead(channels, num_classes, (h1, h1 // 2), dropout)
    raise ValueError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
