"""The Task: everything the one training engine must know about a system, and nothing the engine does itself.

A task turns a config into an index and datasets, builds the network and its loss, runs a batch through it,
turns outputs into prediction rows and rows into metrics and plots. The engine only loops, optimises,
checkpoints and writes files, so an image classifier, a video regressor (echo EF) and a box detector share it.

Batch contract: a dataset item is a dict of tensors (default-collated, or by `Task.collate`) with an int
"index" (the row of the split's index DataFrame it came from). The engine moves every tensor to the device and
passes the batch back to the task untouched; `collect` returns numpy arrays keyed by name, always with "index".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from sonokit.augment.config import AugmentConfig
from sonokit.core.config import TrainConfig
from sonokit.errors import InputError
from sonokit.utils import get_logger

if TYPE_CHECKING:
    from sonokit.augment.transforms import Augment

log = get_logger(__name__)


class TaskOptions(BaseModel):
    """Base for a task's own options (the `options:` mapping of the config); unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")

    # inputs that look like segmentation masks (names like *_mask.png, two grey levels) are refused unless set
    allow_mask_like: bool = False


class ItemDataset(torch.utils.data.Dataset):
    """Wrap a (tensor, target) dataset into dict items with a per-sample seeded augmentation.

    The augmentation seed is derived from (run seed, item index, epoch), so a sample is augmented identically
    whichever worker, batch order or resumed process draws it: resuming after a kill repeats the same numbers.
    """

    def __init__(
        self, base: torch.utils.data.Dataset, augment: Callable[..., Any] | None = None, seed: int = 0
    ):
        self.base = base
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        x, y = self.base[index]
        if self.augment is not None:
            from sonokit.augment import derive_seed

            x = self.augment(x, seed=derive_seed(self.seed, index, self.epoch))
        return {"x": x, "y": torch.as_tensor(y), "index": index}


@runtime_checkable
class FrameClassifier(Protocol):
    """A classifier that scores frames and folds a video's frames into one row (classify, fetal-plane, lus): what
    `predict --uncertainty` adds its columns to."""

    classes: list[str] | None

    def video_rows(self, frames: pd.DataFrame) -> pd.DataFrame: ...


