"""Multi-process training: `torchrun --nproc_per_node 2 -m sonokit train ...` (gloo on the CPU) reproduces a
single-process run with the same global batch.

What must hold for the two loss curves to agree:
- the same global batches: one epoch-seeded permutation, process r taking positions r, r+W, ... of it
  (ShardSampler), so with --batch-size B/W per process global step k sees exactly the B samples a single process
  with --batch-size B sees; augmentation is seeded per (seed, item, epoch), so it is identical too;
- the same gradient: DDP averages the per-process mean gradients, which equals the mean over the global batch
  when every process holds the same number of samples (drop_last, padding);
- no per-process statistics: BatchNorm normalises each process's half batch with its own mean and variance (CPU
  has no SyncBatchNorm), and a class-weighted cross-entropy divides by each process's own weight sum. The exact
  test therefore uses TinyCNN with GroupNorm and `balance: none`; with those, the only difference left is the
  order of floating-point sums (all-reduce vs one batch mean), ~1e-7 relative per step, so the losses must agree
  to 1e-4 relative after two epochs. benchmarks/bench_train_ddp.py measures the BatchNorm/class-weight effect on
  the default tinycnn (about 1-2 % of the loss).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

ENTRY = """
import sys
from torch import nn
from sonokit.models.backbones import TinyCNN
from sonokit.models.registry import register_model


@register_model("tinycnn-gn", family="test", description="TinyCNN with GroupNorm (no per-process statistics)")
def tinycnn_gn(in_chans=1, **kw):
    m = TinyCNN(in_chans, **kw)
    for i, layer in enumerate(m.features):
        if isinstance(layer, nn.BatchNorm2d):
            m.features[i] = nn.GroupNorm(4, layer.num_features)
    return m


if __name__ == "__main__":
    from sonokit.cli.main import main

    sys.argv = ["sonokit", *sys.argv[1:]]
    main()
"""
# mixup off: it blends within each rank's share of a batch (two ranks of 4 pair other images than one batch of 8),
# so the two runs would differ by design, not by a fault of the sharding
CONFIG = "n_boot: 0\nbalance: none\nthreads: 1\noptions:\n  gradcam_samples: 0\n  mixup: null\n"


def test_shard_sampler_gives_the_same_global_batches() -> None:
    from sonokit.core.distributed import ShardSampler

    n, global_batch, world = 20, 8, 2
    for epoch in range(3):
        single = ShardSampler(n, seed=3)
        single.set_epoch(epoch)
        order = list(single)
        assert sorted(order) == list(range(n))
        ranks = []
        for rank in range(world):
            s = ShardSampler(n, seed=3, world_size=world, rank=rank)
            s.set_epoch(epoch)
            ranks.append(list(s))
            assert len(s) == n // world
        per = global_batch // world
        for k in range(n // global_batch):
            union = sorted(i for r in ranks for i in r[k * per : (k + 1) * per])
            assert union == sorted(order[k * global_batch : (k + 1) * global_batch])
    a, b = ShardSampler(n, seed=3), ShardSampler(n, seed=3)
    b.set_epoch(1)
    assert list(a) != list(b)  # a new order each epoch
    assert list(ShardSampler(n, seed=3)) == list(a) != list(ShardSampler(n, seed=4))
    odd = [list(ShardSampler(7, seed=0, world_size=2, rank=r)) for r in range(2)]
    assert len(odd[0]) == len(odd[1]) == 4 and set(odd[0]) | set(odd[1]) == set(range(7))  # padded evenly


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_run_matches_single_process(tmp_path) -> None:
    from sonokit.synth import make_dataset

    data = tmp_path / "fp"
    make_dataset("fetal-planes", data, n=24, seed=0, size=48)
    (tmp_path / "entry.py").write_text(ENTRY)
    (tmp_path / "tiny.yaml").write_text(CONFIG)
    common = [
        "train",
        "fetal-plane",
        "--data",
        str(data),
        "--model",
        "tinycnn-gn",
        "--epochs",
        "2",
        "--size",
        "48",
        "--config",
        str(tmp_path / "tiny.yaml"),
        "--quiet",
    ]
    env = {**os.environ, "SONOKIT_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(_free_port()),
            str(tmp_path / "entry.py"),
            *common,
            "--out",
            str(tmp_path / "ddp"),
            "--batch-size",
            "4",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("run folder:") == 1  # only rank 0 reports
    single = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "entry.py"),
            *common,
            "--out",
            str(tmp_path / "single"),
            "--batch-size",
            "8",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    a = pd.read_csv(tmp_path / "single" / "log.csv")
    b = pd.read_csv(tmp_path / "ddp" / "log.csv")
    assert list(a["phase"]) == list(b["phase"]) == ["train", "val", "train", "val"]
    rel = ((a["loss"] - b["loss"]).abs() / a["loss"].abs()).max()
    assert rel < 1e-4, (a["loss"].tolist(), b["loss"].tolist())
    assert (a["loss"].diff().abs() > 1e-3).any()  # the model did learn something: the curves are not flat
    from safetensors.torch import load_file

    wa, wb = (
        load_file(tmp_path / "single" / "model.safetensors"),
        load_file(tmp_path / "ddp" / "model.safetensors"),
    )
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4  # and ended with the same weights
    assert torch.equal(torch.tensor(a["epoch"]), torch.tensor(b["epoch"]))


def test_shard_sampler_draws_per_group_rows_afresh_each_epoch() -> None:
    from sonokit.core.distributed import ShardSampler

    groups = [np.arange(0, 10), np.arange(10, 30), np.array([30])]  # two videos' frames and one still image
    seen: set[int] = set()
    orders = []
    for epoch in range(4):
        s = ShardSampler(31, seed=5, groups=groups, per_group=3)
        s.set_epoch(epoch)
        order = list(s)
        assert len(order) == len(s) == 7 and len(set(order)) == 7  # 3 + 3 + 1, no repeats
        assert [sum(i in g for i in order) for g in groups] == [3, 3, 1]
        seen |= set(order)
        orders.append(order)
    assert len(seen) > 14 and orders[0] != orders[1]  # new frames each epoch, not a fixed subset
    ranks = [ShardSampler(31, seed=5, world_size=2, rank=r, groups=groups, per_group=3) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 4  # 7 rows padded to 8, split evenly
    assert set(ranks[0]) | set(ranks[1]) == set(orders[0])  # the processes split one epoch's draw
