"""Detection data: COCO-format datasets, augmentation, grouped batching, embedded synthetic data."""

from ghostdet.data.synthetic import ensure_synthetic_coco, make_synthetic_coco

__all__ = ["ensure_synthetic_coco", "make_synthetic_coco"]
