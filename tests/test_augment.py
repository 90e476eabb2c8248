"""Seeded torchvision-v2 augmentation: labels move with the image, seeds reproduce, hflip stays off."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from sonokit.augment import AugmentConfig, SeededTransform, build_augment, derive_seed

SIZE = 96
SQUARE = (50, 20, 70, 40)  # x1, y1, x2, y2 (exclusive)
GEOMETRY_ONLY = AugmentConfig(
    rotation_deg=25, translate=0.15, zoom=(0.8, 1.2), gamma=None, brightness=0, contrast=0, blur_sigma=None
)


def _square_image() -> torch.Tensor:
    x1, y1, x2, y2 = SQUARE
    img = torch.zeros(1, SIZE, SIZE)
    img[:, y1:y2, x1:x2] = 1.0
    return img


def _bright_box(img: torch.Tensor) -> tuple[float, float, float, float]:
    ys, xs = torch.nonzero(img[0] > 0.5, as_tuple=True)
    return float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


@pytest.mark.parametrize("seed", range(8))
def test_boxes_keypoints_and_masks_move_with_the_image(seed: int) -> None:
    aug = build_augment(GEOMETRY_ONLY)
    img = _square_image()
    boxes = tv_tensors.BoundingBoxes([SQUARE], format="XYXY", canvas_size=(SIZE, SIZE))
    x1, y1, x2, y2 = SQUARE
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    points = tv_tensors.KeyPoints([[cx, cy], [x1, y1], [x2, y2]], canvas_size=(SIZE, SIZE))
    mask = tv_tensors.Mask((img[0] > 0.5).to(torch.uint8))

    out, out_boxes, out_points, out_mask = aug(img, boxes, points, mask, seed=seed)

    assert not torch.equal(out, img)  # something moved
    bright = _bright_box(out)
    box = tuple(float(v) for v in out_boxes[0])
    assert _iou(box, bright) > 0.8, (box, bright)
    ys, xs = torch.nonzero(out[0] > 0.5, as_tuple=True)
    centre = (float(xs.float().mean()) + 0.5, float(ys.float().mean()) + 0.5)
    assert box[0] <= centre[0] <= box[2] and box[1] <= centre[1] <= box[3]
    # the square's centre keypoint lands on the bright region's centroid (pixel centres are at +0.5)
    kx, ky = (float(v) for v in out_points[0])
    assert abs(kx - centre[0]) < 1.5 and abs(ky - centre[1]) < 1.5, ((kx, ky), centre)
    # corner keypoints sit on the edge of the moved square: a bright pixel within 2 px
    for corner in out_points[1:]:
        d2 = (xs.float() + 0.5 - float(corner[0])) ** 2 + (ys.float() + 0.5 - float(corner[1])) ** 2
        assert float(d2.min().sqrt()) < 2.0
    # the mask moves with nearest-neighbour and agrees with the bilinear-moved image
    mask_pixels = out_mask.bool()
    image_pixels = out[0] > 0.5
    inter = (mask_pixels & image_pixels).sum().item()
    union = (mask_pixels | image_pixels).sum().item()
    assert inter / union > 0.85
    assert set(out_mask.unique().tolist()) <= {0, 1}


def test_same_seed_same_output_different_seed_different() -> None:
    aug = build_augment(AugmentConfig(blur_p=0.5))
    torch.manual_seed(0)
    img = torch.rand(1, 64, 64)
    boxes = tv_tensors.BoundingBoxes([[10, 10, 30, 40]], format="XYXY", canvas_size=(64, 64))
    a_img, a_box = aug(img, boxes, seed=123)
    b_img, b_box = aug(img, boxes, seed=123)
    assert torch.equal(a_img, b_img) and torch.equal(a_box, b_box)
    outs = [aug(img, seed=s) for s in range(5)]
    assert all(not torch.equal(outs[0], o) for o in outs[1:])
    # a torch.Generator seeded the same way gives the same draws
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(aug(img, generator=g1), aug(img, generator=g2))
    # seeding leaves the caller's global RNG where it was
    state = torch.get_rng_state()
    aug(img, seed=5)
    assert torch.equal(state, torch.get_rng_state())


def test_derive_seed_is_deterministic_and_spreads() -> None:
    seeds = {derive_seed(0, i, e) for i in range(50) for e in range(4)}
    assert len(seeds) == 200
    assert derive_seed(3, 10, 2) == derive_seed(3, 10, 2)
    assert all(0 <= s < 2**63 for s in seeds)


def test_hflip_off_by_default_and_on_when_asked() -> None:
    assert AugmentConfig().hflip is False
    default = build_augment(AugmentConfig())
    assert not any(isinstance(t, v2.RandomHorizontalFlip) for t in default.transform.transforms)
    flip_only = AugmentConfig(
        rotation_deg=0,
        translate=0,
        zoom=None,
        gamma=None,
        brightness=0,
        contrast=0,
        blur_sigma=None,
        hflip=True,
    )
    aug = build_augment(flip_only)
    img = torch.zeros(1, 16, 16)
    img[:, :, :4] = 1.0  # bright left edge
    flipped = [torch.equal(aug(img, seed=s), img.flip(-1)) for s in range(20)]
    kept = [torch.equal(aug(img, seed=s), img) for s in range(20)]
    assert any(flipped) and any(kept) and all(f or k for f, k in zip(flipped, kept, strict=True))


def test_disabled_is_identity_and_photometric_only_touches_images() -> None:
    img = torch.rand(1, 32, 32)
    assert torch.equal(build_augment(AugmentConfig(enabled=False))(img, seed=1), img)
    photometric = AugmentConfig(rotation_deg=0, translate=0, zoom=None, gamma=(0.5, 0.6), blur_p=1.0)
    mask = tv_tensors.Mask(torch.ones(32, 32, dtype=torch.uint8))
    out, out_mask = build_augment(photometric)(img, mask, seed=2)
    assert not torch.allclose(out, img) and torch.equal(out_mask, mask)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_uint8_and_video_frames_share_parameters() -> None:
    aug = build_augment(AugmentConfig())
    frame = (torch.rand(1, 40, 40) * 255).to(torch.uint8)
    out = aug(frame, seed=4)
    assert out.dtype == torch.uint8 and out.shape == frame.shape
    video = tv_tensors.Video(torch.rand(1, 1, 40, 40).repeat(3, 1, 1, 1))
    moved = aug(video, seed=4)
    assert moved.shape == video.shape and not torch.equal(moved, video)
    assert torch.equal(moved[0], moved[1]) and torch.equal(moved[1], moved[2])


def test_seeded_transform_wraps_any_v2_transform() -> None:
    t = SeededTransform(v2.RandomCrop(8))
    img = torch.arange(16 * 16, dtype=torch.float32).reshape(1, 16, 16)
    assert torch.equal(t(img, seed=11), t(img, seed=11))
    assert len({float(t(img, seed=s)[0, 0, 0]) for s in range(10)}) > 3


def test_config_validation_and_yaml_lists() -> None:
    cfg = AugmentConfig(zoom=[0.9, 1.1], gamma=[0.8, 1.2])
    assert cfg.zoom == (0.9, 1.1) and cfg.gamma == (0.8, 1.2)
    with pytest.raises(ValueError, match="zoom"):
        AugmentConfig(zoom=(1.2, 0.9))
    with pytest.raises(ValueError, match="rotation_deg"):
        AugmentConfig(rotation_deg=-1)


def test_appearance_restyles_images_and_video_frames_alike_and_leaves_labels() -> None:
    only = AugmentConfig(rotation_deg=0, translate=0, zoom=None, gamma=None, brightness=0, contrast=0, blur_p=0,
                         appearance=1.0)  # fmt: skip
    aug = build_augment(only)
    img = _square_image()
    box = tv_tensors.BoundingBoxes([[8, 8, 20, 20]], format="XYXY", canvas_size=img.shape[-2:])
    mask = tv_tensors.Mask((img[0] > 0.5).to(torch.uint8))
    out, out_box, out_mask = aug(img, box, mask, seed=5)
    assert (
        not torch.allclose(out, img, atol=0.02) and torch.equal(out_box, box) and torch.equal(out_mask, mask)
    )
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(aug(img, seed=5), out) and not torch.equal(aug(img, seed=6), out)
    u8 = (img * 255).to(torch.uint8)
    assert aug(u8, seed=5).dtype == torch.uint8
    video = tv_tensors.Video(img[None].repeat(3, 1, 1, 1))
    styled = aug(video, seed=5)
    assert isinstance(styled, tv_tensors.Video) and torch.equal(styled[0], styled[2])
    assert not torch.allclose(styled[0], img, atol=0.02)
    assert torch.equal(
        build_augment(AugmentConfig(appearance=0))(img, seed=5), build_augment(AugmentConfig())(img, seed=5)
    )
