"""Run an exported model with onnxruntime where a PyTorch model is expected.

`OnnxModel` is an nn.Module whose forward takes and returns torch tensors, so every Task's `forward(model, batch)`
(normalise, then `model(x)`) and the engine's inference loop work unchanged: the prediction code has one path
and only the object behind `run.model` differs.

Backend choice (`--backend`): "torch" always uses model.safetensors; "onnx" requires <run>/model.onnx; "auto"
(the default) uses model.onnx when it exists, onnxruntime is installed and the file was exported from the
current weights (digest in its metadata), and PyTorch otherwise. A stale model.onnx is never used silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from sonokit.errors import InputError, ModelError
from sonokit.utils import get_logger

if TYPE_CHECKING:
    from sonokit.core.run import LoadedRun

log = get_logger(__name__)

Backend = Literal["auto", "torch", "onnx"]
BACKENDS = ("auto", "torch", "onnx")


def _ort():
    try:
        import onnxruntime
    except ImportError as err:
        raise ModelError("onnxruntime is not installed: pip install 'sonokit[onnx]'") from err
    return onnxruntime


class OnnxModel(nn.Module):
    """An onnxruntime session behind the nn.Module call interface: tensor in, tensor out, on the input's device.

    threads: onnxruntime intra-op threads; default torch.get_num_threads(), so both backends use the same cores.
    """

    def __init__(
        self, path: str | Path, threads: int | None = None, device: str | torch.device = "cpu"
    ) -> None:
        super().__init__()
        ort = _ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("ONNX model not found", self.path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: ort's warnings go to stderr, not to our logger
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ModelError(f"{self.path}: onnxruntime cannot load it ({first})") from err
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: expected one input, found {len(inputs)}")
        self.input_name = inputs[0].name
        self.output_names = [o.name for o in outputs]
        raw = self.session.get_modelmeta().custom_metadata_map.get("sonokit")
        self.metadata: dict[str, Any] = json.loads(raw) if raw else {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = self.session.run(self.output_names[:1], {self.input_name: arr})[0]
        return torch.from_numpy(out).to(x.device)

    def extra_repr(self) -> str:
        return f"path={self.path}"


def onnx_file(run_dir: str | Path) -> Path:
    from sonokit.export.onnx import ONNX_FILE

    return Path(run_dir) / ONNX_FILE


def attach_backend(run: LoadedRun, backend: Backend = "auto", threads: int | None = None) -> LoadedRun:
    """Swap run.model for an OnnxModel when the backend says so; returns the run (changed in place).

    run.model must still hold the PyTorch weights: their digest decides whether model.onnx is current.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose {', '.join(BACKENDS)}")
    if backend == "torch":
        return run
    path = onnx_file(run.run_dir)
    if not path.is_file():
        if backend == "onnx":
            raise InputError(
                "no model.onnx in the run folder; run `sonokit export RUN --format onnx` first", run.run_dir
            )
        return run
    if backend == "auto":
        try:
            _ort()
        except ModelError as err:
            log.warning("%s; using PyTorch", err)
            return run
    from sonokit.export.onnx import state_digest

    model = OnnxModel(path, threads=threads, device=run.device)
    expected = model.metadata.get("weights_sha256")
    current = state_digest(run.model)
    if expected != current:
        reason = (
            "was exported from other weights" if expected else "has no weights digest (not a sonokit export)"
        )
        if backend == "onnx":
            raise ModelError(f"{path}: {reason} than model.safetensors; re-run `sonokit export`")
        log.warning("%s %s; using PyTorch (re-run `sonokit export` to refresh it)", path, reason)
        return run
    run.model = model
    if run.device.type == "cuda" and "CUDAExecutionProvider" not in model.session.get_providers():
        run.device = torch.device("cpu")
    log.info("backend: onnxruntime (%s)", path.name)
    return run


def backend_name(run: LoadedRun) -> str:
    """ "onnx" or "torch": what actually runs this run's model."""
    return "onnx" if isinstance(run.model, OnnxModel) else "torch"
