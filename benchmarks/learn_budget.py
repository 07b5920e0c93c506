"""Same-budget learning benchmark: detectors trained from scratch for a fixed wall-clock time.

Every model trains on the same generated shapes set (``ghostdet.data.synthetic`` with a seed and
settings the training recipes never use: 256x256 images, 4 shape classes, objects of 20-100 px
(``--object-size``), up to 4 per image) for ``--budget`` seconds of training, then is scored with
pycocotools (via ``ghostdet.evaluation``) on ``--val`` held-out images. The table gives AP,
AP50, the iterations done in the budget, the test-time cost per image, and AP relative to torchvision's
``fasterrcnn_mobilenet_v3_large_320_fpn`` (the ``tv_frcnn_mnv3_320`` row).

Recipe, the same for every model: random init (BatchNorm trained), AdamW (lr ``--lr``, weight
decay 1e-4), batch ``--batch``, linear warm-up over the first 20 iterations from 1% of the lr,
then a cosine decay to 5% over the *time* budget (the iteration count is not known in advance),
gradient norm clipped at 10, random horizontal flips. All models see images at their generated
size (``min_size = max_size = --size``: no resizing, also for the ``*_320`` presets).
``--channels-last`` converts every model, torchvision's included, to channels_last memory format
before training (as ``train_det.py --channels-last``); inference is scored the same way.

``--concurrent`` trains the models in their own processes, ``--jobs`` at a time (default: as many
as the usable cores hold at ``--threads`` threads each), each pinned to its own ``--threads``
cores; the rest follow in later waves, so every model gets its cores to itself for its whole
budget (the issue's setting: one core per model). Otherwise the models run one after another in
one process. The table's CPU-s column is each model's process CPU time spent training, which
shows whether the budget was shared fairly. Models are given by name (see ``MODELS``) with
optional builder overrides, e.g. ``retinanet_ghostnet_320_fpn:fpn_channels=96,anchor_sizes=[32,64,128]``,
and optional training variants after the name (``NAME+ema+ms:overrides``):

- ``+ema``: keep an EMA of the weights (:class:`ghostdet.engine.ema.ModelEma`, the one
  ``train_det.py --ema`` uses; decay ``--ema-decay``, warm-up ``--ema-warmup`` iterations) and
  score the EMA model (the row's ``AP``; the raw weights' AP is in the JSON as ``ap_raw``);
- ``+ms``: multi-scale training, as ``train_det.py`` does with a ``min_size`` list: each training
  image is resized to a size drawn from ``0.75-1.25 x --size`` in steps of 32 (torchvision's
  ``GeneralizedRCNNTransform`` draws one per image); scoring stays at ``--size``.

Usage::

    PYTHONPATH=$PWD python benchmarks/learn_budget.py --concurrent            # 480 s, all models
    PYTHONPATH=$PWD python benchmarks/learn_budget.py --budget 90 \\
        --models retinanet_ghostnet_320_fpn retinanet_ghostnet_320_fpn:group_norm=None
    PYTHONPATH=$PWD python benchmarks/learn_budget.py --concurrent --clock cpu --budget 240 \\
        --models retinanet_ghostnet_320_fpn retinanet_ghostnet_320_fpn+ema \\
        retinanet_ghostnet_320_fpn+ms retinanet_ghostnet_320_fpn+ema+ms
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ghostdet.data.synthetic import ensure_synthetic_coco, synthetic_paths
from ghostdet.engine.ema import ModelEma
from ghostdet.evaluation import CocoEvaluator, load_coco

REFERENCE = "tv_frcnn_mnv3_320"
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}

#: the benchmark's own data set: none of the recipes uses this seed or these settings
DATA_OPTIONS: dict[str, Any] = {
    "seed": 16,
    "num_categories": 4,
    "max_objects": 4,
    "empty_prob": 0.0,
}


def _tv_frcnn_mnv3_320(num_classes: int, size: int, **kw: Any) -> nn.Module:
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    return fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes, min_size=size, max_size=size, **kw
    )


def _tv_retinanet_mnv3_fpn(num_classes: int, size: int, **kw: Any) -> nn.Module:
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.backbone_utils import mobilenet_backbone
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    # MobileNetV3-Large FPN as in torchvision's Faster R-CNN (strides 16/32, 256 channels), with
    # RetinaNet's P6/P7 on top: four levels, anchors 32-256 x 3 scales x 3 ratios
    backbone = mobilenet_backbone(
        backbone_name="mobilenet_v3_large",
        weights=None,
        fpn=True,
        norm_layer=nn.BatchNorm2d,
        trainable_layers=6,
        extra_blocks=LastLevelP6P7(256, 256),
    )
    from ghostdet.models.retinanet_head import retinanet_anchors

    kw.setdefault("anchor_generator", retinanet_anchors((32, 64, 128, 256)))
    return RetinaNet(backbone, num_classes=num_classes, min_size=size, max_size=size, **kw)


def _ghostdet(name: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, size: int, **kw: Any) -> nn.Module:
        from ghostdet.models import detection

        return getattr(detection, name)(num_classes=num_classes, min_size=size, max_size=size, **kw)

    return build


#: benchmark name -> builder(num_classes, size, **overrides)
MODELS: dict[str, Callable[..., nn.Module]] = {
    REFERENCE: _tv_frcnn_mnv3_320,
    "tv_retinanet_mnv3_fpn": _tv_retinanet_mnv3_fpn,
    "fasterrcnn_ghostnet_320_fpn": _ghostdet("fasterrcnn_ghostnet_320_fpn"),
    "retinanet_ghostnet_fpn": _ghostdet("retinanet_ghostnet_fpn"),
    "retinanet_ghostnet_320_fpn": _ghostdet("retinanet_ghostnet_320_fpn"),
}
DEFAULT_MODELS = list(MODELS)


#: the training variants a spec may name after its model (``NAME+ema+ms``)
VARIANTS = ("ema", "ms")


def parse_variants(spec: str) -> tuple[str, frozenset[str]]:
    """``NAME+ema+ms:overrides`` -> (``NAME:overrides``, ``{"ema", "ms"}``).

    Raises:
        ValueError: for a variant not in :data:`VARIANTS`.
    """
    head, colon, rest = spec.partition(":")
    name, *variants = head.split("+")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r} in {spec!r}; available: {', '.join(VARIANTS)}")
    return name + colon + rest, frozenset(variants)


def multi_scale_sizes(size: int, step: int = 32) -> tuple[int, ...]:
    """The ``+ms`` training sizes: ``0.75-1.25 x size`` in steps of ``step``, ``size`` last
    (torchvision's transform scores at the last ``min_size``)."""
    lo, hi = round(0.75 * size / step) * step, round(1.25 * size / step) * step
    return (*[s for s in range(lo, hi + 1, step) if s != size], size)


def parse_model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name:key=value,key=value`` (values as Python literals) -> (name, overrides);
    variants (``+ema``) are checked and left out."""
    spec, _ = parse_variants(spec)
    name, _, rest = spec.partition(":")
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    overrides: dict[str, Any] = {}
    for item in _split_top_level(rest):
        key, eq, value = item.partition("=")
        if not eq or not key.isidentifier():
            raise ValueError(f"bad override {item!r} in {spec!r}: expected key=value")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value  # a bare string such as extra_levels=none
    return name, overrides


def build_model(spec: str, num_classes: int, size: int) -> nn.Module:
    """The model of ``spec`` (overrides applied) for ``size``-px images; with ``+ms`` its
    transform draws each training image's size from :func:`multi_scale_sizes`."""
    name, overrides = parse_model_spec(spec)
    model = MODELS[name](num_classes, size, **overrides)
    if "ms" in parse_variants(spec)[1]:
        sizes = multi_scale_sizes(size)
        model.transform.min_size, model.transform.max_size = sizes, max(sizes)
    return model


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets (``a=1,b=[1,2]`` -> ``["a=1", "b=[1,2]"]``)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in [*parts, cur] if p]


