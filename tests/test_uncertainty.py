"""Uncertainty: temperature scaling, conformal coverage, selective prediction, correctness predictors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sonokit.errors import InputError
from sonokit.uncertainty import (
    CorrectnessPredictor,
    apply_temperature,
    aurc,
    choose_flag_threshold,
    combined_predict,
    conformal_classification,
    conformal_quantile,
    conformal_regression,
    coverage_report,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    negative_log_likelihood,
    plot_reliability,
    plot_risk_coverage,
    probs_to_logits,
    regression_summary,
    risk_at_coverage,
    risk_coverage,
    uncertainty_summary,
)
from sonokit.uncertainty.selective import confidence_threshold, optimal_aurc


def synthetic_logits(
    n: int, k: int, rng: np.random.Generator, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(true logits): the true logits are perfectly calibrated, `scale` mis-calibrates."""
    z = rng.normal(size=(n, k)) * 2.0
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return z * scale, y


# ---------------------------------------------------------------- calibration


@pytest.mark.parametrize("scale, t_range", [(3.0, (2.6, 3.4)), (0.4, (0.34, 0.46))])
def test_temperature_recovers_miscalibration_and_lowers_held_out_nll(scale, t_range) -> None:
    rng = np.random.default_rng(0)
    lv, yv = synthetic_logits(4000, 5, rng, scale)
    lt, yt = synthetic_logits(4000, 5, rng, scale)
    t = fit_temperature(lv, yv)
    assert t_range[0] < t < t_range[1]  # the true temperature is `scale`
    before, after = apply_temperature(lt, 1.0), apply_temperature(lt, t)
    assert negative_log_likelihood(after, yt) < negative_log_likelihood(before, yt) - 0.05
    assert expected_calibration_error(after, yt) < 0.03 < expected_calibration_error(before, yt)
    assert np.array_equal(after.argmax(1), before.argmax(1))  # temperature never changes a prediction


def test_temperature_from_probabilities_equals_temperature_from_logits() -> None:
    rng = np.random.default_rng(1)
    lv, yv = synthetic_logits(1000, 4, rng, 2.5)
    t_logits = fit_temperature(lv, yv)
    t_probs = fit_temperature(probs_to_logits(apply_temperature(lv, 1.0)), yv)
    assert t_probs == pytest.approx(t_logits, rel=1e-3)


