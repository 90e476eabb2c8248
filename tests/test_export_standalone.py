"""The exported ONNX file carries its preprocessing: examples/onnx_standalone.py (numpy, OpenCV, onnxruntime, no
sonokit) reproduces `sonokit predict RUN FILES` from the file alone, on images of every size, colour and bit depth
and on a cine with its aggregate row."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, SHARED, shared_data
from test_export import sonokit, train_tiny_run

CONSUMER = ROOT / "examples" / "onnx_standalone.py"
TOL = 1e-4


def load_consumer():
    spec = importlib.util.spec_from_file_location("onnx_standalone", CONSUMER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_consumer(*args: object) -> subprocess.CompletedProcess:
    """The consumer in a fresh interpreter where any import of sonokit fails (proof it needs none)."""
    code = (
        "import runpy, sys; sys.modules['sonokit'] = None; "
        f"sys.argv = {[str(CONSUMER), *map(str, args)]!r}; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def write_inputs(folder: Path) -> list[Path]:
    """Images smaller and larger than the model size (64), odd and even padding, grey/RGB/RGBA/16-bit, JPEG, and
    a 5-frame AVI: every branch of the recipe's decode, to_channels and letterbox steps."""
    folder.mkdir()
    rng = np.random.default_rng(0)

    def texture(h: int, w: int, c: int | None = None) -> np.ndarray:
        yy, xx = np.mgrid[0:h, 0:w]
        base = 127 + 100 * np.sin(xx / (3 + w / 9)) * np.cos(yy / (2 + h / 11))
        shape = (h, w) if c is None else (h, w, c)
        noise = rng.normal(0, 25, shape)
        img = (base if c is None else base[:, :, None]) + noise
        return np.clip(img, 0, 255).astype(np.uint8)

    files = {
        "grey_small_wide.png": texture(30, 50),
        "rgb_large_tall.png": texture(200, 91, 3),
        "rgb_exact.png": texture(64, 64, 3),
        "rgba_odd.png": texture(41, 77, 4),
        "grey_odd_tall.jpg": texture(97, 33),
        "rgb_large.jpg": texture(150, 240, 3),
        "tiny.png": texture(5, 3, 3),
    }
    paths = []
    for name, img in files.items():
        path = folder / name
        assert cv2.imwrite(str(path), img)
        paths.append(path)
    grey16 = (texture(120, 100).astype(np.uint16) * 40 + 1000).astype(
        np.uint16
    )  # 10-bit range within 16 bits
    path = folder / "grey16.png"
    assert cv2.imwrite(str(path), grey16)
    paths.append(path)
    video = folder / "cine.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 48))
    for _ in range(5):
        writer.write(texture(48, 80, 3))
    writer.release()
    paths.append(video)
    return paths


@pytest.fixture(scope="module", params=[1, 3], ids=["grey-model", "rgb-model"])
def exported(request, tmp_path_factory) -> dict:
    """A tiny fetal-plane run (1 or 3 input channels), exported with the CLI, and the test inputs."""
    root = tmp_path_factory.mktemp(f"standalone{request.param}")
    run_dir = _train(root, request.param)
    code, _, err = sonokit("export", run_dir, "--format", "onnx")
    assert code == 0, err
    return {"root": root, "run": run_dir, "inputs": write_inputs(root / "inputs"), "channels": request.param}


def _train(root: Path, channels: int) -> Path:
    if channels == 1:
        return train_tiny_run(root)[0]
    from sonokit.core.config import resolve_config
    from sonokit.synth import make_dataset
    from sonokit.tasks import get_task
    from sonokit.train.engine import train

    make_dataset("fetal-planes", root / "fp", n=24, seed=0, size=64)
    (root / "tiny.yaml").write_text("n_boot: 0\noptions:\n  gradcam_samples: 0\n")
    overrides = {
        "data": str(root / "fp"),
        "out": str(root / "run"),
        "epochs": 1,
        "size": 64,
        "batch_size": 8,
        "channels": 3,
    }
    cfg = resolve_config(
        "fetal-plane", root / "tiny.yaml", overrides, task_defaults=get_task("fetal-plane").defaults
    )
    return train(cfg)


