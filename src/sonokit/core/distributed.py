"""Multi-process training under torchrun: gloo on CPU, nccl on GPU; only rank 0 writes files.

Started with `torchrun --nproc_per_node N -m sonokit train ...`: torchrun sets RANK, WORLD_SIZE and LOCAL_RANK and
this module picks them up; a plain `sonokit train` is a world of one and nothing here does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from sonokit.utils import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:<local_rank> when a GPU is visible, else cpu; anything else is passed to torch.device."""
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def setup(preference: str = "auto") -> DistInfo:
    """Join the process group torchrun prepared (if any) and choose this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=pick_device(preference))
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    log.info("distributed: rank %d/%d on %s (%s)", rank, world, device, backend)
    return DistInfo(rank, world, local_rank, device, backend)


class ShardSampler(torch.utils.data.Sampler[int]):
    """One epoch-seeded permutation, split across processes: process r takes positions r, r+W, r+2W, ...

    With per-process batch b, global step k sees exactly positions [k*b*W, (k+1)*b*W) of the permutation, so a
    run on W processes with --batch-size b trains on the same batches as one process with --batch-size b*W (the
    permutation depends only on seed and epoch, also for W = 1). The tail is padded by repetition so every process
    gets the same count, as DistributedSampler does.
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        world_size: int = 1,
        rank: int = 0,
        groups: list[np.ndarray] | None = None,
        per_group: int | None = None,
    ) -> None:
        """`groups`/`per_group`: each epoch uses only `per_group` rows of each group (e.g. frames of a video), drawn
        afresh from the epoch's seed; the same on every process."""
        self.n, self.seed, self.world_size, self.rank, self.epoch = n, seed, world_size, rank, 0
        self.groups = groups
        self.per_group = int(per_group) if per_group else None
        if groups is not None and not self.per_group:
            raise ValueError("groups need per_group >= 1")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _epoch_size(self) -> int:
        if self.groups is None:
            return self.n
        return sum(min(self.per_group, len(g)) for g in self.groups)  # type: ignore[type-var]

    def __len__(self) -> int:
        return -(-self._epoch_size() // self.world_size)

    def __iter__(self):
        state = np.random.SeedSequence([abs(self.seed), self.epoch, 7]).generate_state(2)
        g = torch.Generator()
        g.manual_seed(int(state[0]))
        if self.groups is None:
            rows = np.arange(self.n)
        else:
            rng = np.random.default_rng(int(state[1]))
            rows = np.concatenate(
                [rng.choice(grp, min(self.per_group, len(grp)), replace=False) for grp in self.groups]
            )
        order = rows[torch.randperm(len(rows), generator=g).numpy()].tolist()
        total = len(self) * self.world_size
        order += (order * (total // max(len(rows), 1) + 1))[: total - len(rows)]
        return iter(order[self.rank : total : self.world_size])


def cleanup(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def gather_outputs(outputs: dict[str, np.ndarray], info: DistInfo) -> dict[str, np.ndarray]:
    """Concatenate every rank's collected outputs and drop DistributedSampler's padding duplicates.

    Outputs carry an "index" array (dataset positions); the result is sorted by it, so every rank ends up with the
    same arrays and takes the same early-stopping decision without further communication.
    """
    if info.enabled:
        import torch.distributed as dist

        parts: list[Any] = [None] * info.world_size
        dist.all_gather_object(parts, outputs)
        outputs = {k: np.concatenate([p[k] for p in parts]) for k in outputs}
    if "index" not in outputs:
        return outputs
    _, first = np.unique(outputs["index"], return_index=True)
    return {k: v[first] for k, v in outputs.items()}


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size
