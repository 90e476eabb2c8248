"""Convert DICOM cines and videos into an EchoNet-Dynamic style folder: `Videos/<stem>.avi` + `FileList.csv`.

Each cine is masked to its ultrasound sector, cropped, padded to a square and resized by
`sonokit.preprocess.preprocess_cine`, then written as a 3-channel MJPG AVI (what EchoNet-Dynamic ships).

Units: each output gets a sidecar `<file>.json` and FileList columns SpacingY_mm / SpacingX_mm with the pixel
spacing of the written video (the source's, times the crop-and-resize scale) and its frame rate, so volumes
measured on the AVI later are in mL like those measured on the DICOM (`sonokit.io.sidecar`).

Multi-pane screens (dual view, image + overlay) are refused unless `pane` picks one or "all" splits them.

Frame rate: by default the source rate is kept (EchoNet's own videos vary around 50 fps and its loaders read
the FPS column). With `fps`, frames are resampled in time by nearest neighbour (no blending, so no ghost
frames): output frame k shows the source frame nearest to time k / fps. A source without a frame rate is
written at `fps` or, failing that, at DEFAULT_FPS, with a warning.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from sonokit.errors import InputError
from sonokit.io.batch import BatchResult, run_batch
from sonokit.utils.logs import get_logger
from sonokit.utils.paths import printable

log = get_logger(__name__)

DEFAULT_FPS = 50.0
FILELIST_COLUMNS = [
    "FileName",
    "FrameHeight",
    "FrameWidth",
    "FPS",
    "NumberOfFrames",
    "SpacingY_mm",
    "SpacingX_mm",
]


def resample_indices(n_frames: int, fps_in: float, fps_out: float) -> np.ndarray:
    """Source frame index for each output frame when `n_frames` at `fps_in` are shown at `fps_out`."""
    if n_frames <= 0 or fps_in <= 0 or fps_out <= 0:
        raise ValueError("frame count and rates must be positive")
    n_out = max(1, int(round(n_frames * fps_out / fps_in)))
    return np.minimum(np.rint(np.arange(n_out) * fps_in / fps_out).astype(int), n_frames - 1)


def output_stem(src: Path) -> str:
    """The output name: the input's stem, with bytes that are not UTF-8 written as `\\xNN` (FileList.csv and
    the tools that read it need text)."""
    return printable(src.stem)


def _read(src: Path, fps: float | None) -> tuple[np.ndarray, float, Any]:
    """Frames (resampled to `fps` when asked), the output frame rate and the open file's header facts."""
    from sonokit.io.cine import open_cine

    with open_cine(src) as cine:
        if fps and cine.fps and cine.n_frames > 1:
            frames = np.stack(list(cine.iter_frames(resample_indices(cine.n_frames, cine.fps, fps).tolist())))
        else:
            frames = cine.read()
        out_fps = float(fps or cine.fps or DEFAULT_FPS)
        if not cine.fps and cine.n_frames > 1:
            log.warning(
                "%s: frame rate unknown; writing at %.1f fps without resampling", printable(src.name), out_fps
            )
    return frames, out_fps, cine


