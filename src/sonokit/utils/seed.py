"""One place that seeds every random number generator sonokit uses."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int, deterministic: bool = False) -> np.random.Generator:
    """Seed python, numpy and torch; return a numpy Generator for code that takes an explicit one."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - seeds libraries that still use the legacy global RNG
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # torch is a hard dependency, but seeding should not be the place that fails
        pass
    else:
        torch.manual_seed(seed)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)
