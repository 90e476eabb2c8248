"""Echo building blocks with known answers: tracings, frame preparation, volumes in mL, classes, models, overlay."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from sonokit.clinical import rasterize_tracing, volume_from_mask, volume_from_tracing
from sonokit.echo.data import clip_starts, take_clip
from sonokit.echo.evaluate import class_agreement, dice, nearest_error
from sonokit.echo.frames import PreparedCine, compact, prepare_frames, to_channels
from sonokit.echo.tracing import canonical_tracing, simpson_volume_torch, tracing_area, tracing_errors
from sonokit.preprocess import CropTransform


def ellipse_tracing(cx=56.0, cy=50.0, a=30.0, b=14.0, angle_deg=12.0, n=20) -> np.ndarray:
    """EchoNet-layout tracing of an ellipse: long axis (2a) then n chords perpendicular to it."""
    t = math.radians(angle_deg)
    u = np.array([math.sin(t), math.cos(t)])  # long axis, pointing down the image
    v = np.array([u[1], -u[0]])
    c = np.array([cx, cy])
    rows = [np.concatenate([c - a * u, c + a * u])]
    for i in range(n):
        s = -a + (i + 0.5) * 2 * a / n
        half = b * math.sqrt(1 - (s / a) ** 2)
        p = c + s * u
        rows.append(np.concatenate([p + half * v, p - half * v]))
    return np.asarray(rows)


def test_canonical_tracing_is_one_order_for_every_way_of_writing_it() -> None:
    ref = canonical_tracing(ellipse_tracing())
    rng = np.random.default_rng(0)
    messy = ellipse_tracing()
    messy[0] = np.concatenate([messy[0, 2:], messy[0, :2]])  # axis written base to apex
    chords = messy[1:][rng.permutation(20)]
    swap = rng.random(20) < 0.5
    chords[swap] = np.concatenate([chords[swap, 2:], chords[swap, :2]], axis=1)
    messy[1:] = chords
    assert np.allclose(canonical_tracing(messy), ref)
    assert ref[0, 1] < ref[0, 3]  # apex (top) first
    along = ((ref[1:, :2] + ref[1:, 2:]) / 2 - ref[0, :2]) @ (ref[0, 2:] - ref[0, :2])
    assert np.all(np.diff(along) > 0)  # chords from apex to base


def test_tracing_errors_and_area_have_known_values() -> None:
    true = ellipse_tracing()
    moved = true + np.array([3.0, 4.0, 3.0, 4.0])
    err = tracing_errors(moved, true)
    assert err["point_error"] == pytest.approx(5.0)
    assert err["chord_length_error"] == pytest.approx(0.0, abs=1e-9)
    wider = ellipse_tracing(b=16.0)
    assert tracing_errors(wider, true)["chord_length_error"] > 2.0
    # the chord-end polygon of an ellipse: close to pi a b
    assert tracing_area(true) == pytest.approx(math.pi * 30 * 14, rel=0.02)


def test_torch_simpson_volume_equals_clinical_simpson_on_simulated_tracings(tmp_path) -> None:
    """The lv-trace volume loss computes Simpson's volume in torch: it must be clinical.simpson's number on real
    tracings (both ED and ES of simulated cines, as written and in the model's canonical, normalised order), with
    a finite gradient, and the loss must be zero for a perfect prediction and grow with a volume error."""
    from sonokit.core.config import resolve_config
    from sonokit.data.echonet import read_echonet
    from sonokit.synth import make_echo_dataset
    from sonokit.tasks import get_task

    root = make_echo_dataset(tmp_path / "echo", n=2, seed=5)
    traced = [lines for frames in read_echonet(root).tracings.values() for lines in frames.values()]
    assert len(traced) == 4
    written = torch.tensor(np.stack(traced), dtype=torch.float64, requires_grad=True)
    volumes = simpson_volume_torch(written)
    assert volumes.shape == (4,)
    for v, lines in zip(volumes.tolist(), traced, strict=True):
        assert v == pytest.approx(volume_from_tracing(lines), rel=1e-9)
        canon = torch.tensor(canonical_tracing(lines) / 112.0)
        assert float(simpson_volume_torch(canon)) * 112.0**3 == pytest.approx(
            volume_from_tracing(lines), rel=1e-9
        )
    volumes.sum().backward()
    assert torch.isfinite(written.grad).all() and written.grad.abs().sum() > 0
    point = written.detach().clone()
    point[0, 3, :2] = point[0, 3, 2:]  # a zero-length chord: still a finite gradient
    point.requires_grad_(True)
    simpson_volume_torch(point).sum().backward()
    assert torch.isfinite(point.grad).all()

    task_cls = get_task("lv-trace")
    task = task_cls(
        resolve_config("lv-trace", overrides={"data": str(root)}, task_defaults=task_cls.defaults)
    )
    assert task.opts.volume_loss > 0  # the default
    y = torch.tensor(
        np.stack([canonical_tracing(t).reshape(-1) / 112.0 for t in traced]), dtype=torch.float32
    )
    batch = {"y": y, "has_target": torch.ones(4, dtype=torch.bool)}
    assert float(task.loss(y.clone(), batch)) == pytest.approx(0.0, abs=1e-7)
    wide = y.reshape(4, 21, 4).clone()
    centre = (wide[:, 1:, :2] + wide[:, 1:, 2:]) / 2
    wide[:, 1:, :2] = centre + 1.1 * (wide[:, 1:, :2] - centre)  # chords 10 % wider: volume x 1.21
    wide[:, 1:, 2:] = centre + 1.1 * (wide[:, 1:, 2:] - centre)
    wide = wide.reshape(4, -1).requires_grad_(True)
    loss = task.loss(wide, batch)
    task.opts.volume_loss = 0.0
    coords_only = float(task.loss(wide.detach(), batch))
    assert float(loss.detach()) - coords_only == pytest.approx(0.21, rel=1e-3)  # relative volume error
    loss.backward()
    assert torch.isfinite(wide.grad).all()


def test_soft_argmax_points_give_the_peak_and_train_with_the_heatmap_loss() -> None:
    """unet-points: each map's expected position is its point, in the units lv-trace regresses (pixel / side),
    and the task's loss (coordinates + heatmap + volume) is finite with finite gradients."""
    from sonokit.echo.lv_trace import _gaussian_ce
    from sonokit.models import build
    from sonokit.models.segmentation import SoftArgmaxPoints

    class Peaks(torch.nn.Module):
        def forward(self, x):
            logits = torch.full((1, 2, 32, 32), -50.0)
            logits[0, 0, 5, 20] = 50.0  # y 5, x 20
            logits[0, 1, 31, 0] = 50.0
            return logits

    coords = SoftArgmaxPoints(Peaks(), 2, "peaks")(torch.zeros(1, 1, 32, 32))
    assert torch.allclose(coords, torch.tensor([[20 / 32, 5 / 32, 0.0, 31 / 32]]), atol=1e-6)
    flat = torch.full((1, 1, 32, 32), -math.log(32 * 32))
    grid = -((torch.arange(32.0) - 16) ** 2)[None, :] - ((torch.arange(32.0) - 8) ** 2)[:, None]
    near = torch.log_softmax(grid.reshape(1, 1, -1) / 2, dim=-1).reshape(1, 1, 32, 32)  # peaked at x 16, y 8
    target = torch.tensor([[0.5, 0.25]])
    assert float(_gaussian_ce(near, target, 1.0)) < float(_gaussian_ce(flat, target, 1.0))

    model = build("unet-tiny-points", kind="landmarks", in_chans=1, points=42).train()
    out, log_prob = model(torch.rand(2, 1, 32, 32), maps=True)
    assert out.shape == (2, 84) and log_prob.shape == (2, 42, 32, 32) and ((out >= 0) & (out < 1)).all()
    y = torch.rand(2, 84) * 0.5 + 0.25
    loss = _gaussian_ce(log_prob, y, 2.0) + torch.nn.functional.smooth_l1_loss(out, y)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_lv_trace_defaults_train_the_landmark_unet_with_a_weighted_heatmap_loss() -> None:
    """The lv-trace defaults (unet-points, heatmap_loss 1.0: the setting measured in the README) give the maps in
    training, and the loss then carries the heatmap cross-entropy at full weight, finite with finite gradients on
    a tiny batch; in eval mode the forward gives coordinates alone."""
    from sonokit.core.config import resolve_config
    from sonokit.echo.lv_trace import _gaussian_ce
    from sonokit.tasks import get_task

    cls = get_task("lv-trace")
    task = cls(resolve_config("lv-trace", overrides={"size": 32}, task_defaults=cls.defaults))
    assert task.cfg.model == "unet-points" and task.opts.heatmap_loss == 1.0 and task.opts.volume_loss > 0
    torch.manual_seed(0)
    model = task.build_model().train()
    y = torch.rand(2, 84) * 0.5 + 0.25
    batch = {"x": torch.rand(2, 3, 32, 32), "y": y, "has_target": torch.tensor([True, True])}
    out = task.forward(model, batch)
    assert isinstance(out, tuple) and out[0].shape == (2, 84) and out[1].shape == (2, 42, 32, 32)
    loss = task.loss(out, batch)
    ce = float(_gaussian_ce(out[1].detach(), y, task.opts.heatmap_sigma))
    task.opts.heatmap_loss = 0.0
    without = float(task.loss((out[0].detach(), out[1].detach()), batch))
    assert float(loss.detach()) - without == pytest.approx(ce, rel=1e-4) and ce > 1.0  # diffuse maps at init
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    coords = task.forward(model.eval(), batch)
    assert isinstance(coords, torch.Tensor) and coords.shape == (2, 84)


def test_prepare_frames_keeps_model_size_cines_and_crops_others() -> None:
    cine = np.zeros((4, 112, 112), np.uint8)
    same, transform = prepare_frames(cine, 112)
    assert same is cine and transform.scale == 1.0 and transform.x0 == 0
    big = np.zeros((4, 240, 320, 3), np.uint8)
    cv2.ellipse(big[0], (160, 40), (150, 180), 90, -40, 40, (120, 120, 120), -1)
    big[1:] = big[0]
    big[:, 5:15, 5:60] = 255  # burned-in text outside the fan
    out, transform, sector = prepare_frames(big, 112, geometry=True)
    assert out.shape == (4, 112, 112, 3) and sector is not None
    assert transform.scale < 1.0
    # a point maps to the crop and back
    pt = np.array([[160.0, 120.0]])
    assert np.allclose(transform.to_original(transform.to_crop(pt)), pt)


def test_compact_and_channels() -> None:
    rgb = np.repeat(np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1), 3, axis=-1)
    gray = compact(rgb)
    assert gray.shape == (2, 4, 4)
    colour = rgb.copy()
    colour[..., 0] = 200
    assert compact(colour).ndim == 4  # real colour is kept
    assert to_channels(gray, 3).shape == (2, 4, 4, 3) and to_channels(rgb, 1).shape == (2, 4, 4, 1)
    assert np.array_equal(to_channels(rgb, 1)[..., 0], gray)


