"""Appearance augmentation of the LV frames: seeded, black stays black, and image and mask move together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sonokit.augment.appearance import appearance_augment
from sonokit.echo.data import FrameDataset


@pytest.fixture(scope="module")
def traced_items(tmp_path_factory) -> pd.DataFrame:
    """The traced ED and ES frames of 3 simulated cines (full look, LV on the right), as lv-seg item rows."""
    from sonokit.data.echonet import read_echonet
    from sonokit.synth import make_echo_dataset

    root = make_echo_dataset(
        tmp_path_factory.mktemp("aug") / "E", n=3, seed=5, size=64, realism="full", convention="right"
    )
    echonet = read_echonet(root)
    rows = []
    for name in echonet.filelist["FileName"].astype(str):
        path = echonet.video_path(name)
        for frame in echonet.ed_es(name):
            rows.append({"path": str(path), "frame": int(frame), "lines": echonet.tracings[path.name][frame]})
    return pd.DataFrame(rows)


def _dataset(items: pd.DataFrame, **kw) -> FrameDataset:
    return FrameDataset(items, 64, 3, "mask", train=True, seed=kw.pop("seed", 0), **kw)


def _cavity_contrast(x: np.ndarray, mask: np.ndarray) -> float:
    """Mean grey level in a 3 px ring around the mask minus the mean inside it (> 0: the mask is on a dark hole)."""
    import cv2

    m = mask.astype(np.uint8)
    ring = (cv2.dilate(m, np.ones((7, 7), np.uint8)) > 0) & ~mask
    g = x.mean(axis=0)
    return float(g[ring].mean() - g[mask].mean())


def test_augmentation_is_the_same_for_the_same_seed_and_epoch(traced_items) -> None:
    a = _dataset(traced_items, appearance=True, hflip=True)
    b = _dataset(traced_items, appearance=True, hflip=True)
    for i in range(len(traced_items)):
        ia, ib = a[i], b[i]
        assert np.array_equal(ia["x"].numpy(), ib["x"].numpy())
        assert np.array_equal(ia["y"].numpy(), ib["y"].numpy())
    b.set_epoch(1)
    assert not np.array_equal(a[0]["x"].numpy(), b[0]["x"].numpy())
    other_seed = _dataset(traced_items, appearance=True, hflip=True, seed=1)
    assert not np.array_equal(a[0]["x"].numpy(), other_seed[0]["x"].numpy())


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_flipped_and_rotated_frames_keep_their_mask_on_the_dark_cavity(traced_items) -> None:
    aug = _dataset(traced_items, appearance=True, hflip=True)
    unflipped = _dataset(traced_items, appearance=True, hflip=False)  # the same affine draws, never mirrored
    flipped = 0
    for epoch in range(4):
        aug.set_epoch(epoch)
        unflipped.set_epoch(epoch)
        for i in range(len(traced_items)):
            item = aug[i]
            x, mask = item["x"].numpy(), item["y"].numpy()[0] > 0.5
            assert item["has_target"] and mask.sum() > 20
            assert _cavity_contrast(x, mask) > 0.02, (epoch, i)
            ref = unflipped[i]["y"].numpy()[0] > 0.5
            if np.array_equal(mask, ref):
                continue
            flipped += 1
            assert _iou(mask, ref[:, ::-1]) > 0.85  # the same mask, mirrored with its frame
    assert 0 < flipped < 4 * len(traced_items)  # about half


def test_appearance_changes_no_geometry_and_nothing_flips_without_the_option(traced_items) -> None:
    geometry_only = _dataset(traced_items)  # the original augmentation: affine, gain, gamma
    aug = _dataset(traced_items, appearance=True, hflip=False)
    for epoch in range(3):
        aug.set_epoch(epoch)
        geometry_only.set_epoch(epoch)
        for i in range(len(traced_items)):
            a, b = aug[i], geometry_only[i]
            assert np.array_equal(a["y"].numpy(), b["y"].numpy())
            assert not np.array_equal(a["x"].numpy(), b["x"].numpy())


def test_appearance_augment_is_seeded_keeps_black_and_changes_the_look() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((64, 64, 3), np.uint8)
    image[8:56, 8:56] = rng.integers(20, 220, size=(48, 48, 1), dtype=np.uint8)
    a = appearance_augment(image, np.random.default_rng(3))
    b = appearance_augment(image, np.random.default_rng(3))
    c = appearance_augment(image, np.random.default_rng(4))
    assert a.dtype == np.uint8 and a.shape == image.shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a[..., 0], a[..., 2])  # grey stays grey
    assert a[:4].max() == 0 and a[:, -4:].max() == 0  # outside the sector
    assert np.array_equal(appearance_augment(image, np.random.default_rng(3), strength=0.0), image)
    gray = appearance_augment(image[..., 0], np.random.default_rng(3))
    assert gray.shape == (64, 64)


def test_lv_seg_has_it_off_by_default_and_options_switch_it_on(tmp_path: Path) -> None:
    """Off by default (it damped the LV motion: simulated EF bias -8.6, README); the options turn it on and
    `augment.enabled: false` turns every LV augmentation off."""
    from sonokit.core.config import resolve_config
    from sonokit.tasks import get_task

    def task(**overrides):
        cls = get_task("lv-seg")
        cfg = resolve_config(
            "lv-seg", overrides={"data": str(tmp_path), **overrides}, task_defaults=cls.defaults
        )
        return cls(cfg)

    items = pd.DataFrame({"path": ["x.avi"], "frame": [0]})
    default = task()
    assert not default.opts.appearance_aug and not default.opts.hflip
    ds = default.build_dataset(items, train=True)
    assert not ds.appearance and not ds.hflip and ds.strength == 1.0
    on = task(options={"appearance_aug": True, "hflip": True})
    ds = on.build_dataset(items, train=True)
    assert ds.appearance and ds.hflip
    none = task(options={"appearance_aug": True, "hflip": True}, augment={"enabled": False})
    ds = none.build_dataset(items, train=True)
    assert ds.strength == 0.0 and not ds.appearance and not ds.hflip
    assert not get_task("lv-trace")(
        resolve_config(
            "lv-trace", overrides={"data": str(tmp_path)}, task_defaults=get_task("lv-trace").defaults
        )
    ).opts.appearance_aug
