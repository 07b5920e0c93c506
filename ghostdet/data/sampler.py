"""Aspect-ratio grouped batching.

Images are put into groups by aspect ratio (width / height, read from the annotation JSON, no
decoding) so that a batch holds images of similar shape and the detector's padding to a common
size wastes little. :class:`GroupedBatchSampler` wraps any index sampler (``RandomSampler``,
``SequentialSampler``, ``DistributedSampler``...) and emits batches whose members all share a
group, keeping the inner sampler's order as far as possible.

Every index the inner sampler yields appears in exactly one batch (nothing is repeated or
dropped). At the end of an epoch each group's leftover indices (fewer than ``batch_size``) are
emitted as a smaller batch of that group (default), or, with ``mixed_leftovers=True``, merged
into full batches that may mix groups. With a ``DistributedSampler`` each rank batches its own
shard, so ranks may get a different number of batches; a trainer that needs equal step counts
should cap the epoch at the minimum over ranks. ``len()`` counts batches from the inner
sampler's indices and is exact whenever the group sizes do not depend on the sampler's order
(true for shuffling without replacement and for a ``DistributedSampler`` at a fixed epoch).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from ghostdet.errors import ArgumentError

__all__ = ["GroupedBatchSampler", "create_aspect_ratio_groups", "quantize_aspect_ratios"]


def quantize_aspect_ratios(aspect_ratios: Sequence[float], bins: Sequence[float]) -> list[int]:
    """Group id of each aspect ratio: the index of the bin interval it falls into.

    ``bins`` are sorted edges; values below ``bins[0]`` get group 0, values in
    ``[bins[i-1], bins[i])`` group ``i`` and values ``>= bins[-1]`` group ``len(bins)``.
    """
    edges = sorted(float(b) for b in bins)
    return [bisect.bisect_right(edges, float(r)) for r in aspect_ratios]


def create_aspect_ratio_groups(aspect_ratios: Sequence[float], k: int = 3) -> list[int]:
    """Group ids from aspect ratios, with ``2k + 1`` groups spaced log-uniformly.

    The edges are ``2 ** linspace(-1, 1, 2k)`` (i.e. ratios from 1/2 to 2) around 1, so with
    ``k = 0`` every image is in one group and larger ``k`` gives finer groups. Portrait and
    landscape images always end up in different groups when ``k >= 1``.

    Args:
        aspect_ratios: width / height of every dataset item.
        k: groups per side of ratio 1.
    """
    if k < 0:
        raise ArgumentError(f"k must be >= 0, got {k}", argument="k")
    if k == 0:
        return [0] * len(aspect_ratios)
    edges = (2.0 ** np.linspace(-1.0, 1.0, 2 * k)).tolist()
    return quantize_aspect_ratios(aspect_ratios, edges)


class GroupedBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` indices that share a group id.

    Args:
        sampler: inner sampler yielding dataset indices (may be a ``DistributedSampler``; call
            its ``set_epoch`` as usual, this sampler forwards :meth:`set_epoch` too).
        group_ids: group id of every dataset index (see :func:`create_aspect_ratio_groups`).
        batch_size: images per batch.
        mixed_leftovers: after the inner sampler is exhausted, emit each group's remaining
            indices as a smaller batch of that group (False, default: every batch is
            group-pure) or merge them into full batches that may mix groups (True).
    """

    def __init__(
        self,
        sampler: Sampler[int],
        group_ids: Sequence[int],
        batch_size: int,
        mixed_leftovers: bool = False,
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ArgumentError(
                f"batch_size must be a positive int, got {batch_size!r}", argument="batch_size"
            )
        self.sampler = sampler
        self.group_ids = [int(g) for g in group_ids]
        self.batch_size = batch_size
        self.mixed_leftovers = mixed_leftovers

    def set_epoch(self, epoch: int) -> None:
        """Forward to the inner sampler (e.g. ``DistributedSampler``) when it supports it."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        pending: dict[int, list[int]] = defaultdict(list)
        for idx in self.sampler:
            g = self.group_ids[idx]
            bucket = pending[g]
            bucket.append(idx)
            if len(bucket) == self.batch_size:
                yield bucket
                pending[g] = []
        # leftovers, ordered by their first index
        rest = sorted((b for b in pending.values() if b), key=lambda b: b[0])
        if not self.mixed_leftovers:
            yield from rest
            return
        flat = [i for b in rest for i in b]
        for start in range(0, len(flat), self.batch_size):
            yield flat[start : start + self.batch_size]

    def __len__(self) -> int:
        counts: dict[int, int] = defaultdict(int)
        for idx in self.sampler:
            counts[self.group_ids[idx]] += 1
        full = sum(c // self.batch_size for c in counts.values())
        left = [c % self.batch_size for c in counts.values()]
        if self.mixed_leftovers:
            return full + -(-sum(left) // self.batch_size)
        return full + sum(1 for c in left if c)