def test_model_spacing_gives_the_volume_in_original_millimetres() -> None:
    """Simpson on the 112-px mask with spacing x crop pixel size = Simpson on the original-resolution mask."""
    spacing = (0.3, 0.3)  # mm per original pixel
    big = rasterize_tracing(ellipse_tracing(224, 200, 120, 56, 10), (448, 448))
    small = cv2.resize(big.astype(np.uint8), (112, 112), interpolation=cv2.INTER_AREA) > 0
    transform = CropTransform(0, 0, 0.25, 0.0, 0.0, 112, (448, 448))  # 448 -> 112
    prepared = PreparedCine(None, np.zeros((1, 112, 112), np.uint8), 50.0, spacing, transform, (448, 448))
    assert prepared.model_spacing_mm == pytest.approx((1.2, 1.2))
    v_small = volume_from_mask(small, prepared.model_spacing_mm)
    v_big = volume_from_mask(big, spacing)
    assert v_big == pytest.approx(
        volume_from_tracing(ellipse_tracing(224, 200, 120, 56, 10), spacing), rel=0.03
    )
    assert v_small == pytest.approx(v_big, rel=0.05)
    assert 10 < v_big < 500  # mL: a plausible ventricle


def test_clips_cover_the_video_and_pad_with_zeros() -> None:
    assert clip_starts(100, 16, 4, 16).tolist() == [0, 16, 32]  # 100 - 15 * 4 = 40 valid starts
    assert clip_starts(30, 16, 4, 16).tolist() == [0]  # too short: one clip, padded
    video = np.arange(1, 31, dtype=np.uint8)[:, None, None] * np.ones((1, 2, 2), np.uint8)
    zero = take_clip(video, 0, 16, 4, pad="zero")  # EchoNet: black frames past the end
    assert zero[:8, 0, 0].tolist() == [1, 5, 9, 13, 17, 21, 25, 29] and not zero[8:].any()
    loop = take_clip(video, 0, 16, 4)  # default: the cine loops
    assert loop[:10, 0, 0].tolist() == [1, 5, 9, 13, 17, 21, 25, 29, 3, 7]


