"""Model registry, heads, weight loading and the `sonokit models list` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sonokit.errors import ModelError
from sonokit.models import KINDS, build, count_params, create, list_models, load_weights, model_names
from sonokit.models.heads import HEADS

REQUIRED = {
    "tinycnn",
    "efficientnet_b0",
    "efficientnet_b4",
    "mobilenetv3_small",
    "mobilenetv3_large",
    "mobilenetv2",
    "resnet10_w16",
    "resnet10_w32",
    "resnet18",
    "resnet50",
    "resnet152",
    "vgg16",
    "xception",
}
# Deep nets run at the smallest size they accept (32 px, stride 32) to keep the matrix fast on 2 cores.
HEAVY = {"efficientnet_b4", "resnet50", "resnet152", "vgg16", "xception"}


def test_registry_lists_every_required_backbone() -> None:
    assert REQUIRED <= set(model_names("image"))
    rows = {r["name"]: r for r in list_models()}
    assert set(rows) == set(model_names())
    for row in rows.values():
        assert row["family"] and row["description"] and row["params"] > 0 and row["kind"] in KINDS
    # counts are for 1 class / 1 channel with the linear head; vgg16 is its conv trunk only (no 4096-wide FC)
    assert rows["tinycnn"]["params"] < 200_000
    assert (
        rows["resnet10_w16"]["params"] < rows["resnet10_w32"]["params"] < 1.5e6 < rows["resnet18"]["params"]
    )
    assert 11.0e6 < rows["resnet18"]["params"] < 11.3e6
    assert rows["resnet152"]["params"] > 55e6
    assert 14.5e6 < rows["vgg16"]["params"] < 15e6
    assert count_params("resnet18") == rows["resnet18"]["params"]


def test_one_registry_holds_every_kind_of_network() -> None:
    """The echo video, segmentation and landmark networks sit in the same registry as the image backbones, under
    the names saved runs' config.yaml hold, each with its kind; `build` makes any of them and checks the kind."""
    kinds = {r["name"]: r["kind"] for r in list_models()}
    assert {n: kinds[n] for n in ("two-stream", "two-stream-tiny", "r2plus1d_18")} == dict.fromkeys(
        ("two-stream", "two-stream-tiny", "r2plus1d_18"), "video"
    )
    seg = ("unet", "unet-tiny", "lraspp", "deeplabv3_resnet50")
    assert {n: kinds[n] for n in seg} == dict.fromkeys(seg, "segmentation")
    assert kinds["unet-points"] == kinds["unet-tiny-points"] == "landmarks"
    assert model_names("video") == ["two-stream", "two-stream-tiny", "r2plus1d_18"]
    assert set(model_names("image")) == {n for n, k in kinds.items() if k == "image"}
    rows = {r["name"]: r for r in list_models("segmentation")}
    assert set(rows) == set(seg) and rows["unet-tiny"]["params"] < rows["unet"]["params"]
    assert 31e6 < count_params("r2plus1d_18") < 32e6  # torchvision's R(2+1)D-18 with a one-output head

    torch.manual_seed(0)
    video = build("two-stream-tiny", kind="video", in_chans=1).eval()
    with torch.no_grad():
        assert video(torch.rand(2, 1, 8, 32, 32)).shape == (2, 1)
    points = build("unet-tiny-points", kind="landmarks", in_chans=1, points=3).eval()
    with torch.no_grad():
        assert points(torch.rand(1, 1, 32, 32)).shape == (1, 6)
    image = build("tinycnn", kind="image", num_classes=4)  # the image kind goes through create()
    assert image.spec["name"] == "tinycnn" and image.spec["num_classes"] == 4
    with pytest.raises(ModelError, match="unet is a segmentation model, not an image model"):
        create("unet")
    with pytest.raises(ModelError, match="r2plus1d_18 .*takes 3 channels"):
        build("r2plus1d_18", kind="video", in_chans=1)
    with pytest.raises(ModelError, match=r"no weights can be downloaded.*--weights PATH"):
        build("unet-tiny", kind="segmentation", pretrained="imagenet")


@pytest.mark.parametrize("head_index, head", list(enumerate(HEADS)))
@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_backbone_with_every_head(name: str, head_index: int, head: str) -> None:
    # Alternating 1 and 3 input channels over the heads covers both for every backbone.
    in_chans = 1 if head_index % 2 == 0 else 3
    size = 32 if name in HEAVY else 64
    torch.manual_seed(0)
    model = create(name, num_classes=6, in_chans=in_chans, head=head, img_size=size).eval()
    x = torch.randn(2, in_chans, size, size)
    seen: list[torch.Tensor] = []
    handle = model.gradcam_layer.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        out = model(x)
        emb = model.embed(x)
    handle.remove()
    assert out.shape == (2, 6) and torch.isfinite(out).all()
    assert emb.shape == (2, model.spec["feature_dim"])
    assert seen and seen[0].ndim == 4 and seen[0].shape[1] == model.spec["backbone_dim"]
    stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.in_channels == in_chans  # grayscale stem, no channel tripling
    assert model.spec["name"] == name and model.spec["head"] == head and model.spec["num_classes"] == 6


