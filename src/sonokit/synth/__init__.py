"""`sonokit synth`: an ultrasound simulator with exact ground truth that writes the real datasets' formats.

Simulated data is for checking pipelines end to end (loaders, training, metrics), not for judging clinical
performance. Every dataset is deterministic in its seed, and case i depends only on (seed, i).
"""

from __future__ import annotations

from pathlib import Path

from sonokit.errors import InputError
from sonokit.synth.bmode import Acquisition, BModeRenderer, Tissue, random_acquisition, render_bmode
from sonokit.synth.echo import make_echo_dataset, render_echo, sample_echo_case
from sonokit.synth.fetal import make_fetal_dataset, render_fetal, sample_fetal_case
from sonokit.synth.lus import make_lus_dataset, render_lus, sample_lus_case
from sonokit.synth.montage import montage
from sonokit.synth.psax import make_psax_dataset, render_psax
from sonokit.synth.psax import sample_frame as sample_psax_frame
from sonokit.synth.scan import ProbeGeometry, scan_converter

KINDS = ("echo", "psax", "lus", "fetal-planes")
DEFAULT_SIZE = {"echo": 112, "psax": 128, "lus": 128, "fetal-planes": 160}
DEFAULT_N = {"echo": 16, "psax": 32, "lus": 24, "fetal-planes": 36}

_MAKERS = {
    "echo": make_echo_dataset,
    "psax": make_psax_dataset,
    "lus": make_lus_dataset,
    "fetal-planes": make_fetal_dataset,
}


def make_dataset(
    kind: str,
    out: str | Path,
    n: int | None = None,
    seed: int = 0,
    size: int | None = None,
    overwrite: bool = False,
    **options,
) -> Path:
    """Write a simulated dataset of `kind` (one of KINDS) to `out`; defaults from DEFAULT_N / DEFAULT_SIZE.

    `options` go to the kind's maker (echo: realism, convention, fps_range, max_rotation_deg).
    """
    if kind not in _MAKERS:
        raise InputError(f"unknown phantom {kind!r}; choose one of {', '.join(KINDS)}")
    n = DEFAULT_N[kind] if n is None else n
    size = DEFAULT_SIZE[kind] if size is None else size
    return _MAKERS[kind](out, n=n, seed=seed, size=size, overwrite=overwrite, **options)


__all__ = [
    "DEFAULT_N",
    "DEFAULT_SIZE",
    "KINDS",
    "Acquisition",
    "BModeRenderer",
    "ProbeGeometry",
    "Tissue",
    "make_dataset",
    "make_echo_dataset",
    "make_fetal_dataset",
    "make_lus_dataset",
    "make_psax_dataset",
    "montage",
    "random_acquisition",
    "render_bmode",
    "render_echo",
    "render_fetal",
    "render_lus",
    "render_psax",
    "sample_echo_case",
    "sample_fetal_case",
    "sample_lus_case",
    "sample_psax_frame",
    "scan_converter",
]