def test_class_agreement_counts_and_sensitivity() -> None:
    truth = [60, 65, 45, 30, 35, 55]
    pred = [58, 45, 44, 42, 20, 61]
    out = class_agreement(truth, pred, "default")
    assert out["labels"] == ["normal", "mildly reduced", "reduced"]
    assert out["confusion_matrix"] == [[2, 1, 0], [0, 1, 0], [0, 1, 1]]
    assert out["sensitivity"] == {"normal": pytest.approx(2 / 3), "mildly reduced": 1.0, "reduced": 0.5}
    assert out["specificity"]["mildly reduced"] == pytest.approx(3 / 5)
    assert out["accuracy"] == pytest.approx(4 / 6)
    bse = class_agreement(truth, pred, "bse")
    assert len(bse["labels"]) == 4 and bse["n"] == 6


def test_dice_and_nearest_error() -> None:
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True
    b = np.zeros_like(a)
    b[4:8, 2:6] = True
    assert dice(a, b) == pytest.approx(2 * 8 / 32)
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert nearest_error([10, 40, 70], 43) == 3 and math.isnan(nearest_error([], 5))


@pytest.mark.parametrize("name", ["unet", "unet-tiny"])
def test_unet_keeps_any_input_size(name: str) -> None:
    from sonokit.models import build

    model = build(name, kind="segmentation", in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 112, 112)).shape == (2, 1, 112, 112)
        assert model(torch.zeros(1, 1, 100, 90)).shape == (1, 1, 100, 90)


