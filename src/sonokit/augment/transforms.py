"""Training augmentation on torchvision transforms v2, seeded per sample.

v2 moves boxes (tv_tensors.BoundingBoxes), keypoints (tv_tensors.KeyPoints) and masks (tv_tensors.Mask) with the
image, so the geometry of labels is never re-derived by hand. v2 draws its random numbers from torch's global
generator; `SeededTransform` runs a transform inside `torch.random.fork_rng` with a seed derived from
(seed, index, epoch), so one sample's augmentation is the same whichever worker, batch order or process draws it,
and the caller's global RNG is left untouched.

Inputs are images in [0, 1] (float) or uint8, before intensity normalisation (gamma needs non-negative values).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from sonokit.augment.config import AugmentConfig
from sonokit.augment.seeds import derive_seed

__all__ = [
    "Appearance",
    "Augment",
    "RandomGamma",
    "SeededTransform",
    "build_augment",
    "build_transform",
    "derive_seed",
]


class RandomGamma(v2.Transform):
    """Gamma correction with gamma drawn uniformly from a range; images only (boxes, masks pass through)."""

    def __init__(self, gamma: Sequence[float]) -> None:
        super().__init__()
        self.gamma = (float(gamma[0]), float(gamma[1]))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        lo, hi = self.gamma
        return {"gamma": float(torch.empty(()).uniform_(lo, hi))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.adjust_gamma, inpt, gamma=params["gamma"])


class Appearance(v2.Transform):
    """The scanner-look restyling of sonokit.augment.appearance on images and videos (one draw for all frames);
    boxes, masks and keypoints pass through. Its numpy draws are seeded from torch's RNG, so SeededTransform's
    seed fixes them too."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength = float(strength)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"seed": int(torch.randint(0, 2**62, (1,)))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        from torchvision import tv_tensors

        from sonokit.augment.appearance import appearance_augment

        if isinstance(inpt, tv_tensors.BoundingBoxes | tv_tensors.Mask | tv_tensors.KeyPoints):
            return inpt
        x = inpt.as_subclass(torch.Tensor)
        frames = x.reshape(-1, *x.shape[-3:])  # (N, C, H, W): one image or a video's frames
        scale = 255.0 if x.is_floating_point() else 1.0
        out = torch.empty_like(frames)
        for i, frame in enumerate(frames):
            u8 = (frame.float() * scale).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            styled = appearance_augment(u8, np.random.default_rng(params["seed"]), self.strength)
            styled = torch.from_numpy(styled.reshape(u8.shape)).permute(2, 0, 1)
            out[i] = styled.float() / scale if x.is_floating_point() else styled
        return (
            tv_tensors.wrap(out.reshape(x.shape), like=inpt)
            if isinstance(inpt, tv_tensors.TVTensor)
            else out.reshape(x.shape)
        )


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch ops on one intra-op thread: per-sample transforms on one small image are 10x slower when two
    threads hand tiny kernels back and forth (16 ms vs 1.2 ms per 96 px item on a 2-core machine)."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class SeededTransform:
    """Wrap a v2 transform so that a seed (or a torch.Generator) fixes its random draws.

    `t(image, boxes, seed=derive_seed(run_seed, index, epoch))` gives the same output for the same seed.
    Without seed or generator the transform uses torch's global RNG, as plain v2 would.
    """

    def __init__(self, transform: Callable[..., Any]) -> None:
        self.transform = transform

    def __call__(
        self, *inputs: Any, seed: int | None = None, generator: torch.Generator | None = None
    ) -> Any:
        if seed is None and generator is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with one_thread():
            if seed is None:
                return self.transform(*inputs)
            with torch.random.fork_rng(devices=[]):
                # the CPU generator only: torch.manual_seed would also queue lazy CUDA/XPU seeding (slow, unused)
                torch.random.default_generator.manual_seed(int(seed))
                return self.transform(*inputs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"


class Augment(SeededTransform):
    """The training augmentation built from an AugmentConfig (keeps the config for the run folder)."""

    def __init__(self, cfg: AugmentConfig, transform: Callable[..., Any]) -> None:
        super().__init__(transform)
        self.cfg = cfg


def _blur_kernel(sigma_max: float) -> int:
    return 2 * math.ceil(3 * sigma_max) + 1


def build_transform(cfg: AugmentConfig) -> v2.Transform:
    """The unseeded v2 pipeline: geometry first (labels move with it), then intensity (image only)."""
    if not cfg.enabled:
        return v2.Identity()
    steps: list[v2.Transform] = []
    zoom = cfg.zoom if cfg.zoom and cfg.zoom != (1.0, 1.0) else None
    if cfg.rotation_deg or cfg.translate or zoom:
        steps.append(
            v2.RandomAffine(
                degrees=cfg.rotation_deg,
                translate=(cfg.translate, cfg.translate) if cfg.translate else None,
                scale=zoom,
                interpolation=v2.InterpolationMode.BILINEAR,  # masks still move with nearest-neighbour
            )
        )
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if cfg.gamma and cfg.gamma != (1.0, 1.0):
        steps.append(RandomGamma(cfg.gamma))
    if cfg.brightness or cfg.contrast:
        steps.append(v2.ColorJitter(brightness=cfg.brightness or None, contrast=cfg.contrast or None))
    if cfg.blur_sigma and cfg.blur_p > 0:
        blur = v2.GaussianBlur(kernel_size=_blur_kernel(cfg.blur_sigma[1]), sigma=cfg.blur_sigma)
        steps.append(v2.RandomApply([blur], p=cfg.blur_p))
    if cfg.appearance:
        steps.append(Appearance(cfg.appearance))
    if not steps:
        return v2.Identity()
    steps.append(v2.ClampBoundingBoxes())
    return v2.Compose(steps)


def build_augment(cfg: AugmentConfig | None = None) -> Augment:
    """Seeded training augmentation: `aug(image, seed=...)`, `aug(image, boxes, generator=g)`, ...

    Accepts a (C, H, W) tensor or a (T, C, H, W) tv_tensors.Video, alone or with BoundingBoxes, KeyPoints and
    Mask; returns the same structure transformed with one set of random parameters.
    """
    cfg = cfg or AugmentConfig()
    return Augment(cfg, build_transform(cfg))
