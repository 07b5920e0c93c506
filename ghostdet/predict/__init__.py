"""Prediction with trained detectors: the Python API (:class:`~ghostdet.predict.predictor.Predictor`
on files, folders, arrays, tensors and videos), video files (:mod:`~ghostdet.predict.video`),
``ghostdet predict``'s pipeline (:mod:`~ghostdet.predict.infer`), drawing detections
(:mod:`~ghostdet.predict.drawing`) and drawing a dataset's labels (:mod:`~ghostdet.predict.browse`)."""

from ghostdet.predict.browse import browse_dataset
from ghostdet.predict.drawing import draw_detections
from ghostdet.predict.infer import check_output_dir, collect_images, predict_images, run_infer
from ghostdet.predict.predictor import (
    Detections,
    Predictions,
    Predictor,
    available_runtimes,
    read_best_threshold,
    register_runtime,
)
from ghostdet.predict.video import predict_video

__all__ = [
    "Detections",
    "Predictions",
    "Predictor",
    "available_runtimes",
    "browse_dataset",
    "check_output_dir",
    "collect_images",
    "draw_detections",
    "predict_images",
    "predict_video",
    "read_best_threshold",
    "register_runtime",
    "run_infer",
]
