"""The one training engine: seeded loaders, AdamW with a cosine or plateau schedule, early stopping, atomic
best/last checkpoints, exact resume, bf16 autocast on GPUs, torchrun data parallelism, and the run folder.

The engine knows nothing about images, videos or boxes: the Task builds datasets and the model, computes the loss
from a batch and turns outputs into prediction rows and metrics (see sonokit.tasks.base).

Resume is exact: the last checkpoint holds model, optimizer, scheduler, RNG states, the best metric and the log;
the shuffling generator is re-seeded from (seed, epoch) and augmentation is seeded per (seed, item, epoch), so
epochs 3-4 after a kill at epoch 2 draw the same batches and augmentations as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sonokit.core import distributed as D
from sonokit.core.checkpoint import (
    load_checkpoint,
    read_weights,
    rng_state,
    save_checkpoint,
    save_weights,
    set_rng_state,
    unwrap,
)
from sonokit.core.config import TrainConfig
from sonokit.core.loop import (
    amp_dtype,
    channels_last_model,
    concat_parts,
    epoch_seed,
    forward_batch,
    infer,
    make_loader,
)
from sonokit.core.run import CARD, CHECKPOINT, WEIGHTS, save_splits, split_items
from sonokit.errors import InputError, ModelError
from sonokit.tasks import Task, get_task
from sonokit.train.optim import build_optimizer, build_scheduler, step_scheduler
from sonokit.train.state import LOG_COLUMNS, Callback, EpochEnd, RunState
from sonokit.utils import atomic_write_text, get_logger, progress, seed_everything, write_csv
from sonokit.utils.atomic import remove_stale_temps
from sonokit.utils.logs import heartbeat_seconds

log = get_logger(__name__)


def default_run_dir(cfg: TrainConfig) -> Path:
    """runs/<task>/<model>-s<seed>: named by what produced it."""
    return Path("runs") / cfg.task / f"{cfg.model}-s{cfg.seed}"


# ---------------------------------------------------------------------------------------------- the engine


class Trainer:
    """One training run into one run folder. Use `fit()` or `train()` rather than this class directly."""

    def __init__(
        self,
        task: Task,
        index: pd.DataFrame,
        run_dir: Path,
        dist: D.DistInfo,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.task = task
        self.cfg = task.cfg
        self.index = index
        self.run_dir = Path(run_dir)
        self.dist = dist
        self.device = dist.device
        self.callbacks = list(callbacks)
        self.leakage: dict[str, Any] = {}
        self.dtype = amp_dtype(self.cfg, self.device)
        self.fresh = not self.cfg.resume  # False: continue from the checkpoint
        self.metric_name, self.mode = task.monitor
        if self.cfg.monitor and self.cfg.monitor != self.metric_name:
            self.metric_name = self.cfg.monitor
            self.mode = task.metric_mode(self.cfg.monitor)

    # -------------------------------------------------------------------- setup

    def _check_run_dir(self) -> None:
        """Refuse to overwrite a run, or to resume one without a checkpoint; a folder left by a run that
        stopped before its first checkpoint (a full disk in epoch 1: weights but no checkpoint) starts over,
        with or without --resume, so neither rerun is stuck."""
        ckpt = self.run_dir / CHECKPOINT
        finished = (self.run_dir / CARD).exists()  # a finished run whose checkpoint was deleted
        if self.cfg.resume:
            if ckpt.is_file():
                return
            if finished or not self.run_dir.is_dir():
                raise InputError(f"cannot resume: no {CHECKPOINT} in the run folder", self.run_dir)
            log.warning(
                "%s: stopped before its first checkpoint, nothing to resume: starting over", self.run_dir
            )
            self.fresh = True
        elif ckpt.exists() or finished:
            raise InputError(
                "run folder already holds a run; pass --resume to continue it, or choose another --out",
                self.run_dir,
            )
        elif (self.run_dir / WEIGHTS).exists():
            log.warning(
                "%s: weights of a run stopped before its first checkpoint: starting over", self.run_dir
            )

    def _setup(self) -> None:
        cfg, task = self.cfg, self.task
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed, cfg.deterministic)
        self.items = split_items(task, self.index)
        if "train" not in self.items:
            raise InputError("no training rows after splitting", cfg.data)
        if "val" not in self.items:
            log.warning("no validation rows: early stopping and best-model choice use the training metric")
        for df in self.items.values():
            task.check_items(df)
        from sonokit.train.leakage import guard_run

        self.leakage = guard_run(
            task, self.index
        )  # masks refused, per-file groups and near-duplicates warned
        self.train_ds = task.build_dataset(self.items["train"], train=True)
        self.val_ds = task.build_dataset(self.items["val"], train=False) if "val" in self.items else None

        model = task.build_model().to(self.device)
        if cfg.channels_last:
            model = channels_last_model(model)
        self.model = model
        if self.dist.enabled and cfg.balance == "sampler":
            log.warning("balance=sampler is not supported with several processes; using class weights")
            task.cfg = cfg.model_copy(update={"balance": "weights"})
        task.setup_loss(self.items["train"], self.device)
        self.net = D.wrap_model(model, self.dist)
        self.ema = None  # the moving average of the weights (cfg.ema): what is validated and saved
        if cfg.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=False)
            # its batch-norm statistics are measured afresh for the averaged weights before each validation
            self.bn_loader = self._eval_loader(task.build_dataset(self.items["train"], train=False))
        self.generator = torch.Generator()
        self.train_loader = self._train_loader()
        self.val_loader = self._eval_loader(self.val_ds) if self.val_ds is not None else None
        self.min_epochs = self._epochs_for_min_steps(len(self.train_loader))
        if self.min_epochs > cfg.epochs:
            log.info(
                "%d batches per epoch: %d epochs for at least %d optimizer steps (min_steps)",
                len(self.train_loader),
                self.min_epochs,
                cfg.min_steps,
            )
            # the resolved count is what the schedule, the logs, config.yaml and the hash see
            cfg = self.cfg = cfg.model_copy(update={"epochs": self.min_epochs})
            task.cfg = task.cfg.model_copy(update={"epochs": self.min_epochs})
        self.optimizer = build_optimizer(model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.mode)

    def _epochs_for_min_steps(self, batches: int) -> int:
        """Epochs that give at least cfg.min_steps optimizer steps (0 when unset): 100 images at batch 32 make 3
        steps an epoch, and 15 epochs (45 steps) leave a CNN barely trained."""
        if not self.cfg.min_steps:
            return 0
        if self.cfg.limit_train_batches:
            batches = min(batches, self.cfg.limit_train_batches)
        return math.ceil(self.cfg.min_steps / max(batches, 1))

    def _train_loader(self) -> torch.utils.data.DataLoader:
        cfg = self.cfg
        # one seeded permutation split across processes: N processes with --batch-size B/N see the batches
        # one process sees with --batch-size B (D.ShardSampler)
        groups = self.task.epoch_groups(self.items["train"])
        sampler = D.ShardSampler(
            len(self.train_ds), cfg.seed, self.dist.world_size, self.dist.rank, *(groups or (None, None))
        )
        if cfg.balance == "sampler" and groups is not None:
            raise InputError(
                "balance=sampler cannot be combined with drawing frames per epoch (train_frames_per_epoch)"
            )
        if cfg.balance == "sampler" and not self.dist.enabled:
            weights = self.task.sample_weights(self.items["train"])
            if weights is None:
                raise InputError(f"task {self.task.name!r} does not support balance=sampler")
            sampler = torch.utils.data.WeightedRandomSampler(
                torch.as_tensor(weights, dtype=torch.double),
                len(weights),
                replacement=True,
                generator=self.generator,
            )
        drop_last = len(sampler) > cfg.batch_size  # per process; no size-1 BatchNorm batch
        return make_loader(
            self.train_ds,
            self.task,
            cfg.batch_size,
            cfg.num_workers,
            self.device,
            sampler=sampler,
            shuffle=True,
            generator=self.generator,
            drop_last=drop_last,
        )

    def _eval_loader(self, dataset: torch.utils.data.Dataset) -> torch.utils.data.DataLoader:
        sampler = None
        if self.dist.enabled:
            sampler = torch.utils.data.DistributedSampler(
                dataset, self.dist.world_size, self.dist.rank, shuffle=False
            )
        bs = self.cfg.eval_batch_size or self.cfg.batch_size
        return make_loader(dataset, self.task, bs, self.cfg.num_workers, self.device, sampler=sampler)

    def _resume(self) -> RunState:
        ckpt = load_checkpoint(self.run_dir / CHECKPOINT)
        try:
            unwrap(self.model).load_state_dict(ckpt["model"])
            if self.ema is not None:
                self.ema.load_state_dict(ckpt["ema"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise ModelError(f"{self.run_dir / CHECKPOINT}: does not match this config ({err})") from err
        if ckpt.get("config_hash") != self.cfg.hash():
            log.warning("resuming with a config that differs from the checkpoint's (e.g. more epochs)")
        set_rng_state(ckpt["rng"])
        state = RunState.from_checkpoint(ckpt)
        if state.finished and state.epoch < self.cfg.epochs and not self._stopped_early(state):
            state.finished = False
        log.info(
            "resumed %s at epoch %d (best %s %.4f)",
            self.run_dir,
            state.epoch,
            self.metric_name,
            state.best_metric if state.best_metric is not None else math.nan,
        )
        return state

    def _stopped_early(self, state: RunState) -> bool:
        """Patience ran out, and not before min_steps' epochs (a tiny validation set is noisy early on)."""
        patience = self.cfg.patience
        return patience > 0 and state.bad_epochs >= patience and state.epoch >= self.min_epochs

    # -------------------------------------------------------------------- loop

    def run(self) -> Path:
        self._check_run_dir()  # every rank checks (read-only), so no rank waits at a barrier for a failed one
        D.barrier(self.dist)
        if self.dist.is_main:
            # a killed write (SIGKILL skips atomic_path's clean-up) leaves a temporary file; never read, removed
            stale = sum(remove_stale_temps(d) for d in (self.run_dir, self.run_dir / "plots"))
            if stale:
                log.info("removed %d temporary file(s) left by a killed run in %s", stale, self.run_dir)
        self._setup()
        state = RunState() if self.fresh else self._resume()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", self.cfg.to_yaml())
            if self.fresh:
                save_splits(self.index, self.run_dir)
            log.info(
                "training %s (%s) into %s: %s",
                self.task.name,
                self.cfg.model,
                self.run_dir,
                ", ".join(f"{s} {len(df)}" for s, df in self.items.items()),
            )
        while not state.finished and state.epoch < self.cfg.epochs and not self._stopped_early(state):
            self._epoch(state)
        state.finished = True
        if self.dist.is_main:
            self._save_checkpoint(state)
        D.barrier(self.dist)
        if self.dist.is_main:
            self.finalize(state)
        return self.run_dir

    def _epoch(self, state: RunState) -> None:
        cfg, task = self.cfg, self.task
        epoch = state.epoch  # 0-based index of the epoch being run
        self.generator.manual_seed(epoch_seed(cfg.seed, epoch))
        if hasattr(self.train_loader.sampler, "set_epoch"):
            self.train_loader.sampler.set_epoch(epoch)
        if hasattr(self.train_ds, "set_epoch"):
            self.train_ds.set_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"]

        start = time.perf_counter()
        train_loss, train_out = self._train_one_epoch(epoch)
        train_out = D.gather_outputs(train_out, self.dist)
        train_loss = D.all_reduce_mean(train_loss, self.dist)
        train_metric = self._score(train_out, self.items["train"], train_loss)
        train_seconds = time.perf_counter() - start

        start = time.perf_counter()
        if self.ema is not None:
            self._ema_batchnorm()
        if self.val_loader is not None:
            val_loss, val_out = infer(
                task,
                self.net if self.ema is None else self.ema.module,
                self.val_loader,
                self.device,
                self.dtype,
                cfg.channels_last,
                desc=f"epoch {epoch + 1} val",
            )
            val_out = D.gather_outputs(val_out, self.dist)
            val_loss = D.all_reduce_mean(val_loss, self.dist)
            metric = self._score(val_out, self.items["val"], val_loss)
        else:
            val_loss, metric = math.nan, train_metric
        val_seconds = time.perf_counter() - start

        state.epoch = epoch + 1
        state.record("train", train_loss, train_metric, train_seconds, lr)
        state.record("val", val_loss, metric, val_seconds, lr)
        improved = state.update_best(metric, self.mode)
        step_scheduler(self.scheduler, metric, self.mode)
        log.log(
            logging.INFO if self.dist.is_main else logging.DEBUG,
            "epoch %d/%d  train loss %.4f %s %.4f  val loss %.4f %s %.4f%s  (%.1fs)",
            state.epoch,
            cfg.epochs,
            train_loss,
            self.metric_name,
            train_metric,
            val_loss,
            self.metric_name,
            metric,
            "  *best*" if improved else "",
            train_seconds + val_seconds,
        )
        if self.dist.is_main:
            if improved:
                kept = self.model if self.ema is None else self.ema.module
                save_weights(self.run_dir / WEIGHTS, kept, self.card(metrics=None, state=state))
            write_csv(pd.DataFrame(state.history, columns=LOG_COLUMNS), self.run_dir / "log.csv")
            self._save_checkpoint(state)
        D.barrier(self.dist)
        event = EpochEnd(
            state.epoch, cfg.epochs, train_loss, val_loss, metric, state.best_metric, improved, self.run_dir
        )
        for cb in self.callbacks:
            cb(event)

    def _train_one_epoch(self, epoch: int) -> tuple[float, dict[str, np.ndarray]]:
        cfg, task = self.cfg, self.task
        self.net.train()
        parts: list[dict[str, np.ndarray]] = []
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        total = len(self.train_loader)
        if cfg.limit_train_batches:
            total = min(total, cfg.limit_train_batches)
        beat = heartbeat_seconds() if self.dist.is_main else None  # a line per minute in a log, rank 0 only
        for step, batch in enumerate(
            progress(
                self.train_loader,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                total=total,
                unit="batch",
                heartbeat=beat,
            )
        ):
            if step >= total:
                break
            batch, outputs, loss = forward_batch(
                task, self.net, batch, self.device, self.dtype, cfg.channels_last, with_loss=True
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(unwrap(self.model))
            n = len(batch["index"])
            loss_sum += loss.detach().double() * n
            count += n
            parts.append(task.collect(outputs, batch))
        mean_loss = float(loss_sum) / max(count, 1)
        if not math.isfinite(mean_loss):
            raise ModelError(f"training diverged at epoch {epoch + 1} (loss {mean_loss}); try a lower --lr")
        return mean_loss, concat_parts(parts)

    @torch.no_grad()
    def _ema_batchnorm(self, max_batches: int = 50) -> None:
        """Batch-norm statistics for the averaged weights (SWA's update_bn): averaging running statistics that
        belonged to other weights broke the average (chance accuracy on the fetal-plane subset, measured). The
        un-augmented training images, at most `max_batches` batches, a cumulative mean; no random draw."""
        module = self.ema.module
        norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        module.train()
        for i, batch in enumerate(self.bn_loader):
            if i >= max_batches:
                break
            forward_batch(self.task, module, batch, self.device, self.dtype, self.cfg.channels_last)
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        module.eval()

    def _score(self, collected: dict[str, np.ndarray], items: pd.DataFrame, loss: float) -> float:
        if self.metric_name == "loss":
            return loss
        return float(self.task.score(collected, items, self.metric_name))

    def _save_checkpoint(self, state: RunState) -> None:
        save_checkpoint(
            self.run_dir / CHECKPOINT,
            {
                **state.to_checkpoint(),
                "model": unwrap(self.model).state_dict(),
                **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(),
                "monitor": self.metric_name,
                "config_hash": self.cfg.hash(),
            },
        )

    # -------------------------------------------------------------------- the end of a run

    def card(self, metrics: dict[str, dict[str, Any]] | None, state: RunState) -> dict[str, Any]:
        from sonokit.train.card import build_card

        model = unwrap(self.model)
        return build_card(
            task=self.task,
            run_name=self.run_dir.name,
            model=model,
            cfg=self.cfg,
            training_data={**self.task.describe_data(self.index, self.items), "leakage": self.leakage},
            metrics=metrics,
            training={
                "epochs_run": state.epoch,
                "best_epoch": state.best_epoch,
                "monitor": self.metric_name,
                "best_val_metric": state.best_metric,
                "stopped_early": self._stopped_early(state),
            },
        )

    def finalize(self, state: RunState) -> None:
        """Best weights back in; evaluate val and test; model card, curves and report."""
        from sonokit.evaluate.plots import plot_training_curves
        from sonokit.evaluate.report import write_report
        from sonokit.evaluate.runner import evaluate_items
        from sonokit.utils import atomic_write_json

        weights, _ = read_weights(self.run_dir / WEIGHTS)
        unwrap(self.model).load_state_dict(weights)
        model = unwrap(self.model)
        results = {}
        near = (self.leakage.get("near_duplicates") or {}) if self.leakage else {}
        for split in ("val", "test"):
            if split in self.items:
                results[split] = evaluate_items(
                    self.task,
                    model,
                    self.items[split],
                    split,
                    self.run_dir,
                    self.device,
                    self.dtype,
                    model_name=self.run_dir.name,
                    extra={"near_duplicates_in_train": near[split]} if split in near else None,
                )
        card = self.card(results, state)
        atomic_write_json(self.run_dir / CARD, card)
        save_weights(self.run_dir / WEIGHTS, model, card)
        plot_training_curves(
            self.run_dir / "log.csv", self.run_dir / "plots" / "training_curves.png", self.metric_name
        )
        write_report(self.run_dir)
        for split, m in results.items():
            headline = ", ".join(f"{k} {m[k]:.3f}" for k in self.task.headline_of(m))
            log.info("%s: %s", split, headline)


def fit(task: Task, index: pd.DataFrame, run_dir: str | Path, callbacks: Sequence[Callback] = ()) -> Path:
    """Train `task` on a split index into `run_dir` (joins a torchrun process group when there is one)."""
    dist = D.setup(task.cfg.device)
    try:
        return Trainer(task, index, Path(run_dir), dist, callbacks).run()
    finally:
        D.cleanup(dist)


def train(cfg: TrainConfig, callbacks: Sequence[Callback] = ()) -> Path:
    """Train from a resolved config: a single run, or k-fold cross-validation when cfg.folds >= 2 or the folds
    are given by cfg.fold_col."""
    task = get_task(cfg.task)(cfg)
    task.augment_config()  # an augment option the task would ignore fails now, before any data is read
    if cfg.folds >= 2 or cfg.fold_col:
        from sonokit.train.cv import cross_validate

        return cross_validate(cfg, callbacks)
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    index = task.prepare_index()
    return fit(task, index, run_dir, callbacks)
