"""Image corruptions with a continuous, seeded intensity, each scored by SSIM to the clean image.

Why: an image-quality gate needs corrupted examples whose severity is known (to train on) and a way to ask how
much of a corruption a trained model tolerates (the robustness sweep). The first three follow the published
study (scale-up crop, median blur with a disk, Gaussian noise); the rest are ultrasound failure modes it did not
model (speckle, probe motion, low gain, lost contrast, acoustic shadowing, heavy JPEG compression).

Every corruption takes a uint8 image, (H, W) or (H, W, 3), an intensity in its own unit and a numpy Generator,
and returns a uint8 image of the same shape. Intensity 0 returns an unchanged copy (SSIM 1). Intensities are
continuous: where the underlying operation is discrete (a median disk radius, a JPEG quality) the module
interpolates or rounds as documented on each function, so a sweep over a fine grid gives a smooth curve.

Severity is SSIM to the original (scikit-image `structural_similarity`, data_range=255, channel_axis=-1 for
colour images), as in the study.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from sonokit.errors import InputError

__all__ = [
    "ALIASES",
    "CORRUPTIONS",
    "Corruption",
    "corrupt",
    "get_corruption",
    "intensity_grid",
    "ssim",
]

ApplyFn = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """One corruption: a name, its intensity unit and range, and the function that applies it.

    `intensity_range` is (min, saturation): min is 0 (the clean image); saturation is the intensity past which the
    image carries little of the original content, the top of sweeps and of training ranges.
    `paper_threshold` is the intensity at which the published study saw plane-classifier accuracy fall under
    90%, where there is one.
    """

    name: str
    intensity_range: tuple[float, float]
    unit: str
    description: str
    fn: ApplyFn
    paper_threshold: float | None = None

    def apply(
        self, image: np.ndarray, intensity: float, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Corrupt `image` (uint8, (H, W) or (H, W, 3)) at `intensity`; intensity 0 returns an unchanged copy."""
        _check_image(image)
        intensity = float(intensity)
        if not math.isfinite(intensity) or intensity < 0:
            raise InputError(f"{self.name}: intensity must be a finite number >= 0, got {intensity}")
        if intensity == 0:
            return image.copy()
        out = self.fn(image, intensity, rng if rng is not None else np.random.default_rng())
        return np.ascontiguousarray(out, dtype=np.uint8)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InputError(
            f"corruptions take uint8 images, got {getattr(image, 'dtype', type(image).__name__)}"
        )
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise InputError(f"corruptions take (H, W) or (H, W, 3) images, got shape {image.shape}")
    if min(image.shape[:2]) < 8:
        raise InputError(f"image too small to corrupt and score: {image.shape}")


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _per_channel(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    if image.ndim == 2:
        return fn(image)
    return np.stack([fn(np.ascontiguousarray(image[..., c])) for c in range(image.shape[2])], axis=-1)


# --------------------------------------------------------------------------- the study's three corruptions


def _scale_up(image: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Crop a centred box that loses `fraction` of the width (and the same share of the height), resize back.

    Done as one affine zoom by 1/(1 - fraction) about the image centre with bilinear interpolation, which is the
    crop-and-resize without rounding the crop box to whole pixels, so 1.5% on an 800-px image is exactly 12 px.
    """
    if fraction >= 1:
        raise InputError(f"scale_up: fraction of the width lost must be < 1, got {fraction}")
    h, w = image.shape[:2]
    s = 1.0 / (1.0 - fraction)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    m = np.array([[s, 0.0, cx * (1 - s)], [0.0, s, cy * (1 - s)]], dtype=np.float64)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _median(image: np.ndarray, radius: int) -> np.ndarray:
    from skimage.filters import rank
    from skimage.morphology import disk

    if radius <= 0:
        return image
    return _per_channel(image, lambda ch: rank.median(ch, disk(radius)))


def _median_blur(image: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Median filter with a disk footprint of radius r pixels (skimage `disk`, rank median).

    Integer r is exactly the study's filter. A fractional r blends the two neighbouring integer radii linearly
    (r = 3.25 is 0.75 x median(disk 3) + 0.25 x median(disk 4); r < 1 blends with the original), because a disk
    footprint only changes at whole radii and a sweep needs a continuous severity.
    """
    lo = math.floor(radius)
    frac = radius - lo
    low = _median(image, lo)
    if frac < 1e-9:
        return low
    high = _median(image, lo + 1)
    return _to_uint8((1 - frac) * low.astype(np.float32) + frac * high.astype(np.float32))


def _gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise with standard deviation `sigma` on the [0, 1] intensity scale, clipped to [0, 1]."""
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    return _to_uint8((image.astype(np.float32) / 255.0 + sigma * noise).clip(0, 1) * 255.0)


# --------------------------------------------------------------------------- ultrasound corruptions


def _speckle(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative speckle: each pixel times a Gamma variable with mean 1 and standard deviation `sigma`.

    Gamma is the intensity distribution of averaged (multi-look) speckle; sigma = 1 is the exponential law of
    fully developed speckle. Dark regions stay dark, unlike additive noise.
    """
    shape = 1.0 / (sigma * sigma)
    gain = rng.gamma(shape, 1.0 / shape, size=image.shape[:2]).astype(np.float32)
    if image.ndim == 3:
        gain = gain[..., None]
    return _to_uint8(image.astype(np.float32) * gain)


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    """A normalised line kernel of `length` pixels at `angle` radians, drawn with bilinear sub-pixel weights."""
    half = length / 2.0
    size = 2 * math.ceil(half) + 3
    c = size // 2
    kernel = np.zeros((size, size), dtype=np.float64)
    n = max(2, math.ceil(length * 4) + 1)
    for t in np.linspace(-half, half, n):
        x, y = c + t * math.cos(angle), c + t * math.sin(angle)
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        kernel[y0, x0] += (1 - fx) * (1 - fy)
        kernel[y0, x0 + 1] += fx * (1 - fy)
        kernel[y0 + 1, x0] += (1 - fx) * fy
        kernel[y0 + 1, x0 + 1] += fx * fy
    return (kernel / kernel.sum()).astype(np.float32)


def _motion_blur(image: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
    """Linear motion blur over `length` pixels in a direction drawn from `rng` (probe or patient movement)."""
    angle = float(rng.uniform(0.0, math.pi))
    kernel = _motion_kernel(length, angle)
    return _to_uint8(cv2.filter2D(image.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT))


def _gain_loss(image: np.ndarray, loss: float, rng: np.random.Generator) -> np.ndarray:
    """Overall gain set too low: every pixel times (1 - loss); loss 0.5 halves the brightness."""
    return _to_uint8(image.astype(np.float32) * max(0.0, 1.0 - loss))


def _contrast_loss(image: np.ndarray, loss: float, rng: np.random.Generator) -> np.ndarray:
    """Dynamic range compressed towards the mean grey level: mean + (1 - loss)(pixel - mean)."""
    x = image.astype(np.float32)
    mean = float(x.mean())
    return _to_uint8(mean + max(0.0, 1.0 - loss) * (x - mean))


def _shadow(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Acoustic shadow: a dark wedge along the beam direction behind an attenuating structure.

    Geometry is drawn from `rng` (apex above the top centre like a sector probe, wedge direction, angular width
    0.12-0.28 rad, onset at 20-50% of the depth with a soft start and soft edges); `strength` in [0, 1] is the
    fraction of echo lost inside the wedge, so the same seed gives the same wedge at every strength.
    """
    h, w = image.shape[:2]
    apex_x, apex_y = (w - 1) / 2.0, -0.1 * h
    direction = float(rng.uniform(-0.35, 0.35))  # radians from vertical
    half_width = float(rng.uniform(0.06, 0.14))
    onset = float(rng.uniform(0.2, 0.5)) * h
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = np.arctan2(xx - apex_x, yy - apex_y) - direction
    depth = np.hypot(xx - apex_x, yy - apex_y) - 0.1 * h
    edge = np.clip((half_width - np.abs(theta)) / (0.4 * half_width), 0, 1)
    start = np.clip((depth - onset) / (0.05 * h), 0, 1)
    mask = edge * start
    factor = 1.0 - min(1.0, strength) * mask
    if image.ndim == 3:
        factor = factor[..., None]
    return _to_uint8(image.astype(np.float32) * factor)


def _jpeg(image: np.ndarray, loss: float, rng: np.random.Generator) -> np.ndarray:
    """JPEG round trip at quality round(100 x (1 - loss)), clamped to 1..100 (OpenCV's libjpeg)."""
    quality = int(min(100, max(1, round(100 * (1 - loss)))))
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 array
        raise InputError("jpeg: OpenCV could not encode the image")
    out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out.reshape(image.shape)


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in [
        Corruption(
            "scale_up", (0.0, 0.2), "fraction of width lost", "centred crop resized back", _scale_up, 0.015
        ),
        Corruption(
            "median_blur", (0.0, 10.0), "disk radius px", "median filter, disk footprint", _median_blur, 4.0
        ),
        Corruption(
            "gaussian_noise", (0.0, 0.5), "sigma on [0,1]", "additive Gaussian noise", _gaussian_noise, 0.18
        ),
        Corruption("speckle", (0.0, 1.0), "sigma of gain", "multiplicative Gamma speckle", _speckle),
        Corruption(
            "motion_blur", (0.0, 30.0), "length px", "linear motion blur, random direction", _motion_blur
        ),
        Corruption("gain_loss", (0.0, 0.9), "fraction of gain lost", "image darkened", _gain_loss),
        Corruption(
            "contrast_loss", (0.0, 0.9), "fraction of range lost", "range compressed to mean", _contrast_loss
        ),
        Corruption("shadow", (0.0, 1.0), "fraction of echo lost", "acoustic shadow wedge", _shadow),
        Corruption("jpeg", (0.0, 0.95), "1 - quality/100", "JPEG compression round trip", _jpeg),
    ]
}

#: Short names used by the 4-class quality classifier and accepted everywhere a corruption name is.
ALIASES: dict[str, str] = {"scale": "scale_up", "blur": "median_blur", "noise": "gaussian_noise"}


def get_corruption(name: str) -> Corruption:
    """Look a corruption up by name or alias; an unknown name is an InputError listing the known ones."""
    key = ALIASES.get(name, name)
    if key not in CORRUPTIONS:
        known = ", ".join([*CORRUPTIONS, *ALIASES])
        raise InputError(f"unknown corruption {name!r}; known: {known}")
    return CORRUPTIONS[key]


def ssim(reference: np.ndarray, image: np.ndarray) -> float:
    """SSIM of `image` to `reference` (skimage, data_range=255; colour images averaged over channels)."""
    from skimage.metrics import structural_similarity

    if reference.shape != image.shape:
        raise InputError(f"SSIM needs equal shapes, got {reference.shape} and {image.shape}")
    if image.ndim == 3:
        return float(structural_similarity(reference, image, data_range=255, channel_axis=-1))
    return float(structural_similarity(reference, image, data_range=255))


def _as_rng(seed_or_rng: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def corrupt(
    image: np.ndarray, name: str, intensity: float, seed_or_rng: int | np.random.Generator | None = None
) -> tuple[np.ndarray, float]:
    """Apply corruption `name` at `intensity`; return the corrupted uint8 image and its SSIM to `image`.

    The same integer seed gives the same corrupted image. Intensity 0 returns an unchanged copy with SSIM 1.
    """
    corruption = get_corruption(name)
    out = corruption.apply(image, intensity, _as_rng(seed_or_rng))
    if float(intensity) == 0:
        return out, 1.0
    return out, ssim(image, out)


def intensity_grid(name: str, steps: int, low: float = 0.0, high: float | None = None) -> np.ndarray:
    """`steps` + 1 evenly spaced intensities from `low` (default 0, the clean image) to saturation (or `high`)."""
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    corruption = get_corruption(name)
    top = corruption.intensity_range[1] if high is None else float(high)
    return np.linspace(low, top, steps + 1)
