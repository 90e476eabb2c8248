"""fetal-plane, lus and classify: video aggregation rules, metrics, and short trainings on simulated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sonokit.core.config import resolve_config
from sonokit.data.frames import count_frames
from sonokit.errors import InputError, ModelError
from sonokit.tasks import get_task, task_names


def _task(name: str, **overrides):
    cls = get_task(name)
    return cls(resolve_config(name, overrides={"n_boot": 50, **overrides}, task_defaults=cls.defaults))


def _collected(probs: list[list[float]], y: list[int]) -> dict[str, np.ndarray]:
    return {"index": np.arange(len(y)), "probs": np.asarray(probs, float), "y": np.asarray(y)}


ITEMS = pd.DataFrame(
    {
        "path": ["/d/a.avi"] * 3 + ["/d/b.png"],
        "frame": [0, 2, 4, 0],
        "label": ["1", "1", "1", "0"],
        "group": ["p1", "p1", "p1", "p2"],
    }
)
PROBS = [[0.7, 0.2, 0.1, 0.0], [0.1, 0.6, 0.3, 0.0], [0.1, 0.2, 0.65, 0.05], [0.9, 0.05, 0.05, 0.0]]


def test_registry_lists_the_image_tasks() -> None:
    assert {"classify", "fetal-plane", "lus"} <= set(task_names())
    with pytest.raises(InputError, match="did you mean lus"):
        get_task("luss")


def test_lus_max_rule_takes_the_most_severe_frame() -> None:
    task = _task("lus")
    task.classes = ["0", "1", "2", "3"]
    preds = task.predictions(_collected(PROBS, [1, 1, 1, 0]), ITEMS)
    frames = preds[preds["frame"] != "all"]
    assert frames["frame"].tolist() == ["0", "2", "4", ""]  # still images have no frame number
    video = preds[preds["frame"] == "all"]
    assert len(video) == 1 and video["path"].iloc[0] == "/d/a.avi"
    row = video.iloc[0]
    assert row["y_pred"] == "2" and row["y_true"] == "1"
    assert row[["p_0", "p_1", "p_2", "p_3"]].tolist() == PROBS[2]  # the worst frame's probabilities
    m = task.metrics(preds, n_boot=50, seed=0)
    assert m["n"] == 4 and m["n_videos"] == 1
    assert m["accuracy"] == pytest.approx(0.5) and m["video_accuracy"] == 0.0
    assert m["video_confusion_matrix"][1][2] == 1 and m["video_rule"] == "max"


def test_mean_rule_averages_frame_probabilities() -> None:
    task = _task("lus", options={"video_rule": "mean"})
    task.classes = ["0", "1", "2", "3"]
    preds = task.predictions(_collected(PROBS, [1, 1, 1, 0]), ITEMS)
    row = preds[preds["frame"] == "all"].iloc[0]
    np.testing.assert_allclose(row[["p_0", "p_1", "p_2", "p_3"]].to_numpy(float), np.mean(PROBS[:3], axis=0))
    assert row["y_pred"] == "2"  # mean probs (0.30, 0.33, 0.35, 0.02)


def test_unknown_options_hflip_and_imagenet_are_refused(tmp_path) -> None:
    with pytest.raises(Exception, match="video_rul"):
        _task("lus", options={"video_rul": "max"})

    class NoFlip(get_task("classify")):
        name = "noflip-test"
        allow_hflip = False

    task = NoFlip(resolve_config("classify", overrides={"augment": {"hflip": True}}, task_defaults={}))
    with pytest.raises(InputError, match="hflip"):
        task.train_augment()
    task = _task("classify", pretrained="imagenet")
    task.classes = ["a", "b"]
    with pytest.raises(ModelError, match="--weights"):
        task.build_model()


@pytest.fixture(scope="module")
def fetal_data(tmp_path_factory):
    from sonokit.synth import make_dataset

    return make_dataset("fetal-planes", tmp_path_factory.mktemp("fetal") / "fp", n=60, seed=1, size=64)


@pytest.mark.slow
def test_fetal_plane_trains_with_patient_splits_and_gradcam(tmp_path, fetal_data) -> None:
    from sonokit.data import read_fetal_planes
    from sonokit.train.engine import train

    cfg = resolve_config(
        "fetal-plane",
        overrides={
            "data": str(fetal_data),
            "out": str(tmp_path / "run"),
            "epochs": 2,
            "size": 48,
            "n_boot": 50,
            "options": {"gradcam_samples": 3},
        },
        task_defaults=get_task("fetal-plane").defaults,
    )
    run = train(cfg)
    card = json.loads((run / "model_card.json").read_text())
    assert card["classes"] == [
        "Fetal abdomen",
        "Fetal brain",
        "Fetal femur",
        "Fetal thorax",
        "Maternal cervix",
        "Other",
    ]
    splits = pd.read_csv(run / "splits.csv")
    source = read_fetal_planes(fetal_data)
    merged = source.merge(splits, on="path", suffixes=("_given", ""))
    assert ((merged["split_given"] == "test") == (merged["split"] == "test")).all()  # test = the Train=0 rows
    groups = {s: set(merged.loc[merged["split"] == s, "group"]) for s in ("train", "val", "test")}
    assert groups["val"] and not groups["val"] & groups["train"]  # val carved from train by patient
    metrics = json.loads((run / "metrics_test.json").read_text())
    assert {"accuracy", "top2_accuracy", "macro_f1", "per_class", "auroc_ci95"} <= set(metrics)
    assert len(metrics["per_class"]) == 6
    cams = sorted((run / "plots").glob("gradcam_*.png"))
    assert len(cams) == 3 and all(p.read_bytes()[:4] == b"\x89PNG" for p in cams)


@pytest.mark.slow
def test_lus_trains_on_frames_and_scores_videos(tmp_path_factory) -> None:
    from sonokit.synth import make_dataset
    from sonokit.train.engine import train

    data = make_dataset("lus", tmp_path_factory.mktemp("lus") / "lus", n=16, seed=2, size=48)
    out = tmp_path_factory.mktemp("lusrun") / "run"
    cfg = resolve_config(
        "lus",
        overrides={
            "data": str(data / "lus.csv"),
            "out": str(out),
            "epochs": 1,
            "size": 32,
            "n_boot": 50,
            "val_fraction": 0.25,
            "test_fraction": 0.25,
            "options": {"max_frames": 4},
        },
        task_defaults=get_task("lus").defaults,
    )
    run = train(cfg)
    preds = pd.read_csv(run / "predictions_test.csv", dtype=str, keep_default_na=False)
    videos = preds[preds["frame"] == "all"]
    frames = preds[preds["frame"] != "all"]
    assert len(videos) == preds["path"].nunique() and len(frames) == 4 * len(videos)
    assert set(preds["y_true"]) <= {"0", "1", "2", "3"}
    probs = preds[["p_0", "p_1", "p_2", "p_3"]].to_numpy(float)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    metrics = json.loads((run / "metrics_test.json").read_text())
    assert metrics["n_videos"] == len(videos) and metrics["video_rule"] == "max"
    assert "video_accuracy_ci95" in metrics and "video_macro_f1" in metrics
    assert (run / "plots" / "confusion_video_test.png").is_file()
    card = json.loads((run / "model_card.json").read_text())
    assert card["training_data"]["videos"]["test"] == len(videos)
    # ordinal metrics: the patient level sums each patient's video scores, recomputed here from the files
    table = pd.read_csv(data / "lus.csv", dtype=str)
    group = dict(zip((data / table["path"]).map(lambda p: str(p.resolve())), table["group"], strict=True))
    v = videos.assign(group=videos["path"].map(lambda p: group[str(Path(p).resolve())]))
    sums = v.assign(t=v["y_true"].astype(int), p=v["y_pred"].astype(int)).groupby("group")[["t", "p"]].sum()
    assert metrics["n_patients"] == len(sums) == v["group"].nunique()
    assert metrics["patient_sum_mae"] == pytest.approx(float((sums["p"] - sums["t"]).abs().mean()))
    err = (videos["y_pred"].astype(int) - videos["y_true"].astype(int)).abs()
    assert metrics["video_score_mae"] == pytest.approx(float(err.mean()))
    assert {"qwk", "qwk_ci95", "score_mae_ci95", "video_qwk", "patient_sum_spearman"} <= set(metrics)
    assert "qwk" in (run / "report.html").read_text(encoding="utf-8")
    # `sonokit evaluate` prints them on a second line, after the unchanged headline
    env = {**os.environ, "SONOKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sonokit", "evaluate", str(run), "--split", "test", "--n-boot", "20"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("test: accuracy ")
    plural = "" if len(sums) == 1 else "s"
    assert lines[1].startswith(f"test ordinal ({len(sums)} patient{plural}): qwk ")
    assert "patient_sum_mae" in lines[1]
    again = json.loads((run / "metrics_test.json").read_text())
    assert again["patient_sum_mae"] == pytest.approx(metrics["patient_sum_mae"])


def test_lus_training_draws_fresh_frames_each_epoch_and_evaluates_a_fixed_set(tmp_path) -> None:
    from sonokit.core.distributed import ShardSampler
    from sonokit.synth import make_dataset

    data = make_dataset("lus", tmp_path / "lus", n=12, seed=1, size=32)
    task = _task("lus", data=str(data / "lus.csv"))  # defaults: every 2nd frame, 16 to evaluate, 8 per epoch
    index = task.prepare_index()
    n_frames = {p: len(np.arange(0, count_frames(p), 2)) for p in index["path"]}
    train = task.expand(index.assign(split="train"))
    evaluation = task.expand(index.assign(split="test"))
    assert len(train) == sum(n_frames.values())  # every candidate frame, max_frames not applied
    assert len(evaluation) == sum(min(n, 16) for n in n_frames.values())
    groups, k = task.epoch_groups(train)
    assert k == 8 and len(groups) == len(index)
    assert all(train["path"].iloc[g].nunique() == 1 for g in groups)
    draws = []
    for epoch in range(2):
        sampler = ShardSampler(len(train), 0, groups=groups, per_group=k)
        sampler.set_epoch(epoch)
        draws.append(sorted(sampler))
    assert len(draws[0]) == sum(min(8, n) for n in n_frames.values()) and draws[0] != draws[1]
    assert _task("lus", options={"train_frames_per_epoch": None}).epoch_groups(train) is None
