"""Patient-level splits: no group on both sides, class balance kept, minority oversampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sonokit.data import assign_splits, balanced_group_split, oversample_minority, stratified_group_kfold
from sonokit.data.splits import split_deviation
from sonokit.errors import InputError


def _cohort(seed: int, n_groups: int = 80, n_classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Patients with 1-12 images each; a patient's images mostly share a class (as in real studies)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 13, n_groups)
    groups = np.repeat([f"p{g:03d}" for g in range(n_groups)], sizes)
    group_class = rng.choice(
        n_classes, n_groups, p=np.linspace(2, 1, n_classes) / np.linspace(2, 1, n_classes).sum()
    )
    own = np.repeat(group_class, sizes)
    labels = np.where(rng.random(len(groups)) < 0.85, own, rng.integers(0, n_classes, len(groups))).astype(
        str
    )
    return labels, groups


@pytest.mark.parametrize("seed", range(12))
def test_kfold_never_leaks_a_group_and_covers_every_item(seed: int) -> None:
    labels, groups = _cohort(seed)
    folds = stratified_group_kfold(labels, groups, k=5, seed=seed)
    assert len(folds) == 5
    seen = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(seen), np.arange(len(labels)))  # test folds partition the items
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert len(train) + len(test) == len(labels)


def test_kfold_keeps_class_proportions_and_is_seeded() -> None:
    labels, groups = _cohort(0, n_groups=200)
    overall = pd.Series(labels).value_counts(normalize=True)
    folds = stratified_group_kfold(labels, groups, k=4, seed=3)
    for _, test in folds:
        share = pd.Series(labels[test]).value_counts(normalize=True).reindex(overall.index, fill_value=0)
        assert np.abs(share - overall).max() < 0.05
    again = stratified_group_kfold(labels, groups, k=4, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = stratified_group_kfold(labels, groups, k=4, seed=4)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))


def test_kfold_needs_enough_groups() -> None:
    with pytest.raises(InputError, match="cannot make 5 folds from 3 groups"):
        stratified_group_kfold(["a", "b", "a", "b"], ["x", "y", "z", "z"], k=5, seed=0)


def test_balanced_split_beats_random_group_split() -> None:
    wins, ours, random = 0, [], []
    for seed in range(8):
        labels, groups = _cohort(seed, n_groups=60)
        split = balanced_group_split(labels, groups, (0.7, 0.15, 0.15), seed=seed, n_trials=500)
        for g in np.unique(groups):
            assert len(set(split[groups == g])) == 1  # a patient is never divided
        assert {str(s) for s in split} == {"train", "val", "test"}
        assert abs(np.mean(split == "train") - 0.7) < 0.05
        assert abs(np.mean(split == "val") - 0.15) < 0.05
        rng = np.random.default_rng(100 + seed)
        uniq = np.unique(groups)
        rand_of_group = dict(
            zip(uniq, rng.choice(["train", "val", "test"], len(uniq), p=[0.7, 0.15, 0.15]), strict=True)
        )
        rand = np.array([rand_of_group[g] for g in groups])
        ours.append(split_deviation(labels, split))
        random.append(split_deviation(labels, rand))
        wins += ours[-1] < random[-1]
    assert wins == 8
    assert np.mean(ours) < 0.2 * np.mean(random)  # measured: 0.015 vs 0.33


def test_balanced_split_zero_fraction_and_too_few_groups() -> None:
    labels, groups = _cohort(1, n_groups=20)
    split = balanced_group_split(labels, groups, (0.8, 0.2, 0.0), seed=0, n_trials=100)
    assert set(split) == {"train", "val"}
    with pytest.raises(InputError, match="cannot fill 3 splits from 2 group"):
        balanced_group_split(["a", "b", "a"], ["x", "y", "y"], seed=0)


def test_assign_splits_keeps_given_fills_by_group_and_carves_val() -> None:
    labels, groups = _cohort(2, n_groups=50)
    df = pd.DataFrame({"path": [f"/x/{i}.png" for i in range(len(labels))], "label": labels, "group": groups})
    df["split"] = ""
    first = groups == groups[0]
    df.loc[np.flatnonzero(first)[0], "split"] = "TEST"  # one image of the first patient already in test
    out = assign_splits(df, seed=0, n_trials=200)
    assert (out.loc[first, "split"] == "test").all()  # the rest of that patient follows it
    assert out.groupby("group")["split"].nunique().max() == 1
    assert set(out["split"]) == {"train", "val", "test"}

    # FETAL_PLANES_DB style: only train/test given -> val carved from train, test untouched
    given = pd.DataFrame({"label": labels, "group": groups})
    test_groups = set(np.unique(groups)[::5])
    given["split"] = ["test" if g in test_groups else "train" for g in groups]
    out = assign_splits(given, fractions=(0.7, 0.15, 0.15), seed=1, n_trials=200)
    assert (out["split"] == "test").tolist() == (given["split"] == "test").tolist()
    val = out["split"] == "val"
    assert val.any() and abs(val.mean() - 0.15) < 0.06
    assert out.groupby("group")["split"].nunique().max() == 1


def test_oversample_minority_equalises_and_marks_duplicates() -> None:
    df = pd.DataFrame({"path": [f"{i}.png" for i in range(13)], "label": ["a"] * 10 + ["b"] * 2 + ["c"]})
    out = oversample_minority(df, seed=0)
    assert out["label"].value_counts().to_dict() == {"a": 10, "b": 10, "c": 10}
    assert out.iloc[:13]["path"].tolist() == df["path"].tolist() and not out.iloc[:13]["duplicate"].any()
    assert out["duplicate"].sum() == 17
    counts_b = out[out["label"] == "b"]["path"].value_counts()
    assert sorted(counts_b.tolist()) == [5, 5]  # spread evenly, not one row copied 9 times
    assert out.equals(oversample_minority(df, seed=0))
