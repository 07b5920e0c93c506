"""CUDA benchmark: ghostdet GhostNet-1.0 vs torchvision MobileNetV3-Large, one command, <= 5 minutes.

Every comparison runs the two models interleaved (``ghostdet.analysis.time_interleaved``: each
repetition calls both once), each call ending in ``torch.cuda.synchronize()`` so a sample is the
whole GPU time of the call; the median after warm-up is reported, and the ratio ghostdet /
MobileNetV3 (< 1: ghostdet faster). ``torch.backends.cudnn.benchmark`` is on. Cases, in order:

* ``backbone`` - both trunks (GhostNet ``forward_features``, MobileNetV3 ``features``; random
  weights, eval) at 224x224 and 640x640, batch 1 and 32, in modes ``eager`` (float32, NCHW),
  ``channels_last``, ``amp_bf16`` / ``amp_fp16`` (channels_last under ``torch.autocast``).
* ``detector`` - ``fasterrcnn_ghostnet_fpn`` and ``retinanet_ghostnet_fpn`` vs torchvision's
  ``fasterrcnn_mobilenet_v3_large_fpn`` on one 800x1333 image, and the 320 presets
  (``fasterrcnn_ghostnet_320_fpn`` vs ``fasterrcnn_mobilenet_v3_large_320_fpn``) on one 480x640
  image; float32 and ``amp_fp16``; 91 classes, random weights.
* ``train`` - one AMP training step (float16 autocast, ``GradScaler``, SGD), batch 2 of 800x1333
  images with 3 boxes each, ``fasterrcnn_ghostnet_fpn`` vs ``fasterrcnn_mobilenet_v3_large_fpn``.
* ``compile`` - ``torch.compile`` (inductor, ``dynamic=False``) of the channels_last trunks, last
  because compiling is what takes time: cases that no longer fit ``--budget-s`` are skipped
  and listed as skipped.

Without CUDA the script says so and exits with status 2, unless ``--dry-run``: that runs every
case on the CPU at tiny sizes with 1-2 repetitions (``torch.compile`` with the ``eager``
backend), to check the plumbing; its numbers mean nothing.

Usage::

    python benchmarks/bench_gpu.py                     # everything, on cuda:0
    python benchmarks/bench_gpu.py --json gpu.json     # also machine-readable
    python benchmarks/bench_gpu.py --dry-run           # CPU, tiny sizes: plumbing only
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = ("backbone", "detector", "train", "compile")
BACKBONE_MODES = ("eager", "channels_last", "amp_bf16", "amp_fp16")
AMP_DTYPES = {"amp_bf16": torch.bfloat16, "amp_fp16": torch.float16}


@dataclass(frozen=True)
class Plan:
    """Sizes and repetitions of one run (full on a GPU, tiny for ``--dry-run``).

    Attributes:
        sizes: square backbone input sides. batches: backbone batch sizes.
        det_image: (H, W) of the full-size detector image; preset_image: of the 320 presets'.
        det_kwargs: extra detector arguments (the dry run shrinks ``min_size``/``max_size``).
        reps, warmup: backbone repetitions; detectors use half, the training step a fifth.
        compile_backend: ``torch.compile`` backend.
        train_dtype: autocast dtype of the training step (a ``GradScaler`` only for float16;
            ``None``: float32, no autocast). detector_amp: the detectors' AMP mode.
    """

    sizes: tuple[int, ...] = (224, 640)
    batches: tuple[int, ...] = (1, 32)
    det_image: tuple[int, int] = (800, 1333)
    preset_image: tuple[int, int] = (480, 640)
    det_kwargs: tuple[tuple[str, int], ...] = ()
    reps: int = 50
    warmup: int = 10
    compile_backend: str = "inductor"
    train_dtype: torch.dtype | None = torch.float16
    detector_amp: str = "amp_fp16"


DRY_RUN = Plan(
    sizes=(64,),
    batches=(1, 2),
    det_image=(64, 96),
    preset_image=(64, 96),
    det_kwargs=(("min_size", 64), ("max_size", 96)),
    reps=2,
    warmup=1,
    compile_backend="eager",
    # float16 on the CPU is emulated and bfloat16 slow: a tiny AMP training step takes minutes
    train_dtype=None,
    detector_amp="amp_bf16",
)


class Budget:
    """Wall-clock budget of the run: cases that would start after it is spent are skipped."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds
        self.skipped: list[str] = []

    def allows(self, case: str) -> bool:
        if time.perf_counter() < self.end:
            return True
        self.skipped.append(case)
        print(f"  skipped (time budget spent): {case}")
        return False


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _run(model: torch.nn.Module, inputs: object, device: torch.device, mode: str) -> object:
    """``model(inputs)``, under ``torch.autocast`` for the AMP modes."""
    if mode not in AMP_DTYPES:
        return model(inputs)
    with torch.autocast(device.type, dtype=AMP_DTYPES[mode]):
        return model(inputs)