def _write_one(
    src: Path, frames: np.ndarray, out_dir: Path, name: str, size: int, out_fps: float,
    spacing: tuple[float, float] | None, extra: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Preprocess one pane of frames, write its video (or still) and sidecar; return its FileList row."""
    from sonokit.io.sidecar import SPACING_X, SPACING_Y, write_sidecar
    from sonokit.io.writers import write_image, write_video
    from sonokit.preprocess import preprocess_cine

    try:
        out, _geometry, transform = preprocess_cine(frames, size)
    except InputError as err:
        if err.path is None:  # preprocessing does not know the file; the user needs its name
            raise InputError(str(err), src) from err
        raise
    out = np.asarray(out)
    if out.dtype != np.uint8:
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if out.ndim == 3:  # EchoNet videos have 3 channels even though echo is grayscale
        out = np.repeat(out[..., None], 3, axis=-1)
    # The crop scales both axes by the same factor: the output pixel is pixel_size source pixels wide.
    k = transform.pixel_size
    out_spacing = (spacing[0] * k, spacing[1] * k) if spacing else None
    if len(out) == 1:  # a still frame of a study (a measurement screen, a single image): a PNG, not a video
        written = write_image(out_dir / "Images" / f"{name}.png", out[0])
    else:
        written = write_video(out_dir / "Videos" / f"{name}.avi", out, out_fps, codec="MJPG")
    try:
        write_sidecar(written, out_spacing, out_fps if len(out) > 1 else None, **extra)
    except OSError:  # a video without its units would later measure in pixels**3: neither is kept
        written.unlink(missing_ok=True)
        raise
    nan = float("nan")
    return {
        "FileName": name,
        "FrameHeight": int(out.shape[1]),
        "FrameWidth": int(out.shape[2]),
        "FPS": round(out_fps, 3),
        "NumberOfFrames": int(out.shape[0]),
        SPACING_Y: round(out_spacing[0], 6) if out_spacing else nan,
        SPACING_X: round(out_spacing[1], 6) if out_spacing else nan,
    }


def convert_panes(
    src: str | Path, out_dir: str | Path, size: int = 112, fps: float | None = None,
    pane: int | str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Convert one file; return the FileList.csv row of each output.

    A multi-pane screen (`sonokit.preprocess.panes`) is refused unless `pane` picks one (1-based, -1 the last)
    or is "all": each pane then becomes `<stem>_pane<k>`. Each output gets a sidecar `<file>.json` with its own
    pixel spacing (the source's times the crop's scale) and frame rate.
    """
    from sonokit.preprocess.panes import crop_pane, detect_panes, pick_pane

    src, out_dir = Path(src), Path(out_dir)
    frames, out_fps, cine = _read(src, fps)
    name = output_stem(src)
    spacing = cine.spacing_mm
    try:
        layout = detect_panes(frames, cine.meta.get("regions"))
        if pane == "all" and layout is not None:
            return [
                _write_one(src, crop_pane(frames, box), out_dir, f"{name}_pane{i + 1}", size, out_fps, spacing,
                           {"pane": i + 1, "panes": layout.n})
                for i, box in enumerate(layout.boxes)
            ]  # fmt: skip
        box = pick_pane(layout, None if pane == "all" else pane)
    except InputError as err:  # pane detection knows frames, not files
        raise InputError(str(err), src) from None
    picked = layout.boxes.index(box) + 1 if layout is not None and box is not None else None
    extra = {"pane": picked, "panes": layout.n if layout else 1}
    if box is not None:
        frames = crop_pane(frames, box)
    return [_write_one(src, frames, out_dir, name, size, out_fps, spacing, extra)]


def convert_cine(
    src: str | Path, out_dir: str | Path, size: int = 112, fps: float | None = None, pane: int | None = None
) -> dict[str, Any]:
    """Convert one file to `<out_dir>/Videos/<stem>.avi` (a still: `<out_dir>/Images/<stem>.png`) plus its
    sidecar; return its FileList.csv row (a still's row has NumberOfFrames 1 and is not listed in FileList.csv)."""
    return convert_panes(src, out_dir, size, fps, pane)[0]


def update_filelist(out_dir: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Merge rows into `<out_dir>/FileList.csv` (atomically): new rows replace old ones with the same FileName;
    columns the file already had (EF, Split, ...) are kept."""
    import pandas as pd

    from sonokit.utils.atomic import write_csv

    path = Path(out_dir) / "FileList.csv"
    new = pd.DataFrame([r for r in rows if r["NumberOfFrames"] > 1], columns=FILELIST_COLUMNS)
    if new.empty:
        return path
    if path.exists():
        old = pd.read_csv(path)
        if "FileName" not in old.columns:
            raise InputError("existing FileList.csv has no FileName column; not merging into it", path)
        old = old[~old["FileName"].astype(str).isin(set(new["FileName"].astype(str)))]
        new = pd.concat([old, new], ignore_index=True)
    new = new.sort_values("FileName", kind="stable").reset_index(drop=True)
    try:
        return write_csv(new, path)
    except OSError as err:
        raise InputError(f"cannot write ({err.strerror or err}); the videos are written", path) from None


def convert_files(
    files: Iterable[str | Path], out_dir: str | Path, size: int = 112, fps: float | None = None,
    pane: int | str | None = None,
) -> BatchResult:  # fmt: skip
    """Convert every file (bad ones are collected as errors), then merge the rows into FileList.csv."""
    out_dir = Path(out_dir)
    claimed: dict[str, Path] = {}

    def step(path: Path) -> list[dict[str, Any]]:
        other = claimed.get(output_stem(path))
        if other is not None:
            raise InputError(
                f"output name {path.stem} is already used by {printable(other)}; rename one", path
            )
        claimed[output_stem(path)] = path
        return convert_panes(path, out_dir, size=size, fps=fps, pane=pane)

    result = BatchResult()
    try:
        # Videos already written into an output folder that sits inside an input folder are not inputs.
        todo = [Path(f) for f in files if out_dir.resolve() not in Path(f).resolve().parents]
        run_batch(todo, step, lambda p: p, desc="convert", out=result)
    finally:  # rows of the videos already written are recorded even when the run is interrupted
        rows = [row for _, written in result.results for row in written]
        if rows:
            update_filelist(out_dir, rows)
    return result
