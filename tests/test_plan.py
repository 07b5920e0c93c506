"""ghostdet.deploy.plan: the thresholds table and the planner that names a bottleneck's path."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ghostdet.deploy import THRESHOLDS, DeployBottleneck, fuse
from ghostdet.deploy.plan import BAND_PATHS, REGENERATED_BY, BlockPath, Thresholds, plan_block
from ghostdet.models import ghostnet

ALL = (BlockPath.SMALL, *BAND_PATHS, BlockPath.SPLIT)


def test_plan_follows_the_thresholds_for_narrow_and_wide_blocks():
    t = Thresholds(fused_block_max_channels=80, fused_wide_min_pixels=512, small_block_max_pixels=1024)
    narrow, wide = plan_block(ALL, 80, thresholds=t), plan_block(ALL, 81, thresholds=t)
    narrow_limits = (narrow.small_max_pixels, narrow.band_min_pixels, narrow.band_rows)
    assert narrow_limits == (1024, 0, t.narrow_block_band)
    assert (wide.small_max_pixels, wide.band_min_pixels, wide.band_rows) == (
        t.wide_small_block_max_pixels, 512, t.wide_block_band,
    )  # fmt: skip
    # small maps: the whole-block kernel, then the band kernel (when the first declines)
    assert narrow.native_paths(1024) == (BlockPath.SMALL, BlockPath.S1)
    assert narrow.native_paths(1025) == (BlockPath.S1,)
    assert wide.native_paths(511) == (BlockPath.SMALL,)
    assert wide.native_paths(5000) == (BlockPath.S1,)
    # the band kernel is the first of S1, S2, SE that fits
    assert plan_block([BlockPath.SE, BlockPath.S2], 16).band is BlockPath.S2
    assert plan_block([BlockPath.SE], 16).native_paths(10**6) == (BlockPath.SE,)
    assert plan_block([], 16).native_paths(10) == () and plan_block([], 16).band is None


def test_op_path_splits_from_the_threshold_and_only_where_it_fits():
    plan = plan_block([BlockPath.SPLIT], 16, split_min_numel=100)
    assert plan.op_path(99) is BlockPath.CONCAT and plan.op_path(100) is BlockPath.SPLIT
    assert plan_block([], 16, split_min_numel=0).op_path(10**9) is BlockPath.CONCAT
    assert plan_block([BlockPath.SPLIT], 16).split_min_numel == THRESHOLDS.split_min_numel
    forced = plan.without(BlockPath.SPLIT)
    assert forced.op_path(10**9) is BlockPath.CONCAT and plan.op_path(10**9) is BlockPath.SPLIT  # a copy
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.split_min_numel = 0  # type: ignore[misc]


def test_the_table_names_its_benchmark_and_every_field_is_documented():
    assert REGENERATED_BY.startswith("python benchmarks/bench_cpu.py --sections kernels")
    doc = Thresholds.__doc__ or ""
    for field in dataclasses.fields(Thresholds):
        assert f"{field.name}:" in doc, field.name


def test_ghostnet_blocks_get_the_plans_their_modules_allow():
    """GhostNet 1.0x: SE blocks take the two-pass kernels, the others one call; every block fits
    the whole-block kernel and the split path; a 224 input runs the paths the plan names."""
    blocks = [m for m in fuse(ghostnet(1.0).eval()).modules() if isinstance(m, DeployBottleneck)]
    assert len(blocks) == 16
    for b in blocks:
        assert BlockPath.SMALL in b.plan.fits and BlockPath.SPLIT in b.plan.fits
        want = BlockPath.SE if b.se is not None else BlockPath.S1 if b.conv_dw is None else BlockPath.S2
        assert b.plan.band is want, (b.se is not None, b.conv_dw is not None)
    # the last stage (7x7 maps at 224): the whole-block kernel first
    x = torch.zeros(1, blocks[-1].ghost1.primary_conv.weight.shape[1], 7, 7)
    assert blocks[-1].block_kernels(x)[0] == "small"
