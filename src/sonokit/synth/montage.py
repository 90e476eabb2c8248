"""Contact sheets of simulated (or real, same-format) datasets with their ground truth drawn on top.

Used for the README pictures (docs/img/synth_<kind>.png) and to eyeball a dataset before training on it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from sonokit.errors import InputError
from sonokit.utils import get_logger
from sonokit.utils.paths import opencv_path, printable

log = get_logger(__name__)

_MARKERS = {
    "echo": "FileList.csv",
    "psax": "boxes.csv",
    "lus": "lus.csv",
    "fetal-planes": "FETAL_PLANES_DB_data.csv",
}


def detect_kind(folder: Path) -> str:
    """Which dataset layout a folder holds, from its index file."""
    for kind, marker in _MARKERS.items():
        if (folder / marker).is_file():
            return kind
    raise InputError(
        f"no {', '.join(_MARKERS.values())} found: not a dataset folder sonokit can draw", folder
    )


def _read_frames(path: Path, indices: list[int] | None = None) -> list[np.ndarray]:
    import cv2

    with opencv_path(path) as name:  # OpenCV crashes on a name that is not UTF-8
        cap = cv2.VideoCapture(name)
    if not cap.isOpened():
        raise InputError("OpenCV cannot open this video", path)
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise InputError("the video has no frames", path)
    if indices is None:
        return frames
    return [frames[min(i, len(frames) - 1)] for i in indices]


def _read_gray(path: Path) -> np.ndarray:
    """A grayscale image, whatever bytes its name holds, with everything outside its imaging region set to 0:
    a real dataset's images carry burned-in text (`sonokit.data.shown`)."""
    from sonokit.data.frames import read_gray_array
    from sonokit.data.shown import read_shown

    return read_gray_array(read_shown(path), path)


