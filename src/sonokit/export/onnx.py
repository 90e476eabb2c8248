"""Export a run's network to one self-contained ONNX file with a dynamic batch axis, and prove it matches PyTorch.

Why these choices:
- One file: torch 2.14's default (dynamo) exporter writes weights to a side `.onnx.data` file unless told
  `external_data=False`; a run folder should hold one `model.onnx` that can be copied alone.
- Exporter "auto" tries the maintained torch.export-based (dynamo) exporter first and falls back to the legacy
  TorchScript exporter, which still handles what torch.export refuses (data-dependent shapes).
- The file is written to a temporary name, checked against PyTorch on random inputs at batch sizes 1 and 3
  (so the dynamic batch axis is exercised) and renamed only if the largest difference is within tolerance:
  a failed export leaves nothing behind.
- The ONNX metadata holds the model card essentials and a digest of the weights, so `--backend auto` can tell a
  model.onnx that no longer matches model.safetensors (retrained, resumed) and fall back to PyTorch.
- It also holds the preprocessing recipe (key "preprocess", sonokit.tasks.recipe), so another runtime can turn a
  file into the network's input without sonokit (examples/onnx_standalone.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from sonokit.errors import InputError, ModelError
from sonokit.utils import get_logger
from sonokit.utils.atomic import atomic_path

log = get_logger(__name__)

ONNX_FILE = "model.onnx"
INPUT_NAME = "input"
OUTPUT_NAME = "output"
META_KEY = "sonokit"
LEGACY_OPSET = 17
Exporter = Literal["auto", "dynamo", "legacy"]


@dataclass
class ExportResult:
    path: Path
    exporter: str
    opset: int
    input_shape: tuple[int, ...]  # one sample, without the batch axis
    max_abs_diff: dict[int, float] = field(default_factory=dict)  # batch size -> max |onnx - torch|
    seconds: float = 0.0

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values(), default=float("nan"))


def sample_shape(spec: dict[str, Any]) -> tuple[int, ...]:
    """One input sample's shape from a model card's input spec: (C, H, W), or (C, T, H, W) for clips."""
    try:
        channels = int(spec["channels"])
        size = spec["size"]
        h, w = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise ModelError(f"the model card's input spec has no usable channels/size ({err})") from err
    layout = str(spec.get("layout", ""))
    if "T" in layout.split(")")[0]:
        frames = spec.get("frames")
        if not isinstance(frames, int) or frames < 1:
            raise ModelError(f"clip model without an integer frame count in its input spec ({frames!r})")
        return (channels, frames, h, w)
    return (channels, h, w)


def state_digest(model_or_state: nn.Module | dict[str, torch.Tensor]) -> str:
    """sha256 over the sorted state dict (names, dtypes, shapes, bytes): identifies the weights, not the file."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _export_dynamo(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet_exporter():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )


def _export_legacy(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with _quiet_exporter():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=LEGACY_OPSET,
            do_constant_folding=True,
        )


@contextlib.contextmanager
def _quiet_exporter():
    """The exporters print progress and deprecation notes; library code must not print, so send them to the log."""
    out, err = io.StringIO(), io.StringIO()
    chatty = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")]
    levels = [lg.level for lg in chatty]
    try:
        for lg in chatty:
            lg.setLevel(logging.WARNING)
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(chatty, levels, strict=True):
            lg.setLevel(level)
    for text in (out.getvalue(), err.getvalue()):
        if text.strip():
            log.debug("exporter output:\n%s", text.strip())


def _single_output(model: nn.Module, example: torch.Tensor) -> None:
    with torch.no_grad():
        out = model(example)
    if not isinstance(out, torch.Tensor):
        raise ModelError(
            f"ONNX export needs a model that returns one tensor; {type(model).__name__} returns {type(out).__name__}"
        )


