"""Is this input like the model's training data? A feature-space distance calibrated on validation.

A classifier answers every input with some class, confidently or not: an echo frame fed to a fetal-plane model
comes out "femur 0.71". Softmax confidence does not see it; the penultimate-layer embedding does. Two distances:

    mahalanobis   to the nearest class mean under one shared covariance (Lee et al. 2018), the covariance shrunk
                  with Ledoit-Wolf so a few hundred training items suffice for a 512-d embedding
    knn           to the k-th nearest training embedding after L2 normalisation (Sun et al. 2022)

Calibration on the validation split (in-domain items the model never trained on): the threshold is the
`quantile` (default 0.99, conformal rank) of their distances, so about 99% of in-domain items are applicable.
Per item, `applicability` is the share of validation items that look at least as foreign, (1 + #{d_val >= d}) /
(n_val + 1), a conformal p-value in (0, 1]; `applicable` is d <= threshold.

Saved with the run in RUN/applicability/ (applicability.json + applicability.npz: the fitted means, precision or
feature bank and the validation distances; no pickle), tied to the weights' sha256 like sonokit.uncertainty.scorer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonokit.errors import InputError, ModelError
from sonokit.utils import atomic_path, atomic_write_json, get_logger

log = get_logger(__name__)

APPLICABILITY_DIR = "applicability"
_STATE, _ARRAYS = "applicability.json", "applicability.npz"
METHODS = ("mahalanobis", "knn")


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _as_features(x: Any, dim: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or (dim is not None and x.shape[1] != dim):
        want = f"(N, {dim})" if dim is not None else "a non-empty (N, D)"
        raise InputError(f"embeddings must be {want} arrays, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InputError("embeddings contain NaN or infinite values")
    return x


@dataclass
class ApplicabilityScorer:
    """Distance of an embedding to the training data, and the validation threshold above which it is foreign."""

    method: str
    threshold: float
    quantile: float
    dist_val: np.ndarray  # validation distances, sorted (the calibration set)
    arrays: dict[
        str, np.ndarray
    ]  # mahalanobis: means, precision; knn: bank (L2-normalised training features)
    k: int = 1
    n_train: int = 0
    weights_sha256: str = ""
    _bank: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        train: np.ndarray,
        val: np.ndarray,
        labels: np.ndarray | None = None,
        method: str = "mahalanobis",
        quantile: float = 0.99,
        k: int = 5,
        weights_sha256: str = "",
    ) -> ApplicabilityScorer:
        """Fit on training embeddings (labels: per-class means for mahalanobis), calibrate on validation ones."""
        if method not in METHODS:
            raise InputError(f"applicability method must be one of {METHODS}, got {method!r}")
        if not 0.0 < quantile < 1.0:
            raise InputError(f"the applicability quantile must lie strictly between 0 and 1, got {quantile}")
        train = _as_features(train)
        val = _as_features(val, train.shape[1])
        if method == "mahalanobis":
            arrays = _fit_mahalanobis(train, labels)
        else:
            arrays = {"bank": _l2(train).astype(np.float32)}
        scorer = cls(method, math.inf, quantile, np.empty(0), arrays, max(1, min(k, len(train))), len(train),
                     weights_sha256)  # fmt: skip
        d_val = np.sort(scorer.distance(val))
        scorer.dist_val = d_val
        scorer.threshold = conformal_threshold(d_val, quantile)
        return scorer

    # ------------------------------------------------------------------ scoring
    @property
    def dim(self) -> int:
        a = self.arrays["means"] if self.method == "mahalanobis" else self.arrays["bank"]
        return int(a.shape[1])

    def distance(self, emb: np.ndarray) -> np.ndarray:
        """(N,) distance to the training data (larger: more foreign)."""
        x = _as_features(emb, self.dim)
        if self.method == "mahalanobis":
            means, prec = self.arrays["means"], self.arrays["precision"]
            best = np.full(len(x), np.inf)
            for mu in means:  # one class at a time bounds memory at (N, D)
                diff = x - mu
                best = np.minimum(best, np.einsum("nd,de,ne->n", diff, prec, diff))
            return np.sqrt(np.maximum(best, 0.0))
        from sonokit.retrieval.index import EmbeddingIndex

        if self._bank is None:
            self._bank = EmbeddingIndex.build(self.arrays["bank"], metric="euclidean", backend="numpy")
        _, dist = self._bank.query(_l2(x).astype(np.float32), self.k)
        return dist[:, -1].astype(np.float64)

    def score(self, emb: np.ndarray) -> dict[str, np.ndarray]:
        """Per item: `distance`, `applicability` (conformal p-value against validation) and `applicable`."""
        d = self.distance(emb)
        return {"distance": d, "applicability": self.p_value(d), "applicable": d <= self.threshold}

    def p_value(self, d: np.ndarray) -> np.ndarray:
        """(1 + #{validation distances >= d}) / (n_val + 1)."""
        d = np.asarray(d, dtype=np.float64)
        n = len(self.dist_val)
        at_least = n - np.searchsorted(self.dist_val, d, side="left")
        return (1.0 + at_least) / (n + 1.0)

    def rule(self) -> str:
        return (
            f"{self.method} distance <= {self.threshold:.4g} (the {self.quantile:.0%} quantile of "
            f"{len(self.dist_val)} validation items)"
        )

    # ------------------------------------------------------------------ persistence
    def save(self, run_dir: str | Path) -> Path:
        folder = Path(run_dir) / APPLICABILITY_DIR
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / _ARRAYS) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, dist_val=self.dist_val, **self.arrays)
        state = {
            "method": self.method,
            "threshold": self.threshold if math.isfinite(self.threshold) else None,
            "quantile": self.quantile,
            "k": self.k,
            "n_train": self.n_train,
            "n_val": int(len(self.dist_val)),
            "weights_sha256": self.weights_sha256,
            "rule": self.rule(),
        }
        return atomic_write_json(folder / _STATE, state)  # last: its presence means the arrays are complete

    @classmethod
    def load(cls, run_dir: str | Path, weights_sha256: str | None = None) -> ApplicabilityScorer:
        folder = Path(run_dir) / APPLICABILITY_DIR
        if not (folder / _STATE).is_file() or not (folder / _ARRAYS).is_file():
            raise InputError(f"no applicability state: run `sonokit uncertainty {run_dir}` first", folder)
        try:
            state = json.loads((folder / _STATE).read_text(encoding="utf-8"))
            with np.load(folder / _ARRAYS, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
            method = state["method"]
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"cannot read the applicability state: {err}", folder) from err
        if weights_sha256 is not None and state.get("weights_sha256") != weights_sha256:
            raise ModelError(f"{folder}: fitted for other weights (the run was retrained); fit it again")
        dist_val = arrays.pop("dist_val")
        threshold = state.get("threshold")
        return cls(
            method=method,
            threshold=math.inf if threshold is None else float(threshold),
            quantile=float(state["quantile"]),
            dist_val=dist_val.astype(np.float64),
            arrays=arrays,
            k=int(state.get("k", 1)),
            n_train=int(state.get("n_train", 0)),
            weights_sha256=str(state.get("weights_sha256", "")),
        )


