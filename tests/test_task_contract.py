"""One contract test over every registered task, as timm's tests/test_models.py runs one over every model name.

For each name in `task_names()` (a task registered later is covered without editing this file, and one without a
tiny-data recipe below fails loudly rather than being skipped): simulate a few items of its kind on disk, resolve the
config as `sonokit train` does, build task, model and datasets, run one training step on a real collated batch
(finite loss, a finite gradient on every parameter), run the test split through the engine's eval loop, turn the
outputs into prediction rows and metrics, then store the task state with the weights in a run folder, load it the
way `sonokit predict` does and check that the fresh task gives the same predictions, metrics and loss, also when the
same files come back as new, unlabelled inputs.

The models are untrained: the test checks the contract between task and engine, not accuracy.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from sonokit.core.config import resolve_config
from sonokit.tasks import Task, TaskOptions, get_task, task_names

SEED = 0
# what every recipe shares: small batches on the CPU, few bootstrap resamples
TINY = {"epochs": 2, "batch_size": 4, "n_boot": 20, "seed": SEED, "device": "cpu", "num_workers": 0}


def _all_rows(preds: pd.DataFrame) -> pd.Series:
    return pd.Series(True, index=preds.index)


def _not_video_rows(preds: pd.DataFrame) -> pd.Series:
    return preds["frame"] != "all"


def _clip_rows(preds: pd.DataFrame) -> pd.Series:
    return preds["protocol"] == "clip"


def _frame_level(preds: pd.DataFrame) -> pd.Series:
    return preds["level"] == "frame"


def _originals(preds: pd.DataFrame) -> pd.Series:
    return preds["y_true"] == "original"


@dataclass(frozen=True)
class Recipe:
    """Tiny data and config for one task.

    kind/n/size/seed/synth: the simulated dataset (`sonokit synth <kind>`); data: the file or folder inside it that
    `--data` names; overrides: config values on top of the task defaults (flags and --set of `sonokit train`);
    item_rows: which prediction rows are per item (the others aggregate items, e.g. one row per video);
    same_input: which per-item rows of a labelled split a file given to `predict_items` reproduces (None: the
    task feeds new files to the model differently, so their predictions are not comparable).
    """

    kind: str
    n: int
    size: int
    overrides: dict[str, Any]
    item_rows: Callable[[pd.DataFrame], pd.Series] = _all_rows
    same_input: Callable[[pd.DataFrame], pd.Series] | None = _all_rows
    data: str = ""
    seed: int = SEED
    synth: dict[str, Any] = field(default_factory=dict)


# three cines, FileList's own split: one each for train, val and test
ECHO = {"kind": "echo", "n": 3, "size": 32, "synth": {"realism": "basic"}}
SPLIT_HALF = {"val_fraction": 0.25, "test_fraction": 0.25}

RECIPES: dict[str, Recipe] = {
    "classify": Recipe(
        kind="psax",  # 4 patients of 4 frames; seed 0 puts both labels in the training split
        n=16,
        size=48,
        data="labels.csv",  # a plain table: path, label (calcified 0/1), group
        overrides={"size": 32, **SPLIT_HALF},
    ),
    "fetal-plane": Recipe(
        kind="fetal-planes",  # 3 patients: the middle one is the published test split (Train = 0)
        n=12,
        size=48,
        overrides={"size": 32, "val_fraction": 0.25, "options": {"gradcam_samples": 0}},
        item_rows=_not_video_rows,
    ),
    "lus": Recipe(
        kind="lus",  # 12 cines of 4 patients; seed 2: scores 0-2 in training, 0 and 1 in the test split
        n=12,
        size=32,
        seed=2,
        data="lus.csv",
        overrides={
            "size": 32,
            **SPLIT_HALF,
            "options": {"frame_every": 4, "max_frames": 3, "train_frames_per_epoch": 2},
        },
        item_rows=_not_video_rows,
        same_input=_not_video_rows,
    ),
    "ef": Recipe(
        **ECHO,
        overrides={
            "model": "two-stream-tiny",
            "size": 32,
            "options": {"frames": 4, "period": 4, "clip_stride": 32, "pad": 2},
        },
        item_rows=_clip_rows,
        same_input=_clip_rows,
    ),
    "lv-seg": Recipe(
        **ECHO,
        overrides={"model": "unet-tiny", "size": 32, "options": {"area_plots": 0}},
        item_rows=_frame_level,
        same_input=_frame_level,
    ),
    "lv-trace": Recipe(
        **ECHO,
        overrides={"model": "tinycnn", "size": 32, "options": {"area_plots": 0}},
        item_rows=_frame_level,
        same_input=_frame_level,
    ),
    "av-detect": Recipe(
        kind="psax",
        n=16,
        size=48,
        overrides={"size": 32, **SPLIT_HALF, "options": {"montage": 0}},
    ),
    "av-calcification": Recipe(
        kind="psax",
        n=16,
        size=48,
        overrides={"size": 32, **SPLIT_HALF},
        same_input=None,  # labelled frames are cropped at their valve box; a new file is taken as a crop already
    ),
    "quality": Recipe(
        kind="fetal-planes",  # clean images; the task makes the corrupted copies
        n=12,
        size=48,
        data="Images",
        overrides={"size": 32, **SPLIT_HALF, "options": {"gradcam_per_class": 0}},
        same_input=_originals,  # a new file is predicted as it is: the uncorrupted copy of a labelled image
    ),
}

# columns that hold what the model predicted (besides y_pred, *_pred and p_<class>): the detector's box
BOX_COLUMNS = ("status", "score", "x1", "y1", "x2", "y2")


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory) -> Callable[[Recipe], Path]:
    """`recipe -> --data path`, each simulated dataset written once and shared by the tasks that read it."""
    from sonokit.synth import make_dataset

    made: dict[tuple, Path] = {}

    def get(recipe: Recipe) -> Path:
        key = (recipe.kind, recipe.n, recipe.size, recipe.seed, tuple(sorted(recipe.synth.items())))
        if key not in made:
            out = tmp_path_factory.mktemp(recipe.kind) / "data"
            made[key] = make_dataset(
                recipe.kind, out, n=recipe.n, seed=recipe.seed, size=recipe.size, **recipe.synth
            )
        return made[key] / recipe.data if recipe.data else made[key]

    return get


def _loader(task: Task, dataset: torch.utils.data.Dataset, batch_size: int) -> torch.utils.data.DataLoader:
    from sonokit.core.loop import make_loader

    return make_loader(dataset, task, batch_size, 0, torch.device("cpu"))


def _items(task: Task, index: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Item rows per split, as the engine derives them: the task expands each split's index rows."""
    return {
        split: task.expand(index[index["split"] == split])
        for split in ("train", "val", "test")
        if (index["split"] == split).any()
    }


