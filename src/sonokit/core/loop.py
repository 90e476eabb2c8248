"""The one batch loop: every path that runs a model over data (training's evaluation, `evaluate`, `predict`,
embeddings for retrieval and applicability, the array paths of the quality gate, the valve cascade and echo) goes
through `infer`, so device moves, channels-last, autocast and the order of collected rows are the same everywhere.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from sonokit.utils import progress
from sonokit.utils.logs import heartbeat_seconds

if TYPE_CHECKING:
    from sonokit.core.config import TrainConfig
    from sonokit.tasks.base import Task


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA devices that support it ("auto"), nothing on CPU unless asked for."""
    if cfg.amp == "off":
        return None
    if cfg.amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move every tensor of a (nested) batch; 4-D (images) and 5-D (clips) float tensors optionally to the
    channels-last memory format, which the oneDNN/AMX convolutions of recent CPUs and tensor cores run fastest."""
    if isinstance(batch, torch.Tensor):
        t = batch.to(device, non_blocking=True)
        if channels_last and t.ndim in _CHANNELS_LAST and t.is_floating_point():
            t = t.contiguous(memory_format=_CHANNELS_LAST[t.ndim])
        return t
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    return batch


def channels_last_model(model: nn.Module) -> nn.Module:
    """Conv weights to channels-last in place: 4-D (2D convs) and 5-D (3D convs) alike; Module.to() would
    reject a 4-D weight when asked for the 3-D format, and a two-stream video model holds both."""
    for param in model.parameters():
        if param.ndim in _CHANNELS_LAST:
            param.data = param.data.contiguous(memory_format=_CHANNELS_LAST[param.ndim])
    return model


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([abs(seed), epoch]).generate_state(1)[0])


def _worker_init(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; numpy and random follow from it
    import random

    from sonokit.utils.procs import die_with_parent

    s = torch.initial_seed() % 2**32
    np.random.seed(s)  # noqa: NPY002 (third-party code in workers draws from the legacy global RNG)
    random.seed(s)
    die_with_parent()  # a killed training run must not leave its workers behind


def make_loader(
    dataset: torch.utils.data.Dataset,
    task: Task,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    *,
    sampler: torch.utils.data.Sampler | None = None,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=task.collate,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=_worker_init if num_workers > 0 else None,
    )


def forward_batch(
    task: Task,
    model: nn.Module,
    batch: Any,
    device: torch.device,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    with_loss: bool = False,
) -> tuple[Any, Any, torch.Tensor | None]:
    """The one batch step of training, evaluation and prediction: (the batch on the device, the task's outputs,
    the loss when asked for and the batch has targets). Gradients follow the caller's torch.no_grad()."""
    batch = to_device(batch, device, channels_last)
    with autocast(device, dtype):
        outputs = task.forward(model, batch)
        loss = task.loss(outputs, batch) if with_loss and task.has_targets(batch) else None
    return batch, outputs, loss


def infer(
    task: Task,
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    desc: str = "eval",
) -> tuple[float, dict[str, np.ndarray]]:
    """Run a loader through the model without gradients: (mean loss or NaN when unlabelled, collected arrays)."""
    model.eval()
    parts: list[dict[str, np.ndarray]] = []
    loss_sum, count = 0.0, 0
    with torch.no_grad():
        for batch in progress(
            loader, desc=desc, total=len(loader), unit="batch", heartbeat=heartbeat_seconds()
        ):
            batch, outputs, loss = forward_batch(
                task, model, batch, device, dtype, channels_last, with_loss=True
            )
            n = len(batch["index"])
            if loss is not None:
                loss_sum += float(loss) * n
                count += n
            parts.append(task.collect(outputs, batch))
    return (loss_sum / count if count else math.nan), concat_parts(parts)


def concat_parts(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts:
        return {"index": np.zeros(0, dtype=np.int64)}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def infer_items(
    run: Any, items: Any, batch_size: int | None = None, desc: str = "predict"
) -> tuple[float, dict[str, np.ndarray], Any]:
    """A loaded run (task, model, cfg, device) over item rows: (mean loss or NaN, collected arrays, dataset)."""
    cfg = run.task.cfg
    dataset = run.task.build_dataset(items, train=False)
    loader = make_loader(
        dataset, run.task, batch_size or cfg.eval_batch_size or cfg.batch_size, 0, run.device
    )
    dtype = amp_dtype(cfg, run.device)
    loss, collected = infer(run.task, run.model, loader, run.device, dtype, cfg.channels_last, desc=desc)
    return loss, collected, dataset
