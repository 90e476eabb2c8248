"""The cascade end to end on simulated PSAX frames with two tiny real trainings: boxes mapped back to the
original pixels exactly, "no valve found" rows instead of crashes, error rows for unreadable files (non-zero exit),
the held-out evaluation table, and `sonokit av experiments --quick`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from sonokit.av.boxes import crop_window, forward_map

pytestmark = pytest.mark.slow

QUICK = {"epochs": 1, "limit_train_batches": 2, "n_boot": 10, "device": "cpu"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from sonokit.core.config import resolve_config
    from sonokit.synth.psax import make_psax_dataset
    from sonokit.tasks import get_task
    from sonokit.train.engine import train

    root = tmp_path_factory.mktemp("av")
    data = make_psax_dataset(root / "psax", n=24, seed=1, size=64)
    out = {}
    for task, size in (("av-detect", 64), ("av-calcification", 32)):
        cfg = resolve_config(
            task,
            overrides={**QUICK, "size": size, "data": str(data), "out": str(root / task)},
            task_defaults=get_task(task).defaults,
        )
        out[task] = train(cfg)
    return data, out["av-detect"], out["av-calcification"]


def test_runs_hold_the_same_patients_out_and_report_detection_metrics(runs) -> None:
    _, det, cls = runs
    d = pd.read_csv(det / "splits.csv")
    c = pd.read_csv(cls / "splits.csv")
    assert d.set_index("path")["split"].to_dict() == c.set_index("path")["split"].to_dict()
    m = json.loads((det / "metrics_test.json").read_text())
    assert {"precision", "recall", "f1", "map50", "mean_iou", "map50_ci95"} <= set(m) and m[
        "kind"
    ] == "detection"
    mc = json.loads((cls / "metrics_test.json").read_text())
    assert {"f1", "precision", "recall", "specificity", "macro_f1", "auroc"} <= set(mc)
    preds = pd.read_csv(det / "predictions_test.csv")
    assert {"status", "score", "x1", "gt_x1", "iou", "y_true"} <= set(preds.columns)
    assert (det / "plots" / "detections_test.png").is_file()


def test_cascade_maps_boxes_and_crops_back_to_the_original_pixels(runs) -> None:
    from sonokit.av.cascade import OK, Cascade
    from sonokit.av.data import letterbox_gray, read_av_index
    from sonokit.av.detector import decode
    from sonokit.data.frames import read_gray

    data, det, cls = runs
    cascade = Cascade(det, cls, device="cpu", score_threshold=0.01)
    paths = read_av_index(data)["path"].tolist()[:4]
    images = [read_gray(p) for p in paths]
    # a non-square frame: the letterbox map is no longer the identity
    images.append(np.ascontiguousarray(np.pad(images[0], ((0, 0), (16, 0)))))
    results = cascade.run(images)
    assert all(r.status == OK for r in results)
    for image, r in zip(images, results, strict=True):
        lb, geo = letterbox_gray(image, cascade.det.cfg.size)
        with torch.no_grad():
            raw = cascade.det.task.forward(
                cascade.det.model, {"x": torch.from_numpy(lb).float()[None, None] / 255}
            )
        s = cascade.det.cfg.size / raw.shape[2]
        boxes, _ = decode(raw, (s, s))
        in_box = boxes[0, 0].double().numpy()
        in_box = np.clip(
            in_box,
            [geo.offset[0], geo.offset[1]] * 2,
            forward_map([0, 0, geo.width, geo.height], geo.as_array())[0][[2, 3, 2, 3]],
        )
        np.testing.assert_allclose(forward_map(r.box, geo.as_array())[0], in_box, atol=1e-4)
        assert r.window == crop_window(r.box, cascade.margin, *image.shape)
        x1, y1, x2, y2 = r.window
        assert np.array_equal(r.crop, image[y1:y2, x1:x2])
        assert 0.0 <= r.p_calcified <= 1.0


def test_no_detection_gives_a_no_valve_row_not_a_crash(runs, tmp_path) -> None:
    import cv2

    from sonokit.av.cascade import NO_VALVE, Cascade
    from sonokit.av.data import read_av_index

    data, det, cls = runs
    cascade = Cascade(det, cls, device="cpu")
    with torch.no_grad():
        cascade.det.model.head[-1].bias[0] = -30.0  # objectness ~1e-13 everywhere: nothing is found
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((50, 70), np.uint8))
    table, errors = cascade.predict_files(
        [read_av_index(data)["path"].iloc[0], blank], crops_dir=tmp_path / "c"
    )
    assert errors == [] and len(table) == 2
    assert (table["status"] == NO_VALVE).all()
    assert table["p_calcified"].isna().all() and table["x1"].isna().all() and (table["score"] < 1e-6).all()
    assert not (tmp_path / "c").exists()  # nothing cropped


def test_predict_command_rows_crops_and_error_exit(runs, tmp_path) -> None:
    import cv2
    from typer.testing import CliRunner

    from sonokit.av.data import read_av_index
    from sonokit.cli.main import app

    data, det, cls = runs
    paths = read_av_index(data)["path"].tolist()[:3]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    out = tmp_path / "av.csv"
    res = CliRunner().invoke(
        app,
        [
            "av",
            "predict",
            str(det),
            str(cls),
            *paths,
            str(bad),
            "--out",
            str(out),
            "--crops",
            str(tmp_path / "crops"),
            "--score-threshold",
            "0.01",
            "--device",
            "cpu",
            "--labels",
            str(data),
        ],
    )
    assert res.exit_code == 1, res.output  # per-file errors exit 1, as every command
    table = pd.read_csv(out)
    assert len(table) == 4
    err = table[table["status"] == "error"]
    assert len(err) == 1 and "broken.png" in err["path"].iloc[0] and "broken.png" in err["error"].iloc[0]
    assert "broken.png" in res.output and "1 error(s)" in res.output
    ok = table[table["status"] == "ok"]
    assert len(ok) == 3 and set(ok["calcified"]) <= {"yes", "no"} and set(ok["y_true"]) <= {0, 1}
    for _, row in ok.iterrows():
        crop = cv2.imread(row["crop_path"], cv2.IMREAD_GRAYSCALE)
        assert crop.shape == (row["crop_y2"] - row["crop_y1"], row["crop_x2"] - row["crop_x1"])
        image = cv2.imread(row["path"], cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(
            crop, image[int(row["crop_y1"]) : int(row["crop_y2"]), int(row["crop_x1"]) : int(row["crop_x2"])]
        )


def test_held_out_evaluation_table(runs, tmp_path) -> None:
    from sonokit.av.cascade import evaluate_cascade

    _, det, cls = runs
    s = evaluate_cascade(det, cls, out_dir=tmp_path, n_boot=10, device="cpu")
    table = s["table"]
    assert set(table["method"]) == {"cascade (CNN)", "CNN", "heuristic"}
    assert len(table[table["method"] == "heuristic"]) == 2 * 4 * 2  # boxes x thresholds x min_pixels
    test = pd.read_csv(cls / "splits.csv").query("split == 'test'")
    assert s["n_frames"] == len(test)
    for name in (
        "cascade_test.csv",
        "cascade_test.md",
        "cascade_metrics_test.json",
        "cascade_predictions_test.csv",
    ):
        assert (tmp_path / name).is_file()
    assert "| cascade (CNN) | detector |" in (tmp_path / "cascade_test.md").read_text()


def test_experiments_quick(runs, tmp_path) -> None:
    from typer.testing import CliRunner

    from sonokit.cli.main import app

    data, _, _ = runs
    res = CliRunner().invoke(
        app,
        [
            "av",
            "experiments",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "exp"),
            "--quick",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    det = pd.read_csv(tmp_path / "exp" / "detector.csv")
    assert det["augmentation"].tolist() == ["none", "all"]
    assert {"precision", "recall", "f1", "map50", "mean_iou", "f1_lo", "f1_hi"} <= set(det.columns)
    cls = pd.read_csv(tmp_path / "exp" / "classifier.csv")
    cnn = cls[cls["method"] == "CNN"]
    assert len(cnn) == 2 and set(cnn["boxes"]) == {"ground truth", "detector"}
    assert len(cls[cls["method"] == "heuristic"]) == 16
    md = (tmp_path / "exp" / "tables.md").read_text()
    assert "Aortic-valve detection" in md and "| CNN | tinycnn | avg |" in md


def test_predict_says_not_applicable_for_a_frame_unlike_the_detectors_training_data(runs, tmp_path) -> None:
    """The detector run's applicability check (fitted from its own splits on first use): a photograph gets status
    "not applicable" and no box, crop or probability; the simulated PSAX frames pass."""
    import cv2
    import skimage.data

    from sonokit.av.cascade import NOT_APPLICABLE, OK, predict_to_csv
    from sonokit.av.data import read_av_index

    data, det, cls = runs
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.ascontiguousarray(skimage.data.astronaut()[..., ::-1]))
    frames = read_av_index(data)["path"].tolist()[:6]
    result = predict_to_csv(det, cls, [*frames, photo], tmp_path / "av.csv", tmp_path / "crops",
                            device="cpu", score_threshold=0.01)  # fmt: skip
    table = result.table
    assert not result.errors and (det / "applicability" / "applicability.json").is_file()
    assert result.path == tmp_path / "av.csv" and result.rows == len(table) == len(pd.read_csv(result.path))
    row = table[table["path"] == str(photo)].iloc[0]
    assert row["status"] == NOT_APPLICABLE and str(row["applicable"]) == "False"
    n_val = json.loads((det / "applicability" / "applicability.json").read_text())["n_val"]
    assert row["applicability"] == pytest.approx(1 / (n_val + 1))  # farther than every validation frame
    assert np.isnan(row["p_calcified"]) and np.isnan(row["x1"]) and not isinstance(row["crop_path"], str)
    scans = table[table["path"] != str(photo)]
    assert (scans["status"] == OK).sum() >= 5 and scans["applicable"].sum() >= 5
    plain = predict_to_csv(det, cls, [photo], tmp_path / "plain.csv", device="cpu", score_threshold=0.01,
                           applicability=False).table  # fmt: skip
    assert plain["status"].iloc[0] == OK and plain["applicable"].iloc[0] == ""  # without the check it answers