def _infer(task: Task, model: torch.nn.Module, items: pd.DataFrame) -> tuple[float, dict[str, np.ndarray]]:
    """The engine's eval loop over the task's eval dataset: (mean loss or NaN when unlabelled, collected)."""
    from sonokit.core.loop import infer

    dataset = task.build_dataset(items, train=False)
    return infer(task, model, _loader(task, dataset, task.cfg.batch_size), torch.device("cpu"))


def _strict_json(obj: Any) -> Any:
    """obj through JSON with no fallback (save_weights' default=str would turn a numpy value into a string)."""
    return json.loads(json.dumps(obj))


def _is_prediction(column: str) -> bool:
    """A column holding what the model predicted (not the truth, not an item or a private column)."""
    return column == "y_pred" or column.endswith("_pred") or column.startswith("p_") or column in BOX_COLUMNS


def _same_value(a: Any, b: Any) -> bool:
    """Equal numbers, or both missing (None or NaN)."""
    a_missing = a is None or (isinstance(a, float) and math.isnan(a))
    b_missing = b is None or (isinstance(b, float) and math.isnan(b))
    if a_missing or b_missing:
        return a_missing and b_missing
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)


# ---------------------------------------------------------------------------------------------- the contract


def test_every_recipe_names_a_registered_task() -> None:
    assert set(RECIPES) <= set(task_names()), sorted(set(RECIPES) - set(task_names()))


