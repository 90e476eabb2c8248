"""`sonokit pretrain`: SimCLR on unlabelled frames writes a backbone that every 2D model loads, resumes exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sonokit.errors import InputError
from sonokit.pretrain import BACKBONE_FILE, PretrainConfig, pretrain
from sonokit.pretrain.run import CARD_FILE, nt_xent


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory) -> Path:
    from sonokit.synth import make_dataset

    return make_dataset("fetal-planes", tmp_path_factory.mktemp("unlabelled"), n=60, seed=0, size=64)


def _cfg(data: Path, out: Path, **kw) -> PretrainConfig:
    values = {"model": "tinycnn", "size": 48, "batch_size": 30, "lr": 0.003, "epochs": 15, **kw}
    return PretrainConfig(data=[str(data)], out=str(out), **values)


def test_nt_xent_is_low_when_views_agree_and_high_when_they_do_not() -> None:
    torch.manual_seed(0)
    z = torch.randn(16, 8)
    assert nt_xent(z, z, 0.2) < 0.5 < nt_xent(z, torch.randn(16, 8), 0.2)


def test_the_loss_falls_and_the_run_folder_holds_a_usable_backbone(frames_dir, tmp_path) -> None:
    run = pretrain(_cfg(frames_dir, tmp_path / "run"))
    card = json.loads((run / CARD_FILE).read_text())
    losses = card["loss_per_epoch"]
    assert len(losses) == 15 and card["frames"] == 60 and card["files"] == 60
    assert sum(losses[-3:]) / 3 < losses[0] - 0.3  # from about log(59) = 4.08 at chance
    from sonokit.models import create

    model = create(
        "tinycnn", num_classes=6, in_chans=1, weights=run
    )  # the folder stands for its backbone file
    from safetensors.torch import load_file

    saved = load_file(str(run / BACKBONE_FILE))
    own = model.state_dict()
    assert saved and all(torch.equal(own[k], v) for k, v in saved.items())


def test_a_resumed_run_gives_the_weights_of_one_that_never_stopped(frames_dir, tmp_path) -> None:
    from safetensors.torch import load_file

    straight = pretrain(_cfg(frames_dir, tmp_path / "straight", epochs=3))
    stopped = pretrain(_cfg(frames_dir, tmp_path / "resumed", epochs=3, stop_after=2))
    with pytest.raises(InputError, match="--resume"):
        pretrain(_cfg(frames_dir, stopped, epochs=3))  # never overwrites a run by accident
    pretrain(_cfg(frames_dir, stopped, epochs=3, resume=True))
    a, b = (load_file(str(r / BACKBONE_FILE)) for r in (straight, stopped))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    card = json.loads((stopped / CARD_FILE).read_text())
    assert card["epochs_done"] == 3


@pytest.mark.parametrize(
    "name", ["tinycnn", "resnet18", "mobilenetv3_small", "efficientnet_b0", "mobilenetv2"]
)
def test_pretrained_weights_load_into_each_2d_backbone(name, frames_dir, tmp_path) -> None:
    from sonokit.models import create, load_weights

    run = pretrain(_cfg(frames_dir, tmp_path / name, model=name, size=64, epochs=1, batch_size=8))
    model = create(name, num_classes=3, in_chans=1, img_size=64)
    report = load_weights(model, run)
    assert not report["unexpected"] and not report["mismatched"]
    assert report["missing"] and all(k.startswith("head.") for k in report["missing"])  # only the new head


def _plane_table(frames_dir: Path, out: Path) -> Path:
    import pandas as pd

    meta = pd.read_csv(frames_dir / "FETAL_PLANES_DB_data.csv", sep=";")
    table = pd.DataFrame(
        {
            "path": [f"{frames_dir}/Images/{n}.png" for n in meta["Image_name"]],
            "label": meta["Plane"],
            "source": "sim",
        }
    )
    table.to_csv(out, index=False)
    return out


def test_supervised_pretraining_learns_the_labels_of_a_table(frames_dir, tmp_path) -> None:
    table = _plane_table(frames_dir, tmp_path / "planes.csv")
    run = pretrain(_cfg(table, tmp_path / "sup", method="supervised", epochs=12, batch_size=10, lr=0.003))
    card = json.loads((run / CARD_FILE).read_text())
    assert card["method"].startswith("supervised") and card["frames"] == 60
    assert all(k.startswith("sim:") for k in card["labels"]) and sum(card["labels"].values()) == 60
    losses = card["loss_per_epoch"]
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0]  # from about log(6) = 1.8 at chance; ~1.2 after 12 epochs
    from sonokit.models import create, load_weights

    report = load_weights(create("tinycnn", num_classes=2, in_chans=1, img_size=48), run)
    assert not report["unexpected"] and all(k.startswith("head.") for k in report["missing"])


def test_supervised_pretraining_refuses_tables_without_usable_labels(frames_dir, tmp_path) -> None:
    table = _plane_table(frames_dir, tmp_path / "planes.csv")
    with pytest.raises(InputError, match="one CSV table"):
        pretrain(_cfg(frames_dir, tmp_path / "a", method="supervised"))
    import pandas as pd

    rows = pd.read_csv(table)
    rows.drop(columns="label").to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(InputError, match="no `label` column"):
        pretrain(_cfg(tmp_path / "nolabel.csv", tmp_path / "b", method="supervised"))
    rows.loc[2, "label"] = None
    rows.to_csv(tmp_path / "blank.csv", index=False)
    with pytest.raises(InputError, match="1 rows have no label, e.g. row 4"):
        pretrain(_cfg(tmp_path / "blank.csv", tmp_path / "c", method="supervised"))
    with pytest.raises(InputError, match="unknown pretraining method"):
        pretrain(_cfg(table, tmp_path / "d", method="byol"))
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_bad_inputs_give_one_line_errors(tmp_path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("file\nx.png\n")
    with pytest.raises(InputError, match="no `path` column"):
        pretrain(PretrainConfig(data=[str(table)], out=str(tmp_path / "o")))
    (tmp_path / "empty").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "sonokit", "pretrain", str(tmp_path / "empty"), "--out", str(tmp_path / "o2")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "empty" in proc.stderr
    assert not (tmp_path / "o2").exists()


def test_a_backbone_of_another_network_is_refused_naming_the_network(frames_dir, tmp_path) -> None:
    """`pretrain --model tinycnn` then `train --weights RUN` with classify's default network must not train from
    random weights silently: the error names the backbone's network and the flag that fits it."""
    from sonokit.errors import ModelError
    from sonokit.models import create, load_weights

    for name in ("tinycnn", "resnet10_w16"):  # no tensor name in common / every shape different
        run = pretrain(_cfg(frames_dir, tmp_path / name, model=name, size=64, epochs=1, batch_size=8))
        with pytest.raises(ModelError, match=f"it holds a {name} backbone: train with --model {name}"):
            load_weights(create("resnet10_w32", num_classes=2, in_chans=1, img_size=64), run)
    assert PretrainConfig(data=[], out="x").model == "resnet10_w32"  # the default fits classify's network
