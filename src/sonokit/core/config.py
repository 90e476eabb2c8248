"""The training configuration: one pydantic model, filled from defaults < configs/<task>.yaml < --config < flags.

The resolved config is written to the run folder as config.yaml; its hash (of the fields that change results)
goes into the model card, so two runs with the same hash were trained the same way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator

from sonokit.augment.config import AugmentConfig
from sonokit.errors import InputError

# Fields that say where things are or how fast they run, not what is learned: left out of the config hash.
_NON_SEMANTIC = ("data", "out", "resume", "num_workers", "threads", "device")
# split_col value that ignores a dataset's own split column (FileList.csv's Split, a table's split): every row
# is split by patient with the seed, as for a dataset without one. A string, not null: null keeps its old meaning.
NO_SPLIT_COL = "none"
# Fields added after runs were trained without them: hashed only when set, so those runs keep their hash.
_HASHED_WHEN_SET = ("fold_col", "min_steps", "ema", "optimizer")


class TrainConfig(BaseModel):
    """Everything a training run depends on. Unknown keys are an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    task: str
    data: str | None = None
    out: str | None = None

    # data index
    path_col: str = "path"
    label_col: str = "label"
    group_col: str | None = "group"
    split_col: str | None = Field(
        "split",
        description="the table's split column; 'none' ignores any split column (EchoNet's Split too) and "
        "draws the splits by patient with the seed",
    )
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    folds: int = Field(0, ge=0, description="k-fold cross-validation when >= 2")
    fold_col: str | None = Field(
        None,
        description="k-fold takes its held-out folds from this column of the table (a dataset's published "
        "patient-wise folds) instead of drawing them; it must hold `folds` distinct values",
    )

    # input
    size: int = Field(128, ge=8, description="square input side in pixels")
    channels: int = Field(1, ge=1, le=4)
    mean: list[float] = Field(default_factory=lambda: [0.5])
    std: list[float] = Field(default_factory=lambda: [0.25])

    # model
    model: str = "tinycnn"
    head: str = "linear"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    pretrained: str | None = None
    weights: str | None = None

    # optimisation
    epochs: int = Field(20, ge=1)
    min_steps: int | None = Field(
        None,
        ge=1,
        description="train at least this many optimizer steps: a small dataset gets more epochs "
        "(max(epochs, ceil(min_steps / batches per epoch))) and early stopping waits for them",
    )
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.05, ge=0.0)
    optimizer: Literal["adamw", "sgd"] | None = Field(
        None,
        description="adamw (unset: the default) or sgd (Nesterov momentum 0.9; weight_decay is then an L2 "
        "penalty, typically 5e-4, and lr typically 10-50x AdamW's)",
    )
    scheduler: Literal["cosine", "plateau", "none"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0.0, le=1.0)
    plateau_factor: float = Field(0.5, gt=0.0, lt=1.0)
    plateau_patience: int = Field(2, ge=0)
    patience: int = Field(
        5, ge=0, description="early stopping after this many epochs without improvement; 0 = off"
    )
    monitor: str | None = Field(
        None, description="validation metric for early stopping; task default if unset"
    )
    grad_clip: float | None = Field(1.0, gt=0.0)
    balance: Literal["none", "weights", "sampler"] = "weights"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    ema: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="decay of an exponential moving average of the weights (e.g. 0.99), updated every step; "
        "validation, the kept best epoch and the saved weights use the average",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig,
        description="training augmentation (sonokit.augment.AugmentConfig); a task refuses an option it "
        "does not apply",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="task-specific options, checked by the task"
    )

    # runtime
    seed: int = 0
    amp: Literal["auto", "bf16", "off"] = "auto"
    device: str = "auto"
    num_workers: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    channels_last: bool = False
    deterministic: bool = False
    limit_train_batches: int | None = Field(
        None, ge=1, description="cap batches per epoch (smoke tests, benchmarks)"
    )
    n_boot: int = Field(1000, ge=0, description="bootstrap resamples for the 95% CIs")
    bootstrap_by_group: bool = Field(True, description="CIs resample patients (groups), not images")
    resume: bool = False

    @field_validator("split_col")
    @classmethod
    def _no_split_col(cls, v: str | None) -> str | None:
        return NO_SPLIT_COL if isinstance(v, str) and v.strip().lower() == NO_SPLIT_COL else v

    @property
    def ignores_given_splits(self) -> bool:
        """split_col: none: the dataset's own splits are dropped and drawn afresh by patient."""
        return self.split_col == NO_SPLIT_COL

    @field_serializer("augment")
    def _augment_as_given(self, augment: AugmentConfig) -> dict[str, Any]:
        # the options the config set, as before the config was typed: config.yaml and the hash stay the same
        return augment.given()

    @field_validator("mean", "std")
    @classmethod
    def _positive_std(cls, v: list[float], info: Any) -> list[float]:
        if not v:
            raise ValueError("needs at least one value")
        if info.field_name == "std" and any(s <= 0 for s in v):
            raise ValueError("std values must be > 0")
        return v

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """mean/std expanded to one value per channel (a single value applies to every channel)."""

        def expand(v: list[float], name: str) -> list[float]:
            if len(v) == 1:
                return v * self.channels
            if len(v) != self.channels:
                raise InputError(f"config {name} has {len(v)} values for {self.channels} channels")
            return list(v)

        return expand(self.mean, "mean"), expand(self.std, "std")

    def semantic_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.model_dump().items()
            if k not in _NON_SEMANTIC and not (k in _HASHED_WHEN_SET and v is None)
        }

    def hash(self) -> str:
        """12 hex digits of sha256 over the fields that change what is learned."""
        blob = json.dumps(self.semantic_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)