def sonokit_predict(run_dir: Path, files: list[Path], backend: str, out: Path) -> pd.DataFrame:
    code, _, err = sonokit("predict", run_dir, *files, "--out", out, "--backend", backend)
    assert code == 0, err
    return pd.read_csv(out, keep_default_na=False, dtype={"frame": str})


def standalone(model: Path, files: list[Path], out: Path) -> pd.DataFrame:
    proc = run_consumer(model, *files, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return pd.read_csv(out, keep_default_na=False, dtype={"frame": str})


def max_diff(ref: pd.DataFrame, got: pd.DataFrame) -> float:
    """Max |p| difference over rows matched by (file name, frame); the row sets must be the same."""
    cols = [c for c in ref.columns if c.startswith("p_")]
    assert cols and cols == [c for c in got.columns if c.startswith("p_")]
    key = lambda df: df.assign(name=df["path"].map(lambda p: Path(p).name)).set_index(["name", "frame"])  # noqa: E731
    a, b = key(ref), key(got)
    assert sorted(a.index) == sorted(b.index)
    b = b.loc[a.index]
    assert (a["y_pred"] == b["y_pred"]).all()
    return float(np.abs(a[cols].to_numpy(float) - b[cols].to_numpy(float)).max())


@pytest.mark.slow
def test_recipe_in_metadata(exported) -> None:
    from sonokit.export import read_metadata

    meta = read_metadata(exported["run"] / "model.onnx")
    recipe = meta["preprocess"]
    assert recipe["recipe_version"] == 1 and recipe["standalone"] is True
    assert [s["op"] for s in recipe["steps"]] == ["to_channels", "letterbox", "scale", "normalise", "layout"]
    assert recipe["steps"][0]["channels"] == exported["channels"]
    assert recipe["steps"][1]["size"] == 64
    assert recipe["output"]["classes"] == meta["classes"]
    assert recipe["cine"]["aggregate"]["rule"] == "mean" and recipe["cine"]["frames"]["every"] == 1


@pytest.mark.slow
def test_standalone_equals_sonokit_predict(exported) -> None:
    root, run_dir, files = exported["root"], exported["run"], exported["inputs"]
    got = standalone(run_dir / "model.onnx", files, root / "standalone.csv")
    assert len(got) == len(files) - 1 + 5 + 1  # the cine: 5 frame rows and its "all" row
    assert list(got.loc[got["path"].str.endswith("cine.avi"), "frame"]) == ["0", "1", "2", "3", "4", "all"]
    for backend in ("torch", "onnx"):
        ref = sonokit_predict(run_dir, files, backend, root / f"sonokit_{backend}.csv")
        assert max_diff(ref, got) <= TOL, backend
    cols = [c for c in got.columns if c.startswith("p_")]
    assert got[cols].to_numpy(float).std(axis=0).max() > 1e-3  # the outputs depend on the input


@pytest.mark.slow
def test_a_wrong_pixel_would_be_caught(exported) -> None:
    """The 1e-4 tolerance is tight enough to see a letterbox padded one pixel off: the test above means something."""
    consumer = load_consumer()
    session, recipe = consumer.load_model(exported["run"] / "model.onnx")
    path = next(p for p in exported["inputs"] if p.name == "rgba_odd.png")  # 41x77 -> odd vertical padding
    right = consumer.predict(session, recipe, [path])[0]
    steps = recipe["steps"]
    x = consumer.apply_steps(consumer.decode_image(path), steps)
    shifted = np.roll(x, 1, axis=1)  # the extra padding row on top instead of the bottom
    logits = session.run(None, {session.get_inputs()[0].name: shifted[None]})[0]
    wrong = consumer.softmax(logits)[0]
    p = np.array([right[f"p_{c}"] for c in recipe["output"]["classes"]])
    assert np.abs(p - wrong).max() > TOL


@pytest.mark.slow
@pytest.mark.shared
def test_standalone_on_real_images(exported, tmp_path) -> None:
    """Real fetal-plane scans (large grey PNGs) and HC18 heads, when ../shared is there."""
    fetal, hc18 = (
        shared_data("fetal_planes_subset", "."),
        shared_data("hc18", "images"),
    )  # skip without ../shared
    scans, heads = sorted(fetal.glob("*/*.png"))[::8][:16], sorted((hc18 / "images").glob("*_HC.png"))[:4]
    assert len(scans) >= 10 and len(heads) == 4, f"real scans missing under {SHARED / 'data'}"
    files = scans + heads
    got = standalone(exported["run"] / "model.onnx", files, tmp_path / "standalone.csv")
    ref = sonokit_predict(exported["run"], files, "onnx", tmp_path / "sonokit.csv")
    assert len(got) == len(files)
    assert max_diff(ref, got) <= TOL


@pytest.mark.parametrize("rule", ["mean", "max"])
def test_video_rule_equals_sonokit(rule) -> None:
    """The consumer's cine aggregate is the task's video_rows rule, also with ties on the worst class."""
    from sonokit.core.config import resolve_config
    from sonokit.tasks import get_task

    classes = ["a", "b", "c"]
    cfg = resolve_config("classify", None, {"options": {"video_rule": rule}}, task_defaults={})
    task = get_task("classify")(cfg)
    task.classes = classes
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1, 1, 1], size=9)
    probs[4] = probs[7] = [
        0.01,
        0.01,
        0.98,
    ]  # two frames equally sure of the highest class, surer than the rest
    frames = pd.DataFrame({"path": "v.avi", "frame": [str(i) for i in range(9)], "y_true": "", "_group": "v"})
    for j, c in enumerate(classes):
        frames[f"p_{c}"] = probs[:, j]
    expected = task.video_rows(frames)[[f"p_{c}" for c in classes]].to_numpy(float)[0]
    got = load_consumer().aggregate(probs, rule)
    assert np.abs(got - expected).max() <= 1e-12  # mean: the summation order may differ in the last bit
    if rule == "max":
        assert np.array_equal(got, probs[4])  # the first of the tied frames, as sonokit picks it