def time_pair(
    fns: dict[str, Callable[[], object]],
    device: torch.device,
    reps: int,
    warmup: int,
    grad: bool = False,
) -> dict[str, float]:
    """Median ms of each callable, interleaved, each call followed by a device synchronisation."""
    from ghostdet.analysis import time_interleaved

    sync = _sync(device)

    def synced(fn: Callable[[], object]) -> Callable[[], None]:
        def call() -> None:
            fn()
            sync()

        return call

    sync()
    timings = time_interleaved(
        {k: synced(f) for k, f in fns.items()},
        runs=reps,
        warmup=warmup,
        context=torch.enable_grad if grad else torch.inference_mode,
    )
    return {k: 1000 * v for k, v in timings.medians().items()}


def _record(results: list[dict], case: dict, ms: dict[str, float], batch: int = 1) -> None:
    """Append a case with its ms, images/s and the ratio ghost / mnv3 (when both ran), and print it."""
    for key in ("ghost", "retina"):
        if key in ms and "mnv3" in ms:
            case.setdefault("ratios", {})[f"{key} / mnv3"] = ms[key] / ms["mnv3"]
    row = {**case, "ms": ms, "images_per_s": {k: batch / (v / 1e3) for k, v in ms.items()}}
    results.append(row)
    ratios = ", ".join(f"{k} {v:.3f}" for k, v in row.get("ratios", {}).items())
    times = ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items())
    print(f"  {case['name']:48s} {times}   ratio {ratios or '-'}")


@contextlib.contextmanager
def _section(title: str) -> Iterator[None]:
    print(f"\n## {title}")
    t0 = time.perf_counter()
    yield
    print(f"  ({time.perf_counter() - t0:.0f} s)")


def backbones(device: torch.device) -> dict[str, torch.nn.Module]:
    """Both trunks (random weights, eval, on ``device``), as the comparison table builds them."""
    from ghostdet.analysis import BACKBONES

    torch.manual_seed(0)
    out = {}
    for key, name in (("ghost", "ghostnet_100"), ("mnv3", "mobilenet_v3_large")):
        spec = BACKBONES[name]
        out[key] = spec.trunk(spec.build()).eval().to(device)
    return out


def _backbone_input(size: int, batch: int, device: torch.device, cl: bool) -> torch.Tensor:
    x = torch.randn(batch, 3, size, size, device=device)
    return x.contiguous(memory_format=torch.channels_last) if cl else x


def run_backbone(plan: Plan, device: torch.device, budget: Budget, results: list[dict]) -> None:
    models = backbones(device)
    cl_models = {k: m.to(memory_format=torch.channels_last) for k, m in backbones(device).items()}
    for mode in BACKBONE_MODES:
        chosen = models if mode == "eager" else cl_models
        for size in plan.sizes:
            for batch in plan.batches:
                name = f"backbone {mode} {size}x{size} batch {batch}"
                if not budget.allows(name):
                    continue
                x = _backbone_input(size, batch, device, cl=mode != "eager")
                fns = {k: (lambda m=m, x=x, mode=mode: _run(m, x, device, mode)) for k, m in chosen.items()}
                ms = time_pair(fns, device, plan.reps, plan.warmup)
                case = {"section": "backbone", "name": name, "mode": mode, "size": size, "batch": batch}
                _record(results, case, ms, batch)


