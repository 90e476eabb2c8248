"""Image folders: one sub-folder per class (torchvision's ImageFolder layout), optionally under train/val/test.

Accepted layouts:
    root/<class>/<file>                     -> split ""
    root/<class>/<patient>/<file>           -> group = <patient>
    root/{train,val,test}/<class>/<file>    -> split from the top folder
Files directly inside <class> are their own group (file stem), which is only safe when each image is a different
patient; nest by patient to keep patients together when splitting.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sonokit.data.tables import DICOM_EXTS, IMAGE_EXTS, SPLITS, VIDEO_EXTS
from sonokit.data.validate import require_known_labels
from sonokit.errors import InputError

MEDIA_EXTS = IMAGE_EXTS | VIDEO_EXTS | DICOM_EXTS


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _media_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in MEDIA_EXTS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _rows_for_class(class_dir: Path, label: str, split: str) -> list[dict]:
    rows = []
    for file in _media_files(class_dir):
        rel = file.relative_to(class_dir)
        path = file.resolve()
        # a flat class folder has no patients: the file is its group (the stem of the path the index keeps, so
        # a symlinked file is recognised as its own group by sonokit.data.leakage.per_file_groups)
        group = rel.parts[0] if len(rel.parts) > 1 else path.stem
        rows.append({"path": str(path), "label": label, "group": group, "split": split})
    return rows


def looks_like_image_folder(root: str | Path) -> bool:
    """True when `root` has at least one visible sub-folder holding images or videos (used by load_index)."""
    root = Path(root)
    if not root.is_dir():
        return False
    return any(_media_files(d) for d in _visible_dirs(root))


def read_image_folder(root: str | Path, classes: list[str] | None = None) -> pd.DataFrame:
    """Index a class-per-sub-folder tree; `classes` (when given) must cover every sub-folder name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("image folder not found" if not root.exists() else "not a folder", root)
    top = _visible_dirs(root)
    split_layout = bool(top) and all(d.name.lower() in SPLITS for d in top)
    rows: list[dict] = []
    if split_layout:
        for split_dir in top:
            for class_dir in _visible_dirs(split_dir):
                rows += _rows_for_class(class_dir, class_dir.name, split_dir.name.lower())
    else:
        for class_dir in top:
            rows += _rows_for_class(class_dir, class_dir.name, "")
    if not rows:
        raise InputError(
            "no images found: expected one sub-folder per class holding image or video files "
            f"({', '.join(sorted(IMAGE_EXTS))}, ...)",
            root,
        )
    df = pd.DataFrame(rows, columns=["path", "label", "group", "split"])
    if classes is not None:
        require_known_labels(df["label"], classes, root)
    return df
