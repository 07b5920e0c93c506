"""The whole-block native kernel for small maps (``csrc/smallblock.c``) against the eval-mode
blocks of GhostNet V1, V2 and V3: every width, SE or not, stride 1 and 2, identity and conv
shortcuts, DFC gates, batch and thread splits."""

from __future__ import annotations

import pytest
import torch
from helpers import randomise_bn

from ghostdet.deploy import THRESHOLDS, BlockPath, DeployBottleneck, fuse, native
from ghostdet.models import ghostnet, ghostnetv2, ghostnetv3

pytestmark = pytest.mark.skipif(native.load() is None, reason="no C compiler to build the native kernels")


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()


def _pairs(builder, width: float = 1.0) -> list[tuple[DeployBottleneck, torch.nn.Module]]:
    model = randomise_bn(builder(width).eval(), seed=4)
    ours = [b for b in fuse(model).modules() if isinstance(b, DeployBottleneck)]
    theirs = [b for stage in model.blocks for b in stage if hasattr(b, "ghost1")]
    assert len(ours) == len(theirs)
    return list(zip(ours, theirs))


@pytest.mark.parametrize("builder", [ghostnet, ghostnetv2, ghostnetv3])
@pytest.mark.parametrize("threads", [1, 2])
def test_every_block_runs_whole_on_small_maps(builder, threads):
    """Each bottleneck of the model, on 7x7, odd 5x9 and 14x13 maps, batch 1 and 2: the one call
    equals the eval-mode block."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        pairs = _pairs(builder)
        assert all(BlockPath.SMALL in d.plan.fits for d, _ in pairs)
        kinds = {
            (d.conv_dw is None, d.se is None, d.shortcut_pw is None, d.ghost1.dfc is None) for d, _ in pairs
        }
        assert {k[0] for k in kinds} == {k[1] for k in kinds} == {k[2] for k in kinds} == {True, False}
        g = torch.Generator().manual_seed(threads)
        for d, m in pairs:
            cin = d.ghost1.primary_conv.weight.shape[1]
            for n, h, w in [(1, 7, 7), (2, 5, 9), (1, 14, 13)]:
                x = torch.randn((n, cin, h, w), generator=g).contiguous(memory_format=torch.channels_last)
                with torch.no_grad():
                    ref, got = m(x), d._run_small(x)
                assert got is not None and got.shape == ref.shape
                assert got.is_contiguous(memory_format=torch.channels_last)
                assert _rel_err(ref, got) < 1e-5, (type(m).__name__, n, h, w)
    finally:
        torch.set_num_threads(old)


def test_small_maps_take_the_whole_block_kernel(monkeypatch):
    """In a model, the blocks on maps up to their plan's ``small_max_pixels`` go through the one
    call, the narrow ones up to ``THRESHOLDS.small_block_max_pixels``, the wide ones up to
    ``THRESHOLDS.wide_small_block_max_pixels``
    (larger maps do not); outputs equal the model's."""
    model = randomise_bn(ghostnet().eval(), seed=9)
    deployed = fuse(model)
    blocks = [b for b in deployed.modules() if isinstance(b, DeployBottleneck)]
    limits = {THRESHOLDS.small_block_max_pixels, THRESHOLDS.wide_small_block_max_pixels}
    assert {b.plan.small_max_pixels for b in blocks} == limits
    sizes: list[int] = []
    real = native.ghost_block_small
    monkeypatch.setattr(
        native,
        "ghost_block_small",
        lambda x, *a, **k: sizes.append(x.shape[2] * x.shape[3]) or real(x, *a, **k),
    )
    for side in (224, 640):
        sizes.clear()
        x = torch.randn(1, 3, side, side)
        with torch.no_grad():
            assert _rel_err(model(x), deployed(x)) < 1e-4
        # 224: every block from 28x28 down; 640: the 40x40 wide ones and the 20x20 ones
        want = [28 * 28] * 2 + [14 * 14] * 6 + [7 * 7] * 4 if side == 224 else [40 * 40] * 3 + [20 * 20] * 4
        assert sorted(sizes, reverse=True) == want
        assert all(s <= THRESHOLDS.wide_small_block_max_pixels for s in sizes)


def test_whole_block_kernel_checks_its_inputs():
    d, _ = next(
        (d, m)
        for d, m in _pairs(ghostnet)
        if d.se is not None and d.shortcut_pw is not None and d.conv_dw is None
    )
    cin = d.ghost1.primary_conv.weight.shape[1]
    x = torch.randn(1, cin, 7, 7).contiguous(memory_format=torch.channels_last)
    w = d._fused_weights()
    se = [d.se.reduce_weight, d.se.reduce_bias, d.se.expand_weight, d.se.expand_bias]
    with pytest.raises(ValueError, match="do not fit"):
        native.ghost_block_small(x, w, 1, 3, [se[0][:, :8].contiguous(), *se[1:]])
    assert native.ghost_block_small(torch.randn(1, cin, 7, 7), w, 1, 3, se) is None  # NCHW: declined
