"""Ordinal metrics (lung score 0-3): quadratic-weighted kappa, MAE in points, per-patient score sums."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from sonokit.core.config import resolve_config
from sonokit.evaluate.ordinal import (
    ordinal_metrics,
    patient_sum_metrics,
    patient_sums,
    quadratic_kappa,
)
from sonokit.evaluate.report import write_report
from sonokit.tasks import get_task


def _task(name: str, **overrides):
    cls = get_task(name)
    task = cls(resolve_config(name, overrides={"n_boot": 50, **overrides}, task_defaults=cls.defaults))
    task.classes = ["0", "1", "2", "3"]
    return task


def test_perfect_predictions_give_kappa_1_and_mae_0() -> None:
    y = np.array([0, 1, 2, 3, 3, 2, 1, 0, 1])
    m = ordinal_metrics(y, y, 4, n_boot=100, seed=0)
    assert m["qwk"] == 1.0 and m["score_mae"] == 0.0
    assert m["qwk_ci95"] == [1.0, 1.0] and m["score_mae_ci95"] == [0.0, 0.0]


def test_off_by_one_everywhere_gives_mae_1() -> None:
    y = np.array([0, 1, 2, 3, 2, 1, 0, 3])
    pred = np.where(y < 3, y + 1, y - 1)  # every prediction one point away, in either direction
    m = ordinal_metrics(y, pred, 4, n_boot=100, seed=0)
    assert m["score_mae"] == 1.0 and m["score_mae_ci95"] == [1.0, 1.0]
    assert m["qwk"] < 1.0


def test_kappa_by_hand_and_equal_to_sklearn() -> None:
    # O has one miss (2 called 3): sum w*O = 1; column sums (1, 1, 0, 2) give sum w*E = 48/4 = 12
    assert quadratic_kappa([0, 1, 2, 3], [0, 1, 3, 3], 4) == pytest.approx(11 / 12)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 200)
    pred = np.clip(y + rng.integers(-1, 2, 200), 0, 3)
    expected = cohen_kappa_score(y, pred, weights="quadratic", labels=[0, 1, 2, 3])
    assert quadratic_kappa(y, pred, 4) == pytest.approx(expected)
    # a score level nobody has (2) still counts as a step: 1 vs 3 is two points apart, as sklearn's labels=range(K)
    y, pred = np.array([0, 1, 3, 3, 0]), np.array([0, 3, 3, 1, 1])
    assert quadratic_kappa(y, pred, 4) == pytest.approx(
        cohen_kappa_score(y, pred, weights="quadratic", labels=[0, 1, 2, 3])
    )
    assert np.isnan(quadratic_kappa([2, 2], [2, 2], 4))  # all one level: chance agreement is total


def test_patient_sums_by_hand() -> None:
    groups = ["p1", "p1", "p1", "p2", "p2", "p3"]
    true = [1, 2, 3, 0, 0, 2]
    pred = [1, 3, 3, 1, 0, 0]
    sums = patient_sums(true, pred, groups)
    assert sums["group"].tolist() == ["p1", "p2", "p3"]
    assert sums["clips"].tolist() == [3, 2, 1]
    assert sums["true_sum"].tolist() == [6, 0, 2] and sums["pred_sum"].tolist() == [7, 1, 0]
    m = patient_sum_metrics(true, pred, groups, n_boot=200, seed=0)
    assert m["n_patients"] == 3
    assert m["patient_sum_mae"] == pytest.approx(4 / 3)  # |7-6| + |1-0| + |0-2| over 3 patients
    # ranks (3, 1, 2) vs (3, 2, 1): rho = 1 - 6 * 2 / (3 * 8) = 0.5
    assert m["patient_sum_spearman"] == pytest.approx(0.5)
    assert m["patient_sum_spearman"] == pytest.approx(spearmanr([6, 0, 2], [7, 1, 0])[0])
    lo, hi = m["patient_sum_mae_ci95"]
    assert 0.0 <= lo <= 4 / 3 <= hi <= 2.0
    assert "6 clips, 3 patients" in m["patient_level"] and "patient column" not in m["patient_level"]
    single = patient_sum_metrics([1, 2], [1, 2], ["a", "b"], n_boot=10)
    assert "every patient has one clip" in single["patient_level"]


# two patients: p1 has two cines (frames 0, 2) and a still image; p2 one cine
ITEMS = pd.DataFrame(
    {
        "path": ["/d/a.avi", "/d/a.avi", "/d/b.avi", "/d/b.avi", "/d/c.png", "/d/d.avi", "/d/d.avi"],
        "frame": [0, 2, 0, 2, 0, 0, 2],
        "label": ["1", "1", "3", "3", "0", "2", "2"],
        "group": ["p1", "p1", "p1", "p1", "p1", "p2", "p2"],
    }
)
# argmax per frame: a: 1, 2 | b: 3, 3 | c: 0 | d: 0, 1
PROBS = [
    [0.1, 0.7, 0.1, 0.1],
    [0.1, 0.2, 0.6, 0.1],
    [0.0, 0.1, 0.1, 0.8],
    [0.0, 0.1, 0.2, 0.7],
    [0.9, 0.1, 0.0, 0.0],
    [0.6, 0.2, 0.1, 0.1],
    [0.2, 0.5, 0.2, 0.1],
]


def _preds(task):
    collected = {"index": np.arange(len(ITEMS)), "probs": np.asarray(PROBS), "y": ITEMS["label"].astype(int)}
    return task.predictions({k: np.asarray(v) for k, v in collected.items()}, ITEMS)


def test_lus_metrics_add_ordinal_metrics_at_three_levels(tmp_path) -> None:
    task = _task("lus")
    assert task.opts.ordinal and task.monitor[0] == "macro_f1"  # the headline metric is unchanged
    m = task.metrics(_preds(task), n_boot=50, seed=0)
    # frames: true 1 1 3 3 0 2 2, predicted 1 2 3 3 0 0 1 -> |error| 0 1 0 0 0 2 1
    assert m["score_mae"] == pytest.approx(4 / 7)
    frames_true, frames_pred = [1, 1, 3, 3, 0, 2, 2], [1, 2, 3, 3, 0, 0, 1]
    assert m["qwk"] == pytest.approx(
        cohen_kappa_score(frames_true, frames_pred, weights="quadratic", labels=[0, 1, 2, 3])
    )
    # videos (max rule): a 1 -> 2, b 3 -> 3, d 2 -> 1
    assert m["n_videos"] == 3 and m["video_score_mae"] == pytest.approx(2 / 3)
    assert m["video_qwk"] == pytest.approx(
        cohen_kappa_score([1, 3, 2], [2, 3, 1], weights="quadratic", labels=[0, 1, 2, 3])
    )
    # patients: p1 = a + b + the still image c: true 1+3+0 = 4, predicted 2+3+0 = 5; p2 = d: 2 vs 1
    assert m["n_patients"] == 2 and m["patient_sum_mae"] == pytest.approx(1.0)
    assert "4 clips, 2 patients" in m["patient_level"]
    assert m["patient_sum_spearman"] == pytest.approx(1.0)  # (4, 2) vs (5, 1): same order
    for key in ("qwk", "score_mae", "video_qwk", "video_score_mae", "patient_sum_mae"):
        assert f"{key}_ci95" in m
    assert m["accuracy"] == pytest.approx(4 / 7)  # accuracy still there, beside the ordinal metrics

    # the run's report shows them, with the number of patients
    (tmp_path / "metrics_test.json").write_text(json.dumps({"split": "test", **m}), encoding="utf-8")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    for text in ("qwk", "video_score_mae", "patient_sum_mae", "n_patients", "4 clips, 2 patients"):
        assert text in page


def test_nominal_classes_get_no_ordinal_metrics() -> None:
    task = _task("classify", options={"classes": ["0", "1", "2", "3"]})
    assert not task.opts.ordinal
    m = task.metrics(_preds(task), n_boot=20, seed=0)
    assert "accuracy" in m and not {"qwk", "video_qwk", "patient_sum_mae", "n_patients"} & set(m)
    on = _task("classify", options={"classes": ["0", "1", "2", "3"], "ordinal": True})
    assert "patient_sum_mae" in on.metrics(_preds(on), n_boot=20, seed=0)
