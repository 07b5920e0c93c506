"""Detection data: COCO-format datasets and their validation, augmentation, grouped batching, embedded
synthetic data.

Classification data (ImageFolder / CIFAR readers, a generated shapes set):
:mod:`ghostdet.data.classification`.
"""

from ghostdet.data.coco import (
    BadImageWarning,
    Batch,
    CocoDetection,
    build_coco_datasets,
    collate_fn,
    collate_with_skips,
    count_valid_boxes,
    load_rgb_image,
    resolve_coco_paths,
)
from ghostdet.data.sampler import GroupedBatchSampler, create_aspect_ratio_groups, quantize_aspect_ratios
from ghostdet.data.synthetic import ensure_synthetic_coco, make_synthetic_coco, synthetic_paths
from ghostdet.data.transforms import AugConfig, DetectionTransform, ToTensorTransform, build_transforms
from ghostdet.data.validation import DataError, DataReport

__all__ = [
    "AugConfig",
    "BadImageWarning",
    "Batch",
    "CocoDetection",
    "DataError",
    "DataReport",
    "DetectionTransform",
    "GroupedBatchSampler",
    "ToTensorTransform",
    "build_coco_datasets",
    "build_transforms",
    "collate_fn",
    "collate_with_skips",
    "count_valid_boxes",
    "create_aspect_ratio_groups",
    "ensure_synthetic_coco",
    "load_rgb_image",
    "make_synthetic_coco",
    "quantize_aspect_ratios",
    "resolve_coco_paths",
    "synthetic_paths",
]