def test_unknown_models_fail_with_the_choices() -> None:
    from sonokit.errors import ModelError
    from sonokit.models import build

    with pytest.raises(ModelError, match="unknown segmentation model 'unet-huge'.*unet-tiny"):
        build("unet-huge", kind="segmentation")
    # a registered network of another kind names the ones that would do, before anything is built
    with pytest.raises(ModelError, match="two-stream is a video model, not a segmentation model.*unet-tiny"):
        build("two-stream", kind="segmentation")


@pytest.mark.parametrize(
    "task, model, kind, wrong",
    [
        ("ef", "two-stream-tiny", "video", "unet-tiny"),
        ("lv-seg", "unet-tiny", "segmentation", "two-stream-tiny"),
        ("lv-trace", "unet-tiny-points", "landmarks", "r2plus1d_18"),
        ("lv-trace", "tinycnn", "image", "unet-tiny"),
    ],
)
def test_echo_tasks_build_their_network_through_the_one_registry(task, model, kind, wrong) -> None:
    """Each echo task builds `model:` by name from sonokit.models, of the kind it takes; a network of another kind
    fails there with the names that would do (lv-trace takes landmark networks and image backbones)."""
    from sonokit.core.config import resolve_config
    from sonokit.errors import ModelError
    from sonokit.models import get_entry
    from sonokit.tasks import get_task

    cls = get_task(task)

    def built(name: str) -> torch.nn.Module:
        cfg = resolve_config(
            task, overrides={"model": name, "channels": 1, "size": 32}, task_defaults=cls.defaults
        )
        return cls(cfg).build_model()

    net = built(model)
    assert get_entry(model).kind == kind and net.spec["name"] in (
        model,
        "two-stream",
    )  # two-stream-tiny: its class
    first = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Conv3d))
    assert first.in_channels == 1  # the task's channels reach the builder
    with pytest.raises(ModelError, match=rf"{wrong} is an? \w+ model, not an? "):
        built(wrong)