def ece_worsened_by_scaling(n: int = 900, n_wrong: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose ECE scaling can only worsen: n items at confidence 0.9 that are right 90% of the time
    (calibrated), plus n_wrong items wrong at margin 40. Those pull the NLL-optimal T well above 1, which makes
    the calibrated majority under-confident."""
    logits = np.zeros((n + n_wrong, 2))
    pred = np.arange(n + n_wrong) % 2  # both classes predicted
    logits[np.arange(n), pred[:n]] = np.log(9.0)  # softmax confidence exactly 0.9
    logits[np.arange(n, n + n_wrong), pred[n:]] = 40.0
    y = pred.copy()
    y[:n:10] = 1 - pred[:n:10]  # every 10th confident-0.9 item is wrong
    y[n:] = 1 - pred[n:]
    return logits, y


def test_calibration_that_worsens_validation_ece_is_not_used() -> None:
    logits, y = ece_worsened_by_scaling()
    fit = fit_calibration(logits, y)
    assert fit.fitted > 1.5  # the NLL optimum softens everything ...
    assert fit.ece_val_after > fit.ece_val_before + 0.05  # ... which makes ECE worse
    assert not fit.used and fit.temperature == 1.0
    assert "not used" in fit.note and f"{fit.fitted:.3f}" in fit.note
    assert fit.to_dict()["temperature"] == 1.0 and fit.to_dict()["fitted_temperature"] == fit.fitted


def test_calibration_that_lowers_validation_ece_is_used() -> None:
    lv, yv = synthetic_logits(2000, 4, np.random.default_rng(1), 2.5)
    fit = fit_calibration(lv, yv)
    assert fit.used and fit.temperature == fit.fitted and 2.0 < fit.fitted < 3.0
    assert fit.ece_val_after < fit.ece_val_before
    assert fit.note.startswith("temperature scaling used")


def test_unused_calibration_reaches_the_json_report_and_scorer(tmp_path) -> None:
    from sonokit.evaluate.report import write_report
    from sonokit.uncertainty import analyse_classification
    from sonokit.uncertainty.scorer import UncertaintyScorer

    logits, y = ece_worsened_by_scaling()
    probs = apply_temperature(logits, 1.0)
    knn = np.eye(2)[y]  # a perfect neighbour vote, so a combined predictor (and a scorer) exists
    result = analyse_classification(
        probs, y, probs, y, alpha=0.1, knn_probs_val=knn, knn_probs_test=knn, n_boot=0
    )
    c = result.summary["calibration"]
    assert c["used"] is False and c["temperature"] == 1.0 and c["fitted_temperature"] > 1.5
    assert c["ece_after"] == c["ece_before"]  # T = 1: the test probabilities are left as they were
    assert np.allclose(result.probs_test, probs)
    (tmp_path / "uncertainty.json").write_text(json.dumps({"alpha": 0.1, **result.summary}))
    page = write_report(tmp_path).read_text()
    assert "temperature scaling not used" in page and "worse" in page
    UncertaintyScorer.from_result(result, ["a", "b"], 3, 0, "sha").save(tmp_path)
    scorer = UncertaintyScorer.load(tmp_path)
    assert scorer.temperature == 1.0 and "not used" in scorer.calibration_note


def test_ece_of_known_bins() -> None:
    # two items at confidence 0.9 (one right: accuracy 0.5) and two at 0.6 (both right): ECE = (0.4*2 + 0.4*2)/4
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(0.4)


# ---------------------------------------------------------------- conformal


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    scores = np.arange(1, 20, dtype=float)  # n = 19, alpha 0.1: rank ceil(20 * 0.9) = 18
    assert conformal_quantile(scores, 0.1) == 18.0
    assert conformal_quantile(np.arange(8.0), 0.1) == float("inf")  # rank 9 > n = 8: no finite set is valid
    with pytest.raises(InputError):
        conformal_quantile(scores, 1.5)


@pytest.mark.parametrize("method", ["lac", "aps"])
def test_conformal_classification_coverage_holds_on_a_large_problem(method) -> None:
    rng = np.random.default_rng(2)
    alpha, covs, sizes, fixed_k = 0.1, [], [], []
    for _ in range(10):  # coverage is guaranteed on average over calibration draws: average a few draws
        lc, yc = synthetic_logits(3000, 10, rng, 1.5)  # miscalibrated on purpose: the guarantee is model-free
        lt, yt = synthetic_logits(5000, 10, rng, 1.5)
        # the non-adaptive reference: the fewest top-k classes that cover 90% of the calibration labels
        rank = (np.argsort(-lc, axis=1) == yc[:, None]).argmax(axis=1) + 1
        fixed_k.append(float(np.quantile(rank, 1 - alpha, method="higher")))
        cc = conformal_classification(apply_temperature(lc, 1.0), yc, alpha, method=method, seed=3)
        rep = coverage_report(yt, sets=cc.predict_sets(apply_temperature(lt, 1.0)), alpha=alpha)
        covs.append(rep["coverage"])
        sizes.append(rep["mean_set_size"])
        assert abs(rep["coverage"] - 0.9) < 0.02  # each draw within 2 points (std is about 0.006 here)
    assert 0.895 < np.mean(covs) < 0.905
    # informative: more than a singleton on average (top-1 is right about half the time), and smaller
    # than the fixed top-k with the same coverage, which is what a per-image threshold buys (about 3.5 vs 5 here)
    assert 1.0 < np.mean(sizes) < np.mean(fixed_k) - 0.5


def test_lac_gives_smaller_sets_than_aps_and_sets_are_reproducible() -> None:
    rng = np.random.default_rng(4)
    lc, yc = synthetic_logits(3000, 6, rng)
    lt, yt = synthetic_logits(3000, 6, rng)
    pc, pt = apply_temperature(lc, 1.0), apply_temperature(lt, 1.0)
    lac = conformal_classification(pc, yc, 0.1, "lac").predict_sets(pt).sum(1).mean()
    aps_model = conformal_classification(pc, yc, 0.1, "aps")
    aps = aps_model.predict_sets(pt).sum(1).mean()
    assert lac < aps
    assert np.array_equal(aps_model.predict_sets(pt), aps_model.predict_sets(pt))


def test_conformal_regression_absolute_and_normalised_intervals() -> None:
    rng = np.random.default_rng(5)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sigma = rng.choice([1.0, 6.0], size=n)  # heteroscedastic: half the items are 6x noisier
        pred = rng.uniform(20, 70, n)
        return pred, pred + rng.normal(size=n) * sigma, sigma

    pc, yc, sc = draw(4000)
    pt, yt, st = draw(20000)
    q = conformal_regression(pc, yc, 0.1)
    qn = conformal_regression(pc, yc, 0.1, sigma_cal=sc)
    abs_rep = coverage_report(yt, lower=pt - q, upper=pt + q, alpha=0.1)
    norm_rep = coverage_report(yt, lower=pt - qn * st, upper=pt + qn * st, alpha=0.1)
    assert abs(abs_rep["coverage"] - 0.9) < 0.015 and abs(norm_rep["coverage"] - 0.9) < 0.015
    assert abs_rep["mean_width"] == pytest.approx(2 * q)
    noisy = st > 3
    cov_abs_noisy = np.mean(np.abs(yt - pt)[noisy] <= q)
    cov_norm_noisy = np.mean(np.abs(yt - pt)[noisy] <= qn * st[noisy])
    assert cov_abs_noisy < 0.85 and abs(cov_norm_noisy - 0.9) < 0.02  # normalised adapts to the noisy items
    summary = regression_summary(pc, yc, pt, yt, 0.1, sigma_val=sc, sigma_test=st)
    assert summary["normalised"]["mean_width"] < summary["absolute"]["mean_width"]


def test_regression_run_intervals_from_prediction_csvs(tmp_path) -> None:
    import pandas as pd

    from sonokit.uncertainty.report import _regression_from_csv

    rng = np.random.default_rng(8)
    for split, n in (("val", 3000), ("test", 3000)):
        ef = rng.uniform(20, 75, n)
        rows = pd.DataFrame(
            {
                "path": [f"v{i}.avi" for i in range(n)],
                "frame": "all",
                "y_true": ef,
                "y_pred": ef + rng.normal(0, 5, n),
            }
        )
        frames = rows.assign(frame="0", y_pred=0.0)  # frame rows are ignored when video rows exist
        pd.concat([rows, frames]).to_csv(tmp_path / f"predictions_{split}.csv", index=False)
    s = _regression_from_csv(tmp_path, 0.1)
    assert s["n_test"] == 3000
    assert s["absolute"]["qhat"] == pytest.approx(1.645 * 5, rel=0.06)  # the 90% normal half-width
    assert abs(s["absolute"]["coverage"] - 0.9) < 0.02
    (tmp_path / "predictions_val.csv").unlink()
    with pytest.raises(InputError, match="sonokit evaluate"):
        _regression_from_csv(tmp_path, 0.1)


# ---------------------------------------------------------------- selective prediction


def test_risk_coverage_by_hand() -> None:
    conf = np.array([0.6, 0.9, 0.7, 0.8])
    correct = np.array([1, 1, 1, 0])  # by confidence: 0.9 right, 0.8 wrong, 0.7 right, 0.6 right
    cov, risk = risk_coverage(conf, correct)
    np.testing.assert_allclose(cov, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.5, 1 / 3, 0.25])
    assert aurc(conf, correct) == pytest.approx((0 + 0.5 + 1 / 3 + 0.25) / 4)
    assert risk_at_coverage(conf, correct, 0.5) == 0.5
    assert optimal_aurc(correct) == pytest.approx((0 + 0 + 0 + 0.25) / 4)
    assert confidence_threshold(conf, 0.5) == 0.8


def test_risk_coverage_keeps_ties_together() -> None:
    cov, risk = risk_coverage(np.array([0.9, 0.9, 0.5]), np.array([0, 1, 1]))
    np.testing.assert_allclose(cov, [2 / 3, 1.0])
    np.testing.assert_allclose(risk, [0.5, 1 / 3])
    cov2, risk2 = risk_coverage(np.array([0.9, 0.9, 0.5]), np.array([1, 0, 1]))
    np.testing.assert_allclose(risk, risk2)


# ---------------------------------------------------------------- correctness predictors and the combined pipeline


def _predictions_with_errors(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """4 classes; errors come from low-confidence items and, regardless of confidence, from predicted class 0."""
    lg, y = synthetic_logits(n, 4, rng, 1.0)
    probs = apply_temperature(lg, 1.0)
    pred = probs.argmax(1)
    wrong_class0 = (pred == 0) & (rng.random(n) < 0.5)
    y = np.where(wrong_class0, (pred + 1) % 4, y)
    return probs, y


@pytest.mark.slow
def test_correctness_predictors_detect_errors() -> None:
    rng = np.random.default_rng(6)
    pv, yv = _predictions_with_errors(1200, rng)
    pt, yt = _predictions_with_errors(1200, rng)
    aucs = {}
    for kind in ("msp", "mlp", "svc", "svc-per-class"):
        model = CorrectnessPredictor(kind, seed=0).fit(pv, pv.argmax(1) == yv)
        aucs[kind] = model.evaluate(pt, pt.argmax(1) == yt)["auroc"]
        assert aucs[kind] > 0.6, (kind, aucs)
    # only the per-class SVC sees which class was predicted, so only it can learn "class 0 is unreliable"
    assert aucs["svc-per-class"] > aucs["msp"] + 0.03, aucs


def test_correctness_predictor_rejects_unknown_kind_and_use_before_fit() -> None:
    with pytest.raises(InputError):
        CorrectnessPredictor("forest")
    with pytest.raises(InputError):
        CorrectnessPredictor("mlp").predict_proba(np.full((2, 3), 1 / 3))


def test_combined_predict_swaps_flagged_items_to_the_neighbours_vote() -> None:
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8]])
    knn = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    p_correct = np.array([0.95, 0.3, 0.7])
    preds, flagged = combined_predict(probs, p_correct, knn, threshold=0.5)
    assert flagged.tolist() == [False, True, False]
    assert preds.tolist() == [0, 1, 1]
    # on this set flagging the two least-confident items is best: item 1 is fixed, item 2 (p=0.7) would break
    y = np.array([0, 1, 1])
    t = choose_flag_threshold(p_correct, probs, knn, y)
    assert 0.3 < t <= 0.7
    assert np.array_equal(combined_predict(probs, p_correct, knn, t)[0], y)


@pytest.mark.slow
def test_uncertainty_summary_end_to_end(tmp_path) -> None:
    rng = np.random.default_rng(7)
    lv, yv = synthetic_logits(800, 4, rng, 2.5)
    lt, yt = synthetic_logits(800, 4, rng, 2.5)
    # a neighbour vote that is right 85% of the time, independent of the classifier's errors
    knn_v = np.eye(4)[np.where(rng.random(800) < 0.85, yv, rng.integers(0, 4, 800))]
    knn_t = np.eye(4)[np.where(rng.random(800) < 0.85, yt, rng.integers(0, 4, 800))]
    pv, pt = apply_temperature(lv, 1.0), apply_temperature(lt, 1.0)
    s = uncertainty_summary(pv, yv, pt, yt, alpha=0.1, knn_probs_val=knn_v, knn_probs_test=knn_t)
    json.dumps(s)  # JSON-able as promised
    assert s["calibration"]["ece_after"] < s["calibration"]["ece_before"]
    assert s["calibration"]["nll_after"] < s["calibration"]["nll_before"]
    assert 2.0 < s["calibration"]["temperature"] < 3.0
    for method in ("lac", "aps"):
        assert abs(s["conformal"][method]["coverage"] - 0.9) < 0.04
    assert s["selective"]["risk_at_80"] < s["selective"]["risk_full"]
    assert 0.7 < s["selective"]["coverage_at_threshold"] < 0.9
    assert set(s["correctness"]) == {"msp", "mlp", "svc", "svc-per-class"}
    assert s["correctness"]["msp"]["auroc_test"] > 0.7
    comb = s["combined"]
    assert comb["accuracy_combined"] > comb["accuracy_plain"] + 0.02  # the neighbours fix flagged errors

    plot_reliability(pt, yt, tmp_path / "rel.png")
    plot_risk_coverage({"msp": (pt.max(1), pt.argmax(1) == yt)}, tmp_path / "rc.png")
    for name in ("rel.png", "rc.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rc.png", "rel.png"]  # no temp files left


def test_bad_shapes_raise_input_errors() -> None:
    with pytest.raises(InputError):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(InputError):
        conformal_classification(np.full((3, 2), 0.5), np.array([0, 1, 0]), 0.1, method="raps")
    with pytest.raises(InputError):
        coverage_report(np.array([1.0]))


# ---------------------------------------------------------------- a trained run folder, end to end


def _make_png_table(root, per_class: int = 30, seed: int = 0):
    """Speckle PNGs with a bright disc, bar or ring (three classes), one patient each, plus table.csv."""
    import cv2
    import pandas as pd

    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(3 * per_class):
        c = i % 3
        img = rng.rayleigh(35, (40, 40)).clip(0, 255).astype(np.uint8)
        cx, cy = (int(v) for v in rng.integers(14, 26, 2))
        if c == 0:
            cv2.circle(img, (cx, cy), 7, 230, -1)
        elif c == 1:
            cv2.rectangle(img, (cx - 12, cy - 3), (cx + 12, cy + 3), 230, -1)
        else:
            cv2.circle(img, (cx, cy), 8, 230, 2)
        cv2.imwrite(str(root / f"img/{i:03d}.png"), img)
        rows.append({"path": f"img/{i:03d}.png", "label": ("disc", "bar", "ring")[c], "group": f"P{i:03d}"})
    pd.DataFrame(rows).to_csv(root / "table.csv", index=False)
    return root / "table.csv"


@pytest.mark.slow
def test_uncertainty_and_similar_on_a_trained_run(tmp_path) -> None:
    import pandas as pd
    from typer.testing import CliRunner

    from sonokit.cli.main import app
    from sonokit.core.config import resolve_config
    from sonokit.retrieval.runs import find_similar
    from sonokit.tasks import get_task
    from sonokit.train.engine import train

    table = _make_png_table(tmp_path / "data")
    overrides = {
        "data": str(table),
        "out": str(tmp_path / "run"),
        "size": 32,
        "epochs": 2,
        "batch_size": 16,
        "n_boot": 0,
        "augment": {"enabled": False},
    }
    run = train(resolve_config("classify", overrides=overrides, task_defaults=get_task("classify").defaults))

    res = CliRunner().invoke(app, ["uncertainty", str(run), "--alpha", "0.2", "--k", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "ECE" in res.output and "conformal LAC: coverage" in res.output
    assert "of test items (mahalanobis distance <=" in res.output
    s = json.loads((run / "uncertainty.json").read_text())
    n_test = s["n_test"]
    assert n_test == len(pd.read_csv(run / "predictions_test.csv"))  # the run's own test split
    assert s["calibration"]["temperature"] > 0 and s["conformal"]["lac"]["alpha"] == 0.2
    assert 0.0 <= s["selective"]["risk_at_80"] <= 1.0
    for name in (
        "reliability_before",
        "reliability_after",
        "risk_coverage",
        "tsne_images",
        "tsne_softmax",
        "tsne_embeddings",
    ):
        assert (run / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    per_item = pd.read_csv(run / "uncertainty_test.csv")
    assert len(per_item) == n_test and per_item["set_size_lac"].between(0, 3).all()
    assert (run / "index" / "index.json").is_file()  # the train-set index cached for `similar`

    # a training image is its own nearest neighbour, through the whole run-folder path
    train_rows = pd.read_csv(run / "splits.csv").query("split == 'train'")
    query = train_rows["path"].iloc[0]
    csv, montages, errors = find_similar(run, [query, tmp_path / "missing.png"], tmp_path / "sim", k=4)
    sim = pd.read_csv(csv)
    assert len(sim) == 4 and sim["rank"].tolist() == [1, 2, 3, 4]
    assert Path(sim["path"].iloc[0]).resolve() == Path(query).resolve() and sim["distance"].iloc[0] < 1e-4
    assert sim["in_training_set"].tolist() == [True, False, False, False]  # the query itself is marked
    assert len(montages) == 1 and montages[0].read_bytes()[:4] == b"\x89PNG"
    assert len(errors) == 1 and "missing.png" in errors[0]

    # the combined pipeline on new files: the same answers as the analysis gave for the same test images
    test_paths = per_item["path"].tolist()
    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(
        app, ["predict", str(run), *test_paths, "--out", str(out), "--uncertainty", "--quiet"]
    )
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(out).set_index("path").loc[test_paths]
    for col in ("conformal_set", "abstain", "p_correct", "flagged", "knn_pred", "nearest_path"):
        assert pred[col].notna().all(), col
    assert np.allclose(pred["confidence"].to_numpy(), per_item["confidence"].to_numpy(), atol=1e-4)
    assert pred["combined_pred"].tolist() == per_item["combined_pred"].tolist()
    assert pred["knn_pred"].tolist() == per_item["knn_pred"].tolist()
    assert pred["conformal_set"].tolist() == per_item["set_lac"].tolist()

    # applicability: fitted by `sonokit uncertainty`; in-domain test images pass, natural photographs do not
    assert (run / "applicability" / "applicability.json").is_file()
    assert s["applicability"]["applicable_rate_test"] >= 0.8
    assert pred["applicable"].astype(bool).mean() == pytest.approx(s["applicability"]["applicable_rate_test"])
    assert pred["applicability"].between(0, 1).all()
    import cv2
    import skimage.data

    natural = []
    for name in ("astronaut", "coffee", "camera", "chelsea"):
        natural.append(tmp_path / f"{name}.png")
        img = np.asarray(getattr(skimage.data, name)())
        cv2.imwrite(str(natural[-1]), img[..., ::-1] if img.ndim == 3 else img)
    out_nat = tmp_path / "natural.csv"
    res = CliRunner().invoke(
        app, ["predict", str(run), *map(str, natural), "--out", str(out_nat), "--uncertainty", "--quiet"]
    )
    assert res.exit_code == 0, res.output
    nat = pd.read_csv(out_nat)
    assert len(nat) == 4 and not nat["applicable"].astype(bool).any(), nat[["path", "applicability"]]
    flagged = pred["flagged"].astype(bool).to_numpy()
    swapped = pred["combined_pred"] != pred["y_pred"]
    assert not swapped[~flagged].any()  # only flagged items may change their answer
    report = (run / "report.html").read_text()
    assert "Combined predictor" in report and "accuracy, classifier alone" in report

    # state fitted for other weights is refused, and nothing is written
    (run / "uncertainty" / "scorer.json").write_text(
        (run / "uncertainty" / "scorer.json")
        .read_text()
        .replace(json.loads((run / "uncertainty" / "scorer.json").read_text())["weights_sha256"], "0" * 64)
    )
    out2 = tmp_path / "pred2.csv"
    res = CliRunner().invoke(app, ["predict", str(run), test_paths[0], "--out", str(out2), "--uncertainty"])
    assert res.exit_code != 0 and "other weights" in str(res.exception or res.output)
    assert not out2.exists() and not Path(str(out2) + ".partial").exists()
