"""The ultrasound backbone inside the package: present in the install, loaded by `--init auto|ultrasound`,
never in place of an explicit `--weights`, refused where it cannot fit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from sonokit.errors import ModelError
from sonokit.models import build, create
from sonokit.models.shipped import shipped_backbone, shipped_card


@pytest.fixture(scope="module")
def shipped():
    path = shipped_backbone("tinycnn", 1)
    assert path is not None, "the shipped backbone is missing from the package (pyproject package-data)"
    return path


def test_the_package_carries_a_small_backbone_with_its_card(shipped) -> None:
    assert shipped.stat().st_size < 5_000_000
    card = shipped_card(shipped)
    assert card["model"] == "tinycnn" and card["input"]["channels"] == 1
    assert card["method"].startswith("supervised") and card["epochs_done"] >= 1
    assert {"BUS-BRA", "FETAL_PLANES_DB", "HC18"} <= {d["set"].split(" ")[0] for d in card["data"]}
    assert all(d["licence"] and d["cite"] for d in card["data"])
    out = subprocess.run(
        [sys.executable, "-m", "sonokit", "models", "shipped", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert listed[0]["present"] and listed[0]["file"] == shipped.name


def test_classify_networks_backbone_ships_in_half_precision_and_loads_as_float32() -> None:
    """resnet10_w32 (classify and fetal-plane's default network) has its own file, stored in float16."""
    path = shipped_backbone("resnet10_w32", 1)
    assert path is not None and path.stat().st_size < 3_000_000
    card = shipped_card(path)
    assert card["model"] == "resnet10_w32" and card["method"].startswith("supervised")
    saved = load_file(str(path))
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {torch.float16}
    model = create("resnet10_w32", num_classes=2, in_chans=1, pretrained="ultrasound")
    own = model.state_dict()
    assert all(torch.equal(own[k], v.to(own[k].dtype)) for k, v in saved.items())
    assert model.spec["init"] == f"shipped:{path.name}" and own["head.fc.weight"].dtype == torch.float32


def test_init_auto_and_ultrasound_start_from_it(shipped) -> None:
    saved = load_file(str(shipped))
    for init in ("auto", "ultrasound"):
        model = create("tinycnn", num_classes=3, in_chans=1, pretrained=init)
        own = model.state_dict()
        assert all(torch.equal(own[k], v) for k, v in saved.items())
        assert model.spec["init"] == f"shipped:{shipped.name}"
    scratch = create("tinycnn", num_classes=3, in_chans=1, pretrained="none")
    assert scratch.spec["init"] == "random"
    first = next(k for k in saved if k.endswith("weight"))
    assert not torch.equal(scratch.state_dict()[first], saved[first])


def test_explicit_weights_win_and_misfits_are_handled(shipped, tmp_path) -> None:
    other = create("tinycnn", num_classes=2, in_chans=1, pretrained="none")
    path = tmp_path / "w.pt"
    torch.save(other.state_dict(), path)
    model = create("tinycnn", num_classes=2, in_chans=1, pretrained="auto", weights=path)
    assert model.spec["init"] == "weights"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in other.state_dict().items())
    # no shipped backbone for 3 channels or resnet18: auto trains from random weights, ultrasound refuses
    assert create("tinycnn", num_classes=2, in_chans=3, pretrained="auto").spec["init"] == "random"
    with pytest.raises(ModelError, match="no shipped backbone for resnet18"):
        create("resnet18", num_classes=2, pretrained="ultrasound")
    with pytest.raises(ModelError, match="no weights can be downloaded"):
        create("tinycnn", num_classes=2, pretrained="imagenet")
    build("unet-tiny", kind="segmentation", pretrained="auto")  # other kinds: auto means random weights
    with pytest.raises(ModelError, match="no shipped backbone for segmentation networks"):
        build("unet-tiny", kind="segmentation", pretrained="ultrasound")


def test_train_init_ultrasound_records_it_in_the_card(shipped, tmp_path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, top in (("a", 255), ("b", 120)):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(8):
            Image.fromarray((rng.random((48, 48)) * top).astype(np.uint8)).save(
                tmp_path / "data" / label / f"p{i}{label}.png"
            )
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "sonokit", "train", "classify", "--data", str(tmp_path / "data"), "--out", str(run),
           "--model", "tinycnn", "--init", "ultrasound", "--epochs", "1", "--size", "48", "--set", "min_steps=1", "--quiet"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    card = json.loads((run / "model_card.json").read_text())
    assert card["architecture"]["init"] == f"shipped:{shipped.name}"
    assert "pretrained: ultrasound" in (run / "config.yaml").read_text()
    bad = subprocess.run([*cmd[:7], "--out", str(tmp_path / "bad"), "--model", "resnet18", "--init", "ultrasound"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode != 0 and "no shipped backbone for resnet18" in bad.stderr
    assert not (tmp_path / "bad" / "model.safetensors").exists()
    # classify's default network (resnet10_w32) starts from its own shipped file
    default = subprocess.run([*cmd[:7], "--out", str(tmp_path / "rn10"), *cmd[11:]], capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert default.returncode == 0, default.stderr
    card = json.loads((tmp_path / "rn10" / "model_card.json").read_text())
    assert card["architecture"]["init"] == f"shipped:{shipped_backbone('resnet10_w32', 1).name}"
