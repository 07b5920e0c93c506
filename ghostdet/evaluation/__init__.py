"""COCO evaluation: the evaluator core used by training and by ``tools/eval_det.py``."""

from ghostdet.evaluation.coco_eval import (
    COCO_STAT_NAMES,
    CocoEvaluator,
    evaluate_detections,
    format_stats_table,
    load_coco,
    per_category_ap,
    run_cocoeval,
    run_inference,
)

__all__ = [
    "COCO_STAT_NAMES",
    "CocoEvaluator",
    "evaluate_detections",
    "format_stats_table",
    "load_coco",
    "per_category_ap",
    "run_cocoeval",
    "run_inference",
]
