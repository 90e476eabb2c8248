"""The heuristic baseline on synthetic crops with known bright pixels, its table, the binary metrics, and the
`sonokit av heuristic` command on a small simulated PSAX set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sonokit.av.heuristic import best_row, binarise, heuristic_calcified, heuristic_table, white_pixels
from sonokit.av.metrics import binary_metrics, binary_point


def _crop(bright: int, level: int, floor: int = 90) -> np.ndarray:
    """A 20x20 crop at grey `floor` with `bright` pixels at grey `level` (a diagonal, so none overlap)."""
    c = np.full((20, 20), floor, np.uint8)
    idx = np.arange(bright)
    c[idx % 20, (idx * 7) % 20] = level
    return c


def test_binarise_and_thresholds_on_known_pixels() -> None:
    c = _crop(3, 215)
    assert binarise(c, 210).max() == 255 and np.count_nonzero(binarise(c, 210)) == 3
    assert white_pixels(c, 215) == 3  # >= threshold counts
    assert white_pixels(c, 216) == 0
    assert heuristic_calcified(c, 210) and not heuristic_calcified(c, 220)
    assert not heuristic_calcified(c, 210, min_pixels=5) and heuristic_calcified(
        _crop(6, 215), 210, min_pixels=5
    )
    # noise reduction subtracts the crop minimum (90): 215 -> 125 is no longer white at 190
    assert heuristic_calcified(c, 190) and not heuristic_calcified(c, 190, noise_reduction=True)


def test_heuristic_table_matches_hand_counts() -> None:
    crops = [_crop(8, 230), _crop(2, 205), _crop(1, 195), _crop(0, 0), _crop(4, 212), _crop(6, 225)]
    truth = [True, True, False, False, False, True]
    table = heuristic_table(crops, truth, thresholds=[190, 210, 220], min_pixels=[1, 5], n_boot=0)
    assert len(table) == 6 and set(table["method"]) == {"heuristic"}
    r = table.set_index(["threshold", "min_pixels"])
    # threshold 190, any pixel: calls crops 0, 1, 2, 4, 5 -> TP 3, FP 2, FN 0 -> F1 = 6 / 8
    assert (r.loc[(190, 1), "tp"], r.loc[(190, 1), "fp"], r.loc[(190, 1), "fn"]) == (3, 2, 0)
    assert r.loc[(190, 1), "f1"] == pytest.approx(0.75)
    # threshold 210: crops 0, 4, 5 -> TP 2, FP 1, FN 1 -> F1 = 4 / 6
    assert r.loc[(210, 1), "f1"] == pytest.approx(4 / 6)
    # threshold 220: crops 0, 5 -> TP 2, FP 0, FN 1; >= 5 pixels keeps both (8 and 6 pixels)
    assert r.loc[(220, 1), "precision"] == 1.0 and r.loc[(220, 5), "recall"] == pytest.approx(2 / 3)
    # 190 with >= 5 pixels also reaches F1 0.8 (crops 0 and 5); ties go to the lower threshold
    assert r.loc[(190, 5), "f1"] == pytest.approx(0.8)
    best = best_row(table)
    assert (best["threshold"], best["min_pixels"], best["f1"]) == (190, 5, pytest.approx(0.8))
    assert best_row(table[table["min_pixels"] == 1])["threshold"] == 220


def test_binary_metrics_hand_case_and_cis() -> None:
    t = np.array([1, 1, 1, 0, 0, 0, 0, 1], bool)
    p = np.array([1, 1, 0, 0, 0, 1, 0, 1], bool)
    point = binary_point(t, p)  # TP 3, FP 1, FN 1, TN 3
    assert point["f1"] == pytest.approx(0.75) and point["specificity"] == pytest.approx(0.75)
    assert point["accuracy"] == pytest.approx(0.75) and point["macro_f1"] == pytest.approx(0.75)
    m = binary_metrics(t, p, prob=np.where(p, 0.8, 0.2), groups=np.repeat(np.arange(4), 2), n_boot=100)
    assert m["n_groups"] == 4 and m["auroc"] == pytest.approx(0.75)
    assert m["f1_ci95"][0] <= 0.75 <= m["f1_ci95"][1]


@pytest.mark.slow
def test_heuristic_command_on_simulated_psax(tmp_path) -> None:
    from sonokit.av.heuristic import evaluate_heuristic
    from sonokit.synth.psax import make_psax_dataset

    data = make_psax_dataset(tmp_path / "psax", n=24, seed=3, size=64)
    table = evaluate_heuristic(data, tmp_path / "heur.csv", n_boot=50)
    assert len(table) == 8 and (table["n"] == 24).all()
    written = pd.read_csv(tmp_path / "heur.csv")
    assert {"f1", "f1_lo", "f1_hi", "threshold", "min_pixels"} <= set(written.columns)
    md = (tmp_path / "heur.md").read_text()
    assert "| heuristic | ground truth | 190 | 1 |" in md
    # raising the threshold can only remove white pixels: recall never increases
    rec = table[table["min_pixels"] == 1].sort_values("threshold")["recall"].to_numpy()
    assert np.all(np.diff(rec) <= 1e-12)
