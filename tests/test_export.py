"""`sonokit export`: one ONNX file with a dynamic batch axis, verified against PyTorch; `--backend onnx` predicts
what `--backend torch` predicts; a stale or broken export is never used silently."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

TINY_CONFIG = "n_boot: 0\noptions:\n  gradcam_samples: 0\n"


def sonokit(*args: object) -> tuple[int, str, str]:
    """`sonokit ARGS` in this process (a subprocess would spend seconds importing torch): (code, stdout, stderr)."""
    from sonokit.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["sonokit", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def train_tiny_run(root: Path) -> tuple[Path, Path]:
    """A 1-epoch fetal-plane run on 24 simulated 64 px images (what `sonokit train fetal-plane` does)."""
    from sonokit.core.config import resolve_config
    from sonokit.synth import make_dataset
    from sonokit.tasks import get_task
    from sonokit.train.engine import train

    data = root / "fp"
    make_dataset("fetal-planes", data, n=24, seed=0, size=64)
    (root / "tiny.yaml").write_text(TINY_CONFIG)
    overrides = {"data": str(data), "out": str(root / "run"), "epochs": 1, "size": 64, "batch_size": 8}
    cfg = resolve_config(
        "fetal-plane", root / "tiny.yaml", overrides, task_defaults=get_task("fetal-plane").defaults
    )
    return train(cfg), data


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """The tiny run, exported once with the CLI (default exporter)."""
    root = tmp_path_factory.mktemp("export")
    run_dir, data = train_tiny_run(root)
    return {
        "root": root,
        "run": run_dir,
        "data": data,
        "proc": sonokit("export", run_dir, "--format", "onnx"),
    }


@pytest.mark.slow
def test_cli_export_writes_one_verified_file(exported) -> None:
    from sonokit.core.run import load_run
    from sonokit.export import read_metadata, state_digest

    (code, stdout, stderr), run_dir = exported["proc"], exported["run"]
    assert code == 0, stderr
    diffs = dict(re.findall(r"batch (\d+): ([0-9.e+-]+)", stdout.split("max |onnxruntime - torch|:")[1]))
    assert set(diffs) == {"1", "3"}
    assert all(float(d) <= 1e-4 for d in diffs.values())
    assert (run_dir / "model.onnx").is_file()
    assert not list(run_dir.glob("*.onnx.data")) and not list(
        run_dir.glob(".model*")
    )  # one file, no temp left
    meta = read_metadata(run_dir / "model.onnx")
    run = load_run(run_dir, "cpu")
    assert meta["weights_sha256"] == state_digest(run.model)
    assert meta["classes"] == run.task.classes and meta["input_shape"] == ["batch", 1, 64, 64]


@pytest.mark.slow
def test_onnx_matches_torch_at_batch_1_and_3(exported) -> None:
    """An independent check of the exported file (not the exporter's own verification)."""
    import onnx

    from sonokit.core.run import load_run
    from sonokit.export import OnnxModel

    path = exported["run"] / "model.onnx"
    dim0 = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value  # a symbolic (dynamic) batch axis
    run = load_run(exported["run"], "cpu")
    session = OnnxModel(path, threads=1)
    gen = torch.Generator().manual_seed(123)
    for b in (1, 3):
        x = torch.randn(b, 1, 64, 64, generator=gen) * 2
        with torch.no_grad():
            ref = run.model(x)
        out = session(x)
        assert out.shape == ref.shape == (b, 6)
        assert float((out - ref).abs().max()) <= 1e-4
    assert (
        float(ref.std(dim=0).max()) > 1e-3
    )  # the outputs depend on the input: the comparison means something


@pytest.mark.slow
def test_predict_backend_onnx_equals_torch(exported) -> None:
    root, run_dir, data = exported["root"], exported["run"], exported["data"]
    images = data / "Images"
    outs = {}
    for backend in ("torch", "onnx", "auto"):
        out = root / f"pred_{backend}.csv"
        code, stdout, stderr = sonokit("predict", run_dir, images, "--out", out, "--backend", backend)
        assert code == 0, stderr
        assert f"backend {'onnx' if backend == 'auto' else backend}" in stdout
        outs[backend] = pd.read_csv(out)
    torch_df, onnx_df = outs["torch"], outs["onnx"]
    assert len(torch_df) == len(onnx_df) == 24
    assert (torch_df["path"] == onnx_df["path"]).all()
    assert (torch_df["y_pred"] == onnx_df["y_pred"]).all()
    cols = [c for c in torch_df.columns if c.startswith("p_")]
    assert len(cols) == 6
    assert np.abs(torch_df[cols].to_numpy() - onnx_df[cols].to_numpy()).max() <= 1e-5
    assert np.abs(outs["auto"][cols].to_numpy() - onnx_df[cols].to_numpy()).max() == 0.0


@pytest.mark.slow
def test_stale_onnx_is_not_used(exported, caplog) -> None:
    from sonokit.core.run import load_run
    from sonokit.errors import ModelError
    from sonokit.export import attach_backend, backend_name

    run = load_run(exported["run"], "cpu")
    assert backend_name(attach_backend(run, "auto")) == "onnx"
    run = load_run(exported["run"], "cpu")
    with torch.no_grad():
        next(run.model.parameters()).add_(0.01)  # weights no longer those the file was exported from
    assert backend_name(attach_backend(run, "auto")) == "torch"
    assert "exported from other weights" in caplog.text
    with pytest.raises(ModelError, match="re-run `sonokit export`"):
        attach_backend(run, "onnx")


def _randomised(model: nn.Module) -> nn.Module:
    """An untrained EF net outputs a near-constant ~55 whatever the clip, which would make any ONNX comparison
    pass. Re-draw the last layer and set the BatchNorm statistics from a few clips so the output moves with it."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        last.weight.copy_(torch.randn(last.weight.shape, generator=gen) * 5)
        last.bias.zero_()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # cumulative average over the calibration clips
        model.train()
        for _ in range(3):
            model(torch.randn(4, 3, 8, 64, 64, generator=gen) * torch.rand(4, 1, 1, 1, 1, generator=gen) * 2)
    return model.eval()


@pytest.mark.slow
def test_echo_video_model_exports_with_dynamic_batch(tmp_path) -> None:
    from sonokit.export import OnnxModel, export_model
    from sonokit.models import build

    torch.manual_seed(0)
    model = _randomised(build("two-stream-tiny", kind="video"))
    shape = (3, 8, 64, 64)
    result = export_model(model, shape, tmp_path / "ef.onnx")
    assert set(result.max_abs_diff) == {1, 3} and result.worst <= 1e-4
    session = OnnxModel(tmp_path / "ef.onnx", threads=1)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(7))
    x = x * torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1, 1, 1) + torch.tensor([-1.0, 0.0, 1.0]).view(
        3, 1, 1, 1, 1
    )
    with torch.no_grad():
        ref = model(x)
    out = session(x)
    assert out.shape == (3, 1)
    assert float((out - ref).abs().max()) <= 1e-4
    assert float(ref.std()) > 1e-2  # ~1e5 x the float difference
    assert float((session(x[1:2]) - ref[1:2]).abs().max()) <= 1e-4  # batch 1 from the same file


def test_legacy_exporter_and_failed_verification(tmp_path) -> None:
    from sonokit.errors import ModelError
    from sonokit.export import export_model
    from sonokit.models import create

    model = create("tinycnn", num_classes=3, in_chans=1, img_size=32)
    result = export_model(model, (1, 32, 32), tmp_path / "a.onnx", exporter="legacy")
    assert result.exporter == "legacy" and result.opset == 17 and result.worst <= 1e-4

    class Noisy(nn.Module):  # ONNX cannot reproduce its output: verification must refuse the file
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3)).unsqueeze(1) + torch.randn(x.shape[0], 1)

    with pytest.raises(ModelError, match="differs from PyTorch"):
        export_model(Noisy(), (1, 8, 8), tmp_path / "noisy.onnx", exporter="legacy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]  # nothing half-written


def test_export_bad_inputs_give_one_line_errors(tmp_path) -> None:
    code, _, err = sonokit("export", tmp_path / "missing")
    assert code == 2 and err.strip().splitlines() == [f"error: {tmp_path / 'missing'}: run folder not found"]
    code, _, err = sonokit("export", tmp_path, "--format", "tflite")
    assert code == 2 and "unknown export format 'tflite'" in err
    assert list(tmp_path.iterdir()) == []