def _parameters(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", task_names())
def test_task_keeps_the_base_signatures_and_ships_its_config(name: str) -> None:
    """The engine, evaluation and prediction call every hook with the base class's arguments; the defaults
    are mirrored by configs/<name>.yaml and build a task as they are."""
    from sonokit.core.config import config_tasks

    cls = get_task(name)
    for attr, base in vars(Task).items():
        if attr.startswith("_") or not inspect.isfunction(base):
            continue
        impl = getattr(cls, attr)
        assert _parameters(impl) == _parameters(base), f"{cls.__name__}.{attr} changes the signature"
    assert issubclass(cls.Options, TaskOptions)
    assert name in config_tasks(), f"no configs/{name}.yaml"
    task = cls(resolve_config(name, task_defaults=cls.defaults))
    assert task.cfg.task == name and isinstance(task.opts, cls.Options)


@pytest.mark.slow
@pytest.mark.parametrize("name", task_names())
def test_task_contract(name: str, synth_data, tmp_path: Path) -> None:
    from sonokit.core.checkpoint import save_weights
    from sonokit.core.loop import channels_last_model, to_device
    from sonokit.core.run import load_run, public_columns
    from sonokit.train.card import build_card

    if name not in RECIPES:
        pytest.fail(f"task {name!r} is registered but has no tiny-data recipe in RECIPES of {__file__}")
    recipe = RECIPES[name]
    cls = get_task(name)
    assert cls.name == name and cls.kind and cls.monitor[1] in ("min", "max")
    assert isinstance(cls.defaults, dict)

    # ---- config as `sonokit train` resolves it: task defaults < configs/<task>.yaml < flags
    data = synth_data(recipe)
    overrides = {**TINY, **recipe.overrides, "data": str(data), "out": str(tmp_path / "run")}
    cfg = resolve_config(name, overrides=overrides, task_defaults=cls.defaults)
    assert cfg.task == name and cfg.data == str(data.resolve())

    # ---- index, splits and items
    task = cls(cfg)
    index = task.prepare_index()
    assert {"path", "split"} <= set(index.columns)
    assert set(index["split"]) <= {"train", "val", "test"}, set(index["split"])
    items = _items(task, index)
    assert {"train", "test"} <= set(items), f"the recipe gives no train or test items: {sorted(items)}"
    for split, df in items.items():
        assert len(df) > 0, split
        task.check_items(df)
    if cls.kind == "classification":
        assert task.classes and len(task.classes) >= 2, task.classes
        assert items["train"]["label"].astype(str).nunique() >= 2, (
            "the recipe must train on two classes or more"
        )
    card_data = task.describe_data(index, items)
    assert _strict_json(card_data)["counts"] == {s: len(df) for s, df in items.items()}

    # ---- model and one training step on a real collated batch, through the task's own step
    torch.manual_seed(SEED)
    model = task.build_model()
    if cfg.channels_last:
        channels_last_model(model)
    device = torch.device("cpu")
    task.setup_loss(items["train"], device)
    train_ds = task.build_dataset(items["train"], train=True)
    if hasattr(train_ds, "set_epoch"):
        train_ds.set_epoch(0)
    assert len(train_ds) == len(items["train"])
    batch = next(iter(_loader(task, train_ds, max(2, min(cfg.batch_size, len(train_ds))))))
    batch = to_device(batch, device, cfg.channels_last)
    assert isinstance(batch, dict) and "index" in batch
    n_batch = len(batch["index"])
    assert n_batch >= 2
    assert task.has_targets(batch), "a training batch of labelled items must count as labelled"
    model.train()
    outputs = task.forward(model, batch)
    loss = task.loss(outputs, batch)
    assert loss.ndim == 0 and torch.isfinite(loss), loss
    model.zero_grad(set_to_none=True)
    loss.backward()
    # every parameter takes part: DistributedDataParallel (torchrun) is built without find_unused_parameters
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without a gradient: {no_grad[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.grad is not None)
    part = task.collect(outputs, batch)
    assert "index" in part and all(isinstance(v, np.ndarray) for v in part.values())
    assert all(len(v) == n_batch for v in part.values()), {k: v.shape for k, v in part.items()}

    # ---- the test split through the engine's eval loop, as after the last epoch: rows, metrics, the score
    if hasattr(train_ds, "set_epoch"):
        train_ds.set_epoch(cfg.epochs - 1)  # epoch-scheduled losses (lv-trace's volume ramp) at their end
    test = items["test"]
    eval_loss, collected = _infer(task, model, test)
    assert math.isfinite(eval_loss), "the test items are labelled: the eval loss must be a number"
    assert sorted(collected["index"].tolist()) == list(range(len(test)))
    preds = task.predictions(collected, test)
    assert {"path", "y_true", "y_pred"} <= set(preds.columns), list(preds.columns)
    if "frame" in test.columns or "clip" in test.columns:
        assert "frame" in preds.columns, list(preds.columns)
    per_item = preds[recipe.item_rows(preds)]
    assert len(per_item) == len(test), f"{len(per_item)} item rows for {len(test)} items"
    assert per_item["path"].astype(str).tolist() == test["path"].astype(str).tolist()
    assert set(preds["path"].astype(str)) == set(test["path"].astype(str))
    if cls.kind not in (
        "segmentation",
        "keypoints",
    ):  # the LV tasks give EF (y_pred) per video, not per frame
        assert per_item["y_pred"].notna().all()
    probs = getattr(task, "prob_columns", lambda: [])()
    if cls.kind == "classification":
        assert probs == [f"p_{c}" for c in task.classes]
        assert set(probs) <= set(preds.columns)
        np.testing.assert_allclose(preds[probs].to_numpy(float).sum(axis=1), 1.0, rtol=1e-5)
        assert set(preds["y_pred"]) <= set(task.classes)
        assert set(per_item["y_true"]) <= set(task.classes)
    public = public_columns(preds)
    assert not any(str(c).startswith("_") for c in public.columns)

    metrics = _strict_json(task.metrics(preds, cfg.n_boot, cfg.seed))  # what metrics_<split>.json holds
    monitor, _ = cls.monitor
    assert monitor in metrics, f"the monitored metric {monitor!r} is not among the metrics: {sorted(metrics)}"
    score = task.score(collected, test, monitor)
    assert isinstance(score, float)
    assert _same_value(score, metrics[monitor]), (
        f"the fast score {monitor}={score} differs from the reported metric {metrics[monitor]}"
    )

    # ---- task state with the weights in a run folder, loaded as `sonokit predict` loads a run
    state = task.state()
    assert _strict_json(state) == state, "the task state must survive JSON (the model card) unchanged"
    assert "classes" in state and state["classes"] == task.classes
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    card = build_card(
        task=task,
        run_name=run_dir.name,
        model=model,
        cfg=cfg,
        training_data=card_data,
        metrics={"test": metrics},
    )
    assert _strict_json(card)["task_state"] == state
    save_weights(run_dir / "model.safetensors", model, card)
    run = load_run(run_dir, device="cpu")
    fresh = run.task
    assert fresh is not task and type(fresh) is cls
    assert fresh.state() == state, "load_state(state()) must give the same state back"
    assert fresh.classes == task.classes

    again_loss, again = _infer(fresh, run.model, test)
    assert again.keys() == collected.keys()
    for key in collected:
        np.testing.assert_allclose(again[key], collected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    again_preds = fresh.predictions(again, test)
    pd.testing.assert_frame_equal(public_columns(again_preds), public, check_exact=False, rtol=1e-5)
    assert _same_value(again_loss, eval_loss), f"loss {again_loss} after loading, {eval_loss} before"
    again_metrics = _strict_json(fresh.metrics(again_preds, cfg.n_boot, cfg.seed))
    assert _same_value(again_metrics[monitor], metrics[monitor])

    # ---- the same files as new, unlabelled inputs (predict_items): every file predicted, nothing labelled ...
    files = sorted({Path(p) for p in test["path"].astype(str)})
    new_items, errors = fresh.predict_items(files)
    assert errors == [] and len(new_items) > 0
    new_loss, new_collected = _infer(fresh, run.model, new_items)
    assert math.isnan(new_loss), "unlabelled items must not get a loss"
    new_preds = fresh.predictions(new_collected, new_items)
    assert set(new_preds["path"].astype(str)) == {str(f) for f in files}
    assert {"path", "y_true", "y_pred"} <= set(new_preds.columns)
    assert set(probs) <= set(new_preds.columns)
    y_true = new_preds["y_true"]
    assert (y_true.astype(str).isin(["", "nan"]) | y_true.isna()).all(), "new files have no truth"
    if recipe.same_input is None:
        return
    # ... and a new file gets the predictions its labelled copy got: the same preprocessing, the same step
    ref = per_item[recipe.same_input(per_item)]
    new_per_item = new_preds[recipe.item_rows(new_preds)]
    keys = ["path"] + (["frame"] if "frame" in ref.columns and "frame" in new_per_item.columns else [])
    assert not ref.duplicated(keys).any() and not new_per_item.duplicated(keys).any()
    both = ref.merge(new_per_item, on=keys, suffixes=("", "_new"), validate="one_to_one")
    assert len(both) == len(ref) > 0, f"{len(ref) - len(both)} labelled inputs missing from the new-file rows"
    compared = [c for c in new_per_item.columns if _is_prediction(c) and new_per_item[c].notna().any()]
    assert "y_pred" in compared or cls.kind in ("segmentation", "keypoints"), compared
    for col in compared:
        pd.testing.assert_series_equal(
            both[col], both[f"{col}_new"], check_names=False, check_dtype=False, rtol=1e-5, obj=col
        )