def _label(img: np.ndarray, text: str, color: tuple[int, int, int] = (255, 220, 0)) -> np.ndarray:
    """Caption in the top-left corner on a dark box, readable over bright speckle."""
    import cv2

    out = img.copy()
    scale = max(0.35, img.shape[0] / 420)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    out[: h + base + 6, : w + 8] = (out[: h + base + 6, : w + 8] * 0.3).astype(np.uint8)
    cv2.putText(out, text, (4, h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return out


def _balanced(table, label: str, n: int):
    """Up to n rows with the classes interleaved, so a small sheet shows every class."""
    groups = [g for _, g in table.groupby(label, sort=True)]
    rows = []
    for k in range(max(len(g) for g in groups)):
        rows += [g.iloc[k] for g in groups if k < len(g)]
    return rows[:n]


def _rgb(img: np.ndarray, scale: int) -> np.ndarray:
    import cv2

    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale != 1 else img


def _echo_tiles(folder: Path, n: int, scale: int) -> list[np.ndarray]:
    import cv2
    import pandas as pd

    from sonokit.clinical import tracing_polygon

    files = pd.read_csv(folder / "FileList.csv")
    traces = pd.read_csv(folder / "VolumeTracings.csv")
    tiles = []
    for _, row in files.head(n).iterrows():
        name = str(row["FileName"])
        name = name if name.endswith(".avi") else f"{name}.avi"
        tr = traces[traces["FileName"] == name]
        frames_idx = list(dict.fromkeys(tr["Frame"].tolist()))  # ES then ED
        imgs = _read_frames(folder / "Videos" / name, [int(f) for f in frames_idx])
        pair = []
        for f, img in zip(frames_idx, imgs, strict=True):
            big = _rgb(img, scale)
            lines = tr[tr["Frame"] == f][["X1", "Y1", "X2", "Y2"]].to_numpy(dtype=float)
            poly = (tracing_polygon(lines) + 0.5) * scale - 0.5
            cv2.polylines(
                big, [np.round(poly * 4).astype(np.int32)], True, (0, 255, 0), 1, cv2.LINE_AA, shift=2
            )
            pair.append(big)
        pair = pair[::-1]  # ED left, ES right
        pair[0] = _label(pair[0], f"ED  EF {row['EF']:.0f}%")
        pair[1] = _label(pair[1], "ES")
        tiles.append(np.concatenate(pair, axis=1))
    return tiles


def _psax_tiles(folder: Path, n: int, scale: int) -> list[np.ndarray]:
    import cv2
    import pandas as pd

    boxes = pd.read_csv(folder / "boxes.csv")
    labels = pd.read_csv(folder / "labels.csv").set_index("path")
    boxes["calcified"] = [int(labels.loc[p, "label"]) for p in boxes["path"]]
    tiles = []
    for b in _balanced(boxes, "calcified", n):
        img = _rgb(_read_gray(folder / b["path"]), scale)
        calc = int(labels.loc[b["path"], "label"]) == 1
        color = (255, 60, 60) if calc else (60, 255, 60)
        p1 = (int(round(b["x1"] * scale)), int(round(b["y1"] * scale)))
        p2 = (int(round(b["x2"] * scale)), int(round(b["y2"] * scale)))
        cv2.rectangle(img, p1, p2, color, 1)
        tiles.append(_label(img, "calcified" if calc else "normal", color))
    return tiles


def _lus_tiles(folder: Path, n: int, scale: int) -> list[np.ndarray]:
    import pandas as pd

    table = pd.read_csv(folder / "lus.csv")
    tiles = []
    from sonokit.data.shown import masked_image, region_of

    for row in _balanced(table, "label", n):
        frames = _read_frames(folder / row["path"])
        shown = masked_image(frames[len(frames) // 2], region_of(folder / row["path"]))  # no burned-in text
        img = _rgb(shown, scale)
        tiles.append(_label(img, f"score {int(row['label'])}  B {row['b_line_fraction']:.2f}"))
    return tiles


def _fetal_tiles(folder: Path, n: int, scale: int) -> list[np.ndarray]:
    import pandas as pd

    table = pd.read_csv(folder / "FETAL_PLANES_DB_data.csv", sep=";")
    tiles = []
    for _, row in table.head(n).iterrows():
        path = folder / "Images" / f"{row['Image_name']}.png"
        img = _read_gray(path)
        text = str(row["Plane"])
        if row["Brain_plane"] not in ("Not A Brain", "Other"):
            text = f"{text} ({row['Brain_plane']})"
        tiles.append(_label(_rgb(img, scale), text.replace("Fetal ", "")))
    return tiles


def _grid(tiles: list[np.ndarray], cols: int, pad: int = 4) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    rows = (len(tiles) + cols - 1) // cols
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 24, dtype=np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        sheet[y : y + t.shape[0], x : x + t.shape[1]] = t
    return sheet


def montage(
    dir_or_kind: str | Path,
    out_png: str | Path,
    n: int | None = None,
    cols: int | None = None,
    seed: int = 0,
    scale: int = 2,
) -> Path:
    """Draw a contact sheet of a dataset folder, or of a fresh small simulation when given a kind name.

    Echo tiles show ED and ES with the traced LV contour, PSAX tiles the valve box (red: calcified), LUS tiles
    the score and B-line fraction, fetal tiles the plane.
    """
    from sonokit.io import write_image
    from sonokit.synth import KINDS, make_dataset

    per_kind = {"echo": (6, 3), "psax": (12, 6), "lus": (12, 6), "fetal-planes": (12, 6)}
    simulate = {"echo": 6, "psax": 32, "lus": 30, "fetal-planes": 12}  # enough items for every class
    key = str(dir_or_kind)
    if key in KINDS or key == "fetal":
        kind = "fetal-planes" if key == "fetal" else key
        n_, cols_ = per_kind[kind]
        n, cols = n or n_, cols or cols_
        with tempfile.TemporaryDirectory(prefix="sonokit-montage-") as tmp:
            folder = make_dataset(kind, Path(tmp) / "data", n=max(n, simulate[kind]), seed=seed)
            return montage(folder, out_png, n=n, cols=cols, scale=scale)
    folder = Path(dir_or_kind)
    if not folder.is_dir():
        raise InputError(f"neither a dataset folder nor one of {', '.join(KINDS)}", folder)
    kind = detect_kind(folder)
    n_, cols_ = per_kind[kind]
    n, cols = n or n_, cols or cols_
    draw = {"echo": _echo_tiles, "psax": _psax_tiles, "lus": _lus_tiles, "fetal-planes": _fetal_tiles}[kind]
    tiles = draw(folder, n, scale)
    if not tiles:
        raise InputError("the dataset has no items to draw", folder)
    write_image(out_png, _grid(tiles, min(cols, len(tiles))))
    log.info("wrote a %s montage of %d items to %s", kind, len(tiles), printable(out_png))
    return Path(out_png)
