"""The applicability check on feature arrays: calibration on validation, foreign items, save/load, bad input.

The run-level path (fitted by `sonokit uncertainty`, used by `sonokit predict --uncertainty` and the app) is
tested on a trained run in test_uncertainty.py and test_app.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sonokit.errors import InputError, ModelError
from sonokit.uncertainty.applicability import ApplicabilityScorer, conformal_threshold


def _domain(rng: np.random.Generator, n: int, dim: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian classes in a low-dimensional subspace (like trained embeddings)."""
    y = rng.integers(0, 3, n)
    basis = np.linalg.qr(np.random.default_rng(99).normal(size=(dim, 6)))[0]
    centres = np.random.default_rng(7).normal(scale=4.0, size=(3, 6))
    x = (centres[y] + rng.normal(size=(n, 6))) @ basis.T + 0.05 * rng.normal(size=(n, dim))
    return x, y


@pytest.mark.parametrize("method", ["mahalanobis", "knn"])
def test_in_domain_items_are_applicable_and_foreign_ones_are_not(method: str) -> None:
    rng = np.random.default_rng(0)
    (train, y), (val, _), (test, _) = (_domain(rng, n) for n in (600, 300, 300))
    foreign = rng.normal(scale=3.0, size=(200, 32))  # off the training subspace
    s = ApplicabilityScorer.fit(train, val, y, method=method, quantile=0.95)
    assert np.mean(s.score(val)["applicable"]) == pytest.approx(0.95, abs=0.01)  # the calibration itself
    assert 0.9 <= np.mean(s.score(test)["applicable"]) <= 0.99  # held-out in-domain items: about 95%
    far = s.score(foreign)
    assert not far["applicable"].any()
    assert np.allclose(far["applicability"], 1 / (len(val) + 1))  # beyond every validation item


def test_p_value_and_threshold_follow_the_validation_ranks() -> None:
    d = np.arange(1.0, 11.0)  # 10 sorted validation distances
    assert conformal_threshold(d, 0.5) == 6.0  # ceil(11 * 0.5) = 6th smallest
    assert conformal_threshold(d, 0.99) == 10.0  # rank beyond n: the largest
    s = ApplicabilityScorer("knn", 6.0, 0.5, d, {"bank": np.eye(2, dtype=np.float32)})
    assert s.p_value(np.array([0.5, 10.0, 10.5])).tolist() == pytest.approx([11 / 11, 2 / 11, 1 / 11])


def test_save_load_round_trip_and_other_weights_refused(tmp_path) -> None:
    rng = np.random.default_rng(1)
    (train, y), (val, _) = _domain(rng, 200), _domain(rng, 80)
    s = ApplicabilityScorer.fit(train, val, y, weights_sha256="a" * 64)
    s.save(tmp_path)
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "applicability").iterdir())
    state = json.loads((tmp_path / "applicability" / "applicability.json").read_text())
    assert state["method"] == "mahalanobis" and state["n_val"] == 80 and "99% quantile" in state["rule"]
    back = ApplicabilityScorer.load(tmp_path, "a" * 64)
    probe = _domain(rng, 20)[0]
    assert np.allclose(back.distance(probe), s.distance(probe)) and back.threshold == s.threshold
    with pytest.raises(ModelError, match="other weights"):
        ApplicabilityScorer.load(tmp_path, "b" * 64)
    with pytest.raises(InputError, match="no applicability state"):
        ApplicabilityScorer.load(tmp_path / "elsewhere")


def test_bad_input_is_refused() -> None:
    rng = np.random.default_rng(2)
    train, y = _domain(rng, 50)
    with pytest.raises(InputError, match="method"):
        ApplicabilityScorer.fit(train, train, y, method="energy")
    with pytest.raises(InputError, match="quantile"):
        ApplicabilityScorer.fit(train, train, y, quantile=1.0)
    with pytest.raises(InputError, match=r"\(N, 32\)"):
        ApplicabilityScorer.fit(train, train[:, :5], y)
    s = ApplicabilityScorer.fit(train, train, y)
    bad = train[:3].copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        s.score(bad)


def test_landmark_unet_features_are_read_from_its_wrapped_unet() -> None:
    """unet-points (lv-trace's default) wraps its U-Net in `net`: the features come from the U-Net's deepest
    block, one pooled vector (mean and std per channel) per frame, so its runs get an applicability check."""
    import torch

    from sonokit.models import build
    from sonokit.models.embedding import FeatureTap, feature_site

    model = build("unet-tiny-points", kind="landmarks", in_chans=1, points=42).eval()
    module, _ = feature_site(model)
    assert module is model.net.down[-1]
    with FeatureTap(model) as tap, torch.no_grad():
        model(torch.rand(3, 1, 32, 32))
        feats = tap.take()
    assert feats.shape == (3, 2 * 32) and np.isfinite(feats).all()