def score_set(scorer: ApplicabilityScorer, emb: np.ndarray) -> tuple[bool, float]:
    """One verdict for a set of items from one input (a cine's frames or clips): applicable when at least half
    of them are, with the median of their applicability."""
    fit = scorer.score(emb)
    return bool(np.mean(fit["applicable"]) >= 0.5), float(np.median(fit["applicability"]))


def conformal_threshold(sorted_scores: np.ndarray, quantile: float) -> float:
    """The ceil((n + 1) q)-th smallest calibration score, or the largest when n is too small for that rank."""
    n = len(sorted_scores)
    if n == 0:
        return math.inf
    rank = min(n, math.ceil((n + 1) * quantile))
    return float(sorted_scores[rank - 1])


def _fit_mahalanobis(train: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    """Class means (one mean when labels are missing) and the precision of the pooled, Ledoit-Wolf shrunk
    within-class covariance."""
    from sklearn.covariance import LedoitWolf

    y = np.zeros(len(train), np.int64) if labels is None else np.asarray(labels).astype(np.int64).ravel()
    if y.size != len(train):
        raise InputError(f"{len(train)} training embeddings but {y.size} labels")
    known = y >= 0
    if not known.any():
        y, known = np.zeros(len(train), np.int64), np.ones(len(train), bool)
    classes = np.unique(y[known])
    means = np.stack([train[y == c].mean(axis=0) for c in classes])
    centred = train[known] - means[np.searchsorted(classes, y[known])]
    lw = LedoitWolf(assume_centered=True).fit(centred)
    return {"means": means, "precision": lw.precision_}


# ---------------------------------------------------------------------------------------------- run folders


#: items per split embedded to fit a check (a seeded sample when a split is larger)
MAX_FIT_ITEMS = 4000


def fit_for_run(
    run: Any,
    train: Any | None = None,
    val: Any | None = None,
    method: str = "mahalanobis",
    quantile: float = 0.99,
    save: bool = True,
    max_items: int = MAX_FIT_ITEMS,
) -> ApplicabilityScorer:
    """Fit a run's scorer from its training and validation embeddings (sonokit.retrieval.runs.SplitOutputs;
    computed here when not given, from the run's own splits) and save it in RUN/applicability/.

    Any task: a classifier gets one mean per class; a regression or segmentation run (EF, LV, valve detector)
    one mean, with features read where sonokit.models.embedding says. At most `max_items` items per split
    (a seeded sample) are embedded: the covariance and the 99% quantile need hundreds, not a whole archive."""
    from sonokit.core.run import weights_fingerprint

    if train is None or val is None:
        from sonokit.retrieval.runs import run_splits

        splits = run_splits(run)
        missing = [s for s in ("train", "val") if s not in splits or not len(splits[s])]
        if missing:
            raise InputError(
                f"the dataset has no {' or '.join(missing)} split: applicability needs both",
                run.task.cfg.data,
            )
        sample = {s: _sample(splits[s], max_items, run.task.cfg.seed) for s in ("train", "val")}
        if train is None:
            train = _embed(run, sample["train"], "embed train")
        if val is None:
            val = _embed(run, sample["val"], "embed val")
    scorer = ApplicabilityScorer.fit(
        train.embeddings, val.embeddings, train.y, method, quantile,
        weights_sha256=weights_fingerprint(run.run_dir),
    )  # fmt: skip
    if save:
        scorer.save(run.run_dir)
    return scorer


@dataclass
class Embedded:
    """Features of item rows, with class labels when the run is a classifier (else None)."""

    embeddings: np.ndarray
    y: np.ndarray | None


def _sample(items: Any, n: int, seed: int) -> Any:
    return items if len(items) <= n else items.sample(n=n, random_state=seed).sort_index()


def _embed(run: Any, items: Any, desc: str) -> Any:
    """A classifier's head embeddings and labels (retrieval's pass), else the features of any other task."""
    from sonokit.retrieval.runs import infer_with_embeddings

    if run.task.kind == "classification" and run.task.classes:
        return infer_with_embeddings(run, items, desc=desc)
    return Embedded(infer_features(run, items, desc), None)


def infer_features(run: Any, items: Any, desc: str = "embed") -> np.ndarray:
    """(N, D) features of item rows, in row order, through the task's own dataset and inference loop."""
    from sonokit.core.loop import infer_items
    from sonokit.models.embedding import FeatureTap

    with FeatureTap(run.model) as tap:
        _, collected, _ = infer_items(run, items, desc=desc)
        feats = tap.take()
    if len(feats) != len(collected["index"]):
        raise ModelError(
            f"{len(feats)} feature rows for {len(collected['index'])} items: one forward per batch?"
        )
    return feats[np.argsort(collected["index"], kind="stable")].astype(np.float32)


def load_or_fit(run: Any) -> ApplicabilityScorer:
    """RUN/applicability/ when it matches the weights, else fitted now (needs the run's training data) and saved."""
    from sonokit.core.run import weights_fingerprint

    try:
        return ApplicabilityScorer.load(run.run_dir, weights_fingerprint(run.run_dir))
    except (InputError, ModelError) as err:
        log.info("%s: fitting the applicability check now", str(err).splitlines()[0])
    return fit_for_run(run)


def load_check(run: Any) -> ApplicabilityScorer | None:
    """`load_or_fit`, or None with a warning when the run's check cannot be had (its training data is gone):
    prediction then goes on without one, and says so."""
    from sonokit.errors import SonokitError

    try:
        return load_or_fit(run)
    except (SonokitError, OSError) as err:
        log.warning("%s: answers without an applicability check (%s)", run.run_dir, str(err).splitlines()[0])
        return None
