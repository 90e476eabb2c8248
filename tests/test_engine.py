"""The training engine on tiny real PNG data: overfitting, exact resume, k-fold grouping, corrupt files, configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sonokit.core.config import resolve_config, resume_config
from sonokit.errors import InputError
from sonokit.tasks import get_task
from sonokit.train.engine import fit, train

CLASSES = ("disc", "bar", "ring")


def make_table(root: Path, n_patients: int = 12, per_patient: int = 3, seed: int = 0) -> Path:
    """PNG files of speckle with a bright disc, bar or ring (3 classes), grouped by patient, plus table.csv."""
    import cv2

    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(n_patients):
        for j in range(per_patient):
            c = (p + j) % 3
            img = rng.rayleigh(35, (40, 48)).clip(0, 255).astype(np.uint8)
            cx, cy = int(rng.integers(16, 32)), int(rng.integers(14, 26))
            if c == 0:
                cv2.circle(img, (cx, cy), 7, 230, -1)
            elif c == 1:
                cv2.rectangle(img, (cx - 12, cy - 3), (cx + 12, cy + 3), 230, -1)
            else:
                cv2.circle(img, (cx, cy), 8, 230, 2)
            name = f"img/p{p:02d}_{j}.png"
            cv2.imwrite(str(root / name), img)
            rows.append({"path": name, "label": CLASSES[c], "group": f"P{p:02d}"})
    pd.DataFrame(rows).to_csv(root / "table.csv", index=False)
    return root / "table.csv"


def config(data: Path, out: Path, **kw):
    values = {
        "data": str(data),
        "out": str(out),
        "size": 32,
        "epochs": 2,
        "batch_size": 8,
        "lr": 0.005,
        "n_boot": 30,
        "patience": 0,
        "augment": {"enabled": False},
    }
    values.update(kw)
    return resolve_config("classify", overrides=values, task_defaults=get_task("classify").defaults)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return make_table(tmp_path_factory.mktemp("pngs"))


@pytest.mark.slow
def test_overfits_a_tiny_batch(tmp_path, table) -> None:
    from sonokit.data import load_index

    # tinycnn: the test is about the engine; a deeper net's batch-norm running statistics lag its batch statistics
    # over 30 steps at a constant lr on 8 images of 32 px (1x1 maps at stride 32), which is not what it checks
    cfg = config(
        table,
        tmp_path / "run",
        model="tinycnn",
        epochs=30,
        lr=0.01,
        scheduler="none",
        weight_decay=0.0,
        n_boot=0,
    )
    task = get_task("classify")(cfg)
    rows = load_index(table).iloc[:8]  # one batch: 8 images, all three classes
    task.setup_classes(rows)
    index = pd.concat([rows.assign(split="train"), rows.assign(split="val")], ignore_index=True)
    fit(task, index, tmp_path / "run")
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    train_loss = log[log["phase"] == "train"]["loss"].to_numpy()
    assert train_loss[-1] < 0.05 < train_loss[0]
    val = pd.read_json(tmp_path / "run" / "metrics_val.json", typ="series")
    assert val["accuracy"] == 1.0 and val["macro_f1"] == 1.0


def test_epochs_in_a_log_file_show_batch_progress(tmp_path, table, monkeypatch, caplog) -> None:
    """Without a terminal, a training epoch logs its batches (every batch here: SONOKIT_PROGRESS_EVERY=0)."""
    import io
    import logging
    import sys

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.delenv("SONOKIT_NO_PROGRESS", raising=False)
    monkeypatch.setenv("SONOKIT_PROGRESS_EVERY", "0")
    caplog.set_level(logging.INFO, logger="sonokit")
    train(config(table, tmp_path / "run", epochs=1, n_boot=0))
    lines = [r.getMessage() for r in caplog.records if r.name == "sonokit.progress"]
    n_train = (pd.read_csv(tmp_path / "run" / "splits.csv")["split"] == "train").sum()
    n_batches = -(-n_train // 8)
    assert [line.split(" (")[0] for line in lines if line.startswith("epoch 1/1:")] == [
        f"epoch 1/1: batch {i}/{n_batches}" for i in range(1, n_batches + 1)
    ]
    assert any(line.startswith("epoch 1 val: batch 1/") for line in lines)  # validation passes too


class _Killed(Exception):
    pass


def _kill_after(epoch: int):
    def callback(event) -> None:
        if event.epoch == epoch:
            raise _Killed

    return callback


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, table) -> None:
    # augmentation, dropout and the balanced sampler all draw random numbers: resume must reproduce them all
    kw = {"epochs": 4, "augment": {"rotation_deg": 10, "hflip": True}, "dropout": 0.2, "balance": "sampler"}
    train(config(table, tmp_path / "straight", **kw))
    with pytest.raises(_Killed):
        train(config(table, tmp_path / "killed", **kw), callbacks=[_kill_after(2)])
    ckpt = torch.load(tmp_path / "killed" / "checkpoint_last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and not (tmp_path / "killed" / "metrics_test.json").exists()

    train(resume_config(tmp_path / "killed"))
    a = torch.load(tmp_path / "straight" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint_last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 4
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], rtol=1e-5, atol=1e-7)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 4
    log_a = pd.read_csv(tmp_path / "straight" / "log.csv")
    log_b = pd.read_csv(tmp_path / "killed" / "log.csv")
    assert len(log_a) == len(log_b) == 8
    np.testing.assert_allclose(log_b["loss"], log_a["loss"], rtol=1e-5)
    np.testing.assert_allclose(log_b["metric"], log_a["metric"], rtol=1e-5)


def test_min_steps_gives_a_small_set_more_epochs_and_holds_early_stopping(tmp_path, table) -> None:
    """36 images (about 25 train) at batch 8: 3 batches an epoch, so min_steps 10 needs 4 epochs; patience 1 on
    a constant lr cannot stop the run before them, and the run folder records the epochs it trained."""
    import yaml

    cfg = config(table, tmp_path / "run", epochs=1, min_steps=10, patience=1, scheduler="none", n_boot=0)
    train(cfg)
    n_train = (pd.read_csv(tmp_path / "run" / "splits.csv")["split"] == "train").sum()
    batches = n_train // 8  # drop_last
    want = -(-10 // batches)
    assert want > 1
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert log["epoch"].max() == want
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["epochs"] == want and saved["min_steps"] == 10
    assert "min_steps" not in config(table, tmp_path / "x").semantic_dict()  # older runs keep their hash


def test_an_epoch_count_the_user_gives_is_not_stretched_by_the_defaults_min_steps(tmp_path) -> None:
    defaults = get_task("classify").defaults
    assert resolve_config("classify", task_defaults=defaults).min_steps == 300
    assert resolve_config("classify", overrides={"epochs": 3}, task_defaults=defaults).min_steps is None
    assert resolve_config("classify", sets={"epochs": 3}, task_defaults=defaults).min_steps is None
    both = resolve_config("classify", overrides={"epochs": 3}, sets={"min_steps": 50}, task_defaults=defaults)
    assert (both.epochs, both.min_steps) == (3, 50)
    own = tmp_path / "mine.yaml"
    own.write_text("epochs: 4\n")
    assert resolve_config("classify", config_file=own, task_defaults=defaults).min_steps is None


@pytest.mark.slow
def test_same_seed_same_numbers_and_refuses_to_overwrite(tmp_path, table) -> None:
    losses = []
    for name in ("a", "b"):
        train(config(table, tmp_path / name, epochs=1, augment={"rotation_deg": 15}))
        losses.append(pd.read_csv(tmp_path / name / "log.csv")["loss"].to_numpy())
    np.testing.assert_array_equal(losses[0], losses[1])
    with pytest.raises(InputError, match="already holds a run"):
        train(config(table, tmp_path / "a", epochs=1))


def test_kfold_never_leaks_a_patient(table) -> None:
    from sonokit.data import load_index
    from sonokit.train.cv import fold_index, fold_indices

    cfg = config(table, Path("unused"), folds=3)
    index = load_index(table)
    folds = fold_indices(index, 3, seed=0)
    held_out = [set(index.loc[test, "group"]) for _, test in folds]
    assert set().union(*held_out) == set(index["group"])  # every patient is held out once...
    assert sum(len(h) for h in held_out) == index["group"].nunique()  # ...and only once
    for (_, test), groups in zip(folds, held_out, strict=True):
        df = fold_index(index, test, cfg)
        by_split = {s: set(df.loc[df["split"] == s, "group"]) for s in ("train", "val", "test")}
        assert by_split["test"] == groups
        assert by_split["train"] and by_split["val"]
        assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
        assert not (by_split["val"] & by_split["test"])


def test_given_folds_are_used_as_given_and_a_leaking_fold_column_is_refused(table) -> None:
    from sonokit.data import load_index
    from sonokit.train.cv import fold_indices

    index = load_index(table)
    patient = index["group"].str[1:].astype(int)
    index["kFold"] = patient % 3 + 1  # published folds, numbered from 1
    folds = fold_indices(index, 3, seed=0, fold_col="kFold")
    assert [sorted(set(index.loc[test, "kFold"])) for _, test in folds] == [[1], [2], [3]]
    assert all(len(train) + len(test) == len(index) for train, test in folds)
    assert fold_indices(index, 0, seed=0, fold_col="kFold")[1][1].tolist() == folds[1][1].tolist()
    with pytest.raises(InputError, match="holds 3 folds"):
        fold_indices(index, 5, seed=0, fold_col="kFold")
    index.loc[0, "kFold"] = 3 if index.loc[0, "kFold"] != 3 else 1  # one image of a patient moved
    with pytest.raises(InputError, match="more than one fold"):
        fold_indices(index, 3, seed=0, fold_col="kFold")
    with pytest.raises(InputError, match="not in the table"):
        fold_indices(index, 3, seed=0, fold_col="fold")


def test_config_hash_of_runs_without_fold_col_is_unchanged(tmp_path, table) -> None:
    cfg = config(table, tmp_path / "run")
    assert "fold_col" not in cfg.semantic_dict()
    assert cfg.hash() != cfg.model_copy(update={"fold_col": "kFold"}).hash()


@pytest.mark.slow
def test_cross_validation_runs_every_fold(tmp_path, table) -> None:
    import json

    root = train(config(table, tmp_path / "cv", folds=2, epochs=1))
    cv = json.loads((root / "metrics_cv.json").read_text())
    assert cv["folds"] == 2 and [f"fold_{i}" for i in range(2)] == cv["runs"]
    acc = cv["metrics"]["accuracy"]
    assert len(acc["values"]) == 2 and acc["mean"] == pytest.approx(np.mean(acc["values"]))
    assert acc["std"] == pytest.approx(np.std(acc["values"], ddof=1))
    tests = [
        set(pd.read_csv(root / f"fold_{i}" / "splits.csv").query("split == 'test'")["path"]) for i in range(2)
    ]
    assert not tests[0] & tests[1]
    assert (root / "report.html").is_file()


def test_corrupt_image_is_reported_by_name(tmp_path) -> None:
    table = make_table(tmp_path / "data", n_patients=9, per_patient=2)
    bad = tmp_path / "data" / "img" / "p07_1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)  # right magic, broken content
    with pytest.raises(InputError, match="p07_1.png"):
        train(config(table, tmp_path / "run", epochs=1))
    assert not (tmp_path / "run" / "checkpoint_last.pt").exists()  # failed before any training


def test_configs_match_task_defaults_and_reject_typos(tmp_path) -> None:
    from sonokit.core.config import parse_sets, read_yaml
    from sonokit.tasks import task_names

    for name in task_names():
        if not (Path(__file__).parents[1] / "src" / "sonokit" / "configs" / f"{name}.yaml").is_file():
            continue
        defaults = get_task(name).defaults
        from_yaml = resolve_config(name, task_defaults={})
        from_class = resolve_config(name, task_defaults=defaults, config_dir=tmp_path)  # no YAML there
        assert from_yaml == from_class, f"configs/{name}.yaml and {name}'s Task.defaults disagree"
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(InputError, match="epochz"):
        resolve_config("classify", config_file=bad)
    good = tmp_path / "good.yaml"
    good.write_text("epochs: 3\nlr: 0.1\naugment: {rotation_deg: 5}\n")
    cfg = resolve_config(
        "lus", config_file=good, overrides={"lr": 0.5}, task_defaults=get_task("lus").defaults
    )
    assert (cfg.epochs, cfg.lr, cfg.augment.rotation_deg, cfg.augment.hflip) == (3, 0.5, 5, True)
    assert read_yaml(good)["epochs"] == 3
    sets = parse_sets(["options.video_rule=mean", "augment.hflip=false", "epochs=4"])
    cfg = resolve_config("lus", config_file=good, task_defaults=get_task("lus").defaults, sets=sets)
    assert (cfg.options["video_rule"], cfg.options["max_frames"], cfg.augment.hflip, cfg.epochs) == (
        "mean",
        16,
        False,
        4,
    )
    assert cfg.hash() == cfg.model_copy(update={"num_workers": 4, "out": "x"}).hash()
    assert cfg.hash() != cfg.model_copy(update={"lr": 0.2}).hash()


def test_amp_is_off_on_cpu_and_bf16_where_asked() -> None:
    from sonokit.core.loop import amp_dtype

    cfg = resolve_config("classify", task_defaults={})
    assert amp_dtype(cfg, torch.device("cpu")) is None
    assert amp_dtype(cfg.model_copy(update={"amp": "bf16"}), torch.device("cpu")) is torch.bfloat16
    assert amp_dtype(cfg.model_copy(update={"amp": "off"}), torch.device("cuda")) is None


def test_gather_outputs_drops_distributed_sampler_padding() -> None:
    from sonokit.core.distributed import DistInfo, gather_outputs

    # DistributedSampler pads the last rank with repeats of the first items; rows come back sorted and unique
    out = gather_outputs({"index": np.array([4, 0, 2, 0]), "y": np.array([40, 0, 20, 0])}, DistInfo())
    assert out["index"].tolist() == [0, 2, 4] and out["y"].tolist() == [0, 20, 40]


def test_channels_last_covers_2d_and_3d_convs_without_changing_outputs() -> None:
    from torch import nn

    from sonokit.core.loop import channels_last_model, to_device

    torch.manual_seed(0)
    model = nn.ModuleDict({"c2": nn.Conv2d(3, 4, 3), "c3": nn.Conv3d(3, 4, 3)}).eval()
    x2, x3 = torch.randn(2, 3, 9, 9), torch.randn(2, 3, 5, 9, 9)
    with torch.no_grad():
        ref2, ref3 = model["c2"](x2), model["c3"](x3)
    channels_last_model(model)  # Module.to(memory_format=...) would reject the 4-D weight for the 3-D format
    assert model["c2"].weight.is_contiguous(memory_format=torch.channels_last)
    assert model["c3"].weight.is_contiguous(memory_format=torch.channels_last_3d)
    batch = to_device({"image": x2, "clip": x3}, torch.device("cpu"), channels_last=True)
    assert batch["clip"].is_contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        assert torch.allclose(model["c2"](batch["image"]), ref2, atol=1e-5)
        assert torch.allclose(model["c3"](batch["clip"]), ref3, atol=1e-5)


@pytest.mark.slow
def test_ema_validates_and_keeps_the_averaged_weights_and_resumes_exactly(tmp_path, table) -> None:
    from safetensors.torch import load_file

    kw = {"epochs": 4, "ema": 0.9}
    train(config(table, tmp_path / "straight", **kw))
    train(config(table, tmp_path / "plain", epochs=4))
    with pytest.raises(_Killed):
        train(config(table, tmp_path / "killed", **kw), callbacks=[_kill_after(2)])
    train(resume_config(tmp_path / "killed"))
    a = torch.load(tmp_path / "straight" / "checkpoint_last.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint_last.pt", weights_only=True)
    for key, value in a["ema"].items():
        torch.testing.assert_close(b["ema"][key], value, rtol=1e-5, atol=1e-6)
    assert (
        int(a["ema"]["n_averaged"]) == 4 * 3
    )  # every optimizer step (3 batches an epoch) updates the average
    # what is kept is the average: not the last raw weights, and not what a run without ema learns
    kept = load_file(str(tmp_path / "straight" / "model.safetensors"))
    raw, plain = a["model"], load_file(str(tmp_path / "plain" / "model.safetensors"))
    weight = next(k for k in kept if k.endswith("weight") and kept[k].ndim == 4)
    assert not torch.allclose(kept[weight], raw[weight]) and not torch.allclose(kept[weight], plain[weight])
    val = pd.read_csv(tmp_path / "straight" / "log.csv").query("phase == 'val'").reset_index(drop=True)
    if int(val["metric"].idxmax()) == len(val) - 1:  # the last epoch was the best: kept = the final average
        torch.testing.assert_close(kept[weight], a["ema"][f"module.{weight}"])


def test_sgd_is_nesterov_with_no_decay_on_biases_and_the_default_stays_adamw(table) -> None:
    from sonokit.models import create
    from sonokit.train.optim import build_optimizer

    net = create("tinycnn", num_classes=3, in_chans=1)
    sgd = build_optimizer(net, config(table, Path("unused"), optimizer="sgd", weight_decay=5e-4))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert sorted(g["weight_decay"] for g in sgd.param_groups) == [0.0, 5e-4]
    assert isinstance(build_optimizer(net, config(table, Path("unused"))), torch.optim.AdamW)
    # unset, the option leaves the hash of runs trained before it existed alone; set, it changes it
    plain, adamw = config(table, Path("unused")), config(table, Path("unused"), optimizer="adamw")
    assert "optimizer" not in plain.semantic_dict() and plain.hash() != adamw.hash()


@pytest.mark.slow
def test_mixup_blends_training_batches_only_and_trains(tmp_path, table) -> None:
    cfg = config(table, tmp_path / "run", model="tinycnn", options={"mixup": 0.4})
    task = get_task("classify")(cfg)
    task.setup_classes(task.read_index())
    task.setup_loss(task.read_index(), torch.device("cpu"))
    net = task.build_model()
    torch.manual_seed(0)
    x = torch.rand(6, 1, 32, 32)
    batch = {"x": x.clone(), "y": torch.tensor([0, 1, 2, 0, 1, 2])}
    net.eval()
    evaluated = task.forward(net, batch)
    assert "mixup" not in batch  # evaluation and prediction never blend
    seen: list[torch.Tensor] = []
    net.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().clone()))
    net.train()
    mixed = task.forward(net, batch)
    perm, lam = batch["mixup"]
    assert 0.0 < lam < 1.0 and sorted(perm.tolist()) == list(range(6)) and perm.tolist() != list(range(6))
    # what the network saw: the normalised batch blended with its shuffled copy
    xn = (x - 0.5) / 0.25
    torch.testing.assert_close(seen[-1], lam * xn + (1 - lam) * xn[perm])
    # the loss is the blend of the two labels' losses, not the loss of the image's own label
    own = torch.nn.functional.cross_entropy(mixed, batch["y"], weight=torch.tensor(task.class_weights))
    other = torch.nn.functional.cross_entropy(
        mixed, batch["y"][perm], weight=torch.tensor(task.class_weights)
    )
    torch.testing.assert_close(task.loss(mixed, batch), lam * own + (1 - lam) * other)
    assert evaluated.shape == mixed.shape
    run = train(cfg)
    log = pd.read_csv(run / "log.csv")
    assert np.isfinite(log["loss"]).all() and (run / "model.safetensors").is_file()
