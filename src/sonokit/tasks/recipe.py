"""The preprocessing recipe written into an exported model: what another runtime must do to a file so the ONNX
network sees exactly the tensor `sonokit predict` feeds it.

Why a declarative list of steps with every parameter (not a sentence): a consumer in another language has to
reproduce the pixels, and a letterbox that rounds the new size differently or pads the odd pixel on the other side
moves every pixel by one and changes the probabilities. `examples/onnx_standalone.py` interprets this recipe with
numpy, OpenCV and onnxruntime only, and the test suite checks it reproduces `sonokit predict` to 1e-4.

Tasks whose preprocessing needs sonokit itself (echo sector detection, valve crops, the quality task's high-pass
channel, detector post-processing) say so with `"standalone": false` and name the part that is sonokit only.

Bump RECIPE_VERSION whenever a step's meaning changes; consumers refuse versions they do not know.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sonokit.tasks.base import Task

RECIPE_VERSION = 1

#: How sonokit turns a file into uint8 pixels (sonokit.io.image_read / video_read); shared by every recipe.
DECODE: dict[str, str] = {
    "image": (
        "cv2.imdecode(file bytes, cv2.IMREAD_UNCHANGED); (H, W, 1) -> (H, W); 4 channels: cv2.COLOR_BGRA2BGR; "
        "2 channels (grey + alpha): channel 0; not uint8: grey (H, W) -> (v - min) / (max - min) (all 0 when "
        "max == min), colour -> v / 65535 for uint16 else v / max(max, 1), then np.rint(clip(., 0, 1) * 255) "
        "as uint8; colour: cv2.COLOR_BGR2RGB. Result: uint8 (H, W) grey or (H, W, 3) RGB"
    ),
    "video": (
        "cv2.VideoCapture frames in decoding order (frame i = the i-th frame read), each cv2.COLOR_BGR2RGB: "
        "uint8 (H, W, 3) RGB, also for grey content"
    ),
    "dicom": "sonokit only (pydicom plus sonokit's photometric and bit-depth rules, sonokit.io.dicom_read)",
}


def frame_steps(
    size: int, channels: int, mean: list[float], std: list[float], layout: str = "NCHW"
) -> list[dict[str, Any]]:
    """The steps of sonokit's 2D frame path (LetterboxRecipe, ImageDataset, normalise_batch), in order."""
    return [
        {
            "op": "to_channels",
            "channels": int(channels),
            "grey_from_rgb": {
                "when": "channels == 1 and the decoded frame is RGB (H, W, 3)",
                "formula": "Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601)",
                "implementation": "cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) (OpenCV fixed-point, rounded to uint8)",
            },
            "replicate": "channels == 3 and the frame is grey: the grey plane copied into R, G and B",
            "keep": "channels == 1 and grey, or channels == 3 and RGB: unchanged",
        },
        {
            "op": "letterbox",
            "size": int(size),
            "scale": "s = size / max(h, w)",
            "new_size": "nh = max(1, round(h * s)), nw = max(1, round(w * s)); round = Python round (half to even)",
            "resize": "cv2.resize(frame, (nw, nh), interpolation) only when (nh, nw) != (h, w)",
            "interpolation": {"shrink (s < 1)": "cv2.INTER_AREA", "enlarge (s >= 1)": "cv2.INTER_LINEAR"},
            "pad": {
                "value": 0,
                "top": "(size - nh) // 2",
                "left": "(size - nw) // 2",
                "extra_pixel": "bottom / right (the remainder of an odd padding goes after the image)",
            },
            "output": "uint8 (size, size, channels)",
        },
        {
            "op": "scale",
            "formula": "x = float32(pixel) / float32(255) (a division, not a multiplication by 1/255)",
            "dtype": "float32",
        },
        {
            "op": "normalise",
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "formula": "x[c] = (x[c] - mean[c]) / std[c] in float32, per channel c",
        },
        {"op": "layout", "layout": layout, "dtype": "float32", "batch": "any batch size (dynamic axis 0)"},
    ]


def classifier_recipe(task: Task) -> dict[str, Any]:
    """Frame classifiers (classify, fetal-plane, lus): fully reproducible from the file alone."""
    cfg, opts = task.cfg, task.opts
    mean, std = cfg.channel_stats()
    classes = list(task.classes or [])
    return {
        "recipe_version": RECIPE_VERSION,
        "task": task.name,
        "standalone": True,
        "decode": DECODE,
        "steps": frame_steps(cfg.size, cfg.channels, mean, std),
        "cine": {
            "frames": {
                "every": int(opts.predict_every),
                "max": None,
                "indices": "0, every, 2 * every, ... below the number of frames (all of them, no maximum)",
            },
            "frame_rows": "one prediction per chosen frame (frame = its index)",
            "aggregate": {
                "rule": opts.video_rule,
                "when": "the cine gave more than one frame row; the aggregate row has frame = 'all'",
                "mean": "probabilities = mean over the frame rows of the softmax probabilities",
                "max": (
                    "per frame the argmax class; take the highest class index k predicted by any frame; among "
                    "the frames predicting k the first with the largest probability of k; its probabilities"
                ),
            },
        },
        "output": {
            "tensor": "logits (batch, n_classes)",
            "probabilities": "softmax over axis 1 (float32)",
            "classes": classes,
            "prediction": "classes[argmax(probabilities)] (first on ties)",
        },
    }


def sonokit_only_recipe(task: Task, reason: str, **parts: Any) -> dict[str, Any]:
    """A recipe that states honestly that sonokit is needed; `parts` name the steps a consumer cannot redo."""
    return {
        "recipe_version": RECIPE_VERSION,
        "task": task.name,
        "standalone": False,
        "reason": reason,
        **parts,
        "decode": DECODE,
        "input_spec": task.input_spec(),
    }


def echo_recipe(task: Task, layout: str = "NCHW", **parts: Any) -> dict[str, Any]:
    """Echo frame and clip models: the sector crop of scanner cines is sonokit only; model-size cines are not."""
    cfg = task.cfg
    mean, std = cfg.channel_stats()
    at_size = [
        {
            "op": "compact",
            "rule": (
                "RGB frames whose channels agree within 3 grey levels on frames 0, n//4, 2*(n//4), ... "
                "(step max(1, n // 4)) become grey = the G channel"
            ),
        },
        {
            "op": "to_channels",
            "channels": int(cfg.channels),
            "grey_from_rgb": "np.round(float32 RGB @ [0.299, 0.587, 0.114]) clipped to 0-255, uint8",
            "replicate": "grey copied into 3 channels when channels == 3",
        },
        *frame_steps(cfg.size, cfg.channels, mean, std, layout)[2:],
    ]
    return sonokit_only_recipe(
        task,
        "scanner cines need sonokit's ultrasound sector detection and crop (sonokit.preprocess.preprocess_cine)",
        sector_crop="sonokit only",
        at_model_size={
            "when": f"every frame is already {cfg.size} x {cfg.size} (EchoNet-Dynamic, `sonokit convert` output)",
            "steps": at_size,
        },
        **parts,
    )