def default_config_dir() -> Path:
    """sonokit/configs/, shipped inside the package so a wheel install finds it too."""
    return Path(__file__).resolve().parents[1] / "configs"


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise InputError(f"not valid YAML ({str(err).splitlines()[0]})", path) from err
    if not isinstance(data, dict):
        raise InputError("a config file must hold a mapping of option: value", path)
    return data


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge for the nested `augment`/`options` mappings; everything else is replaced."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def validate_config(values: dict[str, Any], source: str | Path | None = None) -> TrainConfig:
    try:
        return TrainConfig(**values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = _unknown_option(first["loc"])
        raise InputError(f"config option {where!r}: {msg}", source) from err


def _unknown_option(loc: tuple[Any, ...]) -> str:
    """'unknown option' with the nearest known name, for a misspelt top-level or augment option."""
    import difflib

    known = {(): TrainConfig.model_fields, ("augment",): AugmentConfig.model_fields}.get(tuple(loc[:-1]))
    if not known:
        return "unknown option"
    near = difflib.get_close_matches(str(loc[-1]), list(known), n=1)
    return f"unknown option (did you mean {near[0]!r}?)" if near else "unknown option"


def resolve_config(
    task: str,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    task_defaults: dict[str, Any] | None = None,
    config_dir: str | Path | None = None,
    sets: dict[str, Any] | None = None,
) -> TrainConfig:
    """Merge, in increasing priority: task_defaults, configs/<task>.yaml, `config_file`, `overrides` (non-None),
    `sets` (nested values from `--set key.sub=value`).

    An epoch count the user gives (config file, flag or --set) is kept as given: the defaults' `min_steps`
    then no longer stretches it, unless the user gives min_steps too."""
    values: dict[str, Any] = dict(task_defaults or {})
    default_file = Path(config_dir or default_config_dir()) / f"{task}.yaml"
    if default_file.is_file():
        values = _merge(values, read_yaml(default_file))
    chosen = _merge(
        read_yaml(config_file) if config_file is not None else {},
        {k: v for k, v in (overrides or {}).items() if v is not None},
    )
    chosen = _merge(chosen, sets or {})
    if "epochs" in chosen and "min_steps" not in chosen:
        values.pop("min_steps", None)
    values = _merge(values, chosen)
    values["task"] = task
    for key in ("data", "weights"):  # the run folder must work from any working directory
        if values.get(key):
            values[key] = str(Path(values[key]).expanduser().resolve())
    return validate_config(values, config_file)


def config_tasks(config_dir: str | Path | None = None) -> list[str]:
    """Tasks that ship a configs/<task>.yaml (every built-in task; a test keeps each YAML equal to its
    Task.defaults), found without importing the tasks and torch."""
    return sorted(p.stem for p in Path(config_dir or default_config_dir()).glob("*.yaml"))


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config a run was trained with (its config.yaml)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise InputError("not a sonokit run folder (no config.yaml)", run_dir)
    return validate_config(read_yaml(path), path)


# Options that may change when a run is resumed: how long and where it runs, not what it learns.
RESUMABLE = frozenset(
    {
        "data",
        "epochs",
        "patience",
        "num_workers",
        "device",
        "limit_train_batches",
        "eval_batch_size",
        "n_boot",
    }
)


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The run's own config.yaml with resume=True; only RESUMABLE options may be overridden."""
    cfg = load_run_config(run_dir)
    changes = {k: v for k, v in (overrides or {}).items() if v is not None and getattr(cfg, k, None) != v}
    refused = sorted(set(changes) - RESUMABLE)
    if refused:
        raise InputError(
            f"cannot change {', '.join(refused)} when resuming (the run was trained with its config.yaml); "
            f"only {', '.join(sorted(RESUMABLE))} may change",
            run_dir,
        )
    return cfg.model_copy(update={**changes, "resume": True, "out": str(run_dir)})


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """`["options.video_rule=mean", "augment.hflip=false", "lr=1e-3"]` -> nested dict, values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects KEY=VALUE (e.g. options.video_rule=mean), got {item!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise InputError(f"--set {key}: value {raw!r} is not valid YAML") from err
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"--set {key}: {part!r} is not a mapping")
        node[leaf] = value
    return out
