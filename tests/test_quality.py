"""Robustness sweep, thresholds, generated corruption data, the quality task and the gate, on real HC18 images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from sonokit.augment.corruption import corrupt
from sonokit.errors import InputError
from sonokit.quality.dataset import (
    DEFAULT_RANGES,
    QUALITY_CLASSES,
    CorruptionDataset,
    model_input,
    plan_corruptions,
    read_clean_images,
)
from sonokit.quality.gate import run_gate
from sonokit.quality.sweep import find_thresholds, metric_by_ssim, robustness_sweep


@pytest.fixture(scope="module")
def small_hc18(hc18_dir, tmp_path_factory) -> Path:
    """16 real HC18 images (13 subjects, some with two images) at 1/4 size, HC18 file names kept."""
    names = sorted(p.name for p in (hc18_dir / "images").glob("*HC.png"))
    multi = [n for n in names if "_2HC" in n][:3]
    chosen = sorted(set(multi) | {n.replace("_2HC", "_HC") for n in multi} | set(names[:10]))
    out = tmp_path_factory.mktemp("hc18_small")
    for name in chosen:
        image = cv2.imread(str(hc18_dir / "images" / name), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(out / name), cv2.resize(image, (200, 135), interpolation=cv2.INTER_AREA))
    shutil.copy(
        hc18_dir / "images" / "000_HC_Annotation.png", out / "000_HC_Annotation.png"
    )  # must be skipped
    return out


def _energy(image: np.ndarray) -> float:
    return float(np.abs(cv2.Laplacian(image.astype(np.float32), cv2.CV_32F)).mean())


# ------------------------------------------------------------------------------------------------ thresholds


def _curve(metric, ssim, intensity=(0.0, 0.1, 0.2, 0.3), name="x"):
    return pd.DataFrame({"corruption": name, "intensity": intensity, "ssim_mean": ssim, "metric": metric})


def test_thresholds_interpolate_the_crossing():
    curve = _curve([1.0, 0.95, 0.85, 0.5], [1.0, 0.9, 0.8, 0.7])
    th = find_thresholds(curve, level=0.9).iloc[0]
    assert th["crossed"] and th["threshold_intensity"] == pytest.approx(0.15)
    assert th["threshold_ssim"] == pytest.approx(0.85)
    assert (th["metric_before"], th["metric_after"]) == (0.95, 0.85)
    # relative: 0.9 x clean 0.9 = 0.81, between 0.85 (0.2) and 0.5 (0.3)
    rel = find_thresholds(_curve([0.9, 0.88, 0.85, 0.5], [1.0, 0.9, 0.8, 0.7]), 0.9, relative=True).iloc[0]
    assert rel["target"] == pytest.approx(0.81)
    assert rel["threshold_intensity"] == pytest.approx(0.2 + 0.1 * 0.04 / 0.35)
    # the same curve never falls below an absolute 0.5
    assert not find_thresholds(_curve([0.9, 0.88, 0.85, 0.5], [1, 0.9, 0.8, 0.7]), 0.5).iloc[0]["crossed"]
    # a model already under the level at intensity 0
    assert (
        find_thresholds(_curve([0.8, 0.7, 0.6, 0.5], [1, 0.9, 0.8, 0.7]), 0.9).iloc[0]["threshold_intensity"]
        == 0
    )


@pytest.mark.shared
def test_sweep_with_a_stub_classifier_on_real_images(small_hc18):
    """A stand-in classifier that says "noisy" when Laplacian energy exceeds 1.5x the clean maximum.

    Additive noise must push accuracy from 1 to 0 and cross 0.9; median blur only lowers the energy, so its
    accuracy stays 1. The stub is exact, so the expected curve follows from the images alone.
    """
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(small_hc18.glob("*HC.png"))[:6]]
    limit = 1.5 * max(_energy(im) for im in images)
    calls = []

    def predict(batch):
        calls.append(len(batch))
        noisy = np.array([_energy(im) > limit for im in batch])
        return np.stack([~noisy, noisy], axis=1).astype(float)

    labels = np.zeros(len(images), dtype=int)
    res = robustness_sweep(
        images, labels, predict, ["median_blur", "gaussian_noise"], steps=5, seed=1, batch_size=4
    )
    assert res.clean_metric == 1.0
    assert len(res.curve) == 2 * 6 and len(res.items) == 2 * 6 * len(images)
    assert max(calls) <= 4
    for name, part in res.curve.groupby("corruption"):
        assert part["metric"].iloc[0] == 1.0 and part["ssim_mean"].iloc[0] == 1.0
        assert (np.diff(part["ssim_mean"]) < 0).all(), name
    noise = res.curve[res.curve["corruption"] == "gaussian_noise"]
    assert noise["metric"].iloc[-1] == 0.0
    blur = res.curve[res.curve["corruption"] == "median_blur"]
    assert (blur["metric"] == 1.0).all()
    # the metric at each step is what the stub says about the corrupted images, recomputed independently
    sigma = float(noise["intensity"].iloc[1])
    expected = np.mean(
        [
            _energy(corrupt(im, "gaussian_noise", sigma, np.random.default_rng([1, 1, i]))[0]) <= limit
            for i, im in enumerate(images)
        ]
    )
    assert noise["metric"].iloc[1] == pytest.approx(expected)

    th = find_thresholds(res.curve, 0.9).set_index("corruption")
    assert not th.loc["median_blur", "crossed"]
    assert th.loc["gaussian_noise", "crossed"]
    t = th.loc["gaussian_noise"]
    assert t["intensity_before"] <= t["threshold_intensity"] <= t["intensity_after"]
    assert t["metric_before"] >= 0.9 > t["metric_after"]

    again = robustness_sweep(images, labels, predict, ["median_blur", "gaussian_noise"], steps=5, seed=1)
    pd.testing.assert_frame_equal(res.curve, again.curve)
    by_ssim = metric_by_ssim(res.items)
    assert by_ssim["n"].sum() == len(res.items)


def test_sweep_rejects_bad_predictions():
    image = np.full((32, 32), 100, np.uint8)
    with pytest.raises(InputError, match="probabilities"):
        robustness_sweep([image], [0], lambda b: np.zeros(len(b)), ["gaussian_noise"], steps=1)
    with pytest.raises(InputError, match="labels"):
        robustness_sweep([image], [0, 1], lambda b: np.ones((len(b), 2)), ["gaussian_noise"], steps=1)


# ------------------------------------------------------------------------------------------------ data


@pytest.mark.shared
def test_clean_index_groups_by_subject_and_plan_is_balanced(small_hc18):
    index = read_clean_images(small_hc18)
    assert not index["path"].str.contains("Annotation").any()
    assert len(index) == 16 and index["group"].nunique() == 13
    assert set(index.loc[index["path"].str.contains("_2HC"), "group"]) <= set(
        index.loc[~index["path"].str.contains("_2HC"), "group"]
    )
    plan = plan_corruptions(index, copies=2, seed=3)
    counts = plan["label"].value_counts()
    assert counts["original"] == 16 and all(counts[c] == 32 for c in QUALITY_CLASSES[1:])
    for cls, (lo, hi) in DEFAULT_RANGES.items():
        values = plan.loc[plan["label"] == cls, "intensity"]
        assert values.between(lo, hi).all() and values.std() > 0
    assert plan.equals(plan_corruptions(index, copies=2, seed=3))
    with pytest.raises(InputError, match="range"):
        plan_corruptions(index, ranges={"blur": (5.0, 2.0)})


def test_clean_index_of_a_fetal_planes_folder_groups_by_patient(tmp_path):
    """A FETAL_PLANES_DB folder names each image's patient: the quality task's splits must keep them together."""
    from sonokit.data import read_fetal_planes
    from sonokit.synth import make_dataset

    root = make_dataset("fetal-planes", tmp_path / "fp", n=24, seed=0, size=48)
    index = read_clean_images(root)
    truth = read_fetal_planes(root).set_index("path")["group"]
    assert len(index) == 24 and index["group"].nunique() < len(index)  # several images per patient
    assert list(index["group"]) == list(truth.loc[index["path"]])


@pytest.mark.shared
def test_corruption_dataset_renders_ssim_and_high_pass(small_hc18):
    index = read_clean_images(small_hc18).iloc[:3]
    plan = plan_corruptions(index, seed=0)
    ds = CorruptionDataset(plan, size=64, highpass=True, flip=True, seed=0)
    assert len(ds) == 12
    item = ds[1]
    assert item["x"].shape == (2, 64, 64) and item["x"].dtype.__str__() == "torch.float32"
    ys = np.array([int(ds[i]["y"]) for i in range(len(ds))])
    assert ys.tolist() == [0, 1, 2, 3] * 3
    ssim = np.array([float(ds[i]["ssim"]) for i in range(len(ds))])
    assert (ssim[ys == 0] == 1.0).all() and (ssim[ys != 0] < 0.999).all()
    noise, clean = ds.x[3], ds.x[0]  # row 3: Gaussian noise sigma >= 0.18 on the first image
    assert noise[1].mean() > 1.5 * clean[1].mean()  # the energy channel sees the noise
    blur = ds.x[2]
    assert blur[1].mean() < clean[1].mean()
    # letterboxed: 200x135 -> 64x43 content, zero rows above and below
    x = model_input(cv2.imread(str(plan["path"].iloc[0]), cv2.IMREAD_GRAYSCALE), 64)
    assert np.all(x[:, :10] == 0) and x[0, 32].max() > 0
    ds.set_epoch(1)
    flipped = [i for i in range(len(ds)) if not np.array_equal(ds[i]["x"].numpy(), ds.x[i])]
    assert 0 < len(flipped) < len(ds)
    assert all(np.array_equal(ds[i]["x"].numpy(), ds.x[i][..., ::-1]) for i in flipped)


# ------------------------------------------------------------------------------------------------ gate


def _stub_gate(limit: float):
    """original unless the Laplacian energy is above `limit`, then noise; SSIM estimate 1 or 0.2."""

    def predict(images):
        noisy = np.array([_energy(im) > limit for im in images])
        probs = np.zeros((len(images), 4))
        probs[:, 0] = np.where(noisy, 0.1, 0.9)
        probs[:, 3] = 1 - probs[:, 0]
        return probs, np.where(noisy, 0.2, 1.0)

    return predict


@pytest.fixture()
def gate_folder(small_hc18, tmp_path) -> tuple[Path, float]:
    folder = tmp_path / "study"
    (folder / "sub").mkdir(parents=True)
    names = sorted(p.name for p in small_hc18.glob("*HC.png"))[:4]
    limit = 0.0
    for i, name in enumerate(names):
        image = cv2.imread(str(small_hc18 / name), cv2.IMREAD_GRAYSCALE)
        limit = max(limit, 1.5 * _energy(image))
        if i >= 2:
            image, _ = corrupt(image, "gaussian_noise", 0.3, i)
        cv2.imwrite(str(folder / ("sub" if i == 3 else "") / name), image)
    return folder, limit


@pytest.mark.shared
def test_gate_moves_nothing_without_the_flag(gate_folder, tmp_path):
    folder, limit = gate_folder
    before = sorted(p.relative_to(folder) for p in folder.rglob("*.png"))
    table = run_gate([folder], _stub_gate(limit), tmp_path / "gate.csv")
    assert sorted(p.relative_to(folder) for p in folder.rglob("*.png")) == before
    csv = pd.read_csv(tmp_path / "gate.csv", keep_default_na=False)
    assert len(csv) == 4 and (csv["moved_to"] == "").all()
    assert csv["decision"].tolist().count("reject") == 2 and table["decision"].tolist().count("reject") == 2
    assert set(csv.loc[csv["decision"] == "reject", "class"]) == {"noise"}
    assert np.allclose(csv["p_corrupted"], 1 - csv["p_original"])
    # a stricter threshold (reject when p_corrupted >= 0.05) rejects everything; a lax one (1.0) nothing
    assert (
        run_gate([folder], _stub_gate(limit), tmp_path / "g2.csv", threshold=0.05)["decision"] == "reject"
    ).all()
    assert (
        run_gate([folder], _stub_gate(limit), tmp_path / "g3.csv", threshold=1.0)["decision"] == "keep"
    ).all()


@pytest.mark.shared
def test_gate_moves_rejects_when_asked_and_logs_them(gate_folder, tmp_path):
    folder, limit = gate_folder
    rejected = folder / "rejected"  # inside the gated folder: a second run must not re-gate it
    total = len(list(folder.rglob("*.png")))
    table = run_gate([folder], _stub_gate(limit), tmp_path / "gate.csv", move_rejected=rejected)
    moved = table[table["moved_to"] != ""]
    assert len(moved) == 2 and (moved["decision"] == "reject").all()
    for src, dst in zip(moved["path"], moved["moved_to"], strict=True):
        assert not Path(src).exists() and Path(dst).is_file() and Path(dst).parent == rejected.resolve()
    assert len(list(folder.rglob("*.png"))) == total  # moved, never deleted
    second = run_gate([folder], _stub_gate(limit), tmp_path / "gate2.csv", move_rejected=rejected)
    assert len(second) == 2 and (second["decision"] == "keep").all()


@pytest.mark.shared
def test_gate_stops_on_an_unreadable_file_before_touching_anything(gate_folder, tmp_path):
    folder, limit = gate_folder
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png"):
        run_gate([folder], _stub_gate(limit), tmp_path / "gate.csv", move_rejected=tmp_path / "rej")
    assert not (tmp_path / "gate.csv").exists() and not (tmp_path / "rej").exists()
    with pytest.raises(InputError, match="threshold"):
        run_gate([folder], _stub_gate(limit), tmp_path / "gate.csv", threshold=0)


# ------------------------------------------------------------------------------------------------ task + CLI


FAST = {"size": 32, "epochs": 1, "n_boot": 10, "val_fraction": 0.0, "test_fraction": 0.3}


@pytest.mark.slow
@pytest.mark.shared
def test_quality_task_trains_and_the_cli_gates(small_hc18, tmp_path):
    """A tiny quality run through the real engine, then `sonokit quality check` on a folder with it.
    Checks the wiring and outputs, not accuracy (one epoch at 32 px)."""
    from typer.testing import CliRunner

    import sonokit.quality.task  # noqa: F401  (registers the task)
    from sonokit.cli.main import app
    from sonokit.core.config import resolve_config
    from sonokit.quality.task import QualityTask
    from sonokit.train.engine import train

    cfg = resolve_config(
        "quality",
        task_defaults=QualityTask.defaults,
        overrides={"data": str(small_hc18), "out": str(tmp_path / "qrun"), **FAST, "val_fraction": 0.25},
    )
    run = train(cfg)
    metrics = json.loads((run / "metrics_test.json").read_text())
    assert {
        "accuracy",
        "gate_accuracy",
        "ssim_mae",
        "per_corruption_accuracy",
        "accuracy_by_intensity",
    } <= set(metrics)
    assert sum(r["n"] for r in metrics["accuracy_by_intensity"]) == metrics["n"]
    assert (run / "plots" / "accuracy_by_distortion_test.png").is_file()
    assert len(list((run / "plots").glob("gradcam_test_*.png"))) == 4  # one per class
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    splits["group"] = splits["path"].map(lambda p: Path(p).name.split("_")[0])
    assert splits.groupby("group")["split"].nunique().max() == 1  # a subject never spans two splits

    folder = tmp_path / "incoming"
    shutil.copytree(small_hc18, folder)
    result = CliRunner().invoke(
        app, ["quality", "check", str(folder), "--run", str(run), "--out", str(tmp_path / "gate.csv")]
    )
    assert result.exit_code == 0, result.output
    gate = pd.read_csv(tmp_path / "gate.csv", keep_default_na=False)
    assert len(gate) == 17 and (gate["moved_to"] == "").all()  # the annotation PNG is an image too
    assert gate[[f"p_{c}" for c in QUALITY_CLASSES]].sum(axis=1).round(5).eq(1).all()
    assert gate["ssim_est"].between(0, 1).all()
    assert len(list(folder.glob("*.png"))) == 17
    # the run's applicability check (fitted from its validation split on first use): a photograph is no fetal
    # ultrasound, so the gate cannot judge it; it is neither kept nor moved with the rejects
    import skimage.data

    scans = gate[gate["path"].str.endswith("HC.png")]
    assert scans["applicable"].astype(str).eq("True").all() and (scans["decision"] != "not applicable").all()
    annotation = gate[gate["path"].str.endswith("Annotation.png")].iloc[0]  # an ellipse drawing, not a scan
    assert annotation["decision"] == "not applicable"
    cv2.imwrite(str(folder / "photo.png"), np.ascontiguousarray(skimage.data.astronaut()[..., ::-1]))
    result = CliRunner().invoke(app, ["quality", "check", str(folder), "--run", str(run), "--out",
                                      str(tmp_path / "gate2.csv"), "--move-rejected", str(tmp_path / "rej")])  # fmt: skip
    assert result.exit_code == 0, result.output
    gate = pd.read_csv(tmp_path / "gate2.csv", keep_default_na=False).set_index("path")
    photo = gate.loc[str((folder / "photo.png").resolve())]
    assert (
        photo["decision"] == "not applicable"
        and str(photo["applicable"]) == "False"
        and not photo["moved_to"]
    )
    assert (folder / "photo.png").is_file() and "2 not applicable" in result.output


@pytest.mark.slow
@pytest.mark.shared
def test_sweep_cli_on_a_trained_classifier(small_hc18, tmp_path):
    """`sonokit quality sweep` on a tiny `classify` run (two made-up classes over real HC18 images)."""
    from typer.testing import CliRunner

    from sonokit.cli.main import app
    from sonokit.core.config import resolve_config
    from sonokit.train.engine import train

    table = pd.DataFrame({"path": sorted(str(p) for p in small_hc18.glob("*HC.png"))})
    table["label"] = ["small" if i % 2 else "large" for i in range(len(table))]
    table["group"] = table["path"].map(lambda p: Path(p).name.split("_")[0])
    table.to_csv(tmp_path / "table.csv", index=False)
    ccfg = resolve_config(
        "classify", overrides={"data": str(tmp_path / "table.csv"), "out": str(tmp_path / "crun"), **FAST}
    )
    crun = train(ccfg)
    result = CliRunner().invoke(
        app,
        [
            "quality",
            "sweep",
            str(crun),
            "--out",
            str(tmp_path / "sweep"),
            "--steps",
            "2",
            "--split",
            "all",
            "-c",
            "gaussian_noise",
            "-c",
            "shadow",
        ],
    )
    assert result.exit_code == 0, result.output
    curve = pd.read_csv(tmp_path / "sweep" / "curve.csv")
    assert len(curve) == 6 and set(curve["corruption"]) == {"gaussian_noise", "shadow"}
    thresholds = pd.read_csv(tmp_path / "sweep" / "thresholds.csv")
    assert set(thresholds["mode"]) == {"absolute", "relative"}
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert summary["n_images"] == 16 and 0 <= summary["clean_accuracy"] <= 1
    assert all(Path(p).is_file() for p in summary["plots"])