class Task:
    """Base class; subclasses set the class attributes and override the hooks they need."""

    name: ClassVar[str] = ""
    #: "classification" | "regression" | "detection" | "segmentation" | "keypoints"
    kind: ClassVar[str] = "classification"
    #: metric watched for early stopping and best-checkpoint selection, and whether higher is better
    monitor: ClassVar[tuple[str, str]] = ("macro_f1", "max")
    #: the metrics a reader looks at first, in this order: the `train`/`evaluate` summary, the training log, the
    #: --by tables and the app's run list show those of them a run reports
    headline: ClassVar[tuple[str, ...]] = (
        "accuracy",
        "macro_f1",
        "top2_accuracy",
        "auroc",
        "qwk",
        "video_accuracy",
        "video_macro_f1",
        "video_auroc",
        "video_qwk",
    )
    #: metrics where smaller is better (any other is better larger): the direction of --monitor NAME
    lower_is_better: ClassVar[frozenset[str]] = frozenset(
        {"loss", "mae", "rmse", "ece", "video_mae", "ssim_mae", "point_error"}
    )
    #: config defaults for this task; configs/<name>.yaml mirrors them (a test keeps the two equal)
    defaults: ClassVar[dict[str, Any]] = {}
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    #: may a horizontal flip be used as augmentation (never for echo: it swaps the heart's sides)
    allow_hflip: ClassVar[bool] = True
    #: the `augment:` options (sonokit.augment.AugmentConfig) this task applies in training; one set away from
    #: its default that is not here is refused (`augment_config`), never silently ignored. Every task honours
    #: `enabled`; the torchvision pipeline (`train_augment`) applies all of AUGMENT_OPTIONS.
    augment_options: ClassVar[frozenset[str]] = frozenset({"enabled"})
    #: this task's own value of an option the config leaves unset (not written to config.yaml, so runs trained
    #: before the option was honoured keep their hash and their augmentation)
    augment_defaults: ClassVar[dict[str, Any]] = {}
    #: what the task does instead, for the message that refuses an option
    augment_note: ClassVar[str] = ""
    intended_use: ClassVar[str] = "Research on ultrasound image analysis."
    collate: ClassVar[Callable[[list[Any]], Any] | None] = None

    @classmethod
    def metric_mode(cls, name: str) -> str:
        """ "min" or "max": which way `name` gets better."""
        return "min" if name in cls.lower_is_better else "max"

    @classmethod
    def headline_of(cls, metrics: dict[str, Any]) -> list[str]:
        """The headline metrics `metrics` holds, in headline order."""
        return [k for k in cls.headline if metrics.get(k) is not None]

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.opts = self.Options(**cfg.options)
        self.classes: list[str] | None = None

    # ------------------------------------------------------------------ augmentation

    @classmethod
    def applied_augment(cls) -> frozenset[str]:
        """The augment options this task applies: augment_options, less hflip where mirroring swaps anatomy."""
        return cls.augment_options - (frozenset() if cls.allow_hflip else frozenset({"hflip"}))

    def augment_config(self) -> AugmentConfig:
        """The training augmentation of this run, checked once for every task: an option set away from its
        default that this task does not apply is an InputError naming it (e.g. `ef --set augment.gamma=[0.5,1]`),
        so no run trains without an augmentation it was asked for. Called whenever training data is built."""
        aug = self.cfg.augment
        if self.augment_defaults:
            unset = {k: v for k, v in self.augment_defaults.items() if k not in aug.model_fields_set}
            aug = AugmentConfig(**{**aug.given(), **unset})
        baseline = AugmentConfig(**self.augment_defaults)
        changed = aug.changed(baseline)
        note = f"; {self.augment_note}" if self.augment_note else ""
        if "hflip" in changed and not self.allow_hflip:
            raise InputError(
                f"task {self.name!r} does not allow augment.hflip "
                f"(a mirror image swaps the anatomy's sides{note})"
            )
        refused = [name for name in changed if name not in self.applied_augment()]
        if refused:
            applied = ", ".join(f"augment.{n}" for n in sorted(self.applied_augment()))
            raise InputError(
                f"task {self.name!r} does not apply {', '.join(f'augment.{n}' for n in refused)} "
                f"(it applies {applied}{note})"
            )
        return aug

    def train_augment(self) -> Augment | None:
        """The seeded torchvision v2 augmentation of the checked config (None when `augment.enabled` is false),
        for tasks whose augment_options are all of AUGMENT_OPTIONS."""
        from sonokit.augment import build_augment

        aug = self.augment_config()
        return build_augment(aug) if aug.enabled else None

    # ------------------------------------------------------------------ data

    def read_index(self) -> pd.DataFrame:
        """The dataset's index (path, label, group, split) from cfg.data; split may be "" (assigned later)."""
        raise NotImplementedError

    def prepare_index(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        """Read the index, fix the class list and fill missing splits by patient group."""
        from sonokit.data.splits import assign_splits

        df = self.given_splits(self.read_index() if df is None else df)
        if df.empty:
            raise InputError("the dataset index has no rows", self.cfg.data)
        self.setup_classes(df)
        fractions = (
            1.0 - self.cfg.val_fraction - self.cfg.test_fraction,
            self.cfg.val_fraction,
            self.cfg.test_fraction,
        )
        return assign_splits(df, fractions, seed=self.cfg.seed)

    def given_splits(self, df: pd.DataFrame) -> pd.DataFrame:
        """The index with its own splits, or with them blanked under split_col: none (then drawn by patient)."""
        if not self.cfg.ignores_given_splits or "split" not in df.columns:
            return df
        given = df["split"].astype(str).str.strip() != ""
        if given.any():
            log.info(
                "split_col: none: the dataset's own split of %d rows is ignored; splits are drawn by patient "
                "(seed %d)",
                int(given.sum()),
                self.cfg.seed,
            )
        return df.assign(split="")

    def setup_classes(self, df: pd.DataFrame) -> None:
        """Fix self.classes from the index (classification) or leave None (regression)."""

    def expand(self, df: pd.DataFrame) -> pd.DataFrame:
        """Turn a split's index rows into item rows (e.g. one row per sampled video frame)."""
        return df.reset_index(drop=True)

    def build_dataset(self, df: pd.DataFrame, train: bool) -> torch.utils.data.Dataset:
        """A dataset of dict items over item rows `df` (already expanded); augmentation only when `train`."""
        raise NotImplementedError

    def check_items(self, items: pd.DataFrame) -> None:
        """Fail before training on a file that cannot be read (default: verify every still image)."""
        verify_images(items["path"].astype(str).unique())

    def thumbnail_reader(self) -> Callable[[str], tuple[np.ndarray, dict[str, Any]]] | None:
        """`read(path) -> (frames (F, S, S[, C]) uint8, meta)` from the cache training reads anyway, for the
        leakage checks (two grey levels, near-duplicates); None: this task's inputs are not checked by pixels."""
        return None

    def epoch_groups(self, train_items: pd.DataFrame) -> tuple[list[np.ndarray], int] | None:
        """Training rows drawn afresh each epoch: (groups of item rows, rows drawn per group per epoch), or None
        to train on every row every epoch (the default)."""
        return None

    def sample_weights(self, df: pd.DataFrame) -> np.ndarray | None:
        """Per-item weights for balanced sampling (None: the task does not support it)."""
        return None

    def describe_data(self, index: pd.DataFrame, items: dict[str, pd.DataFrame]) -> dict[str, Any]:
        """Training-data facts for the model card: counts only, never patient identifiers."""
        from sonokit.data.leakage import resample_unit

        return {
            "path": str(self.cfg.data),
            "counts": {split: int(len(df)) for split, df in items.items()},
            "groups": {split: int(index.loc[index["split"] == split, "group"].nunique()) for split in items}
            if "group" in index.columns
            else None,
            "group_unit": resample_unit(index),  # "patients" only when the data named them
        }

    # ------------------------------------------------------------------ model and step

    def build_model(self, load_init_weights: bool = True) -> nn.Module:
        """The network; `load_init_weights=False` when the weights will come from a run folder."""
        raise NotImplementedError

    def setup_loss(self, train_items: pd.DataFrame, device: torch.device) -> None:
        """Build the loss (class weights etc.) once the training items and device are known."""

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        raise NotImplementedError

    def array_batch(self, images: Sequence[np.ndarray]) -> dict[str, Any]:
        """A batch (unlabelled) of uint8 images already in memory, preprocessed exactly as in training: what
        sonokit.predict.Predictor.arrays runs (the quality gate on a cine's frames, the robustness sweep on
        corrupted copies). A task that takes no single images does not override it."""
        raise InputError(f"task {self.name!r} does not predict on images in memory")

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def has_targets(self, batch: dict[str, Any]) -> bool:
        """False for unlabelled items (prediction on new files): the engine then skips the loss."""
        y = batch.get("y")
        return y is not None and bool((y >= 0).all()) if isinstance(y, torch.Tensor) else False

    def collect(self, outputs: Any, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        """Detach what the metrics need as numpy arrays; must include "index"."""
        raise NotImplementedError

    # ------------------------------------------------------------------ predictions and metrics

    def predictions(self, collected: dict[str, np.ndarray], items: pd.DataFrame) -> pd.DataFrame:
        """Rows of the predictions CSV (path, frame, y_true, y_pred, ...); columns starting with "_" stay private."""
        raise NotImplementedError

    def score(self, collected: dict[str, np.ndarray], items: pd.DataFrame, metric: str) -> float:
        """A fast point value of `metric` for the training log and early stopping (no bootstrap)."""
        raise NotImplementedError

    def metrics(self, preds: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
        raise NotImplementedError

    def plots(self, preds: pd.DataFrame, metrics: dict[str, Any], plot_dir: Path, split: str) -> list[Path]:
        return []

    def after_evaluate(
        self,
        model: nn.Module,
        dataset: Any,
        items: pd.DataFrame,
        preds: pd.DataFrame,
        plot_dir: Path,
        split: str,
    ) -> list[Path]:
        """Extra outputs after a split is evaluated (e.g. Grad-CAM overlays); default none."""
        return []

    # ------------------------------------------------------------------ model card and reloading

    def input_spec(self) -> dict[str, Any]:
        mean, std = self.cfg.channel_stats()
        return {
            "channels": self.cfg.channels,
            "size": [self.cfg.size, self.cfg.size],
            "mean": mean,
            "std": std,
            "scale": "uint8 / 255, then (x - mean) / std",
        }

    def export_recipe(self) -> dict[str, Any]:
        """The preprocessing recipe written into an exported model (sonokit.tasks.recipe); default: sonokit only."""
        from sonokit.tasks.recipe import sonokit_only_recipe

        return sonokit_only_recipe(
            self,
            f"the {self.name} task's preprocessing is implemented only in sonokit (input_spec describes it)",
        )

    def state(self) -> dict[str, Any]:
        """What must be stored with the weights to use them again (written into the model card)."""
        return {"classes": self.classes}

    def load_state(self, card: dict[str, Any]) -> None:
        self.classes = card.get("classes")

    # ------------------------------------------------------------------ prediction on new files

    def predict_items(self, files: Sequence[Path]) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
        """Item rows for new files (no labels) and (file, reason) for each file that cannot be read."""
        raise NotImplementedError


def normalise_batch(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel, on x's device and dtype."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s


def verify_images(paths: Sequence[str]) -> None:
    """Check every still image's structure now (Pillow's verify: chunk CRCs, no pixel decoding).

    A corrupt test image would otherwise surface only when the test split is evaluated, after the whole training.
    Files Pillow cannot parse get a full decode by sonokit's reader before they are declared unreadable.
    """
    from PIL import Image

    from sonokit.data.frames import may_have_frames, read_image
    from sonokit.utils import progress

    for path in progress(paths, desc="checking images", total=len(paths), unit="file"):
        if may_have_frames(path):
            continue  # videos were opened when their frames were counted
        try:
            with Image.open(path) as im:
                im.verify()
        except Exception:  # Pillow raises OSError, SyntaxError, ValueError...: fall back to a real decode
            read_image(path)
