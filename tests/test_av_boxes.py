"""Aortic-valve geometry: IoU, AP@0.5 and point metrics against hand-computed cases, exact coordinate maps
(letterbox, crop), and the detector head's encode/decode round trip."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from sonokit.av.boxes import (
    Letterbox,
    average_precision,
    box_iou,
    crop_to_original,
    crop_window,
    detection_metrics,
    forward_map,
    inverse_map,
    match,
)


def test_iou_hand_computed() -> None:
    a = [[0, 0, 10, 10]]
    b = [[5, 5, 15, 15], [10, 10, 20, 20], [0, 0, 10, 10], [2, 0, 7, 10]]
    iou = box_iou(a, b)[0]
    # overlap 5x5 = 25, union 100 + 100 - 25 = 175; touching corners 0; identical 1; inside: 50 / 100
    np.testing.assert_allclose(iou, [25 / 175, 0.0, 1.0, 0.5])
    assert box_iou(np.zeros((0, 4)), a).shape == (0, 1)
    assert box_iou([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 0.0  # empty boxes: 0, not NaN


def test_ap_and_point_metrics_hand_computed() -> None:
    g1, g2 = [10, 10, 30, 30], [50, 50, 70, 70]
    d1 = [12, 10, 32, 30]  # IoU with g1: 18*20 / (400 + 400 - 360) = 360 / 440
    d2 = [10, 12, 30, 32]  # a duplicate on g1: a false positive once d1 took it
    d3 = [50, 50, 70, 66]  # IoU with g2: 320 / 400 = 0.8
    dets = [(np.array([d1, d2]), np.array([0.9, 0.8])), (np.array([d3]), np.array([0.7]))]
    gts = [np.array([g1]), np.array([g2])]
    # ranked TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 0.5 * 1 + 0.5 * 2/3
    r1 = match(*dets[0], gts[0])
    assert r1.tp.tolist() == [True, False]
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]), 2) == pytest.approx(5 / 6)
    m = detection_metrics(dets, gts, score_threshold=0.75)
    assert m["map50"] == pytest.approx(5 / 6)
    # at score >= 0.75: d1 TP, d2 FP, d3 dropped -> g2 missed
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    assert m["mean_iou"] == pytest.approx((360 / 440 + 0.0) / 2)
    low = detection_metrics(dets, gts, score_threshold=0.5)
    assert (low["tp"], low["fp"], low["fn"]) == (2, 1, 0)
    assert low["mean_iou"] == pytest.approx((360 / 440 + 0.8) / 2)
    # a frame without a valve: a confident detection there is a false positive, nothing to miss
    empty = detection_metrics([(np.array([d1]), np.array([0.9]))], [np.zeros((0, 4))])
    assert (empty["tp"], empty["fp"], empty["fn"]) == (0, 1, 0) and empty["recall"] is None


def test_detection_cis_resample_patients() -> None:
    rng = np.random.default_rng(0)
    gts = [np.array([[10.0, 10, 30, 30]]) for _ in range(12)]
    dets = [(g + rng.normal(0, 3, (1, 4)), np.array([rng.uniform(0.3, 1)])) for g in gts]
    m = detection_metrics(dets, gts, n_boot=200, groups=np.repeat(np.arange(4), 3))
    assert m["n_groups"] == 4 and "patients" in m["ci_method"]
    for key in ("precision", "recall", "f1", "map50", "mean_iou"):
        lo, hi = m[f"{key}_ci95"]
        assert lo <= m[key] + 1e-9 and m[key] <= hi + 1e-9


@pytest.mark.parametrize(("h", "w", "size"), [(128, 128, 128), (540, 800, 256), (97, 61, 128), (64, 32, 128)])
def test_letterbox_map_is_exactly_invertible_and_follows_the_pixels(h: int, w: int, size: int) -> None:
    from sonokit.av.data import letterbox_gray

    lb = Letterbox(h, w, size)
    boxes = np.array([[0, 0, w, h], [w * 0.25, h * 0.3, w * 0.6, h * 0.9]])
    there = lb.to_input(boxes)
    np.testing.assert_allclose(lb.to_original(there), boxes, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        inverse_map(forward_map(boxes, lb.as_array()), lb.as_array()), boxes, atol=1e-9
    )
    # the whole image maps onto the pasted region of the real letterboxed pixels
    image = np.full((h, w), 200, np.uint8)
    pixels, geo = letterbox_gray(image, size)
    ys, xs = np.nonzero(pixels)
    x1, y1, x2, y2 = geo.to_input([0, 0, w, h])[0]
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)


def test_crop_window_and_crop_coordinates_round_trip() -> None:
    from sonokit.av.data import crop

    image = np.arange(90 * 120, dtype=np.int64).reshape(90, 120) % 251
    image = image.astype(np.uint8)
    box = np.array([30.4, 20.6, 60.2, 47.9])
    pixels, window = crop(image, box, margin=0.1)
    assert window == crop_window(box, 0.1, 90, 120) == (27, 17, 64, 51)  # floor/ceil of the 10% enlarged box
    x1, y1, x2, y2 = window
    assert pixels.shape == (y2 - y1, x2 - x1)
    # crop pixel (u, v) is image pixel (u + x1, v + y1), everywhere
    vs, us = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]]
    back = crop_to_original(np.stack([us.ravel(), vs.ravel()], 1), window).astype(int)
    assert np.array_equal(image[back[:, 1], back[:, 0]], pixels.ravel())
    inside = box - np.array([x1, y1, x1, y1])
    np.testing.assert_allclose(crop_to_original(inside[None], window)[0], box, atol=1e-12)
    # at the border the window is clipped, never negative; the whole image when there is no box
    assert crop_window([0.5, 0.5, 10, 10], 0.5, 90, 120)[:2] == (0, 0)
    assert crop(image, None, 0.1)[1] == (0, 0, 120, 90)


def test_detector_targets_decode_back_to_the_box() -> None:
    from sonokit.av.detector import cell_boxes, decode, encode_targets, focal_loss

    stride = (8.0, 8.0)
    box = torch.tensor([[[37.0, 21.0, 66.0, 58.0]]])
    heat, cells, reg, bx = encode_targets(box, torch.tensor([[True]]), (16, 16), stride)
    assert heat.max() == 1.0 and heat[0, cells[0, 1], cells[0, 2]] == 1.0
    assert cells.tolist() == [[0, 4, 6]]  # centre (51.5, 39.5) lies in row 4, column 6
    # raw outputs that are the regression targets (offsets through the inverse sigmoid) give the box back
    raw = torch.cat([torch.logit(reg[:, :2]), reg[:, 2:]], dim=1)
    np.testing.assert_allclose(
        cell_boxes(raw, cells[:, 1], cells[:, 2], stride).numpy(), box[0].numpy(), atol=1e-4
    )
    out = torch.full((1, 5, 16, 16), -8.0)
    out[0, 0, 4, 6] = 6.0
    out[0, 1:, 4, 6] = raw[0]
    boxes, scores = decode(out, stride, max_detections=3)
    assert scores[0, 0] == pytest.approx(1 / (1 + math.exp(-6)), rel=1e-5)
    np.testing.assert_allclose(boxes[0, 0].numpy(), box[0, 0].numpy(), atol=1e-4)
    # a frame without a valve: zero target everywhere, and the loss of a confident "nothing" is small
    empty_heat, empty_cells, _, _ = encode_targets(
        torch.zeros(1, 1, 4), torch.tensor([[False]]), (16, 16), stride
    )
    assert empty_heat.sum() == 0 and len(empty_cells) == 0
    assert focal_loss(torch.full((1, 16, 16), -8.0), empty_heat) < 1e-3


def test_index_reads_frames_without_a_valve_and_rejects_unlisted_boxes(tmp_path) -> None:
    import cv2
    import pandas as pd

    from sonokit.av.data import read_av_index, stratify_label
    from sonokit.errors import InputError

    (tmp_path / "img").mkdir()
    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / "img" / f"{name}.png"), np.zeros((20, 30), np.uint8))
    pd.DataFrame(
        {
            "path": ["img/a.png", "img/b.png"],
            "x1": [2, 3],
            "y1": [2, 3],
            "x2": [9, 12],
            "y2": [8, 11],
            "label": "aortic_valve",
        }
    ).to_csv(tmp_path / "boxes.csv", index=False)
    pd.DataFrame(
        {"path": ["img/a.png", "img/b.png", "img/c.png"], "label": [1, 0, 0], "group": ["p1", "p1", "p2"]}
    ).to_csv(tmp_path / "labels.csv", index=False)
    df = read_av_index(tmp_path)
    assert df["n_boxes"].tolist() == [1, 1, 0] and df["label"].tolist() == ["1", "0", "0"]
    np.testing.assert_allclose(df["boxes"][1], [[3, 3, 12, 11]])
    assert stratify_label(df.assign(label="")).tolist() == ["valve", "valve", "none"]
    pd.DataFrame({"path": ["img/a.png"], "label": [1]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(InputError, match="not listed in labels.csv"):
        read_av_index(tmp_path)


def test_detector_forward_exports_to_onnx_with_the_same_maps(tmp_path) -> None:
    import onnxruntime as ort

    from sonokit.av.detector import AVDetector

    model = AVDetector("tinycnn", 1, 64).eval()
    assert model.stride == (8.0, 8.0) and model.spec["feature_map"] == [8, 8]
    x = torch.rand(2, 1, 64, 64)
    path = tmp_path / "det.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and 20x faster here than dynamo
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (x,), path, dynamo=False, input_names=["x"], output_names=["maps"],
            dynamic_axes={"x": {0: "batch"}, "maps": {0: "batch"}},
        )  # fmt: skip
    x3 = torch.rand(3, 1, 64, 64)  # another batch size than the traced one
    maps = ort.InferenceSession(str(path)).run(None, {"x": x3.numpy()})[0]
    assert maps.shape == (3, 5, 8, 8)
    np.testing.assert_allclose(maps, model(x3).detach().numpy(), atol=1e-4)


def test_box_jitter_stays_within_its_fraction_and_is_seeded() -> None:
    from sonokit.av.datasets import jitter_box

    box = np.array([10.0, 20.0, 50.0, 40.0])  # 40 x 20
    moved = np.stack([jitter_box(box, 0.1, np.random.default_rng(s)) for s in range(200)])
    assert np.all(np.abs(moved - box) <= np.array([4, 2, 4, 2]) + 1e-9)
    assert np.abs(moved - box).max(axis=0).min() > 1.5  # it does move (up to 4 px and 2 px)
    np.testing.assert_array_equal(jitter_box(box, 0.1, np.random.default_rng(7)),
                                  jitter_box(box, 0.1, np.random.default_rng(7)))  # fmt: skip
