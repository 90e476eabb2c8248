"""One augmentation vocabulary: the typed `augment:` config, each task refusing an option it would ignore, and the
numpy frame/clip transforms in sonokit.augment giving the draws and pixels echo's datasets gave before they moved."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sonokit.augment import AUGMENT_OPTIONS, AugmentConfig, FrameAugment, item_rng, random_shift
from sonokit.augment.geometry import (
    compose,
    gain_gamma,
    hflip_matrix,
    random_affine,
    shift,
    warp,
    warp_points,
)
from sonokit.core.config import _HASHED_WHEN_SET, _NON_SEMANTIC, load_run_config, parse_sets, resolve_config
from sonokit.errors import InputError
from sonokit.tasks import get_task, task_names
from test_engine_cli import sonokit

# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("augment.rotaton_deg=5", re.escape("unknown option (did you mean 'rotation_deg'?)")),
        ("augment.translate=2", "'augment.translate'.*must be <= 1, got 2"),
        ("augment.blur_p=-0.1", "'augment.blur_p'.*must be >= 0"),
        ("augment.zoom=[1.2,0.9]", r"'augment.zoom'.*0 < low <= high, got \[1.2, 0.9\]"),
        ("augment.gamma=1.5", r"'augment.gamma'.*null or a range \[low, high\]"),
        ("augment.rotation_deg=lots", "'augment.rotation_deg'.*must be a number"),
        ("augment.hflip=sometimes", "'augment.hflip'.*boolean"),
    ],
)
def test_a_bad_augment_option_fails_naming_it(setting: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        resolve_config("classify", sets=parse_sets([setting]), task_defaults={})
    assert str(err.value).startswith(f"config option '{setting.split('=')[0]}'")
    assert "\n" not in str(err.value)


def _old_hash(cfg, augment: dict) -> str:
    """TrainConfig.hash as it was computed while `augment` was a plain dict (the mapping as given)."""
    semantic = {k: v for k, v in cfg.model_dump().items() if k not in _NON_SEMANTIC}
    semantic = {k: v for k, v in semantic.items() if not (k in _HASHED_WHEN_SET and v is None)}
    blob = json.dumps({**semantic, "augment": augment}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def test_config_stores_and_hashes_the_options_as_given(tmp_path: Path) -> None:
    """config.yaml keeps the mapping the user gave (ints stay ints, ranges lists) and the hash is the one the
    untyped dict gave, so runs trained before the config was typed keep theirs."""
    given = {"rotation_deg": 5, "zoom": [1, 2], "hflip": True}
    cfg = resolve_config("lus", overrides={"augment": given}, task_defaults=get_task("lus").defaults)
    assert isinstance(cfg.augment, AugmentConfig)
    assert cfg.augment.zoom == (1, 2) and cfg.augment.gamma == (0.8, 1.2)  # unset options keep their defaults
    assert cfg.model_dump()["augment"] == given
    assert cfg.hash() == _old_hash(cfg, given)
    paper = get_task("av-detect").defaults["augment"]
    av = resolve_config("av-detect", task_defaults=get_task("av-detect").defaults)
    assert av.model_dump()["augment"] == paper and av.hash() == _old_hash(av, paper)
    plain = resolve_config("quality", task_defaults={})  # a task whose defaults set no augmentation
    assert plain.model_dump()["augment"] == {} and plain.hash() == _old_hash(plain, {})
    # a run folder's config.yaml round-trips to an equal config with the same hash
    (tmp_path / "config.yaml").write_text(cfg.to_yaml())
    loaded = load_run_config(tmp_path)
    assert loaded == cfg and loaded.hash() == cfg.hash()
    # setting an option to its default value is a different config, as it was with the dict
    explicit = resolve_config("quality", overrides={"augment": {"rotation_deg": 10.0}}, task_defaults={})
    assert explicit != plain and explicit.hash() != plain.hash()


# ---------------------------------------------------------------------------------------------- tasks


def _task(name: str, **overrides):
    cls = get_task(name)
    return cls(resolve_config(name, overrides={"data": "unused", **overrides}, task_defaults=cls.defaults))


#: which options each task applies (all of them: the torchvision pipeline)
EXPECTED = {
    "classify": AUGMENT_OPTIONS,
    "fetal-plane": AUGMENT_OPTIONS,
    "lus": AUGMENT_OPTIONS,
    "av-detect": AUGMENT_OPTIONS - {"hflip"},
    "av-calcification": AUGMENT_OPTIONS - {"hflip"},
    "ef": {"enabled"},
    "lv-seg": {"enabled"},
    "lv-trace": {"enabled"},
    "quality": {"enabled", "hflip"},
}


def test_every_task_declares_what_it_applies_and_accepts_its_own_defaults() -> None:
    assert set(task_names()) <= set(EXPECTED), "a new task: add what it applies here"
    for name in task_names():
        assert get_task(name).applied_augment() == EXPECTED[name], name
        assert _task(name).augment_config().enabled


@pytest.mark.parametrize(
    ("name", "augment", "message"),
    [
        ("ef", {"gamma": [0.5, 1.5]}, "task 'ef' does not apply augment.gamma .*options.pad"),
        ("ef", {"rotation_deg": 0}, "does not apply augment.rotation_deg"),  # off is not what ef does either
        (
            "lv-seg",
            {"zoom": [0.8, 1.2], "contrast": 0.3},
            "augment.zoom, augment.contrast .*augment_strength",
        ),
        ("lv-trace", {"hflip": True}, "does not allow augment.hflip .*options.hflip"),
        ("quality", {"rotation_deg": 15}, "'quality' does not apply augment.rotation_deg"),
        ("av-detect", {"hflip": True}, "'av-detect' does not allow augment.hflip"),
        ("av-calcification", {"hflip": True}, "does not allow augment.hflip"),
    ],
)
def test_a_task_refuses_an_option_it_would_ignore(name: str, augment: dict, message: str) -> None:
    task = _task(name, augment=augment)  # a loaded run still opens (evaluate, predict): only training refuses
    with pytest.raises(InputError, match=message) as err:
        task.augment_config()
    assert "\n" not in str(err.value)


def test_options_a_task_applies_reach_its_datasets() -> None:
    # ef: enabled: false turns the pad-and-crop shift off; the clip start is still drawn within its window
    clips = pd.DataFrame(
        {"path": pd.Series(dtype=str), "clip": pd.Series(dtype=int), "ef": pd.Series(dtype=float)}
    )
    assert _task("ef").build_dataset(clips, train=True).pad == 8
    assert _task("ef", augment={"enabled": False}).build_dataset(clips, train=True).pad == 0
    # quality mirrors by default (as before the option was honoured), not with hflip: false or enabled: false
    assert _task("quality").augment_config().hflip
    assert not _task("quality", augment={"hflip": False}).augment_config().hflip
    assert not _task("quality", augment={"enabled": False}).augment_config().enabled
    # image tasks: the torchvision pipeline of the checked config, or none
    assert _task("classify", augment={"gamma": [0.5, 0.6]}).train_augment().cfg.gamma == (0.5, 0.6)
    assert _task("lus", augment={"enabled": False}).train_augment() is None


def test_cli_refuses_with_one_line_and_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    out = tmp_path / "run"
    proc = sonokit(
        "train", "ef", "--data", "data", "--out", str(out), "--set", "augment.gamma=[0.5,1.5]", cwd=tmp_path
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: task 'ef' does not apply augment.gamma"), lines
    assert not out.exists()  # refused before anything was read or written
    proc = sonokit("train", "classify", "--data", "data", "--set", "augment.rotaton_deg=5", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "'augment.rotaton_deg': unknown option (did you mean 'rotation_deg'?)" in lines[0]


# ---------------------------------------------------------------------------------------------- transforms

# Recorded from sonokit.echo.data's _affine, _hflip, _compose and gain / gamma draws before they moved to
# sonokit.augment.geometry (derive_seed(0, item, 1), size 112, strength 1).
AFFINES = [
    [[1.0686026311396724, 0.18600660893601348, -11.579135278514991], [-0.18600660893601348, 1.0686026311396724, 6.218983712906094]],
    [[1.0108720363399386, -0.03558290587989892, 1.7374083502503306], [0.03558290587989892, 1.0108720363399386, 0.393323523195217]],
    [[0.9086813161596131, -0.14806469442532372, 8.293492071798468], [0.14806469442532372, 0.9086813161596131, -5.956251458933378]],
]  # fmt: skip
MIRRORED_0 = [
    [-1.0686026311396724, -0.18600660893601348, 122.579135278515],
    [-0.18600660893601348, 1.0686026311396724, 6.218983712906094],
]
GAIN_GAMMA = [
    (1.0819757144999202, 0.8989387952528819),
    (0.9404388045212506, 0.9972645623517471),
    (0.8422772074390841, 1.072381925731671),
]


def test_moved_frame_transforms_draw_what_echo_drew_before() -> None:
    for item, (expected, (gain, gamma)) in enumerate(zip(AFFINES, GAIN_GAMMA, strict=True)):
        rng = item_rng(0, item, 1)
        m = random_affine(rng, 112, 1.0)
        np.testing.assert_allclose(m, expected, rtol=0, atol=1e-12)
        assert rng.random() < 0.5  # the mirror's coin came up heads for all three
        if item == 0:
            np.testing.assert_allclose(compose(hflip_matrix(112), m), MIRRORED_0, rtol=0, atol=1e-12)
        image = np.full((4, 4, 1), 128, np.uint8)
        want = np.clip(255.0 * (128 / 255.0) ** gamma * gain, 0, 255).astype(np.uint8)
        assert np.array_equal(gain_gamma(image, rng, 1.0), np.full_like(image, want))
    # FrameAugment is those steps in that order, from one Generator
    frame = np.random.default_rng(1).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    out, m = FrameAugment(112, hflip=True)(frame, item_rng(0, 0, 1))
    np.testing.assert_allclose(m, MIRRORED_0, rtol=0, atol=1e-12)
    rng = item_rng(0, 0, 1)
    random_affine(rng, 112)
    rng.random()
    assert np.array_equal(out, gain_gamma(warp(frame, m, 112), rng))


def test_clip_shift_is_the_old_pad_and_crop() -> None:
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    sums = [float(shift(x, dy, dx).sum()) for dy, dx in [(1, 2), (-2, 1), (0, -3), (0, 0)]]
    assert sums == [8208.0, 8550.0, 8190.0, 16110.0]  # recorded from sonokit.echo.data.shift
    moved = random_shift(x, item_rng(7, 0, 1), pad=2)
    dy, dx = item_rng(7, 0, 1).integers(-2, 3, size=2)
    assert torch.equal(moved, shift(x, int(dy), int(dx)))
    for t in range(3):  # every frame of the clip by the same pixels
        assert torch.equal(moved[:, t], shift(x[:, t], int(dy), int(dx)))
    assert random_shift(x, item_rng(7, 0, 1), pad=0) is x


def _square(size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = np.zeros((size, size, 1), np.uint8)
    image[20:36, 30:46] = 255
    mask = np.zeros((size, size), np.uint8)
    mask[20:36, 30:46] = 1
    corners = np.array([[30.0, 20.0], [45.0, 20.0], [45.0, 35.0], [30.0, 35.0]])  # pixel centres, x y
    return image, mask, corners


@pytest.mark.parametrize("seed", range(6))
def test_masks_and_keypoints_move_with_the_frame(seed: int) -> None:
    image, mask, corners = _square()
    out, m = FrameAugment(64, strength=2.0, hflip=True)(image, item_rng(seed, 0, 0))
    moved_mask = warp(mask, m, 64, nearest=True)
    bright = warp(image, m, 64)[..., 0] > 127
    assert out.shape == image.shape and moved_mask.shape == mask.shape
    assert set(np.unique(moved_mask)) <= {0, 1}  # labels stay labels
    iou = (bright & (moved_mask > 0)).sum() / (bright | (moved_mask > 0)).sum()
    assert iou > 0.85, iou
    ys, xs = np.nonzero(moved_mask)
    for x, y in warp_points(corners, m):  # each corner lands on the moved square's edge
        assert np.min(np.hypot(xs - x, ys - y)) < 1.5
    centre = warp_points(corners.mean(0), m)
    assert abs(xs.mean() - centre[0]) < 1.0 and abs(ys.mean() - centre[1]) < 1.0
