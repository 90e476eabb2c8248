"""Patient-level splits: no patient's images ever land on both sides of a train/test boundary.

Images of one patient are near-duplicates; splitting them by image inflates test scores. Every function here
takes `groups` (patient ids) and keeps each group whole.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sonokit.data.tables import SPLITS, normalise_split, path_stem
from sonokit.errors import InputError
from sonokit.utils import get_logger

log = get_logger(__name__)

_EMPTY_SPLIT_COST = 1e3
_TRIAL_CHUNK = 256


def _encode(values: Sequence | np.ndarray | None, n: int) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=np.int64)
    codes, _ = pd.factorize(pd.Series(np.asarray(values, dtype=object)).astype(str), sort=True)
    return codes.astype(np.int64)


def stratified_group_kfold(
    labels: Sequence | np.ndarray | None, groups: Sequence | np.ndarray, k: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train_idx, test_idx) folds from sklearn's StratifiedGroupKFold, shuffled with `seed`.

    Each group appears in exactly one test fold; classes keep roughly their overall proportions per fold.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.asarray(groups, dtype=object).astype(str)
    n_groups = len(np.unique(groups))
    if k < 2:
        raise InputError(f"k-fold needs k >= 2, got {k}")
    if n_groups < k:
        raise InputError(
            f"cannot make {k} folds from {n_groups} groups (patients): need at least one per fold"
        )
    y = _encode(labels, len(groups))
    if len(y) != len(groups):
        raise InputError(f"labels ({len(y)}) and groups ({len(groups)}) differ in length")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class has only n members": expected for rare classes, folds stay group-correct.
        warnings.filterwarnings("ignore", message=".*least populated class.*", category=UserWarning)
        folds = list(cv.split(np.zeros(len(y)), y, groups))
    return [(np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64)) for tr, te in folds]


def _split_cost(counts: np.ndarray, class_share: np.ndarray, target: float, total: float) -> np.ndarray:
    """Cost of one split given its class counts (..., K): class-proportion L1 deviation + size deviation."""
    size = counts.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = counts / size[..., None]
    class_dev = np.abs(share - class_share).sum(axis=-1)
    cost = class_dev + np.abs(size / total - target)
    return np.where(size > 0, cost, _EMPTY_SPLIT_COST)


def _costs(assign: np.ndarray, counts: np.ndarray, fractions: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Total cost of each row of `assign` (T, G) of split indices, given per-group class counts (G, K)."""
    total = counts.sum()
    class_share = counts.sum(axis=0) / total
    cost = np.zeros(assign.shape[0])
    for s in np.flatnonzero(active):
        split_counts = (assign == s).astype(np.float64) @ counts  # (T, K)
        cost += _split_cost(split_counts, class_share, fractions[s], total)
    return cost


def _hill_climb(
    assign: np.ndarray, counts: np.ndarray, fractions: np.ndarray, active: np.ndarray, max_moves: int
) -> tuple[np.ndarray, float]:
    """Move one group at a time (the move that lowers the cost most) until no move helps."""
    assign = assign.copy()
    total = counts.sum()
    class_share = counts.sum(axis=0) / total
    splits = np.flatnonzero(active)
    split_counts = np.stack([counts[assign == s].sum(axis=0) for s in range(len(fractions))]).astype(
        np.float64
    )

    def h(c: np.ndarray, s: int) -> np.ndarray:
        return _split_cost(c, class_share, fractions[s], total)

    for _ in range(max_moves):
        current = np.array([h(split_counts[s], s) if active[s] else 0.0 for s in range(len(fractions))])
        # removing each group from its split
        removed = split_counts[assign] - counts  # (G, K)
        gain_remove = np.empty(len(assign))
        for s in splits:
            members = assign == s
            gain_remove[members] = h(removed[members], s) - current[s]
        best_delta, best_move = -1e-12, None
        for t in splits:
            delta = gain_remove + (h(split_counts[t] + counts, t) - current[t])
            delta[assign == t] = np.inf
            g = int(np.argmin(delta))
            if delta[g] < best_delta:
                best_delta, best_move = float(delta[g]), (g, t)
        if best_move is None:
            break
        g, t = best_move
        split_counts[assign[g]] -= counts[g]
        split_counts[t] += counts[g]
        assign[g] = t
    final = float(sum(h(split_counts[s], s) for s in splits))
    return assign, final


def balanced_group_split(
    labels: Sequence | np.ndarray | None,
    groups: Sequence | np.ndarray,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    n_trials: int = 2000,
) -> np.ndarray:
    """Assign whole groups to train/val/test so each split's class proportions and size are near the targets.

    Random search over `n_trials` group assignments (drawn with the target fractions), then a greedy refinement
    of the best few that moves one group at a time while the cost (sum over splits of the L1 deviation of class
    proportions from the overall ones, plus the deviation of the split's share of items from its fraction) drops.
    A zero fraction leaves that split empty. Returns an array of "train"/"val"/"test" per item.
    """
    groups = np.asarray(groups, dtype=object).astype(str)
    n = len(groups)
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or (fractions < 0).any() or fractions.sum() <= 0:
        raise InputError(
            f"fractions must be three non-negative numbers (train, val, test), got {list(fractions)}"
        )
    fractions = fractions / fractions.sum()
    active = fractions > 0
    if n == 0:
        return np.array([], dtype="<U5")
    g_idx = _encode(groups, n)
    y = _encode(labels, n)
    if len(y) != n:
        raise InputError(f"labels ({len(y)}) and groups ({n}) differ in length")
    n_groups = int(g_idx.max()) + 1
    if n_groups < active.sum():
        raise InputError(
            f"cannot fill {int(active.sum())} splits from {n_groups} group(s) (patients); "
            "give more patients or set a split's fraction to 0"
        )
    counts = np.zeros((n_groups, int(y.max()) + 1), dtype=np.float64)
    np.add.at(counts, (g_idx, y), 1.0)

    rng = np.random.default_rng(seed)
    best_assign: list[np.ndarray] = []
    best_cost: list[float] = []
    for start in range(0, max(n_trials, 1), _TRIAL_CHUNK):
        t = min(_TRIAL_CHUNK, max(n_trials, 1) - start)
        trials = rng.choice(len(fractions), size=(t, n_groups), p=fractions)
        cost = _costs(trials, counts, fractions, active)
        for i in np.argsort(cost)[:5]:
            best_assign.append(trials[i])
            best_cost.append(float(cost[i]))
        keep = np.argsort(best_cost)[:5]
        best_assign = [best_assign[i] for i in keep]
        best_cost = [best_cost[i] for i in keep]

    refined = [_hill_climb(a, counts, fractions, active, max_moves=4 * n_groups) for a in best_assign]
    assign, cost = min(refined, key=lambda r: r[1])
    log.debug("balanced_group_split: %d groups, cost %.4f", n_groups, cost)
    names = np.array(SPLITS, dtype="<U5")
    return names[assign[g_idx]]


