"""Metrics against scikit-learn/scipy/torchmetrics on fixed inputs; bootstrap CI behaviour; plots and report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from sonokit.evaluate.bootstrap import bootstrap_ci, bootstrap_indices
from sonokit.evaluate.metrics import (
    auroc_ovr,
    classification_metrics,
    expected_calibration_error,
    macro_f1,
    regression_metrics,
    top_k_accuracy,
)


def _probs(n: int, k: int, seed: int = 0, signal: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += signal
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_classification_metrics_match_sklearn() -> None:
    y, p = _probs(300, 4)
    pred = p.argmax(1)
    m = classification_metrics(y, p, ["a", "b", "c", "d"], n_boot=200, seed=1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["top2_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, p, k=2))
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred)
    for i, c in enumerate("abcd"):
        assert m["per_class"][c]["precision"] == pytest.approx(prec[i])
        assert m["per_class"][c]["recall"] == pytest.approx(rec[i])
        assert m["per_class"][c]["f1"] == pytest.approx(f1[i])
        assert m["per_class"][c]["support"] == sup[i]
    assert 0.55 < m["accuracy"] < 0.9  # the fixture is informative but imperfect
    json.dumps(m, allow_nan=False)  # strict JSON: undefined values must be null, not NaN


def test_macro_f1_and_auroc_edge_cases() -> None:
    # a class absent from y_true and y_pred is left out of the macro average, as sklearn does
    y = np.array([0, 0, 1, 1])
    assert macro_f1(y, np.array([0, 1, 1, 1]), num_classes=3) == pytest.approx(
        skm.f1_score(y, [0, 1, 1, 1], average="macro")
    )
    # binary AUROC equals sklearn's, ties included
    yb = np.array([0, 0, 1, 1, 1, 0])
    pb = np.array([0.2, 0.5, 0.5, 0.9, 0.4, 0.1])
    probs = np.stack([1 - pb, pb], axis=1)
    assert auroc_ovr(yb, probs) == pytest.approx(skm.roc_auc_score(yb, pb))
    # a single-class sample has no AUROC: NaN, and classification_metrics writes null
    m = classification_metrics(np.zeros(5, int), np.tile([[0.7, 0.3]], (5, 1)), ["x", "y"], n_boot=20)
    assert m["auroc"] is None and m["accuracy"] == 1.0
    assert top_k_accuracy(np.array([2, 0]), np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]), k=2) == 0.0


def test_ece_matches_torchmetrics() -> None:
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    y, p = _probs(500, 3, seed=3, signal=0.8)
    ref = multiclass_calibration_error(
        torch.tensor(p, dtype=torch.float64), torch.tensor(y), num_classes=3, n_bins=15, norm="l1"
    )
    assert expected_calibration_error(p, y, n_bins=15) == pytest.approx(float(ref), abs=1e-6)
    perfect = np.tile([[1.0, 0.0]], (10, 1))
    assert expected_calibration_error(perfect, np.zeros(10, int)) == pytest.approx(0.0)


def test_regression_metrics_match_sklearn() -> None:
    from scipy.stats import pearsonr

    rng = np.random.default_rng(0)
    y = rng.uniform(20, 80, 200)
    pred = y + rng.normal(2, 5, 200)
    m = regression_metrics(y, pred, n_boot=200)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert m["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, pred)))
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert m["pearson_r"] == pytest.approx(pearsonr(y, pred)[0])
    assert m["bias"] == pytest.approx(np.mean(pred - y))
    assert m["loa95"][0] < m["bias"] < m["loa95"][1]
    for key in ("mae", "rmse", "r2", "pearson_r"):
        lo, hi = m[f"{key}_ci95"]
        assert lo <= m[key] <= hi


def test_bootstrap_ci_contains_estimate_and_shrinks_with_n() -> None:
    widths = []
    for n in (60, 2400):
        y, p = _probs(n, 3, seed=n)
        acc = float(np.mean(p.argmax(1) == y))
        lo, hi = bootstrap_ci(lambda t, q: float(np.mean(q.argmax(1) == t)), y, p, n_boot=500, seed=0)
        assert lo <= acc <= hi
        widths.append(hi - lo)
    # the CI width scales like 1/sqrt(n): 40x the items -> about 1/6.3 the width
    assert widths[1] < widths[0] / 4
    assert bootstrap_ci(np.mean, np.arange(10.0), n_boot=0) is None


def test_group_bootstrap_resamples_whole_patients_and_is_wider() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 10)  # 30 patients x 10 images, patient-level effect
    values = np.repeat(rng.normal(0, 1, 30), 10) + rng.normal(0, 0.1, 300)
    for idx in bootstrap_indices(300, 5, seed=1, groups=groups):
        picked = groups[idx]
        counts = np.bincount(picked, minlength=30)
        assert set(np.unique(counts)) <= set(range(0, 100, 10))  # whole patients only
    item = bootstrap_ci(np.mean, values, n_boot=400, seed=0)
    grouped = bootstrap_ci(np.mean, values, n_boot=400, seed=0, groups=groups)
    assert (grouped[1] - grouped[0]) > 2 * (item[1] - item[0])  # clustered data: item CIs are too narrow
    assert bootstrap_ci(np.mean, values, n_boot=50, seed=3) == bootstrap_ci(
        np.mean, values, n_boot=50, seed=3
    )


def _assert_png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert im.width > 100 and im.height > 100


def test_plots_and_report(tmp_path) -> None:
    from sonokit.evaluate.plots import (
        plot_bland_altman,
        plot_confusion,
        plot_pred_vs_true,
        plot_reliability,
        plot_roc,
        plot_training_curves,
    )
    from sonokit.evaluate.report import write_report

    y, p = _probs(120, 3)
    m = classification_metrics(y, p, ["a", "b", "c"], n_boot=50)
    plots = tmp_path / "plots"
    (tmp_path / "log.csv").write_text(
        "epoch,phase,loss,metric,seconds\n1,train,1.0,0.5,1\n1,val,1.1,0.4,1\n"
        "2,train,0.8,0.6,1\n2,val,0.9,0.5,1\n"
    )
    paths = [
        plot_confusion(m["confusion_matrix"], ["a", "b", "c"], plots / "confusion_test.png"),
        plot_roc(y, p, ["a", "b", "c"], plots / "roc_test.png"),
        plot_reliability(p, y, plots / "reliability_test.png"),
        plot_pred_vs_true(y * 10.0, p[:, 0] * 30, plots / "pred_vs_true_test.png", "EF"),
        plot_bland_altman(y * 10.0, p[:, 0] * 30, plots / "bland_altman_test.png", "EF"),
        plot_training_curves(tmp_path / "log.csv", plots / "training_curves.png"),
    ]
    for path in paths:
        _assert_png(path)
    assert not list(plots.glob(".*"))  # no temporary files left behind
    (tmp_path / "metrics_test.json").write_text(json.dumps(m))
    page = write_report(tmp_path).read_text()
    assert page.count("data:image/png;base64,") == len(paths)
    assert "not for clinical use" in page and "macro_f1" in page and "95% CI" in page
    assert "http://" not in page and "https://" not in page  # self-contained
