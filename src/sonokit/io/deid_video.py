"""De-identify AVI/MP4/WebM/MOV exports: pixels outside the sector set to 0, container metadata gone.

A scanner or PACS export often carries the patient's name in burned-in text around the image and in the
container's tags (AVI INFO chunks, MP4 `udta`/`meta` atoms: title, comment, artist, date). The frames are decoded,
masked like a DICOM cine (`sonokit.preprocess.detect_sector`; everything outside set to 0) and written afresh
with OpenCV (`sonokit.io.writers.write_video`), which copies no tag of the input. The codec follows the output
extension: MJPG in .avi, mp4v in .mp4, VP8 in .webm; a .mov is written as .mp4. Frame rate and frame count are
kept; audio tracks are not copied.
"""

from __future__ import annotations

from pathlib import Path

from sonokit.errors import InputError
from sonokit.io.deid import DeidResult

# Output extension per input extension (OpenCV's writer has no MOV codec here).
OUTPUT_SUFFIX = {".avi": ".avi", ".mp4": ".mp4", ".webm": ".webm", ".mov": ".mp4"}


def output_suffix(src: Path) -> str:
    """The extension the de-identified copy of a video gets."""
    return OUTPUT_SUFFIX.get(src.suffix.lower(), ".avi")


def deidentify_video(src: str | Path, dst: str | Path) -> DeidResult:
    """Write a masked, tag-free copy of the video `src` to `dst` (atomically; the container follows dst's
    extension) and say what was done. Raises InputError naming `src` when no imaging region is found."""
    from sonokit.io.video_read import open_video
    from sonokit.io.writers import write_video
    from sonokit.preprocess import apply_mask, detect_sector
    from sonokit.preprocess.text import find_text

    src, dst = Path(src), Path(dst)
    if dst.exists() and dst.resolve() == src.resolve():
        raise InputError("refusing to overwrite the original with its anonymized copy", dst)
    with open_video(src) as cine:
        frames = cine.read()
        fps = cine.fps or 30.0
        codec = cine.meta.get("codec") or ""
    try:
        geometry = detect_sector(frames)
    except InputError as err:
        if err.path is None:
            raise InputError(f"cannot mask pixels: {err}", src) from err
        raise
    changed = bool(frames[:, ~geometry.mask].any())
    masked = apply_mask(frames, geometry)
    text = find_text(masked, geometry.mask).found
    write_video(dst, masked, fps=fps)
    return DeidResult(
        dst=dst,
        kind="video",
        pixels="masked" if changed else "unchanged",
        encoding_in=f"{src.suffix.lower().lstrip('.')} {codec}".strip(),
        encoding_out=dst.suffix.lower().lstrip("."),
        bytes_in=src.stat().st_size,
        bytes_out=dst.stat().st_size,
        text_in_sector=text,
        burned_in_annotation="YES" if text else "NO",
    )