@pytest.mark.slow
def test_ef_task_loads_an_echonet_checkpoint_with_module_prefix(tmp_path) -> None:
    """EchoNet-Dynamic saves {"state_dict": DataParallel weights, "opt_dict": ...}; `--weights` must load it all."""
    from sonokit.core.config import resolve_config
    from sonokit.models import build
    from sonokit.tasks import get_task

    torch.manual_seed(0)
    source = build("r2plus1d_18", kind="video")
    ckpt = {
        "epoch": 45,
        "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
        "opt_dict": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]},
        "best_loss": 31.2,
    }
    torch.save(ckpt, tmp_path / "r2plus1d_18_32_2_pretrained.pt")
    cfg = resolve_config(
        "ef",
        overrides={"model": "r2plus1d_18", "weights": str(tmp_path / "r2plus1d_18_32_2_pretrained.pt")},
        task_defaults=get_task("ef").defaults,
    )
    model = get_task("ef")(cfg).build_model()
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    torch.save({"state_dict": {"module.fc.weight": torch.zeros(1, 512)}}, tmp_path / "partial.pt")
    from sonokit.errors import ModelError

    bad = cfg.model_copy(update={"weights": str(tmp_path / "partial.pt")})
    with pytest.raises(ModelError, match="strict load failed"):
        get_task("ef")(bad).build_model()


def test_overlay_draws_contour_and_curve() -> None:
    from sonokit.echo.overlay import CONTOUR, PANEL_H, render_overlay

    frames = np.zeros((5, 112, 112), np.uint8)
    poly = canonical_tracing(ellipse_tracing())
    from sonokit.clinical import tracing_polygon

    contours = [tracing_polygon(poly)] * 5
    out = render_overlay(frames, contours, np.array([5.0, 4, 3, 4, 5]), ed=[0, 4], es=[2], text="EF 50%")
    assert out.shape == (5, 336 + PANEL_H, 336, 3)
    green = np.all(out[:, :336] == CONTOUR, axis=-1).sum(axis=(1, 2))
    assert np.all(green > 100)
    # the cursor (yellow) moves right from frame to frame
    cursor = [np.flatnonzero(np.all(out[i, 336 + 20] == (255, 255, 0), axis=-1)).mean() for i in range(5)]
    assert np.all(np.diff(cursor) > 0)


def testframe_consistency_is_one_for_a_steady_outline_and_low_for_a_jumping_one() -> None:
    from sonokit.echo.predict import MIN_FRAME_CONSISTENCY, frame_consistency

    steady = np.zeros((6, 32, 32), bool)
    steady[:, 8:20, 10:22] = True
    assert frame_consistency(steady) == 1.0
    jumping = steady.copy()
    jumping[1::2] = False
    jumping[1::2, 20:30, 0:8] = True  # every other frame the "LV" is somewhere else
    assert frame_consistency(jumping) == 0.0 < MIN_FRAME_CONSISTENCY
    shrinking = np.stack(
        [np.pad(np.ones((20 - i, 20 - i), bool), ((0, 12 + i), (0, 12 + i))) for i in range(6)]
    )
    assert 0.85 < frame_consistency(shrinking) < 1.0  # a contracting LV overlaps itself, but not fully
    assert np.isnan(frame_consistency(np.zeros((4, 8, 8), bool)))
