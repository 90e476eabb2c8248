"""Reference consumer of a sonokit ONNX export: class probabilities per file with numpy, OpenCV and onnxruntime.

It imports nothing from sonokit on purpose: everything it does comes from the recipe that `sonokit export` writes
into the file's metadata (key "sonokit", field "preprocess"), so the same steps can be ported to any runtime.
The test suite checks that its probabilities equal `sonokit predict RUN FILES` (torch and onnx backends) to 1e-4.

    python examples/onnx_standalone.py runs/fetal-plane/mine/model.onnx scan1.png clip.avi folder/ --out preds.csv

Output CSV (stdout without --out): path, frame ("" for an image, the frame index for a frame of a cine, "all" for
the cine's aggregate by the model's video rule), y_pred, one p_<class> column per class. A file it cannot read
stops it with one line naming the file, exit status 1 and nothing written. DICOM needs sonokit (`sonokit predict`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

RECIPE_VERSIONS = {1}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
VIDEO_EXTS = {".avi", ".mp4", ".webm", ".mov"}


class ConsumerError(Exception):
    """A problem with one file or the model, reported as one line."""


# ---------------------------------------------------------------------------------------------- model and recipe


def load_model(path: Path, threads: int = 1) -> tuple[ort.InferenceSession, dict[str, Any]]:
    """The onnxruntime session and the preprocessing recipe stored in the file."""
    if not path.is_file():
        raise ConsumerError(f"{path}: model file not found")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ConsumerError(f"{path}: not a loadable ONNX model ({str(err).splitlines()[0]})") from err
    raw = session.get_modelmeta().custom_metadata_map.get("sonokit")
    recipe = json.loads(raw).get("preprocess") if raw else None
    if not recipe:
        raise ConsumerError(f"{path}: no preprocessing recipe in the metadata (re-run `sonokit export`)")
    if recipe.get("recipe_version") not in RECIPE_VERSIONS:
        raise ConsumerError(
            f"{path}: recipe version {recipe.get('recipe_version')!r} is not one of {RECIPE_VERSIONS}"
        )
    if not recipe.get("standalone"):
        raise ConsumerError(f"{path}: this {recipe.get('task')} model needs sonokit: {recipe.get('reason')}")
    return session, recipe


# ---------------------------------------------------------------------------------------------- decoding


def decode_image(path: Path) -> np.ndarray:
    """uint8 (H, W) grey or (H, W, 3) RGB, by the recipe's "decode.image" rule."""
    data = np.fromfile(path, dtype=np.uint8)
    raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if raw is None or raw.size == 0:
        raise ConsumerError(f"{path}: not a readable image")
    image = raw
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 2:
        image = image[:, :, 0]
    if image.dtype != np.uint8:
        values = image.astype(np.float64)
        if image.ndim == 2:
            lo, hi = float(values.min()), float(values.max())
            values = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
        else:
            values = values / (65535.0 if image.dtype == np.uint16 else max(float(values.max()), 1.0))
        image = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(image)


def video_frames(path: Path, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) for frames 0, every, 2 * every, ... in decoding order."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ConsumerError(f"{path}: not a readable video")
    index, found = 0, False
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if index % every == 0:
                found = True
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()
    if not found:
        raise ConsumerError(f"{path}: video has no decodable frames")


# ---------------------------------------------------------------------------------------------- the steps


def to_channels(frame: np.ndarray, step: dict[str, Any]) -> np.ndarray:
    channels = int(step["channels"])
    if frame.ndim == 2:
        return frame[:, :, None] if channels == 1 else np.repeat(frame[:, :, None], 3, axis=2)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[:, :, None] if channels == 1 else frame


def letterbox(frame: np.ndarray, step: dict[str, Any]) -> np.ndarray:
    size = int(step["size"])
    h, w = frame.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frame = cv2.resize(frame, (nw, nh), interpolation=interp)
        if frame.ndim == 2:  # cv2.resize drops a single channel axis
            frame = frame[:, :, None]
    top, left = (size - nh) // 2, (size - nw) // 2
    out = np.zeros((size, size, frame.shape[2]), dtype=frame.dtype)
    out[top : top + nh, left : left + nw] = frame
    return out