def split_deviation(labels: Sequence | np.ndarray, splits: Sequence | np.ndarray) -> float:
    """Mean over splits of the L1 distance between the split's class proportions and the overall ones.

    A yardstick for comparing split methods (0 = every split has exactly the overall class mix).
    """
    labels = np.asarray(labels, dtype=object).astype(str)
    splits = np.asarray(splits, dtype=object).astype(str)
    overall = pd.Series(labels).value_counts(normalize=True)
    devs = []
    for s in np.unique(splits):
        share = (
            pd.Series(labels[splits == s]).value_counts(normalize=True).reindex(overall.index, fill_value=0)
        )
        devs.append(float(np.abs(share - overall).sum()))
    return float(np.mean(devs))


def _groups_of(df: pd.DataFrame) -> pd.Series:
    if "group" in df.columns:
        return df["group"].astype(str)
    return df["path"].astype(str).map(path_stem)


def assign_splits(
    df: pd.DataFrame, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0, n_trials: int = 2000
) -> pd.DataFrame:
    """Fill the `split` column by patient, keeping every split the table already has.

    - rows of a group that already has a split join it (a patient is never divided);
    - the remaining rows are split by balanced_group_split with `fractions`;
    - when the table gives only train and test (FETAL_PLANES_DB), val is carved from train by group, with the
      val fraction relative to the whole table.
    """
    out = df.copy().reset_index(drop=True)
    split = (
        normalise_split(out["split"], "index", "split")
        if "split" in out.columns
        else pd.Series([""] * len(out))
    )
    groups = _groups_of(out)
    labels = out["label"].astype(str) if "label" in out.columns else None
    fractions = np.asarray(fractions, dtype=float)

    given = split != ""
    leaked = (split[given].groupby(groups[given]).nunique() > 1).sum()
    if leaked:
        log.warning(
            "%d group(s) already appear in more than one split in the given table; kept as given", leaked
        )
    if given.any() and (~given).any():
        group_split = split[given].groupby(groups[given]).agg(lambda s: s.value_counts().index[0])
        inherit = (~given) & groups.isin(group_split.index)
        split[inherit] = groups[inherit].map(group_split)
        given = split != ""
    originally_complete = bool(given.all())
    if (~given).any():
        rows = np.flatnonzero(~given.to_numpy())
        sub_labels = labels.iloc[rows].to_numpy() if labels is not None else None
        split.iloc[rows] = balanced_group_split(
            sub_labels, groups.iloc[rows].to_numpy(), fractions, seed, n_trials
        )

    if originally_complete and fractions[1] > 0 and not (split == "val").any() and (split == "train").any():
        rows = np.flatnonzero((split == "train").to_numpy())
        n_train_groups = groups.iloc[rows].nunique()
        if n_train_groups < 2:
            log.warning("only %d training group: no validation split carved", n_train_groups)
        else:
            sub_labels = labels.iloc[rows].to_numpy() if labels is not None else None
            carve = (fractions[0], fractions[1], 0.0)
            split.iloc[rows] = balanced_group_split(
                sub_labels, groups.iloc[rows].to_numpy(), carve, seed, n_trials
            )
    out["split"] = split.astype(str).to_numpy()
    return out


def oversample_minority(df: pd.DataFrame, label_col: str = "label", seed: int = 0) -> pd.DataFrame:
    """Duplicate rows of smaller classes until every class has as many rows as the largest.

    Each minority row is repeated floor(max/n) times and a seeded random subset (without replacement) fills the
    rest, so duplicates spread evenly. Use on the training split only; a `duplicate` column marks the copies.
    """
    if label_col not in df.columns:
        raise InputError(f"cannot oversample: no {label_col!r} column")
    rng = np.random.default_rng(seed)
    base = df.reset_index(drop=True)
    base = base.assign(duplicate=base["duplicate"] if "duplicate" in base.columns else False)
    counts = base[label_col].astype(str).value_counts()
    target = int(counts.max()) if len(counts) else 0
    extra = []
    for label in sorted(counts.index):
        idx = np.flatnonzero(base[label_col].astype(str).to_numpy() == label)
        need = target - len(idx)
        if need <= 0:
            continue
        reps = np.concatenate(
            [np.tile(idx, need // len(idx)), rng.choice(idx, need % len(idx), replace=False)]
        )
        extra.append(base.iloc[np.sort(reps)].assign(duplicate=True))
    return pd.concat([base, *extra], ignore_index=True) if extra else base
