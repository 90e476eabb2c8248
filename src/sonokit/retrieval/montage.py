"""A query image beside its nearest known cases, with captions (label, distance), as one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sonokit.errors import InputError
from sonokit.utils import atomic_path


def _as_image(img: np.ndarray | str | Path) -> np.ndarray:
    if isinstance(img, (str, Path)):
        from PIL import Image

        try:
            with Image.open(img) as im:
                return np.asarray(im.convert("RGB"))
        except OSError as err:
            raise InputError(f"cannot read image: {err}", img) from err
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):  # (C, H, W) tensor layout
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise InputError(f"cannot show an array of shape {arr.shape} as an image")
    return arr


def montage(
    query_image: np.ndarray | str | Path,
    neighbour_images: Sequence[np.ndarray | str | Path],
    captions: Sequence[str],
    out_png: str | Path,
    query_caption: str = "query",
) -> Path:
    """One row: the query, then each neighbour with its caption. Images may be arrays or file paths."""
    from matplotlib.figure import Figure

    if len(captions) != len(neighbour_images):
        raise InputError(f"{len(neighbour_images)} neighbour images but {len(captions)} captions")
    images = [_as_image(query_image)] + [_as_image(i) for i in neighbour_images]
    titles = [query_caption, *captions]
    fig = Figure(figsize=(2.2 * len(images), 2.6), dpi=100, layout="constrained")
    for i, (img, title) in enumerate(zip(images, titles, strict=True)):
        ax = fig.add_subplot(1, len(images), i + 1)
        limits = {"vmin": 0, "vmax": 255} if img.dtype == np.uint8 else {}
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, **(limits if img.ndim == 2 else {}))
        ax.set_title(title, fontsize=8, color="C3" if i == 0 else "black")
        ax.axis("off")
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    return out_png
