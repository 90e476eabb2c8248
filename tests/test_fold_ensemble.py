"""Predicting with a cross-validation folder: the mean of its folds' networks, on new files only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory) -> dict:
    """`sonokit train fetal-plane --folds 2` (1 epoch each) on 24 simulated 64 px images."""
    from sonokit.core.config import resolve_config
    from sonokit.synth import make_dataset
    from sonokit.tasks import get_task
    from sonokit.train.engine import train

    root = tmp_path_factory.mktemp("cv")
    data = make_dataset("fetal-planes", root / "fp", n=24, seed=0, size=64)
    overrides = {"data": str(data), "out": str(root / "cv"), "epochs": 1, "size": 64, "batch_size": 8,
                 "folds": 2, "n_boot": 0, "options": {"gradcam_samples": 0}}  # fmt: skip
    cfg = resolve_config("fetal-plane", overrides=overrides, task_defaults=get_task("fetal-plane").defaults)
    return {"root": train(cfg), "images": sorted((Path(data) / "Images").glob("*.png"))[:5]}


def test_cv_folder_predicts_with_the_mean_of_its_folds(cv_run, tmp_path) -> None:
    from sonokit.core.run import load_run
    from sonokit.data.frames import read_gray
    from sonokit.predict import Predictor, predict_to_csv

    root, files = cv_run["root"], cv_run["images"]
    images = [read_gray(f) for f in files]
    predictor = Predictor.load(root, "cpu")
    probs = predictor.arrays(images)["probs"]
    logits = []  # each fold's network by hand, on the task's own input
    for fold in ("fold_0", "fold_1"):
        run = load_run(root / fold, "cpu")
        batch = run.task.array_batch(images)
        with torch.no_grad():
            logits.append(run.task.forward(run.model.eval(), batch).float())
    expected = torch.softmax(torch.stack(logits).mean(0), 1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert not np.allclose(
        expected, torch.softmax(logits[0], 1).numpy(), atol=1e-3
    )  # two folds, two networks

    table, errors = predictor.table(files)
    assert not errors and len(table) == len(files) and set(table["model"]) == {root.name}
    np.testing.assert_allclose(table[[f"p_{c}" for c in predictor.run.task.classes]], probs, atol=1e-5)
    result = predict_to_csv(root, files, tmp_path / "preds.csv", device="cpu")
    written = pd.read_csv(result.path)
    assert list(written["y_pred"]) == list(table["y_pred"])


def test_cv_folder_refuses_what_it_cannot_do(cv_run, tmp_path) -> None:
    from sonokit.errors import InputError
    from sonokit.evaluate.runner import evaluate_run
    from sonokit.predict import Predictor

    root = cv_run["root"]
    with pytest.raises(InputError, match="evaluate one fold"):  # the ensemble saw every file in training
        evaluate_run(root, device="cpu")
    with pytest.raises(InputError, match="predicts with torch"):
        Predictor.load(root, "cpu", backend="onnx")
    with pytest.raises(InputError, match="pass a fold folder"):
        Predictor.load(root, "cpu").to_csv(cv_run["images"], tmp_path / "u.csv", uncertainty=True)
    assert not list(tmp_path.iterdir())
