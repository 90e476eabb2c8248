"""The prediction-only rewrites of a trained network keep its outputs (sonokit.models.inference)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sonokit.core.loop import channels_last_model
from sonokit.models import build
from sonokit.models.inference import GrayInputConv, fold_batchnorm


def _trained_like(name: str) -> nn.Module:
    """A video model whose BatchNorms hold statistics and affine terms far from the identity."""
    torch.manual_seed(0)
    net = build(name, kind="video")
    for layer in net.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.running_mean.normal_(0.0, 0.5)
            layer.running_var.uniform_(0.2, 3.0)
            layer.weight.data.uniform_(0.5, 1.5)
            layer.bias.data.normal_(0.0, 0.3)
    return net.eval()


@pytest.mark.parametrize(
    "name, shape", [("two-stream-tiny", (3, 3, 8, 48, 48)), ("r2plus1d_18", (2, 3, 4, 32, 32))]
)
def test_folded_and_grey_fed_models_give_the_original_outputs(name, shape) -> None:
    net = _trained_like(name)
    gray = torch.rand(shape[0], 1, *shape[2:])
    colour = torch.rand(shape)
    with torch.inference_mode():
        before_gray, before_colour = net(gray.expand(shape)), net(colour)
    n_norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())

    assert fold_batchnorm(net) > 0
    left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert left < n_norms
    net.accept_gray_input()
    channels_last_model(net)
    assert any(isinstance(m, GrayInputConv) for m in net.modules())
    with torch.inference_mode():
        after_gray = net(gray.contiguous(memory_format=torch.channels_last_3d))  # one channel in
        after_colour = net(colour)  # three different channels still take the original convolution
    scale = before_colour.abs().max().item()
    assert torch.allclose(after_gray, before_gray, atol=1e-4 * scale, rtol=0)
    assert torch.allclose(after_colour, before_colour, atol=1e-4 * scale, rtol=0)
    assert before_colour.std() > 0  # outputs that differ between clips: the comparison means something


def test_folding_refuses_a_training_model() -> None:
    net = build("two-stream-tiny", kind="video").train()
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(net)


@pytest.mark.parametrize("prepared", [False, True])
def test_overlapping_clips_sharing_the_first_stage_give_each_clips_outputs(prepared) -> None:
    """TwoStreamEF.forward_windows (the spatial stream's first stage run once over the frames overlapping clips
    share, each clip's edges computed again with its own zero padding) equals forward() on every clip, for the
    all-clips protocol's regular offsets and for irregular ones, as trained and as prepared for prediction."""
    from sonokit.models.video import first_stage_windows

    net = _trained_like("two-stream-tiny")
    if prepared:
        fold_batchnorm(net)
        net.accept_gray_input()
        channels_last_model(net)
    assert net.shares_clip_frames()
    torch.manual_seed(1)
    seq = torch.rand(1, 1, 30, 40, 40)
    if not prepared:
        seq = seq.expand(1, 3, -1, -1, -1).contiguous()
    for offsets, frames, length in (([0, 4, 8, 12, 14], 8, 30), ([0, 1, 7, 22], 8, 30), ([3, 5], 8, 30),
                                     ([0, 1], 4, 5), ([0, 2], 4, 7)):  # fmt: skip
        seq_part = seq[:, :, :length]
        clips = torch.stack([seq_part[0, :, o : o + frames] for o in offsets])
        with torch.inference_mode():
            block = first_stage_windows(net.spatial.stages[0], seq_part, offsets, frames)
            expected_block = net.spatial.stages[0](clips)
            out, expected = net.forward_windows(seq_part, offsets, frames), net(clips)
        scale = expected_block.abs().max().item()
        assert torch.allclose(block, expected_block, atol=1e-5 * scale, rtol=0), offsets
        assert torch.allclose(out, expected, atol=1e-4 * expected.abs().max().item(), rtol=0), offsets
        assert expected_block[:, :, 0].std() > 0 and not torch.allclose(
            expected_block[0, :, 0], expected_block[0, :, 1]
        )
    net.train()
    assert not net.shares_clip_frames()  # BatchNorm on batch statistics: no sharing while training


def test_frame_differences_without_autograd_give_the_training_values() -> None:
    from sonokit.models.video import frame_differences

    torch.manual_seed(0)
    for x in (
        torch.rand(3, 1, 8, 20, 20),
        torch.rand(2, 3, 8, 20, 20).contiguous(memory_format=torch.channels_last_3d),
    ):
        with torch.enable_grad():
            trained = frame_differences(x.clone().requires_grad_(True)).detach()
        with torch.inference_mode():
            fast = frame_differences(x)
        assert torch.allclose(fast, trained, atol=1e-5, rtol=0)
        assert fast.is_contiguous(memory_format=torch.channels_last_3d) == x.is_contiguous(
            memory_format=torch.channels_last_3d
        )


def test_clip_batches_cover_every_clip_once_and_leave_none_alone() -> None:
    from sonokit.echo.predict import clip_batches

    for n in range(1, 40):
        for size in range(1, 13):
            parts = clip_batches(n, size)
            assert [i for p in parts for i in range(p.start, p.stop)] == list(range(n))
            lengths = [p.stop - p.start for p in parts]
            assert max(lengths) <= size and max(lengths) - min(lengths) <= 1
            assert len(parts) == -(-n // size)  # as few batches as the size allows
            if n > 1 and size > 2:
                assert min(lengths) >= 2, (n, size, lengths)