def load_split(paths: dict[str, str], split: str) -> tuple[Tensor, list[dict[str, Tensor]], list[int], dict]:
    """All images of one split as a uint8 (N, 3, H, W) tensor, torchvision targets, ids, labels."""
    coco = load_coco(paths[f"{split}_ann"])
    cat_ids = sorted(coco.getCatIds())
    label_of = {c: i + 1 for i, c in enumerate(cat_ids)}
    ids = sorted(coco.getImgIds())
    images, targets = [], []
    for img_id in ids:
        info = coco.loadImgs(img_id)[0]
        pixels = np.asarray(Image.open(Path(paths[f"{split}_images"]) / info["file_name"]).convert("RGB"))
        images.append(torch.from_numpy(pixels.copy()).permute(2, 0, 1))
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        boxes = torch.tensor([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                               a["bbox"][1] + a["bbox"][3]] for a in anns], dtype=torch.float32)  # fmt: skip
        labels = torch.tensor([label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        targets.append({"boxes": boxes.reshape(-1, 4), "labels": labels})
    return torch.stack(images), targets, ids, {v: k for k, v in label_of.items()}


def hflip(image: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Mirror a CHW image and its xyxy boxes left-right."""
    x0, y0, x1, y1 = target["boxes"].unbind(-1)
    w = image.shape[-1]
    boxes = torch.stack([w - x1, y0, w - x0, y1], -1)
    return image.flip(-1), {**target, "boxes": boxes}


def _lr_factor(it: int, frac: float, warmup: int = 20) -> float:
    """Warm-up over iterations, cosine over the elapsed fraction of the time budget (to 5%)."""
    warm = min(1.0, 0.01 + 0.99 * it / warmup)
    return warm * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0))))


def train_and_eval(
    spec: str,
    data_root: str,
    budget: float,
    threads: int = 1,
    batch: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    clock: str = "wall",
    cores: Sequence[int] | None = None,
    channels_last: bool = False,
    ema_decay: float = 0.998,
    ema_warmup: int = 100,
) -> dict[str, Any]:
    """Train one model (``spec``, see :func:`parse_model_spec` and :func:`parse_variants`) for
    ``budget`` seconds and score it.

    ``clock="cpu"`` counts the budget in this process's CPU seconds instead of wall-clock ones:
    on a machine busy with other jobs it gives each model the same compute, not the same time.
    ``cores`` pins this process to those CPUs first (Linux only; ignored elsewhere).
    ``channels_last`` converts the model to that memory format before training.
    ``ema_decay``/``ema_warmup``: the ``+ema`` variant's EMA.

    Returns a dict with ``model``, ``ap``, ``ap50``, ``iters``, ``train_s`` (on ``clock``),
    ``cpu_s`` (process CPU seconds spent training), ``ms_per_img`` (inference, batch 1) and
    ``params``; with ``+ema`` also ``ap_raw`` and ``ap50_raw`` (the trained weights themselves).
    """
    if cores is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))
    torch.set_num_threads(threads)
    _, variants = parse_variants(spec)
    paths = synthetic_paths(data_root)  # generated by run()
    train_x, train_t, _, label_to_cat = load_split(paths, "train")
    val_x, _, val_ids, _ = load_split(paths, "val")
    size = train_x.shape[-1]
    torch.manual_seed(seed)
    model = build_model(spec, len(label_to_cat) + 1, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = ModelEma(model, ema_decay, ema_warmup) if "ema" in variants else None
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    model.train()
    now = CLOCKS[clock]
    it, start, cpu_start = 0, now(), time.process_time()
    while (elapsed := now() - start) < budget:
        for group in opt.param_groups:
            group["lr"] = lr * _lr_factor(it, elapsed / budget)
        idx = torch.randint(len(train_x), (batch,), generator=g).tolist()
        flips = torch.rand(batch, generator=g) < 0.5
        images, targets = [], []
        for i, flip in zip(idx, flips.tolist()):
            img, tgt = train_x[i].float() / 255, train_t[i]
            if flip:
                img, tgt = hflip(img, tgt)
            images.append(img)
            targets.append(tgt)
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{spec}: loss is {loss.item()} at iteration {it}: {losses}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        it += 1
    train_s, cpu_s = now() - start, time.process_time() - cpu_start
    scored = model if ema is None else ema.module
    stats, ms = _score(scored, paths, val_x, val_ids, label_to_cat)
    result = {
        "model": spec,
        "ap": stats["AP"],
        "ap50": stats["AP50"],
        "iters": it,
        "train_s": round(train_s, 1),
        "cpu_s": round(cpu_s, 1),
        "ms_per_img": round(ms, 1),
        "params": sum(p.numel() for p in model.parameters()),
    }
    if ema is not None:
        raw, _ = _score(model, paths, val_x, val_ids, label_to_cat)
        result.update(ap_raw=raw["AP"], ap50_raw=raw["AP50"])
    return result


def _score(
    model: nn.Module, paths: dict[str, str], val_x: Tensor, val_ids: list[int], label_to_cat: dict
) -> tuple[dict[str, float], float]:
    """pycocotools stats of ``model`` on the val split, and its inference ms per image (batch 1)."""
    model.eval()
    evaluator = CocoEvaluator(load_coco(paths["val_ann"]), label_to_cat)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i, img_id in enumerate(val_ids):
            evaluator.update(model([val_x[i].float() / 255]), [img_id])
    ms = 1000 * (time.perf_counter() - t0) / max(len(val_ids), 1)
    return evaluator.evaluate(), ms


def default_jobs(threads: int = 1) -> int:
    """Models that fit at once on this process's usable cores at ``threads`` threads each (>= 1)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, usable // threads)


def plan_waves(specs: Sequence[str], jobs: int, threads: int = 1) -> list[list[tuple[str, list[int] | None]]]:
    """Split ``specs`` into waves of at most ``jobs`` models, each with the cores it is pinned to.

    Model ``i`` of a wave gets the ``i``-th block of ``threads`` usable cores, so models of one
    wave never share a core; ``None`` (no pinning) where the usable cores are too few for the
    wave or the platform cannot pin.

    Args:
        specs: model specs in run order.
        jobs: models at once (>= 1).
        threads: threads (cores) per model.
    """
    if jobs < 1 or threads < 1:
        raise ValueError(f"jobs and threads must be >= 1, got jobs={jobs}, threads={threads}")
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    waves = []
    for start in range(0, len(specs), jobs):
        wave = list(specs[start : start + jobs])
        fits = len(wave) * threads <= len(usable)
        waves.append(
            [(spec, usable[i * threads : (i + 1) * threads] if fits else None) for i, spec in enumerate(wave)]
        )
    return waves


def format_waves(waves: Sequence[Sequence[tuple[str, Sequence[int] | None]]]) -> str:
    """One line per wave of :func:`plan_waves`: its models and their cores."""
    lines = []
    for k, wave in enumerate(waves, 1):
        cores = ["any" if c is None else ",".join(map(str, c)) for _, c in wave]
        models = ", ".join(f"{spec} (cores {c})" for (spec, _), c in zip(wave, cores))
        lines.append(f"wave {k}/{len(waves)}: {models}")
    return "\n".join(lines)


def run(
    specs: Sequence[str],
    budget: float,
    data_root: str | os.PathLike,
    concurrent: bool = False,
    threads: int = 1,
    batch: int = 8,
    lr: float = 1e-3,
    size: int = 256,
    num_train: int = 400,
    num_val: int = 50,
    seed: int = 0,
    clock: str = "wall",
    object_size: tuple[int, int] = (20, 100),
    jobs: int | None = None,
    channels_last: bool = False,
    ema_decay: float = 0.998,
    ema_warmup: int = 100,
) -> list[dict[str, Any]]:
    """Generate (once) the data set under ``data_root`` and run :func:`train_and_eval` per model.

    Args:
        specs: model specs (see :func:`parse_model_spec`).
        budget: training seconds per model.
        data_root: folder of the generated data set (reused when its parameters match).
        concurrent: one process per model, ``jobs`` at a time in waves (see :func:`plan_waves`);
            else one after another in this process.
        threads: torch threads per model.
        batch, lr, seed: the training recipe.
        clock: ``"wall"`` or ``"cpu"`` seconds for ``budget`` (see :func:`train_and_eval`).
        size, num_train, num_val, object_size: the data set (shape sizes in pixels).
        jobs: models at once with ``concurrent`` (default :func:`default_jobs`).
        channels_last: train (and score) every model in channels_last memory format.
        ema_decay, ema_warmup: the EMA of the ``+ema`` variants.

    Returns:
        one result dict per model, in ``specs`` order, with ``ratio`` (AP / the reference's AP)
        when the reference model is among them.
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    for spec in specs:
        parse_model_spec(spec)  # fail before spending any time
    data_root = str(data_root)
    options = {**DATA_OPTIONS, "object_size": tuple(object_size)}
    ensure_synthetic_coco(data_root, num_train, num_val, size, verbose=True, **options)
    call = (data_root, budget, threads, batch, lr, seed, clock)
    kw = {"channels_last": channels_last, "ema_decay": ema_decay, "ema_warmup": ema_warmup}
    if concurrent:
        results = []
        ctx = multiprocessing.get_context("spawn")
        for wave in plan_waves(specs, jobs or default_jobs(threads), threads):
            # a fresh pool per wave: the next wave starts when the whole wave is done
            with ProcessPoolExecutor(max_workers=len(wave), mp_context=ctx) as pool:
                futures = [
                    pool.submit(train_and_eval, spec, *call, cores=cores, **kw) for spec, cores in wave
                ]
                results += [f.result() for f in futures]
    else:
        results = [train_and_eval(spec, *call, **kw) for spec in specs]
    ref = next((r["ap"] for r in results if r["model"] == REFERENCE), None)
    for r in results:
        r["ratio"] = r["ap"] / ref if ref else None
    return results


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """A markdown table of :func:`run`'s results."""
    lines = [
        f"| model | AP | AP50 | iterations | CPU-s (train) | ms/img (test) | params (M) | AP / {REFERENCE} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        lines.append(
            f"| {r['model']} | {r['ap']:.3f} | {r['ap50']:.3f} | {r['iters']} | {r['cpu_s']:.0f} | "
            f"{r['ms_per_img']:.0f} | "
            f"{r['params'] / 1e6:.2f} | {ratio} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=480.0, help="training seconds per model")
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="model specs, NAME[:key=value,...]")
    p.add_argument("--concurrent", action="store_true", help="one process per model, --jobs at a time")
    p.add_argument(
        "--jobs", type=int, default=None, help="models at once with --concurrent (default: cores // threads)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per model")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--size", type=int, default=256, help="image side of the generated set")
    p.add_argument("--num-train", type=int, default=400)
    p.add_argument("--val", type=int, default=50, help="held-out images scored")
    p.add_argument("--object-size", type=int, nargs=2, default=(20, 100), help="min/max shape size (px)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ema-decay", type=float, default=0.998, help="decay of the +ema variants")
    p.add_argument("--ema-warmup", type=int, default=100, help="EMA warm-up time constant (iterations)")
    p.add_argument(
        "--channels-last", action="store_true", help="train every model in channels_last memory format"
    )
    p.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="budget in wall-clock or process CPU seconds"
    )
    p.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "ghostdet_learn_budget"))
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    for key in ("budget", "jobs", "threads", "batch", "lr", "size", "num_train", "val"):
        if getattr(args, key) is not None and getattr(args, key) <= 0:
            p.error(f"--{key.replace('_', '-')} must be > 0")
    if not 0 < args.ema_decay < 1 or args.ema_warmup < 0:
        p.error("--ema-decay must be in (0, 1) and --ema-warmup >= 0")
    if args.jobs is None:
        args.jobs = default_jobs(args.threads)
    args.specs = list(args.models)
    try:
        for spec in args.specs:
            parse_model_spec(spec)
    except ValueError as e:
        p.error(str(e))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.concurrent:
        print(format_waves(plan_waves(args.specs, args.jobs, args.threads)))
    results = run(
        args.specs, args.budget, args.data, args.concurrent, args.threads, args.batch, args.lr, args.size,
        args.num_train, args.val, args.seed, args.clock, tuple(args.object_size), args.jobs,
        args.channels_last, args.ema_decay, args.ema_warmup,
    )  # fmt: skip
    if args.concurrent:
        mode = f"concurrently in waves of {args.jobs}, {args.threads} thread(s) each"
    else:
        mode = f"one after another, {args.threads} thread(s) each"
    recipe = f"{args.size}px, batch {args.batch}, lr {args.lr:g}, seed {args.seed}"
    if any("+ema" in spec for spec in args.specs):
        recipe += f", EMA decay {args.ema_decay:g} (warm-up {args.ema_warmup})"
    if args.channels_last:
        recipe += ", channels_last"
    print(f"budget {args.budget:g} {args.clock} s per model, {mode}, {recipe}")
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