def write_onnx(
    model: nn.Module,
    shape: Sequence[int],
    path: str | Path,
    exporter: Exporter = "auto",
    metadata: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """Export `model` (eval mode, CPU) for inputs (B, *shape) to `path`; returns (exporter used, opset).

    The example batch has 2 samples: torch.export specialises a dimension of size 1, which would freeze the batch.
    """
    import onnx

    if exporter not in ("auto", "dynamo", "legacy"):
        raise InputError(f"unknown exporter {exporter!r}; choose auto, dynamo or legacy")
    path = Path(path)
    model = model.eval()
    example = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    _single_output(model, example)
    order = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
    used, failures = None, []
    for name in order:
        try:
            (_export_dynamo if name == "dynamo" else _export_legacy)(model, example, path)
            used = name
            break
        except Exception as err:  # the exporters raise many types (torch._dynamo, onnxscript, RuntimeError)
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()  # torch.export colours its messages
            first = (text.splitlines() or [type(err).__name__])[0][:300]
            failures.append(f"{name}: {first}")
            log.warning(
                "%s ONNX exporter failed (%s)%s",
                name,
                first,
                "; trying legacy" if name == "dynamo" and len(order) > 1 else "",
            )
    if used is None:
        raise ModelError("ONNX export failed: " + " | ".join(failures))
    proto = onnx.load(str(path))
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    meta = dict(metadata or {})
    meta.update(exporter=used, opset=opset, torch=torch.__version__, input_shape=["batch", *map(int, shape)])
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta, default=str)
    onnx.checker.check_model(proto)
    onnx.save(
        proto, str(path)
    )  # one file: the weights stay inside (models here are far below protobuf's 2 GB)
    return used, opset


def verify_onnx(
    model: nn.Module,
    path: str | Path,
    shape: Sequence[int],
    batch_sizes: Sequence[int] = (1, 3),
    seed: int = 0,
) -> dict[int, float]:
    """Max |onnxruntime - torch| over the outputs, per batch size, on seeded standard-normal inputs."""
    from sonokit.export.backend import OnnxModel

    session = OnnxModel(path)
    gen = torch.Generator().manual_seed(seed)
    model = model.eval()
    diffs: dict[int, float] = {}
    for b in batch_sizes:
        x = torch.randn(b, *shape, generator=gen)
        with torch.no_grad():
            ref = model(x).float().numpy()
        out = session(x).numpy()
        if out.shape != ref.shape:
            raise ModelError(f"{path}: ONNX output shape {out.shape} != PyTorch {ref.shape} at batch {b}")
        diffs[int(b)] = float(np.max(np.abs(out - ref))) if out.size else 0.0
    return diffs


def export_model(
    model: nn.Module,
    shape: Sequence[int],
    out: str | Path,
    exporter: Exporter = "auto",
    metadata: dict[str, Any] | None = None,
    batch_sizes: Sequence[int] = (1, 3),
    tol: float = 1e-4,
) -> ExportResult:
    """Export, verify against PyTorch and only then move the file into place (atomic)."""
    start = time.perf_counter()
    out = Path(out)
    model = model.cpu().eval()
    meta = dict(metadata or {})
    meta.setdefault("weights_sha256", state_digest(model))
    with atomic_path(out) as tmp:
        used, opset = write_onnx(model, shape, tmp, exporter, meta)
        diffs = verify_onnx(model, tmp, shape, batch_sizes)
        worst = max(diffs.values())
        if not worst <= tol:  # also catches NaN
            raise ModelError(
                f"{out}: ONNX output differs from PyTorch by {worst:.3g} (> {tol:g}); file not written"
            )
    result = ExportResult(out, used, opset, tuple(int(s) for s in shape), diffs, time.perf_counter() - start)
    log.info(
        "exported %s (%s exporter, opset %d), max |onnx - torch| %s",
        out,
        used,
        opset,
        ", ".join(f"batch {b}: {d:.2e}" for b, d in diffs.items()),
    )
    return result


def export_run(
    run_dir: str | Path,
    out: str | Path | None = None,
    exporter: Exporter = "auto",
    batch_sizes: Sequence[int] = (1, 3),
    tol: float = 1e-4,
) -> ExportResult:
    """Export a trained run folder's best model to `out` (default <run>/model.onnx), verified against PyTorch."""
    from sonokit.core.run import load_run

    run = load_run(run_dir, device="cpu")
    shape = sample_shape(run.task.input_spec())
    card = run.card
    metadata = {
        "task": run.cfg.task,
        "run": run.name,
        "model": run.cfg.model,
        "classes": run.task.classes,
        "input_spec": run.task.input_spec(),
        "config_hash": card.get("config_hash"),
        "input": "normalised tensor: (pixels / 255 - mean) / std, see input_spec",
        # every step from file to tensor and from output to probabilities (sonokit.tasks.recipe)
        "preprocess": run.task.export_recipe(),
    }
    return export_model(
        run.model,
        shape,
        Path(out) if out is not None else Path(run_dir) / ONNX_FILE,
        exporter,
        metadata,
        batch_sizes,
        tol,
    )


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The sonokit metadata stored in an exported file ({} when it has none)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf DecodeError and friends
        raise ModelError(f"{path}: not a readable ONNX file ({err})") from err
    for entry in proto.metadata_props:
        if entry.key == META_KEY:
            return json.loads(entry.value)
    return {}
