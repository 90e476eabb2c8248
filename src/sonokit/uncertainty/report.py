"""`sonokit uncertainty RUN`: the whole uncertainty analysis of a trained run folder, written to disk.

Validation predictions fit everything (temperature, conformal quantile, abstention threshold, correctness
predictors, flag threshold); the test split only reports. The kNN fallback votes among the training split's
embeddings. Outputs: uncertainty.json, uncertainty_test.csv (per item), plots/reliability_{before,after}.png,
plots/risk_coverage.png and plots/tsne_{images,softmax,embeddings}.png; in the run folder also the fitted state
for `sonokit predict --uncertainty` (uncertainty/, index/) and an uncertainty section in report.html.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonokit.errors import InputError
from sonokit.uncertainty.applicability import fit_for_run
from sonokit.uncertainty.pipeline import analyse_classification, regression_summary, uncertainty_summary
from sonokit.uncertainty.plots import plot_reliability, plot_risk_coverage
from sonokit.uncertainty.scorer import UncertaintyScorer
from sonokit.utils import atomic_write_json, get_logger, write_csv

log = get_logger(__name__)

VIDEO_ROW = "all"
MIN_VIDEO_ITEMS = 20  # below this per split, video-level conformal/calibration numbers are noise


def run_uncertainty(
    run_dir: str | Path,
    data: str | Path | None = None,
    alpha: float = 0.1,
    out: str | Path | None = None,
    device: str = "auto",
    k: int = 10,
    tsne_max: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """Analyse a run; returns the summary written to <out>/uncertainty.json (out defaults to the run folder)."""
    from sonokit.core.run import load_run

    if not 0.0 < alpha < 1.0:
        raise InputError(f"--alpha must lie strictly between 0 and 1, got {alpha}")
    run = load_run(run_dir, device)
    out = Path(out) if out is not None else Path(run.run_dir)
    if run.task.kind == "regression":
        summary = _regression_from_csv(Path(run.run_dir), alpha)
    elif run.task.kind == "classification":
        summary = _classification(run, data, alpha, out, k, tsne_max, seed)
    else:
        raise InputError(
            f"uncertainty covers classification and regression tasks, not {run.task.kind}", run_dir
        )
    summary = {"run": str(run.run_dir), "task": run.task.name, "alpha": alpha, **summary}
    atomic_write_json(out / "uncertainty.json", _finite(summary))
    if out.resolve() == Path(run.run_dir).resolve():
        from sonokit.evaluate.report import write_report

        write_report(run.run_dir)  # the run's report gains the uncertainty section
    return summary


def _classification(
    run: Any, data: str | Path | None, alpha: float, out: Path, k: int, tsne_max: int, seed: int
) -> dict[str, Any]:
    from sonokit.retrieval.runs import (
        INDEX_DIR,
        index_from_outputs,
        infer_with_embeddings,
        item_frames,
        run_splits,
    )

    splits = run_splits(run, data)
    missing = [s for s in ("train", "val", "test") if s not in splits]
    if missing:
        raise InputError(
            f"the dataset has no {', '.join(missing)} split (uncertainty needs train, val and test)",
            run.task.cfg.data,
        )
    outs = {s: infer_with_embeddings(run, splits[s], desc=f"embed {s}") for s in ("train", "val", "test")}
    for s in ("val", "test"):
        if np.any(outs[s].y < 0):
            raise InputError(f"the {s} split has unlabelled items", run.task.cfg.data)
    classes = list(run.task.classes or [])
    index = index_from_outputs(run, outs["train"])
    if data is None:  # a cache for `sonokit similar` (only for the data the run was trained on)
        index.save(Path(run.run_dir) / INDEX_DIR)
    val, test = outs["val"], outs["test"]
    knn_val = index.knn_vote(val.embeddings, k, len(classes))
    knn_test = index.knn_vote(test.embeddings, k, len(classes))
    groups = test.items["group"].astype(str).to_numpy() if "group" in test.items.columns else None
    result = analyse_classification(
        val.probs,
        val.y,
        test.probs,
        test.y,
        alpha=alpha,
        logits_val=val.logits,
        logits_test=test.logits,
        knn_probs_val=knn_val,
        knn_probs_test=knn_test,
        seed=seed,
        groups_test=groups,
    )
    applicability = fit_for_run(run, outs["train"], val, save=data is None)
    if data is None:  # what `sonokit predict --uncertainty` needs, beside the index
        UncertaintyScorer.from_result(result, classes, k, seed, index.meta["weights_sha256"]).save(
            run.run_dir
        )
    frames = item_frames(test.items)
    unit = "frames" if any(frames) else "images"
    summary: dict[str, Any] = {"classes": classes, "level": unit, "knn_k": k, **result.summary}
    if groups is not None and summary.get("combined"):
        from sonokit.data.leakage import resample_unit

        # "patients" only when the data named them; groups made of single files are images or videos
        summary["combined"]["ci_method"] = f"bootstrap over {resample_unit(test.items)}"
    applicable_test = applicability.score(test.embeddings)["applicable"]
    summary["applicability"] = {
        "rule": applicability.rule(),
        "method": applicability.method,
        "threshold": applicability.threshold,
        "n_val": int(len(applicability.dist_val)),
        "applicable_rate_test": float(applicable_test.mean()),
    }
    summary["video"] = _video_level(run, val, test, alpha, seed)

    plots = out / "plots"
    y_t = test.y
    plot_reliability(
        test.probs, y_t, plots / "reliability_before.png", title="test, before temperature scaling"
    )
    plot_reliability(
        result.probs_test,
        y_t,
        plots / "reliability_after.png",
        title=f"test, after temperature scaling (T={result.temperature:.2f})"
        if result.summary["calibration"]["used"]
        else "test, temperature scaling not used (it made validation ECE worse): T=1",
    )
    correct = result.probs_test.argmax(1) == y_t
    curves = {"max softmax": (result.probs_test.max(1), correct)}
    curves.update(
        {f"P(correct) {kind}": (p, correct) for kind, p in result.p_correct_test.items() if kind != "msp"}
    )
    plot_risk_coverage(curves, plots / "risk_coverage.png", title=f"test {unit}: risk vs coverage")
    summary["plots"] = [str(p) for p in _tsne_plots(test, result.probs_test, classes, plots, tsne_max, seed)]

    write_csv(_per_item(test, frames, result, classes, knn_test), out / "uncertainty_test.csv")
    return summary


def _video_level(run: Any, val: Any, test: Any, alpha: float, seed: int) -> dict[str, Any] | None:
    """Calibration, conformal and selective numbers on the task's aggregated video rows, when there are enough."""
    frames = {}
    for name, o in (("val", val), ("test", test)):
        preds = run.task.predictions(o.collected, o.items)
        frames[name] = (
            preds[(preds["frame"] == VIDEO_ROW) & (preds["y_true"] != "")] if "frame" in preds else preds[:0]
        )
    n_val, n_test = len(frames["val"]), len(frames["test"])
    if n_val == 0 and n_test == 0:
        return None
    if min(n_val, n_test) < MIN_VIDEO_ITEMS:
        return {"skipped": f"too few videos (val {n_val}, test {n_test}; need {MIN_VIDEO_ITEMS} each)"}
    cols = [f"p_{c}" for c in run.task.classes]
    lookup = {c: i for i, c in enumerate(run.task.classes)}

    def arrays(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return df[cols].to_numpy(float), df["y_true"].astype(str).map(lookup).to_numpy(np.int64)

    (pv, yv), (pt, yt) = arrays(frames["val"]), arrays(frames["test"])
    return uncertainty_summary(pv, yv, pt, yt, alpha=alpha, kinds=("msp", "mlp"), seed=seed)


def _tsne_plots(
    test: Any, probs: np.ndarray, classes: list[str], plots: Path, tsne_max: int, seed: int
) -> list[Path]:
    from sonokit.retrieval.tsne import tsne_plot

    n = len(test.y)
    if n < 10 or tsne_max < 10:
        return []
    pick = np.sort(np.random.default_rng(seed).choice(n, size=min(n, tsne_max), replace=False))
    labels = test.y[pick]
    written = []
    images = _small_images(test.dataset, pick)
    if images is not None:
        written.append(plots / "tsne_images.png")
        tsne_plot(
            images, labels, written[-1], seed=seed, class_names=classes, title="t-SNE of raw test images"
        )
    for name, feats, title in (
        ("softmax", probs[pick], "t-SNE of calibrated softmax"),
        ("embeddings", test.embeddings[pick], "t-SNE of penultimate-layer embeddings"),
    ):
        written.append(plots / f"tsne_{name}.png")
        tsne_plot(feats, labels, written[-1], seed=seed, class_names=classes, title=title)
    return written


def _small_images(dataset: Any, pick: np.ndarray, side: int = 32) -> np.ndarray | None:
    """The model's input images shrunk to side x side (t-SNE on raw pixels needs few of them)."""
    import cv2

    base = getattr(dataset, "base", dataset)
    if not hasattr(base, "load"):
        log.info("dataset cannot load raw images; skipping the raw-image t-SNE")
        return None
    return np.stack(
        [
            cv2.resize(base.load(int(i)), (side, side), interpolation=cv2.INTER_AREA)
            .astype(np.float32)
            .ravel()
            for i in pick
        ]
    )


def _per_item(test: Any, frames: list[str], result: Any, classes: list[str], knn: np.ndarray) -> pd.DataFrame:
    names = np.asarray(classes, dtype=object)
    probs = result.probs_test
    df = pd.DataFrame(
        {
            "path": test.items["path"].astype(str).to_numpy(),
            "frame": frames,
            "y_true": names[test.y],
            "y_pred": names[probs.argmax(1)],
            "confidence": probs.max(1),
        }
    )
    for method, sets in result.sets_test.items():
        df[f"set_{method}"] = ["|".join(names[row]) for row in sets]
        df[f"set_size_{method}"] = sets.sum(1)
    for kind, p in result.p_correct_test.items():
        df[f"p_correct_{kind}"] = p
    df["abstain"] = result.abstain_test
    df["knn_pred"] = names[knn.argmax(1)]
    if result.combined_test is not None:
        df["combined_pred"] = names[result.combined_test]
    return df


def _regression_from_csv(run_dir: Path, alpha: float) -> dict[str, Any]:
    """Conformal intervals for a regression run from its predictions_val.csv and predictions_test.csv."""
    frames = {}
    for split in ("val", "test"):
        path = run_dir / f"predictions_{split}.csv"
        if not path.is_file():
            raise InputError(f"missing: run `sonokit evaluate {run_dir} --split {split}` first", path)
        frames[split] = reported_rows(path)
    sigma = next((c for c in ("y_std", "sigma", "pred_std") if c in frames["val"].columns), None)
    return regression_summary(
        frames["val"]["y_pred"],
        frames["val"]["y_true"],
        frames["test"]["y_pred"],
        frames["test"]["y_true"],
        alpha,
        sigma_val=frames["val"][sigma].clip(lower=1e-6) if sigma else None,
        sigma_test=frames["test"][sigma].clip(lower=1e-6) if sigma else None,
    )


def reported_rows(path: str | Path) -> pd.DataFrame:
    """A regression run's predictions CSV as reported: one row per video (its `all` row) where frames are
    listed, the clinically reported value; only rows with both y_true and y_pred. The app's EF interval reads
    validation the same way, so its interval is the one this analysis reports."""
    df = pd.read_csv(path)
    if not {"y_true", "y_pred"} <= set(df.columns):
        raise InputError("needs numeric y_true and y_pred columns", path)
    if "frame" in df.columns and (df["frame"].astype(str) == VIDEO_ROW).any():
        df = df[df["frame"].astype(str) == VIDEO_ROW]
    return df.dropna(subset=["y_true", "y_pred"])


def _finite(obj: Any) -> Any:
    """NaN/inf become None so uncertainty.json is strict JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
