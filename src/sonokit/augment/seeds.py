"""Per-sample seeds: one sample's augmentation is the same whichever worker, batch order or resumed process
draws it, because its random numbers come from (run seed, item index, epoch) alone."""

from __future__ import annotations

import numpy as np


def derive_seed(seed: int, index: int = 0, epoch: int = 0) -> int:
    """A well-mixed 63-bit seed for sample `index` in `epoch` (numpy's SeedSequence hashing)."""
    state = np.random.SeedSequence([abs(int(seed)), abs(int(index)), abs(int(epoch))]).generate_state(
        1, np.uint64
    )
    return int(state[0] >> np.uint64(1))


def item_rng(seed: int, index: int = 0, epoch: int = 0) -> np.random.Generator:
    """The numpy Generator of sample `index` in `epoch` (what the numpy augmentations draw from)."""
    return np.random.default_rng(derive_seed(seed, index, epoch))
