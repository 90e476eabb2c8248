"""Commands that touch scanner files: info, convert, anonymize.

Per-file problems print one `error: <file>: <reason>` line each and the other files are still processed; the
exit code is then 1. Problems that stop the whole command (no input found) exit with 2 via main().
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def _report_errors(errors: list[tuple[Path, str]]) -> None:
    for _, message in errors:
        typer.echo(f"error: {message}", err=True)


def _fail_if(errors: list[tuple[Path, str]]) -> None:
    # SystemExit, not typer.Exit: main() runs the app with standalone_mode=False, where click turns typer.Exit
    # into a return value and the exit code would be lost.
    if errors:
        raise SystemExit(1)


def _fmt_spacing(info: dict[str, Any]) -> str:
    spacing = info.get("spacing_mm")
    if spacing:
        return f"{spacing[0]:.4f} x {spacing[1]:.4f} mm (dy x dx, from {info.get('spacing_source')})"
    return f"unknown ({info['spacing_note']})" if info.get("spacing_note") else "unknown"


def _fmt_block(info: dict[str, Any]) -> str:
    fps = (
        f"{info['fps']:.2f} (from {info.get('fps_source') or 'container'})" if info.get("fps") else "unknown"
    )
    device = " ".join(x for x in (info.get("manufacturer"), info.get("model")) if x)
    kind = (
        info["format"]
        + (f", {info['modality']}" if info.get("modality") else "")
        + (f", {device}" if device else "")
    )
    lines = [
        str(info["path"]),
        f"  format        {kind}",
        f"  frames        {info['frames']}",
        f"  size          {info['width']} x {info['height']} px, {info['channels']} channel(s)",
        f"  fps           {fps}",
        f"  spacing       {_fmt_spacing(info)}",
        f"  photometric   {info.get('photometric_interpretation') or '-'}",
        f"  transfer      {info.get('transfer_syntax') or info.get('codec') or '-'}",
        f"  burned-in     {info.get('burned_in_annotation') or 'not stated'}",
    ]
    return "\n".join(lines)


def info(
    files: list[Path] = typer.Argument(
        ..., help="DICOM, video or image files, or folders (searched recursively)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of text blocks."),
) -> None:
    """Describe files: frames, size, channels, fps, pixel spacing, photometric interpretation, transfer syntax,
    burned-in annotation flag. Never prints patient identifiers."""
    from sonokit.io.batch import run_batch
    from sonokit.io.describe import describe
    from sonokit.io.formats import find_inputs

    result = run_batch(find_inputs(files), describe, lambda p: p, desc="info")
    infos = [item for _, item in result.results]
    if as_json:
        records = infos + [{"path": str(path), "error": message} for path, message in result.errors]
        typer.echo(json.dumps(records, indent=2, default=str))
    else:
        typer.echo("\n\n".join(_fmt_block(item) for item in infos))
    _report_errors(result.errors)
    _fail_if(result.errors)


def convert(
    sources: list[Path] = typer.Argument(..., help="DICOM cines, videos, stills, or folders of them."),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output folder: Videos/<name>.avi, FileList.csv, stills as Images/<name>.png.",
    ),
    size: int = typer.Option(112, "--size", min=16, help="Output width and height in pixels (square)."),
    fps: float | None = typer.Option(
        None, "--fps", min=1.0, help="Resample in time to this frame rate (default: keep the source rate)."
    ),
    pane: str | None = typer.Option(
        None,
        "--pane",
        help="Multi-pane screens (dual view, image + overlay) are refused by default: keep pane N (1, 2, ... "
        "left to right / top to bottom; left, right, top, bottom), or `all` to write each as <name>_pane<N>.",
    ),
) -> None:
    """Convert cines to an EchoNet-Dynamic style folder: sector-masked, cropped, square, 3-channel MJPG AVIs;
    single frames (stills of the study) become PNGs in Images/. Each output's pixel spacing (mm, after the resize)
    and frame rate go into FileList.csv (SpacingY_mm, SpacingX_mm, FPS) and a sidecar <file>.json."""
    from sonokit.io.convert import convert_files
    from sonokit.io.formats import find_inputs
    from sonokit.preprocess.panes import parse_pane

    result = convert_files(find_inputs(sources), out, size=size, fps=fps, pane=parse_pane(pane))
    _report_errors(result.errors)
    typer.echo(
        f"converted {len(result.results)} of {len(result.results) + len(result.errors)} file(s) into {out}"
    )
    _fail_if(result.errors)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def anonymize(
    sources: list[Path] = typer.Argument(
        ..., help="DICOM files, AVI/MP4/WebM/MOV exports, or folders of them."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output folder (neutral names; deid_report.csv lists what was done per file).",
    ),
    no_pixels: bool = typer.Option(
        False,
        "--no-pixels",
        help="DICOM header only: keep the stored pixels as they are (burned-in text stays; BurnedInAnnotation "
        "kept). Videos are always masked.",
    ),
    codec: str = typer.Option(
        "auto",
        "--codec",
        help="How masked pixels of a DICOM file are stored: auto (compressed input -> JPEG 2000 lossless, "
        "uncompressed stays uncompressed), jpeg2000, rle (lossless), jpeg (baseline, lossy, --quality), none "
        "(uncompressed). Files whose pixels are unchanged keep their own encoding.",
    ),
    quality: int = typer.Option(95, "--quality", min=1, max=100, help="JPEG quality for --codec jpeg."),
    uid_salt: str | None = typer.Option(
        None, "--uid-salt", help="Secret salt for UID replacement, to keep new UIDs stable across runs."
    ),
    keep_names: bool = typer.Option(
        False,
        "--keep-names",
        help="Keep the input file and folder names (they often hold patient names or IDs). Default: neutral "
        "names study_NNN/image_NNNN.dcm (videos video_NNNN.avi) and a mapping CSV.",
    ),
    mapping: Path | None = typer.Option(
        None,
        "--mapping",
        help="Where to write the output -> original name mapping (default OUT_names.csv beside OUT; keep it "
        "private, it holds the original names).",
    ),
) -> None:
    """De-identify DICOM files and video exports (PS3.15 basic profile; pixels outside the ultrasound sector set
    to 0; container tags dropped; compression kept; neutral output names)."""
    from sonokit.io.deid import REPORT_NAME, anonymize_paths

    result = anonymize_paths(
        sources,
        out,
        mask_pixels=not no_pixels,
        uid_salt=uid_salt,
        keep_names=keep_names,
        mapping=mapping,
        codec=codec,
        quality=quality,
    )
    _report_errors(result.errors)
    done = [r for _, r in result.results]
    sizes = (
        f" ({_mb(sum(r.bytes_in for r in done))} in, {_mb(sum(r.bytes_out for r in done))} out)"
        if done
        else ""
    )
    typer.echo(f"anonymized {len(done)} of {len(done) + len(result.errors)} file(s) into {out}{sizes}")
    texty = sum(bool(r.text_in_sector) for r in done)
    if texty:
        typer.echo(
            f"warning: text-like marks remain inside the imaging region of {texty} file(s): BurnedInAnnotation "
            f"is YES there; check them (text_in_sector in {out / REPORT_NAME})",
            err=True,
        )
    if done:
        typer.echo(f"report: {out / REPORT_NAME}")
    if result.mapping is not None:
        typer.echo(f"original names: {result.mapping} (keep it private; it is not in {out})")
    _fail_if(result.errors)


def register(app: typer.Typer) -> None:
    """Attach the ingest commands to the root app."""
    app.command("info")(info)
    app.command("convert")(convert)
    app.command("anonymize")(anonymize)