def apply_steps(frame: np.ndarray, steps: list[dict[str, Any]]) -> np.ndarray:
    """A decoded uint8 frame -> the network's float32 input for one sample (C, H, W)."""
    x: np.ndarray = frame
    for step in steps:
        op = step["op"]
        if op == "to_channels":
            x = to_channels(x, step)
        elif op == "letterbox":
            x = letterbox(x, step)
        elif op == "scale":
            x = x.astype(np.float32) / np.float32(255.0)
        elif op == "normalise":
            mean = np.asarray(step["mean"], dtype=np.float32)
            std = np.asarray(step["std"], dtype=np.float32)
            x = (x - mean) / std  # x is (H, W, C): broadcasts per channel
        elif op == "layout":
            if step["layout"] != "NCHW":
                raise ConsumerError(f"layout {step['layout']!r} is not supported by this consumer")
            x = np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
        else:
            raise ConsumerError(f"unknown recipe step {op!r}: this consumer is older than the model")
    return x


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def aggregate(probs: np.ndarray, rule: str) -> np.ndarray:
    """One probability vector for a cine from its frames' (F, K) probabilities (recipe "cine.aggregate")."""
    if rule == "mean":
        return probs.astype(np.float64).mean(axis=0)
    if rule == "max":
        pred = probs.argmax(axis=1)
        worst = pred.max()
        candidates = np.flatnonzero(pred == worst)
        return probs[candidates[np.argmax(probs[candidates, worst])]]
    raise ConsumerError(f"unknown video rule {rule!r}")


# ---------------------------------------------------------------------------------------------- prediction


def list_files(inputs: list[Path]) -> list[Path]:
    """Files as given; folders: their images and videos, recursively, sorted."""
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            out.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS)
            )
        elif p.is_file():
            out.append(p)
        else:
            raise ConsumerError(f"{p}: no such file or folder")
    return out


def file_inputs(path: Path, recipe: dict[str, Any]) -> tuple[list[int | None], np.ndarray]:
    """(frame indices, None for a still image) and their stacked network inputs (N, C, H, W)."""
    suffix = path.suffix.lower()
    steps = recipe["steps"]
    if suffix in IMAGE_EXTS:
        return [None], apply_steps(decode_image(path), steps)[None]
    if suffix in VIDEO_EXTS:
        every = int(recipe["cine"]["frames"]["every"])
        pairs = [(i, apply_steps(f, steps)) for i, f in video_frames(path, every)]
        return [i for i, _ in pairs], np.stack([x for _, x in pairs])
    raise ConsumerError(f"{path}: unsupported file type {suffix or '(none)'} (DICOM: use sonokit predict)")


def predict(
    session: ort.InferenceSession, recipe: dict[str, Any], files: list[Path], batch_size: int = 32
) -> list[dict[str, Any]]:
    """One row per image, per sampled frame of a cine, and per cine with more than one frame ("all")."""
    classes = recipe["output"]["classes"]
    name = session.get_inputs()[0].name
    rows: list[dict[str, Any]] = []
    for path in files:
        frames, x = file_inputs(path, recipe)
        logits = np.concatenate(
            [session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
        )
        probs = softmax(logits)
        for frame, p in zip(frames, probs, strict=True):
            rows.append(_row(path, "" if frame is None else str(frame), p, classes))
        if len(frames) > 1:
            rows.append(_row(path, "all", aggregate(probs, recipe["cine"]["aggregate"]["rule"]), classes))
    return rows


def _row(path: Path, frame: str, p: np.ndarray, classes: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"path": str(path), "frame": frame, "y_pred": classes[int(np.argmax(p))]}
    row.update({f"p_{c}": float(v) for c, v in zip(classes, p, strict=True)})
    return row


def write_csv(rows: list[dict[str, Any]], classes: list[str], out: Path | None) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["path", "frame", "y_pred", *[f"p_{c}" for c in classes]])
    writer.writeheader()
    writer.writerows(rows)
    if out is None:
        sys.stdout.write(buf.getvalue())
        return
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, out)  # all or nothing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="model.onnx written by `sonokit export`")
    parser.add_argument(
        "inputs", type=Path, nargs="+", help="images (PNG/JPEG/...), videos (AVI/MP4) or folders"
    )
    parser.add_argument("--out", type=Path, help="CSV to write (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args(argv)
    try:
        session, recipe = load_model(args.model, args.threads)
        rows = predict(session, recipe, list_files(args.inputs), args.batch_size)
        write_csv(rows, recipe["output"]["classes"], args.out)
    except ConsumerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