def test_heads_differ_in_what_they_pool() -> None:
    torch.manual_seed(0)
    feats = torch.zeros(1, 128, 8, 8)
    feats[0, :, 0, 0] = 10.0  # one hot spot: max pooling sees 10, average pooling 10/64
    avg = create("tinycnn", head="avg", hidden=0).head
    mx = create("tinycnn", head="max", hidden=0).head
    assert torch.allclose(avg.embed(feats), torch.full((1, 128), 10 / 64))
    assert torch.allclose(mx.embed(feats), torch.full((1, 128), 10.0))
    flat = create("tinycnn", head="none", img_size=64, hidden=0).head
    assert flat.embed(feats).shape == (1, 128 * 8 * 8)
    with pytest.raises(ValueError, match="img_size"):
        flat.embed(torch.zeros(1, 128, 4, 4))
    att = create("tinycnn", head="attention-mlp", num_classes=6).head
    linears = [m for m in att.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 and linears[-1].out_features == 6  # 3-layer MLP after the attention


def test_pretrained_imagenet_fails_clearly() -> None:
    with pytest.raises(ModelError, match=r"no weights can be downloaded.*--weights PATH"):
        create("resnet18", pretrained="imagenet")


def test_unknown_model_and_head() -> None:
    with pytest.raises(ModelError, match="did you mean resnet18"):
        create("resnet81")
    with pytest.raises(ModelError, match="unknown head"):
        create("tinycnn", head="gem")
    with pytest.raises(ModelError, match="resnet18: unsupported option"):
        create("resnet18", width=8)
    with pytest.raises(ModelError, match="at least 32"):
        create("vgg16", head="none", img_size=16)


def _prefixed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"module.{k}": v.clone() for k, v in state.items()}


def test_load_weights_round_trip_pt_and_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(1)
    src = create("tinycnn", num_classes=3, head="attention-mlp").eval()
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        want = src(x)
    # EchoNet-Dynamic style: DataParallel prefixes and a dict with optimiser state beside the weights
    pt = tmp_path / "echonet_style.pt"
    torch.save({"epoch": 7, "state_dict": _prefixed(src.state_dict()), "best_loss": 0.5}, pt)
    st = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in _prefixed(src.state_dict()).items()}, str(st))

    for path in (pt, st):
        torch.manual_seed(99)
        dst = create("tinycnn", num_classes=3, head="attention-mlp").eval()
        with torch.no_grad():
            assert not torch.allclose(dst(x), want)  # a fresh model differs before loading
        report = load_weights(dst, path, strict=True)
        assert report["missing"] == [] and report["unexpected"] == [] and report["mismatched"] == []
        with torch.no_grad():
            assert torch.equal(dst(x), want)
    via_create = create("tinycnn", num_classes=3, head="attention-mlp", weights=st).eval()
    with torch.no_grad():
        assert torch.equal(via_create(x), want)


def test_load_bare_timm_backbone_and_adapt_rgb_stem(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(2)
    rgb = timm.create_model("resnet18", pretrained=False, num_classes=1000, in_chans=3)
    path = tmp_path / "resnet18_rgb.pth"
    torch.save(rgb.state_dict(), path)
    model = create("resnet18", num_classes=2, in_chans=1)
    report = load_weights(model, path)
    # a torchvision/timm backbone file: the 1000-class fc is unexpected, our head is missing, nothing else
    assert sorted(report["missing"]) == ["head.fc.bias", "head.fc.weight"]
    assert sorted(report["unexpected"]) == ["fc.bias", "fc.weight"]
    assert torch.equal(model.backbone.layer4[1].conv2.weight, rgb.layer4[1].conv2.weight)
    # RGB stem summed into one grayscale channel (timm's adapt_input_conv)
    assert torch.allclose(model.backbone.conv1.weight, rgb.conv1.weight.sum(dim=1, keepdim=True))
    with pytest.raises(ModelError, match=r"strict load failed: 2 missing.*2 unexpected"):
        load_weights(create("resnet18", num_classes=2, in_chans=1), path, strict=True)


def test_load_weights_rejects_bad_files(tmp_path: Path) -> None:
    model = create("tinycnn")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ModelError, match="garbage.pt: not a readable torch checkpoint"):
        load_weights(model, garbage)
    bad_st = tmp_path / "broken.safetensors"
    bad_st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ModelError, match="broken.safetensors: not a readable safetensors file"):
        load_weights(model, bad_st)
    other = tmp_path / "other_net.pt"
    torch.save({"encoder.block.weight": torch.zeros(3)}, other)
    with pytest.raises(ModelError, match="other_net.pt: no tensor names match"):
        load_weights(model, other)
    with pytest.raises(ModelError, match="missing.pt: weights file not found"):
        load_weights(model, tmp_path / "missing.pt")


@pytest.mark.slow
def test_models_list_cli() -> None:
    # the table through a real subprocess (console entry, exit code); --json in-process to save a torch import
    from typer.testing import CliRunner

    from sonokit.cli.main import app

    table = subprocess.run(
        [sys.executable, "-m", "sonokit", "models", "list"], capture_output=True, text=True, timeout=120
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["name", "kind", "family", "params"]
    kind_of = {line.split()[0]: line.split()[1] for line in lines[2:] if line.strip() and "heads" not in line}
    assert {name: kind_of[name] for name in REQUIRED} == dict.fromkeys(REQUIRED, "image")
    assert kind_of["two-stream"] == "video" and kind_of["unet"] == "segmentation"
    assert kind_of["unet-points"] == "landmarks"
    out = CliRunner().invoke(app, ["models", "list", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert {r["name"] for r in rows} >= REQUIRED | {"r2plus1d_18", "deeplabv3_resnet50"}
    assert next(r for r in rows if r["name"] == "resnet18")["params"] > 11e6
    video = CliRunner().invoke(app, ["models", "list", "--json", "--kind", "video"])
    assert video.exit_code == 0, video.output
    assert [r["name"] for r in json.loads(video.output)] == ["two-stream", "two-stream-tiny", "r2plus1d_18"]
    bad = CliRunner().invoke(app, ["models", "list", "--kind", "audio"])
    assert bad.exit_code != 0 and "unknown kind" in bad.output
