#!/usr/bin/env python
"""FP32 -> int8 accuracy of trained models, through ``ghostdet.deploy.compile``.

Three steps, each a subcommand:

``crops``       a real-image classification set from a COCO set: the boxes of the ``--classes``
                most frequent categories (at least ``--min-side`` px, 10% margin) cut out into an
                ImageFolder (``train/`` and ``val/``: every 4th crop of a category), for
                ``tools/train_cls.py --data-path``.
``classifier``  top-1 of a ``tools/train_cls.py`` checkpoint on its val split: FP32 PyTorch, and
                int8 in onnxruntime and OpenVINO (calibrated on ``--calibration`` images, the
                train split's by default), with depthwise convs in float (the default) and
                quantized too.
``detector``    COCO AP of a ``tools/train_det.py`` checkpoint on a val set through ``ghostdet
                eval``'s own path (:func:`ghostdet.evaluation.evaluate.run_eval`): eager FP32,
                FP32 and int8 in onnxruntime and OpenVINO.

Examples::

    python benchmarks/int8_accuracy.py crops --coco ../shared/data/coco128 --out /tmp/coco_crops
    python tools/train_cls.py --data-path /tmp/coco_crops --model ghostnet --image-size 64 --epochs 30
    python benchmarks/int8_accuracy.py classifier runs/cls/best.pth --data /tmp/coco_crops
    python benchmarks/int8_accuracy.py detector runs/retinanet_synthetic/best.pth \\
        --val-images data/synthetic/val --val-ann data/synthetic/annotations/instances_val.json \\
        --calibration data/synthetic/train
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_crops(
    coco_root: Path, out: Path, classes: int = 5, min_side: int = 32, per_class: int = 80, val_every: int = 4
) -> dict[str, Any]:
    """Cut the boxes of the ``classes`` most frequent categories of a COCO set into an
    ImageFolder, at most ``per_class`` per category; per category, every ``val_every``-th crop
    (by image id, then annotation id) goes to ``val/``. A small set such as coco128 has few
    photos per category, so one photo may give crops to both splits (other objects of it):
    the top-1 is optimistic, the FP32 -> int8 difference is what the set measures. Returns the
    counts."""
    from PIL import Image

    ann_file = next((coco_root / "annotations").glob("*.json"))
    images_dir = next(p for p in coco_root.iterdir() if p.is_dir() and p.name != "annotations")
    doc = json.loads(ann_file.read_text())
    names = {c["id"]: c["name"].replace(" ", "_") for c in doc["categories"]}
    anns = [
        a for a in doc["annotations"] if not a.get("iscrowd") and min(a["bbox"][2], a["bbox"][3]) >= min_side
    ]
    top = [c for c, _ in collections.Counter(a["category_id"] for a in anns).most_common(classes)]
    files = {im["id"]: im["file_name"] for im in doc["images"]}
    counts: collections.Counter = collections.Counter()
    for cat in top:
        mine = sorted((a for a in anns if a["category_id"] == cat), key=lambda a: (a["image_id"], a["id"]))
        mine = mine[:per_class]
        for k, a in enumerate(mine):
            split = "val" if k % val_every == val_every - 1 else "train"
            x, y, w, h = a["bbox"]
            with Image.open(images_dir / files[a["image_id"]]) as img:
                m = 0.1
                x0, y0 = max(0, x - m * w), max(0, y - m * h)
                box = (x0, y0, min(img.width, x + w * (1 + m)), min(img.height, y + h * (1 + m)))
                crop = img.convert("RGB").crop(tuple(round(v) for v in box))
            folder = out / split / names[cat]
            folder.mkdir(parents=True, exist_ok=True)
            crop.save(folder / f"{a['image_id']}_{a['id']}.jpg", quality=95)
            counts[f"{split}/{names[cat]}"] += 1
    return dict(sorted(counts.items()))


def classifier_accuracy(checkpoint: Path, data: Path, calibration: Path | None, threads: int) -> list[dict]:
    """Top-1 of the checkpoint's classifier on ``data/val``: FP32 eager, int8 in each installed
    ONNX runtime with depthwise convs in float and quantized."""
    from torchvision.datasets import ImageFolder

    from ghostdet.data.classification import build_classification_transforms
    from ghostdet.deploy.runtimes import available_runtimes
    from ghostdet.engine.train_cls import load_classifier

    torch.set_num_threads(threads)
    model, ckpt = load_classifier(checkpoint)
    size = int(ckpt["config"]["image_size"])
    tf = build_classification_transforms(False, "imagefolder", size)
    val = ImageFolder(str(data / "val"), transform=tf)
    calib_set = ImageFolder(str(calibration or data / "train"), transform=tf)
    step = max(1, len(calib_set) // 64)
    calib = [calib_set[i][0][None] for i in range(0, len(calib_set), step)][:64]
    x = torch.stack([img for img, _ in val])
    y = torch.tensor([label for _, label in val])
    rows = []
    with torch.inference_mode():
        ref = model(x)
    rows.append({"model": "fp32 eager", "top1": (ref.argmax(1) == y).float().mean().item(), "n": len(y)})
    from ghostdet.deploy.onnx import export_onnx
    from ghostdet.deploy.quantize import quantize_onnx
    from ghostdet.deploy.runtimes import onnxruntime_runner, openvino_runner

    runners = {"onnxruntime": onnxruntime_runner, "openvino": openvino_runner}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(model, fp32, image=x[0], verify=False)
        for float_dw in (True, False):
            int8 = quantize_onnx(fp32, Path(tmp) / f"int8-{float_dw}.onnx", calib, float_dw)
            for runtime in [r for r in available_runtimes() if r in runners]:
                run, _ = runners[runtime](int8, threads)
                got = torch.cat([torch.from_numpy(run(x[i : i + 1].numpy())[0]) for i in range(len(x))])
                rows.append({
                    "model": f"int8 {runtime}, depthwise {'float' if float_dw else 'int8'}",
                    "top1": (got.argmax(1) == y).float().mean().item(),
                    "agree_fp32": (got.argmax(1) == ref.argmax(1)).float().mean().item(),
                    **paired_change(ref.argmax(1) == y, got.argmax(1) == y),
                })  # fmt: skip
    return rows


def paired_change(before: torch.Tensor, after: torch.Tensor) -> dict[str, Any]:
    """The top-1 change between two classifiers scored on the same images (``before``/``after``:
    per image, right or not): images ``fixed`` and ``broken``, and the 95% interval of the change
    (the normal approximation to the paired difference that McNemar's test uses)."""
    n = len(before)
    fixed = int((~before & after).sum())
    broken = int((before & ~after).sum())
    diff = (fixed - broken) / n
    half = 1.96 * max(fixed + broken - n * diff**2, 0.0) ** 0.5 / n
    return {"fixed": fixed, "broken": broken, "change": diff, "ci95": (diff - half, diff + half)}


def detector_ap(
    checkpoint: Path, val_images: Path, val_ann: Path, calibration: Path, threads: int
) -> list[dict]:
    """COCO AP through ``run_eval`` (the ``ghostdet eval`` path) per runtime and precision."""
    from ghostdet.deploy.runtimes import available_runtimes
    from ghostdet.evaluation.evaluate import run_eval

    common = dict(
        checkpoint=checkpoint, val_images=val_images, val_ann=val_ann, device="cpu", threads=threads
    )
    common.update(progress=False, workers=0, batch_size=1, analysis=False, log=lambda s: None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("eager", "fp32")]
        for r in available_runtimes():
            if r in ("onnxruntime", "openvino"):
                cases += [(r, "fp32"), (r, "int8")]
        for runtime, precision in cases:
            out = Path(tmp) / f"{runtime}-{precision}"
            kw = {"precision": precision, "calibration": str(calibration)} if precision == "int8" else {}
            m = run_eval(output_dir=out, runtime=runtime, **common, **kw)
            rows.append({"model": f"{precision} {runtime}", "AP": m["AP"], "AP50": m["AP50"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("crops")
    c.add_argument(
        "--coco", type=Path, required=True, help="COCO root: annotations/*.json and an image folder"
    )
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--classes", type=int, default=5)
    c.add_argument("--min-side", type=int, default=32)
    c.add_argument("--per-class", type=int, default=80, help="crops per category at most")
    c.add_argument("--val-every", type=int, default=4, help="every N-th crop of a category goes to val/")
    k = sub.add_parser("classifier")
    k.add_argument("checkpoint", type=Path)
    k.add_argument("--data", type=Path, required=True, help="ImageFolder root with train/ and val/")
    k.add_argument(
        "--calibration", type=Path, default=None, help="ImageFolder to calibrate on (default: train/)"
    )
    d = sub.add_parser("detector")
    d.add_argument("checkpoint", type=Path)
    d.add_argument("--val-images", type=Path, required=True)
    d.add_argument("--val-ann", type=Path, required=True)
    d.add_argument("--calibration", type=Path, required=True, help="image folder (e.g. the train images)")
    for s in (k, d):
        s.add_argument("--threads", type=int, default=2)
        s.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.cmd == "crops":
        counts = make_crops(args.coco, args.out, args.classes, args.min_side, args.per_class, args.val_every)
        print(json.dumps(counts, indent=1))
        return 0
    if args.cmd == "classifier":
        rows = classifier_accuracy(args.checkpoint, args.data, args.calibration, args.threads)
        key = "top1"
    else:
        rows = detector_ap(args.checkpoint, args.val_images, args.val_ann, args.calibration, args.threads)
        key = "AP"
    base = rows[0][key]
    top1 = key == "top1"
    if top1:
        print(f"{rows[0]['n']} images")
    print(
        f"| model | {key} | {key} - fp32 eager |"
        + (" argmax = fp32 | fixed / broken | 95% interval |" if top1 else "")
    )
    print("|---|---|---|" + ("---|---|---|" if top1 else ""))
    for r in rows:
        extra = " | | |" if top1 else ""
        if "agree_fp32" in r:
            lo, hi = r["ci95"]
            extra = f" {r['agree_fp32']:.3f} | {r['fixed']} / {r['broken']} | {lo:+.3f} .. {hi:+.3f} |"
        print(f"| {r['model']} | {r[key]:.4f} | {r[key] - base:+.4f} |{extra}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
