"""Prediction with trained detectors: running them on images and saving what they found
(:mod:`~ghostdet.predict.infer`), and drawing detections (:mod:`~ghostdet.predict.drawing`)."""

from ghostdet.predict.drawing import draw_detections
from ghostdet.predict.infer import check_output_dir, collect_images, predict_images, run_infer

__all__ = ["check_output_dir", "collect_images", "draw_detections", "predict_images", "run_infer"]
