"""`sonokit train` -> `evaluate` -> `predict` as a user runs them (subprocesses), checking the run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

RUN_FILES = (
    "config.yaml",
    "model.safetensors",
    "model_card.json",
    "checkpoint_last.pt",
    "log.csv",
    "splits.csv",
    "predictions_val.csv",
    "predictions_test.csv",
    "metrics_val.json",
    "metrics_test.json",
    "report.html",
    "plots/training_curves.png",
    "plots/confusion_test.png",
    "plots/roc_test.png",
    "plots/reliability_test.png",
)


def sonokit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m sonokit ARGS` on the sonokit under test (its src first on the path, whatever is installed)."""
    import sonokit as package

    src = str(Path(package.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "SONOKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sonokit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def make_pngs(root: Path, n_patients: int = 9, per_patient: int = 2) -> Path:
    import cv2

    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for p in range(n_patients):
        for j in range(per_patient):
            c = (p + j) % 2
            img = rng.rayleigh(35, (36, 40)).clip(0, 255).astype(np.uint8)
            if c:
                cv2.circle(img, (20, 18), 8, 230, -1)
            else:
                cv2.rectangle(img, (6, 15), (34, 21), 230, -1)
            cv2.imwrite(str(root / f"img/{p}_{j}.png"), img)
            rows.append({"file": f"img/{p}_{j}.png", "plane": "disc" if c else "bar", "patient": f"P{p}"})
    pd.DataFrame(rows).to_csv(root / "table.csv", index=False)
    return root / "table.csv"


@pytest.mark.slow
def test_train_evaluate_predict_writes_the_run_folder(tmp_path, ybr_dicom) -> None:
    from safetensors import safe_open

    from sonokit.io import write_video

    table = make_pngs(tmp_path / "data")
    (tmp_path / "cfg.yaml").write_text("n_boot: 40\nbatch_size: 8\n")
    r = sonokit(
        "train",
        "classify",
        "--data",
        str(table),
        "--out",
        "run",
        "--epochs",
        "2",
        "--size",
        "32",
        "--path-col",
        "file",
        "--label-col",
        "plane",
        "--group-col",
        "patient",
        "--config",
        "cfg.yaml",
        "--set",
        "augment.enabled=false",
        "--quiet",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    for png in (run / "plots").glob("*.png"):
        with Image.open(png) as im:
            im.verify()
    card = json.loads((run / "model_card.json").read_text())
    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        embedded = json.loads(f.metadata()["sonokit_model_card"])
    assert embedded == card
    assert card["not_for_clinical_use"] is True and card["classes"] == ["bar", "disc"]
    assert card["input"]["size"] == [32, 32] and "test" in card["metrics"]
    assert set(card["metrics"]["test"]["accuracy"]) == {"value", "ci95"}
    log = pd.read_csv(run / "log.csv")
    assert list(log.columns[:5]) == ["epoch", "phase", "loss", "metric", "seconds"] and len(log) == 4

    # evaluate re-derives the same test split and the same numbers
    before = json.loads((run / "metrics_test.json").read_text())
    (run / "metrics_test.json").unlink()
    r = sonokit("evaluate", "run", "--data", str(table), "--split", "test", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "metrics_test.json").read_text()) == before

    # predict: an image, a short AVI, a real echo DICOM, a missing file and a corrupt one
    frames = np.random.default_rng(0).integers(0, 255, (5, 36, 40), dtype=np.uint8)
    write_video(tmp_path / "clip.avi", frames, fps=10)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    r = sonokit(
        "predict",
        "run",
        "data/img/0_0.png",
        "clip.avi",
        str(ybr_dicom),
        "missing.png",
        "broken.png",
        "--out",
        "preds.csv",
        cwd=tmp_path,
    )
    assert r.returncode == 1  # per-file errors exit 1, as in every command
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert (
        len(errors) == 2 and "missing.png" in errors[0] + errors[1] and "broken.png" in errors[0] + errors[1]
    )
    preds = pd.read_csv(tmp_path / "preds.csv", dtype=str, keep_default_na=False)
    assert list(preds.columns) == ["path", "frame", "y_true", "y_pred", "p_bar", "p_disc", "model"]
    clip = preds[preds["path"].str.endswith("clip.avi")]
    assert clip["frame"].tolist() == ["0", "1", "2", "3", "4", "all"]
    dicom = preds[preds["path"] == str(ybr_dicom)]
    assert len(dicom) == 31 and dicom["frame"].iloc[-1] == "all"
    image = preds[preds["path"].str.endswith("0_0.png")]
    assert image["frame"].tolist() == [""]
    np.testing.assert_allclose(preds[["p_bar", "p_disc"]].astype(float).sum(axis=1), 1.0, atol=1e-5)
    assert set(preds["model"]) == {"run"}
    video_row = clip[clip["frame"] == "all"].iloc[0]
    mean = clip[clip["frame"] != "all"][["p_bar", "p_disc"]].astype(float).mean()
    np.testing.assert_allclose(video_row[["p_bar", "p_disc"]].astype(float), mean, atol=1e-6)  # mean rule


def test_train_help_shows_the_named_tasks_defaults(tmp_path) -> None:
    from sonokit.core.config import resolve_config

    seen, texts = {}, {}
    for task in ("lus", "ef"):
        res = sonokit("train", task, "--help", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        text = " ".join(res.stdout.split())  # rich wraps the epilog at the terminal width
        cfg = resolve_config(task)
        expected = (
            f"Defaults of {task} (src/sonokit/configs/{task}.yaml; --config FILE, then flags, override them): "
            f"model {cfg.model}, {cfg.epochs} epochs{' (at least 300 steps)' if task == 'lus' else ''}, "
            f"lr {cfg.lr:g}, batch size {cfg.batch_size}, size {cfg.size} px"
        )
        assert expected in text, text[-600:]
        seen[task], texts[task] = (cfg.model, cfg.epochs, cfg.lr, cfg.batch_size, cfg.size), text
    assert seen["lus"] != seen["ef"]  # two tasks, two sets of defaults
    assert "model two-stream, 30 epochs, lr 0.001, batch size 8, size 112 px" in texts["ef"]
    assert (
        "model resnet10_w32, 12 epochs (at least 300 steps), lr 0.005, batch size 32, size 96 px"
        in texts["lus"]
    )
    # no task named (or a typo): every task's defaults, with a suggestion for the typo
    res = sonokit("train", "lsu", "--help", cwd=tmp_path)
    text = " ".join(res.stdout.split())
    assert res.returncode == 0 and "Unknown task 'lsu' (did you mean lus?)" in text
    assert "lus: model resnet10_w32, 12 epochs" in text and "lv-seg: model unet" in text