def run_compile(plan: Plan, device: torch.device, budget: Budget, results: list[dict]) -> None:
    """``torch.compile`` of the channels_last trunks, most informative shapes first."""
    order = sorted(((s, b) for s in plan.sizes for b in plan.batches), key=lambda sb: (sb[1], sb[0]))
    for size, batch in order:
        name = f"backbone compile {size}x{size} batch {batch}"
        if not budget.allows(name):
            continue
        x = _backbone_input(size, batch, device, cl=True)
        fns, compile_s, errors = {}, {}, {}
        for key, model in backbones(device).items():
            model = model.to(memory_format=torch.channels_last)
            try:
                compiled = torch.compile(model, backend=plan.compile_backend, dynamic=False)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    compiled(x)
                _sync(device)()
                compile_s[key] = time.perf_counter() - t0
                fns[key] = lambda c=compiled, x=x: c(x)
            except Exception as e:  # report, do not fail the whole benchmark
                errors[key] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
                print(f"  torch.compile failed for {key}: {errors[key]}")
        if not fns:
            results.append({"section": "compile", "name": name, "errors": errors})
            continue
        ms = time_pair(fns, device, plan.reps, plan.warmup)
        case = {"section": "compile", "name": name, "mode": "compile", "size": size, "batch": batch}
        _record(results, {**case, "compile_s": compile_s, "errors": errors}, ms, batch)


def detectors(plan: Plan, preset: bool, train: bool = False) -> dict[str, torch.nn.Module]:
    """``preset``: the two 320 presets, else the full-size ghost Faster R-CNN / RetinaNet and
    torchvision's MobileNetV3 Faster R-CNN (random weights, 91 classes)."""
    from torchvision.models.detection import (
        fasterrcnn_mobilenet_v3_large_320_fpn,
        fasterrcnn_mobilenet_v3_large_fpn,
    )

    from ghostdet.models import fasterrcnn_ghostnet_320_fpn, fasterrcnn_ghostnet_fpn, retinanet_ghostnet_fpn

    kw = dict(plan.det_kwargs)
    torch.manual_seed(0)
    if preset:
        models = {
            "ghost": fasterrcnn_ghostnet_320_fpn(num_classes=91, **kw),
            "mnv3": fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, **kw),
        }
    else:
        models = {
            "ghost": fasterrcnn_ghostnet_fpn(num_classes=91, **kw),
            "mnv3": fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, **kw),
        }
        if not train:
            models["retina"] = retinanet_ghostnet_fpn(num_classes=91, **kw)
    return {k: m.train(train) for k, m in models.items()}


