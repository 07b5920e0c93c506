"""How the deploy models run on a CPU: the measured thresholds in one table, and the planner that
names each Ghost bottleneck's execution path.

:data:`THRESHOLDS` holds every size limit the deploy kernels choose by. Each was measured on the
2-core x86 VMs of the project's benchmarks (per call, native kernel against the separate ops or
oneDNN, A/B in one process); :data:`REGENERATED_BY` names the benchmark sections that measure
them again on another machine. Which *kinds* of native kernel a CPU uses at all is
:func:`ghostdet.deploy.native.kernel_choice` (per instruction set).

A :class:`BlockPlan` is one bottleneck's plan, made once when the block is converted
(:func:`plan_block`) from what its modules allow: which native block kernels fit, and whether the
per-op path may keep ghost1's halves apart. Per call, :meth:`BlockPlan.native_paths` names the
native kernels to try for the input's map size, in order (a kernel may decline an input: the next
is tried), and :meth:`BlockPlan.op_path` the per-op path that runs when none is left.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["BAND_PATHS", "REGENERATED_BY", "THRESHOLDS", "BlockPath", "BlockPlan", "Thresholds", "plan_block"]

#: the benchmark sections that measure :data:`THRESHOLDS` (per-call native/oneDNN times, per-layer
#: times of the deploy trunk with and without the native kernels)
REGENERATED_BY = "python benchmarks/bench_cpu.py --sections kernels,scaling --threads 1 2"


@dataclass(frozen=True)
class Thresholds:
    """The deploy kernels' size limits, with the measurement behind each.

    Attributes:
        gemm_max_pixels: 1x1 convs with at most this many output pixels (N*H*W) run as a BLAS
            GEMM, larger ones as a prepacked oneDNN conv. With the native depthwise kernel,
            3136 (56x56) beat 1024 by ~5% at 224x224 and was neutral at 640x640.
        fused_block_max_channels: bottlenecks with at most this many output channels run on the
            band kernels (``csrc/ghostblock.c``) on maps of any size. Fused / separate ops at
            640x640 (224x224): 16-24 channels 0.4-0.55x, 40 channels stride 2 0.72x (0.90x),
            80 channels 0.77-0.85x (0.84-0.87x).
        fused_wide_min_pixels: wider bottlenecks run on the band kernels only on input maps of
            at least this many pixels (2026-12-03, AVX-512 VM: 112-channel SE blocks 0.65-0.84x
            on 40x40-50x50, 0.86-0.97x on 20x20-30x30; 160 channels 1.0-1.1x on 20x20).
        narrow_block_band: rows per task of the narrow band kernels.
        wide_block_band: rows per task of the wide band kernels (at 2 threads bands of 4 took
            0.80-0.93x the time of bands of 8 on 40-row maps).
        small_block_max_pixels: bottlenecks of any width on maps of at most this many pixels
            (32x32) run whole in one call (``csrc/smallblock.c``): 0.70-0.85x (1 thread) the
            band kernels or separate ops on 14x14-30x30, 0.74-1.26x on 40x40 (so not there).
        wide_small_block_max_pixels: the same limit for bottlenecks wider than
            ``fused_block_max_channels`` (64x64): 0.61-0.91x on 20x20-50x50, 0.75-0.96x on 63x63.
        split_min_numel: on the per-op path, ghost1's two halves go through the strided
            depthwise conv and SE separately (no concatenation) when ghost1's output has at least
            this many elements per image; below it the extra GEMM call costs more than the copy.
        parallel_min_macs: native calls below this many multiply-adds run on one thread (waking
            a second costs more).
        avx2_dwconv_max_macs: on AVX2 (no AVX-512), depthwise convs of at most this many
            multiply-adds run natively (0.4-0.95x oneDNN's time); larger ones took 1.1-1.7x
            oneDNN's and stay there (2026-12-02 and 12-04, AVX2 VM).
    """

    gemm_max_pixels: int = 3136
    fused_block_max_channels: int = 80
    fused_wide_min_pixels: int = 512
    narrow_block_band: int = 8
    wide_block_band: int = 4
    small_block_max_pixels: int = 1024
    wide_small_block_max_pixels: int = 4096
    split_min_numel: int = 200_000
    parallel_min_macs: int = 150_000
    avx2_dwconv_max_macs: int = 1_000_000


#: the table the deploy kernels read
THRESHOLDS = Thresholds()


class BlockPath(str, enum.Enum):
    """The ways a deploy bottleneck can run."""

    SMALL = "small"  #: the whole block in one native call (csrc/smallblock.c)
    S1 = "s1"  #: one band-kernel call, stride 1, no SE (csrc/ghostblock.c)
    S2 = "s2"  #: one band-kernel call, stride 2, no SE; the conv shortcut runs beside it
    SE = "se"  #: band kernels in two passes (front, back) around an SE or DFC gate
    SPLIT = "split"  #: separate ops, ghost1's halves kept apart (never concatenated)
    CONCAT = "concat"  #: separate ops, ghost1's output concatenated


#: the band kernels, in the order they are preferred when several fit
BAND_PATHS = (BlockPath.S1, BlockPath.S2, BlockPath.SE)


@dataclass(frozen=True)
class BlockPlan:
    """One bottleneck's plan (see the module doc).

    Attributes:
        fits: the paths its modules allow, among :attr:`BlockPath.SMALL`, the band kernels and
            :attr:`BlockPath.SPLIT` (:attr:`BlockPath.CONCAT` always fits).
        small_max_pixels: the whole-block kernel runs on input maps up to this many pixels.
        band_min_pixels: a band kernel runs on input maps of at least this many pixels.
        band_rows: rows per task of the band kernels.
        split_min_numel: :attr:`BlockPath.SPLIT` from this many ghost1 output elements per image.
    """

    fits: frozenset[BlockPath]
    small_max_pixels: int
    band_min_pixels: int
    band_rows: int
    split_min_numel: int

    @property
    def band(self) -> BlockPath | None:
        """The band kernel this block uses (the first of :data:`BAND_PATHS` that fits)."""
        return next((p for p in BAND_PATHS if p in self.fits), None)

    def native_paths(self, pixels: int) -> tuple[BlockPath, ...]:
        """The native kernels to try, in order, on an input map of ``pixels`` (H*W) pixels."""
        paths = (BlockPath.SMALL,) if BlockPath.SMALL in self.fits and pixels <= self.small_max_pixels else ()
        band = self.band
        if band is not None and pixels >= self.band_min_pixels:
            paths += (band,)
        return paths

    def op_path(self, ghost1_numel: int) -> BlockPath:
        """The per-op path for ghost1's output of ``ghost1_numel`` elements per image."""
        if BlockPath.SPLIT in self.fits and ghost1_numel >= self.split_min_numel:
            return BlockPath.SPLIT
        return BlockPath.CONCAT

    def without(self, *paths: BlockPath) -> BlockPlan:
        """This plan with ``paths`` no longer allowed (e.g. to force the per-op path)."""
        return dataclasses.replace(self, fits=self.fits - set(paths))


def plan_block(
    fits: Iterable[BlockPath],
    out_channels: int,
    split_min_numel: int | None = None,
    thresholds: Thresholds = THRESHOLDS,
) -> BlockPlan:
    """The plan of a bottleneck with ``out_channels`` output channels whose modules allow ``fits``.

    Narrow bottlenecks (at most ``thresholds.fused_block_max_channels``) take the band kernels on
    every map and the whole-block kernel up to ``small_block_max_pixels``; wide ones the band
    kernels from ``fused_wide_min_pixels`` on, in bands of ``wide_block_band`` rows, and the
    whole-block kernel up to ``wide_small_block_max_pixels``.

    Args:
        fits: the paths the block's modules allow (see :attr:`BlockPlan.fits`).
        out_channels: the block's output channels.
        split_min_numel: overrides ``thresholds.split_min_numel`` (``0``: always split).
        thresholds: the size limits.
    """
    t = thresholds
    wide = out_channels > t.fused_block_max_channels
    return BlockPlan(
        fits=frozenset(fits),
        small_max_pixels=t.wide_small_block_max_pixels if wide else t.small_block_max_pixels,
        band_min_pixels=t.fused_wide_min_pixels if wide else 0,
        band_rows=t.wide_block_band if wide else t.narrow_block_band,
        split_min_numel=t.split_min_numel if split_min_numel is None else split_min_numel,
    )