def test_consumer_imports_no_sonokit() -> None:
    tree = ast.parse(CONSUMER.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert "sonokit" not in names
    third_party = names - set(sys.stdlib_module_names)
    assert third_party == {"cv2", "numpy", "onnxruntime"}


@pytest.mark.slow
def test_consumer_bad_inputs(exported, tmp_path) -> None:
    """A corrupt file, a model without a recipe, a sonokit-only recipe: one line each, exit 1, nothing written."""
    import onnx

    model = exported["run"] / "model.onnx"
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out.csv"
    proc = run_consumer(model, exported["inputs"][0], bad, "--out", out)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f"error: {bad}: not a readable image"
    ]
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))

    proto = onnx.load(str(model))
    meta = json.loads(proto.metadata_props[0].value)
    meta["preprocess"] = {**meta["preprocess"], "standalone": False, "reason": "sector crop is sonokit only"}
    proto.metadata_props[0].value = json.dumps(meta)
    onnx.save(proto, str(tmp_path / "echo.onnx"))
    proc = run_consumer(tmp_path / "echo.onnx", exported["inputs"][0], "--out", out)
    assert proc.returncode == 1 and "needs sonokit: sector crop is sonokit only" in proc.stderr
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    proc = run_consumer(tmp_path / "bare.onnx", exported["inputs"][0], "--out", out)
    assert proc.returncode == 1 and "no preprocessing recipe" in proc.stderr
    assert not out.exists()


def test_echo_and_other_recipes_say_sonokit_only() -> None:
    """Tasks whose preprocessing needs sonokit say so, and what a cine already at model size needs."""
    from sonokit.core.config import resolve_config
    from sonokit.tasks import get_task

    def recipe(name: str) -> dict:
        cfg = resolve_config(name, None, {}, task_defaults=get_task(name).defaults)
        return get_task(name)(cfg).export_recipe()

    for name in ("ef", "lv-seg"):
        r = recipe(name)
        assert r["recipe_version"] == 1 and r["standalone"] is False and r["sector_crop"] == "sonokit only"
        ops = [s["op"] for s in r["at_model_size"]["steps"]]
        assert ops == ["compact", "to_channels", "scale", "normalise", "layout"]
    assert recipe("ef")["at_model_size"]["steps"][-1]["layout"] == "NCTHW"
    assert recipe("av-calcification")["crop"] == "sonokit only"
    assert recipe("quality")["standalone"] is False
    assert recipe("lus")["standalone"] is True and recipe("lus")["cine"]["aggregate"]["rule"] == "max"