def run_detector(plan: Plan, device: torch.device, budget: Budget, results: list[dict]) -> None:
    reps, warmup = max(2, plan.reps // 2), max(1, plan.warmup // 2)
    for preset, (h, w) in ((False, plan.det_image), (True, plan.preset_image)):
        models = {k: m.to(device) for k, m in detectors(plan, preset).items()}
        img = [torch.rand(3, h, w, generator=torch.Generator().manual_seed(0)).to(device)]
        for mode in ("eager", plan.detector_amp):
            label = "320 presets" if preset else "full size"
            name = f"detector {label} {mode} {h}x{w}"
            if not budget.allows(name):
                continue
            fns = {k: (lambda m=m, mode=mode, img=img: _run(m, img, device, mode)) for k, m in models.items()}
            ms = time_pair(fns, device, reps, warmup)
            case = {"section": "detector", "name": name, "mode": mode, "image": [h, w], "preset": preset}
            _record(results, case, ms)


def _train_step(
    model: torch.nn.Module, device: torch.device, hw: tuple[int, int], dtype: torch.dtype | None
) -> Callable[[], None]:
    """One autocast SGD step (``dtype``; with a ``GradScaler`` for float16) on a fixed batch of
    2 images with 3 random boxes each."""
    gen = torch.Generator().manual_seed(0)
    h, w = hw
    images = [torch.rand(3, h, w, generator=gen).to(device) for _ in range(2)]
    targets = []
    for _ in range(2):
        xy = torch.rand(3, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
        wh = 8 + torch.rand(3, 2, generator=gen) * torch.tensor([w * 0.3, h * 0.3])
        boxes = torch.cat([xy, xy + wh], 1)
        targets.append(
            {"boxes": boxes.to(device), "labels": torch.randint(1, 91, (3,), generator=gen).to(device)}
        )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            losses = model(images, targets)
        scaler.scale(sum(losses.values())).backward()
        scaler.step(opt)
        scaler.update()

    return step


def run_train(plan: Plan, device: torch.device, budget: Budget, results: list[dict]) -> None:
    mode = {torch.float16: "amp_fp16", torch.bfloat16: "amp_bf16", None: "float32"}[plan.train_dtype]
    name = f"train step {mode} batch 2 of {plan.det_image[0]}x{plan.det_image[1]}"
    if not budget.allows(name):
        return
    models = {k: m.to(device) for k, m in detectors(plan, preset=False, train=True).items()}
    fns = {k: _train_step(m, device, plan.det_image, plan.train_dtype) for k, m in models.items()}
    ms = time_pair(fns, device, max(2, plan.reps // 5), max(1, plan.warmup // 2), grad=True)
    _record(results, {"section": "train", "name": name, "mode": mode}, ms, batch=2)


RUNNERS: dict[str, Callable[[Plan, torch.device, Budget, list[dict]], None]] = {
    "backbone": run_backbone,
    "detector": run_detector,
    "train": run_train,
    "compile": run_compile,
}


def environment(device: torch.device) -> dict:
    import torchvision

    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["tf32_conv"] = torch.backends.cudnn.allow_tf32
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    else:
        info["gpu"] = "none (dry run on the CPU: the numbers mean nothing)"
    return info


def format_markdown(info: dict, results: list[dict], skipped: list[str]) -> str:
    """One table of every timed case: ms of each model, images/s and ratios vs MobileNetV3."""
    lines = [
        f"GPU: {info['gpu']}; torch {info['torch']}, torchvision {info['torchvision']}, "
        f"CUDA {info.get('cuda', '-')}, measured {info['date_utc']}.",
        "",
        "| case | ghostdet ms | MobileNetV3 ms | ratio | ghostdet img/s | MobileNetV3 img/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "ms" not in r:
            lines.append(f"| {r['name']} | failed: {r.get('errors')} | | | | |")
            continue
        ms, ips = r["ms"], r["images_per_s"]
        ghosts = [k for k in ("ghost", "retina") if k in ms]
        for k in ghosts:
            name = r["name"] + (" (RetinaNet)" if k == "retina" else "")
            ratio = r.get("ratios", {}).get(f"{k} / mnv3")
            cells = [
                name,
                f"{ms[k]:.2f}",
                f"{ms['mnv3']:.2f}" if "mnv3" in ms else "-",
                f"{ratio:.3f}" if ratio is not None else "-",
                f"{ips[k]:.0f}",
                f"{ips['mnv3']:.0f}" if "mnv3" in ips else "-",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    if skipped:
        lines += ["", "Skipped (time budget): " + "; ".join(skipped)]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="CUDA benchmark: ghostdet GhostNet-1.0 vs torchvision MobileNetV3-Large (backbones in "
        "eager/channels_last/AMP/torch.compile, detectors, one AMP training step); ratios ghostdet / "
        "MobileNetV3."
    )
    p.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated subset of {','.join(CASES)} (default: all)",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=270.0,
        help="wall-clock budget: cases that would start later are skipped (default: %(default)s)",
    )
    p.add_argument("--reps", type=int, default=None, help="timed backbone repetitions (default: 50)")
    p.add_argument("--device", default="cuda", help="CUDA device (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write every result to this JSON file")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="run every case on the CPU at tiny sizes (plumbing check; the numbers mean nothing)",
    )
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in CASES]
    if bad or not cases:
        p.error(f"unknown case(s) {bad}; choose from {','.join(CASES)}")
    if args.budget_s <= 0:
        p.error("--budget-s must be > 0")
    if args.reps is not None and args.reps < 1:
        p.error("--reps must be >= 1")
    if not args.dry_run and not args.device.startswith("cuda"):
        p.error(f"--device must be a CUDA device, got {args.device!r} (use --dry-run for the CPU)")
    args.case_list = cases
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        device, plan = torch.device("cpu"), DRY_RUN
    elif not torch.cuda.is_available():
        print(
            "bench_gpu: no CUDA GPU here (torch.cuda.is_available() is False); --dry-run checks the "
            "plumbing on the CPU",
            file=sys.stderr,
        )
        return 2
    else:
        device, plan = torch.device(args.device), Plan()
        torch.backends.cudnn.benchmark = True
    if args.reps is not None:
        plan = Plan(**{**plan.__dict__, "reps": args.reps})
    info = environment(device)
    print("# ghostdet GPU benchmark")
    for k, v in info.items():
        print(f"  {k}: {v}")
    budget = Budget(args.budget_s)
    results: list[dict] = []
    for case in CASES:  # in this order: compile last, it is what the budget cuts
        if case in args.case_list:
            with _section(case):
                RUNNERS[case](plan, device, budget, results)
    print("\n" + format_markdown(info, results, budget.skipped))
    if args.json:
        doc = {"info": info, "results": results, "skipped": budget.skipped}
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
