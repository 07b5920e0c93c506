"""The detection job's data: the COCO (or embedded synthetic) datasets and their loaders.

:func:`build_datasets` builds the train/val datasets of a :class:`~ghostdet.config.TrainConfig`
(generating the synthetic set on first use), :func:`make_loaders` their grouped-aspect-ratio
loaders; :class:`CountingLoader` counts the unreadable images the batches dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from ghostdet.config.detection import TrainConfig
from ghostdet.engine.logger import RunLogger
from ghostdet.utils.distributed import DistInfo, all_gather_objects

__all__ = ["CountingLoader", "build_datasets", "make_loaders", "steps_this_epoch"]


def _synthetic_paths(cfg: TrainConfig, info: DistInfo, log: RunLogger) -> dict[str, str]:
    from ghostdet.data import ensure_synthetic_coco

    s = cfg.synthetic
    kwargs = s.generator_kwargs()
    log(f"data: embedded synthetic shapes at {s.root} ({s.num_train} train / {s.num_val} val images)")
    # every rank calls it: ensure_synthetic_coco serialises the generation with a lock file
    return ensure_synthetic_coco(s.root, verbose=info.is_main, **kwargs)


def build_datasets(cfg: TrainConfig, info: DistInfo | None = None, log: RunLogger | None = None) -> tuple:
    """``(train_dataset, val_dataset)`` of ``cfg`` (generating the synthetic data if needed).

    Raises:
        FileNotFoundError / ValueError: missing paths (the message names the expected layout).
        ghostdet.data.DataError: a malformed annotation file, invalid entries with
            ``cfg.strict_data``, a split without images, or a val split of which not one image
            can be read. Both files are validated here, before the first epoch, so a bad val
            file never costs an epoch of training.
    """
    from ghostdet.data import build_coco_datasets, build_transforms

    info = info or DistInfo(0, 1, 0, torch.device("cpu"), False)
    log = log or RunLogger(enabled=False)
    if cfg.uses_synthetic():
        p = _synthetic_paths(cfg, info, log)
        paths = {k: p[k] for k in ("train_images", "train_ann", "val_images", "val_ann")}
    else:
        paths = {
            "data_path": cfg.data_path,
            "train_images": cfg.train_images,
            "train_ann": cfg.train_ann,
            "val_images": cfg.val_images,
            "val_ann": cfg.val_ann,
        }
    train_ds, val_ds = build_coco_datasets(
        **paths,
        train_transforms=build_transforms(True, cfg.augment, seed=cfg.seed + info.rank),
        val_transforms=build_transforms(False),
        drop_empty_train=cfg.drop_empty,
        strict=cfg.strict_data,
        data_format=cfg.data_format,
        difficult=cfg.difficult,
    )
    log(f"{train_ds.report.summary()}\n{val_ds.report.summary()}")  # what was skipped, by class
    return train_ds, val_ds


class CountingLoader:
    """A DataLoader wrapper that counts the unreadable images its batches dropped."""

    def __init__(self, loader: DataLoader, limit: int | None = None) -> None:
        self.loader = loader
        self.limit = limit
        self.skipped = 0

    def __len__(self) -> int:
        n = len(self.loader)
        return n if self.limit is None else min(n, self.limit)

    def __iter__(self) -> Iterator[tuple[tuple, tuple]]:
        for i, batch in enumerate(self.loader):
            if self.limit is not None and i >= self.limit:
                break
            self.skipped += int(getattr(batch, "skipped", 0))
            yield batch[0], batch[1]


def make_loaders(cfg: TrainConfig, info: DistInfo, train_ds: Any, val_ds: Any) -> tuple[Any, DataLoader, Any]:
    """``(train batch sampler, train loader, val loader)``: batches grouped by aspect ratio,
    ``cfg.batch_size`` images per process."""
    from ghostdet.data import GroupedBatchSampler, collate_fn, create_aspect_ratio_groups

    # A DistributedSampler also in single-process runs: its shuffle order is a pure function of
    # (seed, epoch), which makes resumed runs see the same batches as uninterrupted ones.
    train_sampler = DistributedSampler(
        train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed
    )
    groups = create_aspect_ratio_groups(train_ds.aspect_ratios(), k=cfg.aspect_ratio_group_factor)
    batch_sampler = GroupedBatchSampler(train_sampler, groups, cfg.batch_size)
    pin = info.device.type == "cuda"
    train_loader = DataLoader(
        train_ds,
        batch_sampler=batch_sampler,
        num_workers=cfg.workers,
        collate_fn=collate_fn,
        pin_memory=pin,
    )
    if info.distributed:
        val_sampler: Any = DistributedSampler(
            val_ds, num_replicas=info.world_size, rank=info.rank, shuffle=False
        )
    else:
        val_sampler = SequentialSampler(val_ds)
    val_groups = create_aspect_ratio_groups(val_ds.aspect_ratios(), k=cfg.aspect_ratio_group_factor)
    val_loader = DataLoader(
        val_ds,
        batch_sampler=GroupedBatchSampler(val_sampler, val_groups, cfg.batch_size),
        num_workers=cfg.workers,
        collate_fn=collate_fn,
        pin_memory=pin,
    )
    return batch_sampler, train_loader, val_loader


def steps_this_epoch(batch_sampler: Any, epoch: int) -> int:
    """Iterations of ``epoch`` (0-based): the minimum over ranks, so every rank steps alike."""
    batch_sampler.set_epoch(epoch)
    return int(min(all_gather_objects(len(batch_sampler))))
