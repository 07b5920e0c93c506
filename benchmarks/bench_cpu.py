"""Side-by-side CPU benchmark: ghostdet GhostNet-1.0 (deploy mode) vs torchvision MobileNetV3-Large.

Everything runs in ONE process (memory: one fresh subprocess per model), with the models of a
comparison measured in turn inside each repetition (interleaved), and the MEDIAN of the
repetitions reported after warm-up. Ratios are ghostdet / MobileNetV3 (< 1 means ghostdet is
faster). Treatments:

* ``plain``   - ``model.eval()`` as built.
* ``generic`` - eval, BatchNorm folded with ``torch.fx.experimental.optimization.fuse``,
  ``channels_last`` weights and input (the treatment the issue uses for both networks).
* ``deploy``  - ``ghostdet.deploy.fuse(model)`` (ghostdet only; see ghostdet/deploy.py);
  ``deploy_onednn`` is the same with ``native_kernels=False`` (every conv on oneDNN).

Allocator: by default the timing process calls ``ghostdet.deploy.tune_malloc()`` first, which
raises glibc's mmap/trim thresholds for the whole process, i.e. for every model measured;
``--malloc default`` leaves glibc as it is. The backbone section prints each model's page faults
per call, which is what the setting changes. The memory section's subprocesses never tune.
* ``compile`` - ``torch.compile`` of the deploy / generic model (section ``compile``).

Sections (``--sections``, comma separated):

* ``backbone`` - GhostNet-1.0 ``forward_features`` vs ``mobilenet_v3_large().features`` (both end
  in a 960-channel stride-32 map), batch 1, at 224x224 and 640x640; GhostNetV2 1.0x and
  GhostNetV3 1.0x (re-parameterised) in deploy form against the same MobileNetV3 row.
  Each model's row also gives its GFLOP/s (2 x paper-convention MACs / median time) and the
  share of the machine's peak FP32 rate that this is; the peak is *measured* (best float32
  2048x2048 ``torch.mm`` at the same thread count), not derived from the CPU's specifications.
* ``throughput`` - batch 8 at 224x224 and batch 4 at 640x640, ghostdet deploy vs MobileNetV3
  generic: images/s, the time ratio and the share of peak.
* ``scaling``  - per-layer thread scaling of the GhostNet trunk (stem, each block, final 1x1):
  each layer of the deploy model (native kernels), of the oneDNN-only deploy model and of the
  fx-folded ``channels_last`` plain layer (``F.conv2d``), timed at 1 and 2 threads (and every
  ``--threads`` value), as a markdown table of 1-thread ms and speed-ups. Runs once, whatever
  ``--threads`` says.
* ``kernels``  - each native kernel call of the GhostNet-1.0 deploy trunk (the stem, every
  depthwise conv that runs on its own, every fused bottleneck) against the same module on oneDNN
  (``use_native`` off), on the input it gets in the model, at 1 and 2 threads (and every
  ``--threads`` value); a markdown table per size with the native / oneDNN time ratio, and the
  sums per kernel kind (what ``ghostdet.deploy.native.pays_off`` decides on). Runs once.
* ``detector`` - ``fasterrcnn_ghostnet_320_fpn`` vs ``fasterrcnn_mobilenet_v3_large_320_fpn``
  (random weights, 91 classes, both presets' own defaults: min_size 320, max_size 640, 150
  test proposals) on one 480x640 image. ghostdet's preset has a light FPN (strides 16/32 + pool,
  128 channels); to show where its speed comes from it is also run with 256 FPN channels like
  torchvision's (``l45_256``) and with the full strides-8/16/32 pyramid at 256 channels (``full``),
  and the same preset on GhostNetV2 (``fasterrcnn_ghostnetv2_320_fpn``, deploy form).
* ``train``    - one SGD step (forward + backward + step), batch 2 of 480x640 images with 3 boxes
  each, same two detectors in train mode (normal, non-fused models, trainable BatchNorm, all
  layers trainable for both).
* ``memory``   - peak resident memory (Linux ``VmHWM``, reset after building) of a fresh
  subprocess per model running its workload 3x; and the growth over the RSS before running.
* ``compile``  - ``torch.compile`` (inductor) backbone timings at 224x224 for both, if it works.
* ``onnx``     - both backbones exported to ONNX and run by onnxruntime (CPU execution provider,
  the same thread count, its own graph optimisations for both; above 1 thread in a process of
  its own whose sessions share one pool, as sessions with a pool each, timed side by side, take
  each other's cores), at 224x224 and 640x640; the GhostNet portable form is padded to this
  machine's NCHWc block (16 floats with AVX-512, else 8); skipped when onnxruntime is not
  installed (``pip install -e ".[export]"``).
* ``engines``  - GhostNet 1.0x against ``mobilenet_v3_large`` (224 and 640) and both 320 presets
  against their MobileNetV3-Large FPN counterparts (480x640), each in every engine installed:
  PyTorch eager, ghostdet's deploy mode with and without its native kernels, onnxruntime and
  OpenVINO, interleaved in one fresh process per thread count, with the fastest-against-fastest
  ratio (``benchmarks/bench_engines.py``'s measurement; that script repeats it over processes).

Usage::

    python benchmarks/bench_cpu.py                 # everything, 2 threads (this machine's cores)
    python benchmarks/bench_cpu.py --quick         # few repetitions, for a smoke test (no compile, engines)
    python benchmarks/bench_cpu.py --sections backbone,detector --threads 1 --reps 50
    python benchmarks/bench_cpu.py --sections backbone,throughput --threads 1 2 4

Every section except ``scaling`` runs once per ``--threads`` value; the JSON file (``--json``)
holds ``info``, ``runs`` (thread count -> section -> results) and the ``scaling`` rows. The
spread over separate processes is ``benchmarks/spread.py``'s job.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SECTIONS = (
    "backbone",
    "throughput",
    "scaling",
    "kernels",
    "detector",
    "train",
    "memory",
    "compile",
    "onnx",
    "onnxprofile",
    "engines",
)
# sections that vary the thread count themselves: run once, not once per --threads value
ONCE = ("scaling", "kernels")
Row = tuple[str, float]


# --------------------------------------------------------------------------------------------
# models


class _Features(torch.nn.Module):
    """Wrap a GhostNet (plain or deploy) so that calling it runs ``forward_features``."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.train(net.training)  # a wrapper left in training mode would put net back in it later

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def _generic(model: torch.nn.Module) -> torch.nn.Module:
    """The issue's generic treatment: eval, fx BatchNorm folding, channels_last."""
    from torch.fx.experimental.optimization import fuse as fx_fuse

    return fx_fuse(model.eval()).to(memory_format=torch.channels_last)


def backbone_models(names: tuple[str, ...] | None = None) -> dict[str, torch.nn.Module]:
    """The backbone section's models (all, or only ``names``), random weights, seed 0."""
    from torchvision.models import mobilenet_v3_large

    from ghostdet.deploy import fuse
    from ghostdet.models import ghostnet, ghostnetv2, ghostnetv3

    torch.manual_seed(0)
    g = ghostnet(1.0).eval()
    m = mobilenet_v3_large().eval()
    builders: dict[str, Callable[[], torch.nn.Module]] = {
        "ghost_plain": lambda: _Features(g),
        "ghost_generic": lambda: _generic(_Features(g)),
        "ghost_deploy": lambda: _Features(fuse(g)),
        "ghost_deploy_onednn": lambda: _Features(fuse(g, native_kernels=False)),
        "ghostv2_deploy": lambda: _Features(fuse(ghostnetv2(1.0).eval())),
        "ghostv3_deploy": lambda: _Features(fuse(ghostnetv3(1.0).eval())),
        "mnv3_plain": lambda: m.features,
        "mnv3_generic": lambda: _generic(m.features),
    }
    unknown = sorted(set(names or ()) - set(builders))
    if unknown:
        raise ValueError(f"unknown backbone model(s) {unknown}; choose from {', '.join(builders)}")
    return {k: build() for k, build in builders.items() if names is None or k in names}


#: The trunks whose MACs :func:`backbone_macs` counts; a model key's trunk is its first word.
TRUNKS = ("ghost", "ghostv2", "ghostv3", "mnv3")


def trunk_of(model_key: str) -> str:
    """The trunk of a backbone/throughput model key (``ghostv2_deploy`` -> ``ghostv2``)."""
    return model_key.split("_", 1)[0]


def backbone_macs(size: int, batch: int = 1, trunks: tuple[str, ...] = ("ghost", "mnv3")) -> dict[str, int]:
    """Paper-convention MACs of the ``trunks`` (see :data:`TRUNKS`; every treatment of a trunk
    computes the same function, so its count is the eager model's, GhostNetV3's in its
    re-parameterised form; ``FusedConv2d`` is not an ``nn.Conv2d`` and is not seen)."""
    from torchvision.models import mobilenet_v3_large

    from ghostdet.analysis import count_macs
    from ghostdet.models import ghostnet, ghostnetv2, ghostnetv3

    builders: dict[str, Callable[[], torch.nn.Module]] = {
        "ghost": lambda: _Features(ghostnet(1.0).eval()),
        "ghostv2": lambda: _Features(ghostnetv2(1.0).eval()),
        "ghostv3": lambda: _Features(ghostnetv3(1.0).eval().reparameterize()),
        "mnv3": lambda: mobilenet_v3_large().eval().features,
    }
    unknown = sorted(set(trunks) - set(builders))
    if unknown:
        raise ValueError(f"unknown trunk(s) {unknown}; choose from {', '.join(builders)}")
    shape = (batch, 3, size, size)
    return {t: count_macs(builders[t](), shape) for t in trunks}


def detector_models(train: bool) -> dict[str, torch.nn.Module]:
    """The 320 detectors (random weights); ``train`` keeps them trainable and unfused (V1 and
    MobileNetV3 only)."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    from ghostdet.deploy import fuse
    from ghostdet.models import fasterrcnn_ghostnet_320_fpn, fasterrcnn_ghostnetv2_320_fpn

    torch.manual_seed(0)
    g = fasterrcnn_ghostnet_320_fpn(num_classes=91)
    g256 = fasterrcnn_ghostnet_320_fpn(num_classes=91, fpn_channels=256)
    gfull = fasterrcnn_ghostnet_320_fpn(num_classes=91, returned_layers=[3, 4, 5], fpn_channels=256)
    m = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
    if train:
        return {
            "ghost": g.train(),
            "ghost_l45_256": g256.train(),
            "ghost_full": gfull.train(),
            "mnv3": m.train(),
        }
    g.eval()
    g256.eval()
    gfull.eval()
    m.eval()
    m_generic = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
    m_generic.load_state_dict(m.state_dict())
    m_generic.eval()
    m_generic.backbone.body = _generic(m_generic.backbone.body)
    m_generic.to(memory_format=torch.channels_last)
    return {
        "ghost_plain": g,
        "ghost_deploy": fuse(g),
        "ghost_l45_256_deploy": fuse(g256),
        "ghost_full_deploy": fuse(gfull),
        "ghostv2_deploy": fuse(fasterrcnn_ghostnetv2_320_fpn(num_classes=91).eval()),
        "mnv3_plain": m,
        "mnv3_generic": m_generic,
    }


def _train_batch(seed: int = 0) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, 480, 640, generator=gen) for _ in range(2)]
    targets = []
    for _ in range(2):
        xy = torch.rand(3, 2, generator=gen) * torch.tensor([400.0, 300.0])
        wh = 40 + torch.rand(3, 2, generator=gen) * 200
        boxes = torch.cat([xy, xy + wh], 1).clamp(max=torch.tensor([639.0, 479.0, 639.0, 479.0]))
        targets.append({"boxes": boxes, "labels": torch.randint(1, 91, (3,), generator=gen)})
    return images, targets


def _train_step_fn(model: torch.nn.Module) -> Callable[[], None]:
    images, targets = _train_batch()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        losses = model(images, targets)
        sum(losses.values()).backward()
        opt.step()

    return step


# --------------------------------------------------------------------------------------------
# timing


def interleaved(
    fns: dict[str, Callable[[], object]],
    reps: int,
    warmup: int,
    grad: bool = False,
    faults: dict[str, float] | None = None,
) -> dict[str, float]:
    """Median wall time (ms) of each callable; every repetition runs all of them in turn, in
    the same order (``ghostdet.analysis.time_interleaved`` without rotation), under
    ``torch.inference_mode`` (``torch.enable_grad`` if ``grad``). ``faults``, when given,
    receives each callable's mean minor page faults per call."""
    from ghostdet.analysis import time_interleaved

    timings = time_interleaved(
        fns,
        runs=reps,
        warmup=warmup,
        rotate=False,
        context=torch.enable_grad if grad else torch.inference_mode,
        count_faults=faults is not None,
    )
    if faults is not None:
        faults.update(timings.mean_faults())
    return {k: 1000 * v for k, v in timings.medians().items()}


def peak_fp32_gflops(threads: int, n: int = 2048, reps: int = 8) -> float:
    """The machine's peak FP32 rate as measured, not derived: the best rate (GFLOP/s,
    ``2 n^3 / t``) of a square ``n x n`` float32 ``torch.mm`` over ``reps`` calls at ``threads``
    threads (the BLAS torch links, usually oneDNN/MKL, is close to the FMA units' limit there)."""
    from ghostdet.analysis import time_interleaved

    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    t = time_interleaved({"mm": lambda: torch.mm(a, b, out=out)}, runs=reps, warmup=2, threads=threads)
    return 2 * n**3 / min(t.seconds["mm"]) / 1e9


def share_of_peak(macs: int, ms: float, peak_gflops: float) -> float:
    """Fraction of the peak FP32 rate reached by ``macs`` multiply-adds in ``ms`` milliseconds."""
    return 2 * macs / (ms / 1e3) / (peak_gflops * 1e9)


def _print_times(
    title: str,
    med: dict[str, float],
    ratios: list[tuple[str, str, str]],
    faults: dict[str, float] | None = None,
    macs: dict[str, int] | None = None,
    peak_gflops: float | None = None,
) -> dict:
    """Print and return the medians (ms) and ratios; with ``macs`` (model -> MACs) and
    ``peak_gflops``, also each model's GFLOP/s and share of the peak FP32 rate."""
    print(f"\n## {title}")
    out: dict = {"ms": med, "ratios": {}, "page_faults_per_call": faults}
    if macs and peak_gflops:
        out["gflops"], out["share_of_peak"] = {}, {}
    for k, v in med.items():
        extra = f"   {faults[k]:7.0f} page faults/call" if faults else ""
        if "share_of_peak" in out and k in macs:
            out["gflops"][k] = 2 * macs[k] / (v / 1e3) / 1e9
            out["share_of_peak"][k] = share_of_peak(macs[k], v, peak_gflops)
            share = 100 * out["share_of_peak"][k]
            extra = f"   {out['gflops'][k]:6.1f} GFLOP/s = {share:5.1f}% of peak{extra}"
        print(f"  {k:24s} {v:9.2f} ms{extra}")
    for label, a, b in ratios:
        if a in med and b in med:
            r = med[a] / med[b]
            out["ratios"][label] = r
            print(f"  ratio {label:42s} {r:6.3f}")
    return out


def _time_backbone_sizes(
    args: argparse.Namespace,
    title: str,
    make_fns: Callable[[torch.Tensor], dict[str, Callable[[], object]]],
    ratios: list[tuple[str, str, str]],
    with_peak: bool = False,
) -> dict:
    """Time ``make_fns(x)`` on batch-1 inputs of each of ``args.sizes`` (the first with
    ``--reps``, larger ones with ``--reps``/4). ``with_peak``: also GFLOP/s and share of
    ``args.peak_gflops`` per model (MACs from :func:`backbone_macs`)."""
    results = {}
    for size in args.sizes:
        reps = args.reps if size <= 224 else max(5, args.reps // 4)
        faults: dict[str, float] = {}
        fns = make_fns(torch.randn(1, 3, size, size))
        med = interleaved(fns, reps, args.warmup, faults=faults)
        macs = None
        if with_peak:
            counts = backbone_macs(size, trunks=tuple(sorted({trunk_of(k) for k in fns})))
            macs = {k: counts[trunk_of(k)] for k in fns}
        results[size] = _print_times(
            f"{title} {size}x{size}, batch 1 (reps={reps})",
            med,
            ratios,
            faults,
            macs,
            getattr(args, "peak_gflops", None) if with_peak else None,
        )
    return results


def section_backbone(args: argparse.Namespace) -> dict:
    models = backbone_models()

    def make_fns(x: torch.Tensor) -> dict[str, Callable[[], object]]:
        x_cl = x.contiguous(memory_format=torch.channels_last)
        inputs = {k: x_cl if "generic" in k or "deploy" in k else x for k in models}
        return {k: (lambda m=m, t=inputs[k]: m(t)) for k, m in models.items()}

    return _time_backbone_sizes(
        args,
        "backbone",
        make_fns,
        [
            ("ghost deploy / mnv3 generic  [target]", "ghost_deploy", "mnv3_generic"),
            ("ghost deploy, oneDNN only / mnv3 generic", "ghost_deploy_onednn", "mnv3_generic"),
            ("ghost generic / mnv3 generic", "ghost_generic", "mnv3_generic"),
            ("ghost plain / mnv3 plain", "ghost_plain", "mnv3_plain"),
            ("ghost deploy / mnv3 plain", "ghost_deploy", "mnv3_plain"),
            ("ghost deploy / ghost generic", "ghost_deploy", "ghost_generic"),
            ("ghostnetv2 deploy / mnv3 generic", "ghostv2_deploy", "mnv3_generic"),
            ("ghostnetv3 deploy / mnv3 generic", "ghostv3_deploy", "mnv3_generic"),
        ],
        with_peak=True,
    )


# (size, batch) of the throughput section: what a server batching requests runs
THROUGHPUT_CASES = ((224, 8), (640, 4))


def section_throughput(args: argparse.Namespace) -> dict:
    """Batch throughput (images/s) of ghostdet deploy vs MobileNetV3-Large generic."""
    models = backbone_models(("ghost_deploy", "mnv3_generic"))
    results = {}
    for size, batch in args.throughput_cases:
        x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        reps = max(5, args.reps // (4 if size <= 224 else 16))
        med = interleaved({k: (lambda m=m, x=x: m(x)) for k, m in models.items()}, reps, args.warmup)
        counts = backbone_macs(size, batch)
        macs = {k: counts[trunk_of(k)] for k in med}
        out = _print_times(
            f"throughput {size}x{size}, batch {batch} (reps={reps})",
            med,
            [("ghost deploy / mnv3 generic, time per batch  [target]", "ghost_deploy", "mnv3_generic")],
            macs=macs,
            peak_gflops=getattr(args, "peak_gflops", None),
        )
        out["images_per_s"] = {k: batch / (v / 1e3) for k, v in med.items()}
        print("  images/s: " + ", ".join(f"{k} {v:.1f}" for k, v in out["images_per_s"].items()))
        results[f"{size}x{batch}"] = out
    return results


def section_detector(args: argparse.Namespace) -> dict:
    models = detector_models(train=False)
    img = [torch.rand(3, 480, 640, generator=torch.Generator().manual_seed(0))]
    fns = {k: (lambda m=m: m(img)) for k, m in models.items()}
    reps = max(5, args.reps // 2)
    med = interleaved(fns, reps, args.warmup)
    return _print_times(
        f"detector inference, one 480x640 image (reps={reps})",
        med,
        [
            ("ghost deploy / mnv3 generic  [target]", "ghost_deploy", "mnv3_generic"),
            ("ghost 256-ch FPN deploy / mnv3 generic", "ghost_l45_256_deploy", "mnv3_generic"),
            ("ghost full pyramid deploy / mnv3 generic", "ghost_full_deploy", "mnv3_generic"),
            ("ghost plain / mnv3 plain", "ghost_plain", "mnv3_plain"),
            ("ghostnetv2 deploy / mnv3 generic", "ghostv2_deploy", "mnv3_generic"),
        ],
    )


def section_train(args: argparse.Namespace) -> dict:
    models = detector_models(train=True)
    fns = {k: _train_step_fn(m) for k, m in models.items()}
    reps = max(4, args.reps // 5)
    med = interleaved(fns, reps, max(1, args.warmup // 2), grad=True)
    return _print_times(
        f"one training step, batch 2 of 480x640 (reps={reps})",
        med,
        [
            ("ghost / mnv3  [target]", "ghost", "mnv3"),
            ("ghost 256-ch FPN / mnv3", "ghost_l45_256", "mnv3"),
            ("ghost full pyramid / mnv3", "ghost_full", "mnv3"),
        ],
    )


def section_compile(args: argparse.Namespace) -> dict:
    models = backbone_models(("ghost_generic", "ghost_deploy", "mnv3_generic"))
    x = torch.randn(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    fns = {}
    errors = {}
    # The deploy model's oneDNN / size-dependent branches cause graph breaks under dynamo (it then
    # falls back to plain convs), so the fx-folded generic GhostNet is compiled as well.
    for k in ("ghost_generic", "ghost_deploy", "mnv3_generic"):
        try:
            compiled = torch.compile(models[k])
            with torch.inference_mode():
                t0 = time.perf_counter()
                compiled(x)
                print(f"  compiled {k} in {time.perf_counter() - t0:.1f} s")
            fns[k + "_compiled"] = lambda c=compiled: c(x)
            fns[k] = lambda m=models[k]: m(x)
        except Exception as e:  # report, do not fail the whole benchmark
            errors[k] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(f"  torch.compile failed for {k}: {errors[k]}")
    if not fns:
        return {"errors": errors}
    med = interleaved(fns, args.reps, args.warmup)
    out = _print_times(
        f"torch.compile backbone 224x224 (reps={args.reps})",
        med,
        [
            ("compiled ghost generic / compiled mnv3", "ghost_generic_compiled", "mnv3_generic_compiled"),
            ("compiled ghost deploy / compiled mnv3", "ghost_deploy_compiled", "mnv3_generic_compiled"),
            ("eager ghost deploy / compiled mnv3", "ghost_deploy", "mnv3_generic_compiled"),
            ("ghost deploy: compiled / eager", "ghost_deploy_compiled", "ghost_deploy"),
            ("mnv3 generic: compiled / eager", "mnv3_generic_compiled", "mnv3_generic"),
        ],
    )
    out["errors"] = errors
    return out


def ort_session(
    model: torch.nn.Module, x: torch.Tensor, stem: Path, static: bool, threads: int, profile: bool = False
):
    """``model`` exported to ONNX (opset 17, at ``stem`` + a shape suffix) as an onnxruntime CPU
    session with ``threads`` intra-op threads; static shapes or a dynamic height and width.
    ``profile``: with onnxruntime's per-node profiler on (its trace goes next to the model)."""
    import onnxruntime as ort

    path = f"{stem}_{'x'.join(map(str, x.shape)) if static else 'dyn'}.onnx"
    torch.onnx.export(
        model,
        (x,),
        path,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes=None if static else {"x": {2: "h", 3: "w"}},
        dynamo=False,
    )
    opts = ort.SessionOptions()
    _ort_threads(opts, threads)
    if profile:
        opts.enable_profiling = True
        opts.profile_file_prefix = f"{stem}_profile"
        opts.optimized_model_filepath = f"{stem}_optimized.onnx"  # the graph the trace's nodes are from
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


#: threads of onnxruntime's process-wide pool, once this process has made it
_ORT_POOL: dict[str, int] = {}


def _ort_threads(opts, threads: int) -> None:
    """Set ``threads`` intra-op threads on onnxruntime session options ``opts``.

    Above 1 thread every session of the process shares one process-wide pool: with a pool per
    session, the pool of the session that just ran keeps spinning and takes a core from the one
    timed next (on 2 cores that doubled both models' 2-thread times); a shared pool runs each
    model as it runs alone. The pool's size is fixed once made, and a process that has it cannot
    make single-thread sessions: time another thread count in another process
    (:func:`_ort_section`)."""
    import onnxruntime as ort

    pool = _ORT_POOL.get("threads")
    if threads > 1:
        if pool is None:
            ort.capi._pybind_state.set_global_thread_pool_sizes(threads, 1)
            pool = _ORT_POOL["threads"] = threads
        if pool != threads:
            raise RuntimeError(
                f"onnxruntime's pool here has {pool} threads; time {threads} in another process"
            )
        opts.use_per_session_threads = False
        return
    if pool is not None:
        raise RuntimeError(f"onnxruntime's pool here has {pool} threads; time 1 thread in another process")
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1


def _ort_section(args: argparse.Namespace, name: str) -> dict | None:
    """Above 1 thread, run onnxruntime section ``name`` in a fresh process (its pool then has
    ``args.threads`` threads, see :func:`_ort_threads`), print what it prints and return its
    results; ``None`` at 1 thread or in that process, where the caller runs the section."""
    if args.ort_child:
        # the export and the reference outputs need no threads of torch's beside onnxruntime's
        torch.set_num_threads(1)
        return None
    if args.threads == 1:
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        cmd = [sys.executable, __file__, "--_ort-child", "--sections", name, "--threads", str(args.threads)]
        cmd += ["--sizes", *map(str, args.sizes), "--reps", str(args.reps), "--warmup", str(args.warmup)]
        cmd += ["--malloc", args.malloc, "--json", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            msg = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"the {name} section's process at {args.threads} threads failed: {msg}")
        lines = proc.stdout.splitlines()
        start = lines.index(f"# {args.threads} thread(s)") + 1
        end = next((i for i, line in enumerate(lines) if "load average at end" in line), len(lines))
        print("\n".join(lines[start:end]).rstrip())
        return json.loads(out.read_text())["runs"][str(args.threads)][name]


def _conv_kinds(optimized: Path) -> dict[str, str]:
    """Each Conv node of an onnxruntime-optimised graph by name: ``Conv depthwise`` (one group per
    channel), ``Conv 1x1`` or ``Conv kxk`` (dense)."""
    import onnx

    kinds = {}
    graph = onnx.load(str(optimized)).graph
    weights = {t.name: list(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        w = weights.get(node.input[1])
        k = attrs.get("kernel_shape") or (w[2:] if w else None)
        group = attrs.get("group", 1)
        if w is not None and group > 1 and w[1] == 1:
            kinds[node.name] = "Conv depthwise"
        elif k is not None and list(k) == [1, 1]:
            kinds[node.name] = "Conv 1x1"
        else:
            kinds[node.name] = "Conv kxk" if k is None else f"Conv {k[0]}x{k[1]}"
    return kinds


def section_onnx(args: argparse.Namespace) -> dict:
    try:
        import onnxruntime as ort
    except ImportError:
        print('\n## onnxruntime: not installed (pip install -e ".[export]"), section skipped')
        return {"skipped": "onnxruntime not installed"}
    child = _ort_section(args, "onnx")
    if child is not None:
        return child
    import tempfile

    from ghostdet.deploy.portable import portable_ghostnet

    # The deploy model exports its plain-conv fallback; onnxruntime then folds/fuses on its own,
    # as it does for the plain (BatchNorm) models. The portable form is what tools/export_onnx.py
    # writes for a GhostNet classifier (ghostdet.deploy.portable: no concat/slice, parts padded to
    # onnxruntime's channel block).
    from ghostdet.models import ghostnet

    chosen = backbone_models(("ghost_deploy", "ghost_plain", "mnv3_plain"))
    torch.manual_seed(0)
    portable = portable_ghostnet(ghostnet(1.0).eval())
    chosen["ghost_portable"] = _Features(portable)
    tmp = tempfile.TemporaryDirectory()

    def session(name: str, x: torch.Tensor, static: bool):
        return ort_session(chosen[name], x, Path(tmp.name) / name, static, args.threads)

    x_check = torch.randn(1, 3, 224, 224)
    sessions = {name: session(name, x_check, static=False) for name in chosen}
    errors = {}
    for name, sess in sessions.items():
        with torch.inference_mode():
            ref = chosen[name](x_check)
        got = torch.from_numpy(sess.run(None, {"x": x_check.numpy()})[0])
        errors[name] = ((got - ref).abs().max() / ref.abs().max()).item()
    print(f"\n## onnxruntime {ort.__version__}, portable form aligned to {portable.align} channels")
    print("max relative difference to PyTorch: ", end="")
    print(", ".join(f"{k} {v:.1e}" for k, v in errors.items()))

    def make_fns(x: torch.Tensor) -> dict[str, Callable[[], object]]:
        feed = {"x": x.numpy()}
        fns = {k: (lambda s=s: s.run(None, feed)) for k, s in sessions.items()}
        # exported for this one shape: onnxruntime then fuses the residual additions into the
        # convolutions (with dynamic axes it wraps them in reshapes)
        for name in ("ghost_portable", "mnv3_plain"):
            static = session(name, x, static=True)
            fns[f"{name}_static"] = lambda s=static: s.run(None, feed)
        return fns

    with tmp:
        results = _time_backbone_sizes(
            args,
            "onnxruntime backbone",
            make_fns,
            [
                (
                    "ort ghost portable / ort mnv3, static shapes  [target]",
                    "ghost_portable_static",
                    "mnv3_plain_static",
                ),
                ("ort ghost portable / ort mnv3, dynamic axes", "ghost_portable", "mnv3_plain"),
                ("ort ghost deploy / ort mnv3, dynamic axes", "ghost_deploy", "mnv3_plain"),
                ("ort ghost plain / ort mnv3, dynamic axes", "ghost_plain", "mnv3_plain"),
            ],
        )
    return {"max_rel_err": errors, "align": portable.align, **results}


def _map_class(shape: object, height: int) -> str:
    """Which maps a node's output is on, from its shape in the profiler trace and the model
    input's ``height``: ``pooled`` (1x1, the SE gates), ``stride <=8`` (the large maps) or
    ``stride >=16`` (the small ones); the same layers fall in the same class at any input size."""
    try:
        h = int(next(iter(shape[0].values()))[-2])  # [{"float": [n, c, h, w]}]
    except (IndexError, KeyError, TypeError, ValueError, AttributeError, StopIteration):
        return "other"
    if h == 1:
        return "pooled"
    return "stride <=8" if height / h <= 8 else "stride >=16"


def ort_node_profile(
    sess, x: torch.Tensor, reps: int, warmup: int, split_convs: bool = True, by_map: bool = False
) -> dict[str, dict[str, float]]:
    """Per op type, the nodes per run and their summed time per run (ms), from onnxruntime's
    profiler trace of ``reps`` runs of a session made with ``profile=True`` (:func:`ort_session`),
    after ``warmup`` runs (those are in the trace too and are left out). ``split_convs``: Conv
    nodes split by kind (:func:`_conv_kinds`) from the optimised graph the session saved.
    ``by_map``: each op type also split by the maps it runs on (``"Conv 1x1 @ stride >=16"``,
    :func:`_map_class`)."""
    optimized = sess.get_session_options().optimized_model_filepath
    kinds = _conv_kinds(Path(optimized)) if split_convs else {}
    feed = {"x": x.numpy()}
    for _ in range(warmup):
        sess.run(None, feed)
    for _ in range(reps):
        sess.run(None, feed)
    trace = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if len(runs) < warmup + reps:
        raise RuntimeError(f"profile has {len(runs)} model runs, expected {warmup + reps}")
    t0 = runs[warmup]["ts"]  # the first timed run's start
    out: dict[str, dict[str, float]] = {}
    for e in trace:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < t0:
            continue
        op = e["args"]["op_name"]
        if op == "Conv":
            op = kinds.get(e["name"][: -len("_kernel_time")], op)
        if by_map:
            op = f"{op} @ {_map_class(e['args'].get('output_type_shape'), x.shape[-2])}"
        row = out.setdefault(op, {"nodes": 0.0, "ms": 0.0})
        row["nodes"] += 1 / reps
        row["ms"] += e["dur"] / 1e3 / reps
    return out


def merge_map_classes(profile: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """A ``by_map`` profile (:func:`ort_node_profile`) summed back to one row per op type."""
    out: dict[str, dict[str, float]] = {}
    for key, row in profile.items():
        merged = out.setdefault(key.split(" @ ")[0], {"nodes": 0.0, "ms": 0.0})
        merged["nodes"] += row["nodes"]
        merged["ms"] += row["ms"]
    return out


def profile_scaling(runs: dict[str, dict], threads: list[int]) -> dict[str, dict[str, dict[str, dict]]]:
    """Each model's per-node time at the first of ``threads`` over its time at each other count
    (the speed-up from more threads), per op type and maps, per size, from the ``onnxprofile``
    results of ``runs`` (thread count -> section results, with the ``by_map`` profiles).

    Returns ``{size: {model: {row: {"nodes", "ms@T" per count, "speedup": {T: x} per other
    count}}}}`` with a ``total`` row per model."""
    base, others = str(threads[0]), [str(t) for t in threads[1:]]
    # sizes are ints in this process's results and strings in a child's JSON
    by_size = {t: {str(k): v for k, v in runs[t]["onnxprofile"].items()} for t in [base, *others]}
    out: dict = {}
    for size, models in by_size[base].items():
        out[size] = {}
        for model, rows in models["by_map"].items():
            table: dict[str, dict] = {}
            for key in [*rows, "total"]:
                entry: dict = {}
                for t in [base, *others]:
                    prof = by_size[t][size]["by_map"][model]
                    picked = prof.values() if key == "total" else [prof.get(key, {"nodes": 0.0, "ms": 0.0})]
                    if t == base:  # the same graph at every thread count: its nodes once
                        entry["nodes"] = sum(r["nodes"] for r in picked)
                    entry[f"ms@{t}"] = sum(r["ms"] for r in picked)
                entry["speedup"] = {
                    t: entry[f"ms@{base}"] / entry[f"ms@{t}"] for t in others if entry[f"ms@{t}"]
                }
                table[key] = entry
            out[size][model] = table
    return out


def format_profile_scaling(scaling: dict, threads: list[int]) -> str:
    """:func:`profile_scaling` as one markdown table per size: a row per op type and maps, each
    model's nodes, ms at every thread count and speed-up, the most expensive rows first."""
    base, others = threads[0], threads[1:]
    blocks = []
    for size, models in scaling.items():
        names = list(models)
        head = ["op type @ maps"]
        for n in names:
            head += [f"{n} nodes", *(f"{n} ms {t}T" for t in threads), *(f"{n} {base}T/{t}T" for t in others)]
        rows = sorted(
            {r for m in models.values() for r in m if r != "total"},
            key=lambda r: -max(m.get(r, {}).get(f"ms@{base}", 0.0) for m in models.values()),
        )
        against = ", ".join(map(str, others))
        lines = [f"\n## onnxruntime per-node time, {base} against {against} thread(s), {size}x{size}"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in [*rows, "total"]:
            cells = [r]
            for n in names:
                e = models[n].get(r)
                if e is None:
                    cells += ["0"] + ["-"] * (len(threads) + len(others))
                    continue
                cells += [f"{e['nodes']:.0f}", *(f"{e[f'ms@{t}']:.3f}" for t in threads)]
                cells += [f"{e['speedup'][str(t)]:.2f}" if str(t) in e["speedup"] else "-" for t in others]
            lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def format_node_profile(profiles: dict[str, dict[str, dict[str, float]]]) -> str:
    """:func:`ort_node_profile` results of several models side by side, one row per op type
    (the most expensive first), then the totals."""
    names = list(profiles)
    ops = sorted(
        {op for p in profiles.values() for op in p},
        key=lambda op: -max(p.get(op, {}).get("ms", 0.0) for p in profiles.values()),
    )
    head = ["op type"] + [f"{n} {c}" for n in names for c in ("nodes", "ms")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for op in [*ops, "total"]:
        cells = [op]
        for n in names:
            rows = profiles[n].values() if op == "total" else [profiles[n].get(op, {"nodes": 0.0, "ms": 0.0})]
            cells += [f"{sum(r['nodes'] for r in rows):.0f}", f"{sum(r['ms'] for r in rows):.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section_engines(args: argparse.Namespace) -> dict:
    """GhostNet against MobileNetV3 in every engine (``benchmarks/bench_engines.py``'s
    measurement: eager, deploy, deploy without native kernels, onnxruntime, OpenVINO), the
    backbones at 224 and 640 and both 320 presets at 480x640, in one fresh process at this thread
    count."""
    from benchmarks import bench_engines

    reps = max(5, args.reps // 4)
    result = bench_engines.run_child(
        args.threads, reps, min(3, args.warmup), [224, 640], ["backbones", "detectors"],
        [e for e in bench_engines.ENGINES if e not in bench_engines.INT8],
    )  # fmt: skip
    print(bench_engines.format_runs({args.threads: [result]}))
    return result


def section_onnxprofile(args: argparse.Namespace) -> dict:
    """onnxruntime's per-node profile of the exported GhostNet 1.0x (portable form, static
    shapes: what ``--static-shape`` writes) and MobileNetV3-Large at each size: where the time
    of each goes, per size ``{"by_op": {model: profile}, "by_map": {model: profile}}`` (by op
    type, and by op type and maps: :func:`ort_node_profile`)."""
    try:
        import onnxruntime as ort
    except ImportError:
        print('\n## onnxruntime: not installed (pip install -e ".[export]"), section skipped')
        return {"skipped": "onnxruntime not installed"}
    child = _ort_section(args, "onnxprofile")
    if child is not None:
        return child
    import tempfile

    from ghostdet.deploy.portable import portable_ghostnet
    from ghostdet.models import ghostnet

    torch.manual_seed(0)
    models = {
        "ghost_portable": _Features(portable_ghostnet(ghostnet(1.0).eval())),
        "mnv3_plain": backbone_models(("mnv3_plain",))["mnv3_plain"],
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            reps = args.reps if size <= 224 else max(5, args.reps // 4)
            x = torch.randn(1, 3, size, size)
            by_map = {}
            for name, model in models.items():
                sess = ort_session(model, x, Path(tmp) / name, True, args.threads, profile=True)
                by_map[name] = ort_node_profile(sess, x, reps, args.warmup, by_map=True)
            profiles = {name: merge_map_classes(p) for name, p in by_map.items()}
            print(
                f"\n## onnxruntime {ort.__version__} per-node profile, {size}x{size}, batch 1, static shapes "
                f"(reps={reps}; ms per run summed over the nodes of each op type)"
            )
            print(format_node_profile(profiles))
            results[size] = {"by_op": profiles, "by_map": by_map}
    return results


# --------------------------------------------------------------------------------------------
# thread scaling, per layer


def _plain_trunk_layers(net: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """A plain GhostNet's ``forward_features`` as a chain of layers: the stem, then every block."""
    stem = torch.nn.Sequential(net.conv_stem, net.bn1, net.act1)
    blocks = [(f"blocks.{i}.{j}", b) for i, stage in enumerate(net.blocks) for j, b in enumerate(stage)]
    return [("stem", stem), *blocks]


def _deploy_trunk_layers(net: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """A deploy GhostNet's trunk as a chain of layers, in order.

    The one function here that knows how ``ghostdet.deploy.fuse`` lays out its result: the
    children of the model, with ``nn.Sequential`` containers walked into, in definition order,
    without the classifier. :func:`layer_scaling` checks that chaining them reproduces
    ``forward_features``, so a changed layout fails loudly instead of timing the wrong thing.
    """
    layers: list[tuple[str, torch.nn.Module]] = []

    def walk(prefix: str, module: torch.nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, torch.nn.Sequential):
                walk(f"{prefix}{name}.", child)
            elif f"{prefix}{name}" != "classifier":
                layers.append((f"{prefix}{name}", child))

    walk("", net)
    return layers


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape[1:])


def _scaling_row(layer: str, inp: str, out: str) -> dict:
    return {"layer": layer, "input": inp, "output": out, "ms": {}, "speedup": {}}


def layer_scaling(
    size: int,
    threads: tuple[int, ...] = (1, 2),
    reps: int = 20,
    warmup: int = 3,
    width: float = 1.0,
) -> list[dict]:
    """Per-layer latency of a GhostNet trunk at each thread count, three ways.

    ``native``: the layer of ``ghostdet.deploy.fuse(net)`` (the native kernels where they
    apply); ``onednn``: the same layer of ``fuse(net, native_kernels=False)`` (every conv a
    prepacked oneDNN primitive); ``conv2d``: the plain layer BN-folded with fx and run
    ``channels_last`` (``F.conv2d``, i.e. oneDNN through ATen). All run interleaved on the
    layer's real input (batch 1, ``size`` x ``size`` image), ``torch.inference_mode``.

    Args:
        size: input image side.
        threads: thread counts; speed-ups are relative to the first.
        reps: timed repetitions (median reported), warmup: untimed ones.
        width: GhostNet width multiplier.

    Returns:
        One dict per layer: ``layer``, ``input``/``output`` shapes (CxHxW), ``ms``
        (variant -> threads -> median ms) and ``speedup`` (variant -> threads -> ms at
        ``threads[0]`` / ms at threads).
    """
    from ghostdet.analysis import time_interleaved
    from ghostdet.deploy import fuse
    from ghostdet.models import ghostnet

    torch.manual_seed(0)
    net = ghostnet(width).eval()
    plain = _plain_trunk_layers(net)
    variants = {
        "native": _deploy_trunk_layers(fuse(net)),
        "onednn": _deploy_trunk_layers(fuse(net, native_kernels=False)),
        "conv2d": [(n, _generic(m)) for n, m in plain],
    }
    for key, layers in variants.items():
        if len(layers) != len(plain):
            raise RuntimeError(f"{key}: {len(layers)} deploy layers for {len(plain)} GhostNet layers")
    inputs, outputs = [], []
    with torch.inference_mode():
        h = torch.randn(1, 3, size, size)
        for _, layer in plain:
            inputs.append(h.contiguous(memory_format=torch.channels_last))
            h = layer(h)
            outputs.append(h)
        ref = net.forward_features(inputs[0])
        for key, layers in variants.items():
            y = inputs[0]
            for _, layer in layers:
                y = layer(y)
            tol = 1e-3 * ref.abs().max().item()
            if y.shape != ref.shape or not torch.allclose(y, ref, rtol=1e-3, atol=tol):
                raise RuntimeError(f"the {key} layers chained do not reproduce forward_features")
    fns = {
        (key, i): (lambda m=layer, x=inputs[i]: m(x))
        for key, layers in variants.items()
        for i, (_, layer) in enumerate(layers)
    }
    ms = {
        t: {
            k: 1000 * v
            for k, v in time_interleaved(
                fns, runs=reps, warmup=warmup, rotate=False, context=torch.inference_mode, threads=t
            )
            .medians()
            .items()
        }
        for t in threads
    }
    rows = []
    for i, (name, _) in enumerate(plain):
        row = _scaling_row(name, _shape(inputs[i]), _shape(outputs[i]))
        for key in variants:
            row["ms"][key] = {t: ms[t][(key, i)] for t in threads}
            row["speedup"][key] = {t: ms[threads[0]][(key, i)] / ms[t][(key, i)] for t in threads[1:]}
        rows.append(row)
    total = _scaling_row("total", rows[0]["input"], rows[-1]["output"])
    for key in variants:
        total["ms"][key] = {t: sum(r["ms"][key][t] for r in rows) for t in threads}
        total["speedup"][key] = {t: total["ms"][key][threads[0]] / total["ms"][key][t] for t in threads[1:]}
    return [*rows, total]


SCALING_LABELS = {"native": "ghostdet native", "onednn": "oneDNN (deploy)", "conv2d": "F.conv2d (fx)"}


def format_scaling(rows: list[dict], threads: tuple[int, ...]) -> str:
    """:func:`layer_scaling`'s rows as a markdown table: each variant's ms at ``threads[0]`` and
    its speed-up at every further thread count."""
    t0 = threads[0]
    head = ["layer", "in -> out"]
    for label in SCALING_LABELS.values():
        head += [f"{label} ms ({t0}T)"] + [f"{t0}->{t}T" for t in threads[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["layer"], f"{r['input']} -> {r['output']}"]
        for key in SCALING_LABELS:
            cells += [f"{r['ms'][key][t0]:.3f}"] + [f"{r['speedup'][key][t]:.2f}x" for t in threads[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scaling_threads(requested: list[int]) -> tuple[int, ...]:
    """Thread counts of the scaling section: 1 and 2 always, plus every ``--threads`` value."""
    return tuple(sorted({1, 2, *requested}))


def _per_layer_tables(
    args: argparse.Namespace,
    measure: Callable[[int, tuple[int, ...], int, int], list[dict]],
    fmt: Callable[[list[dict], tuple[int, ...]], str],
    title: Callable[[int, int, tuple[int, ...]], str],
) -> dict:
    """Run a per-layer measurement (``measure(size, threads, reps, warmup)``) at every size, at
    1, 2 and every ``--threads`` thread count, and print ``title(size, reps, threads)`` and its table."""
    threads = scaling_threads(args.thread_list)
    out = {}
    for size in args.sizes:
        reps = args.reps if size <= 224 else max(5, args.reps // 4)
        rows = measure(size, threads, reps, args.warmup)
        print(title(size, reps, threads))
        print(fmt(rows, threads))
        out[size] = rows
    return out


def section_scaling(args: argparse.Namespace) -> dict:
    return _per_layer_tables(
        args,
        layer_scaling,
        format_scaling,
        lambda size, reps, threads: (
            f"\n## thread scaling per layer, {size}x{size}, batch 1 (reps={reps}; speed-up = time at\n"
            f"   {threads[0]} thread / time at N threads; 'total' sums the layers)\n"
        ),
    )


# --------------------------------------------------------------------------------------------
# native kernels vs oneDNN, per call


def _kernel_kind(module: torch.nn.Module, x: torch.Tensor | None = None) -> str | None:
    """The native kernel a deploy module runs on (``None``: none of them); for a bottleneck, the
    first one it tries on input ``x`` (``DeployBottleneck.block_kernels``), or whether it has one
    at all when ``x`` is None."""
    from ghostdet.deploy import FusedConv2d
    from ghostdet.deploy.ghost import DeployBottleneck
    from ghostdet.deploy.plan import BlockPath

    if isinstance(module, FusedConv2d):
        k, s = module.weight.shape[-1], module.stride[0]
        return "stem" if module.is_native_stem else f"dw k{k} s{s}" if module.is_native_dw else None
    if isinstance(module, DeployBottleneck):
        if x is None:
            return "block" if module.plan.fits - {BlockPath.SPLIT} else None
        kernels = module.block_kernels(x)
        return f"block {kernels[0]}" if kernels else None
    return None


def kernel_calls(
    size: int, threads: tuple[int, ...] = (1, 2), reps: int = 20, warmup: int = 3, width: float = 1.0
) -> list[dict]:
    """Every native kernel call of a GhostNet deploy trunk at ``size`` x ``size`` (batch 1),
    timed against the same module with ``use_native`` off (oneDNN / GEMM), on the arguments it
    gets in the model.

    The calls are found by running the trunk once with each candidate module's ``run`` wrapped;
    modules that a fused bottleneck replaces are never called, so they are not listed.

    Args:
        size: input image side.
        threads: thread counts.
        reps: timed repetitions (median reported), warmup: untimed ones.
        width: GhostNet width multiplier.

    Returns:
        One dict per call: ``layer`` (module name), ``kind`` (``stem``, ``dw k3 s1``, ...,
        ``block s1``/``s2``/``se``/``small``), ``input`` (CxHxW), ``ms`` (variant ``native``/``onednn`` ->
        threads -> median ms).
    """
    import copy

    from ghostdet.analysis import time_interleaved
    from ghostdet.deploy import FusedConv2d, fuse
    from ghostdet.models import ghostnet

    torch.manual_seed(0)
    net = fuse(ghostnet(width).eval(), native_kernels=True)
    calls: dict[str, tuple[torch.nn.Module, tuple, dict]] = {}
    for name, module in net.named_modules():
        if _kernel_kind(module) is not None:

            def spy(*args, _name=name, _module=module, _run=module.run, **kwargs):
                calls.setdefault(_name, (_module, args, kwargs))
                return _run(*args, **kwargs)

            module.run = spy
    with torch.inference_mode():
        net.forward_features(torch.randn(1, 3, size, size).contiguous(memory_format=torch.channels_last))
    for module, _, _ in calls.values():
        del module.run
    fns, rows = {}, []
    for name, (module, args, kwargs) in calls.items():
        kind = _kernel_kind(module, args[0])
        if kind is None:  # a bottleneck that ran its separate ops
            continue
        slow = copy.deepcopy(module)
        for m in slow.modules():
            if isinstance(m, FusedConv2d):
                m.use_native = False
        fns[(name, "native")] = lambda m=module, a=args, k=kwargs: m.run(*a, **k)
        fns[(name, "onednn")] = lambda m=slow, a=args, k=kwargs: m.run(*a, **k)
        rows.append({"layer": name, "kind": kind, "input": _shape(args[0]), "ms": {}})
    for t in threads:
        med = time_interleaved(
            fns, runs=reps, warmup=warmup, rotate=False, context=torch.inference_mode, threads=t
        ).medians()
        for row in rows:
            for variant in ("native", "onednn"):
                row["ms"].setdefault(variant, {})[t] = 1000 * med[(row["layer"], variant)]
    return rows


def format_kernel_calls(rows: list[dict], threads: tuple[int, ...]) -> str:
    """:func:`kernel_calls`' rows as a markdown table (native ms, oneDNN ms and their ratio at each
    thread count), then one line per kernel kind with the summed times."""
    head = ["call", "kind", "input"]
    for t in threads:
        head += [f"native ms {t}T", f"oneDNN ms {t}T", f"ratio {t}T"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    kinds: dict[str, dict] = {}
    for r in rows:
        cells = [r["layer"], r["kind"], r["input"]]
        total = kinds.setdefault(
            r["kind"], {"layer": f"sum ({r['kind']})", "kind": r["kind"], "input": 0, "ms": {}}
        )
        total["input"] += 1
        for t in threads:
            nat, one = r["ms"]["native"][t], r["ms"]["onednn"][t]
            cells += [f"{nat:.3f}", f"{one:.3f}", f"{nat / one:.2f}"]
            for variant, v in (("native", nat), ("onednn", one)):
                total["ms"].setdefault(variant, {}).setdefault(t, 0.0)
                total["ms"][variant][t] += v
        lines.append("| " + " | ".join(cells) + " |")
    for total in kinds.values():
        cells = [f"**{total['layer']}**", total["kind"], f"{total['input']} calls"]
        for t in threads:
            nat, one = total["ms"]["native"][t], total["ms"]["onednn"][t]
            cells += [f"{nat:.3f}", f"{one:.3f}", f"**{nat / one:.2f}**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def section_kernels(args: argparse.Namespace) -> dict:
    return _per_layer_tables(
        args,
        kernel_calls,
        format_kernel_calls,
        lambda size, reps, threads: (
            f"\n## native kernels vs oneDNN per call, {size}x{size}, batch 1 (reps={reps};\n"
            "   ratio = native / oneDNN; the sums decide ghostdet.deploy.native.pays_off)\n"
        ),
    )


# --------------------------------------------------------------------------------------------
# memory (one subprocess per model)

MEMORY_CASES = {
    "backbone640/ghost_deploy": ("backbone", "ghost_deploy"),
    "backbone640/ghost_generic": ("backbone", "ghost_generic"),
    "backbone640/mnv3_generic": ("backbone", "mnv3_generic"),
    "detector/ghost_deploy": ("detector", "ghost_deploy"),
    "detector/ghost_full_deploy": ("detector", "ghost_full_deploy"),
    "detector/mnv3_generic": ("detector", "mnv3_generic"),
    "train/ghost": ("train", "ghost"),
    "train/ghost_full": ("train", "ghost_full"),
    "train/mnv3": ("train", "mnv3"),
}


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    hwm = _proc_status_mb("VmHWM")
    # ru_maxrss as fallback (note: on Linux it can carry the parent's value over fork/exec)
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory_child(case: str, threads: int) -> None:
    """Run in a fresh interpreter: build one model, run its workload 3x, print RSS as JSON."""
    torch.set_num_threads(threads)
    kind, name = MEMORY_CASES[case]
    if kind == "backbone":
        model = backbone_models((name,))[name]
        x = torch.randn(1, 3, 640, 640).contiguous(memory_format=torch.channels_last)

        def run() -> object:
            with torch.inference_mode():
                return model(x)
    elif kind == "detector":
        model = detector_models(train=False)[name]
        img = [torch.rand(3, 480, 640)]

        def run() -> object:
            with torch.inference_mode():
                return model(img)
    else:
        run = _train_step_fn(detector_models(train=True)[name])
    # Other models built by the helpers are dropped before the baseline is taken.
    import gc

    gc.collect()
    base = _proc_status_mb("VmRSS") or _peak_mb()
    reset = _reset_peak()
    for _ in range(3):
        run()
    print(json.dumps({"peak_rss_mb": _peak_mb(), "after_build_mb": base, "peak_reset": reset}))


def section_memory(args: argparse.Namespace) -> dict:
    print("\n## peak resident memory (Linux VmHWM of a fresh subprocess per model)")
    print("  after building, the peak counter is reset (/proc/self/clear_refs) and the workload runs 3x;")
    print("  'peak' = max RSS while running (incl. Python, torch, all models of the section built by")
    print("  the helper); 'growth' = peak - RSS before running: the workload's own activations/grads")
    out = {}
    for case in MEMORY_CASES:
        cmd = [sys.executable, __file__, "--_memory-child", case, "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            msg = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"  {case:28s} failed: {msg}")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        growth = res["peak_rss_mb"] - res["after_build_mb"]
        out[case] = {**res, "growth_mb": growth}
        print(f"  {case:28s} peak {res['peak_rss_mb']:8.1f} MB   growth {growth:8.1f} MB")
    return out


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="CPU benchmark: ghostdet GhostNet-1.0 deploy mode vs torchvision MobileNetV3-Large "
        "(interleaved, medians, ratios ghostdet / MobileNetV3)."
    )
    p.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[torch.get_num_threads()],
        help="torch intra-op thread count(s); every section runs once per value, in turn, e.g. "
        "--threads 1 2 4 (default: torch's, %(default)s)",
    )
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[224, 640],
        help="square batch-1 input sizes of the backbone, scaling and onnx sections; sizes above "
        "224 use reps/4 (default: %(default)s)",
    )
    p.add_argument(
        "--reps",
        type=int,
        default=40,
        help="timed repetitions of the 224x224 backbone; the 640x640 backbone uses reps/4, the "
        "detector reps/2 and the training step reps/5 (each at least 4-5) (default: %(default)s)",
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up repetitions (default: %(default)s)")
    p.add_argument(
        "--quick", action="store_true", help="smoke test: --reps 8 --warmup 2, no compile or engines"
    )
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write all results to this JSON file")
    p.add_argument(
        "--malloc",
        choices=("tuned", "default"),
        default="tuned",
        help="tuned: raise glibc's mmap/trim thresholds for the whole process, i.e. for every "
        "model alike (ghostdet.deploy.tune_malloc); default: leave malloc as it is "
        "(default: %(default)s)",
    )
    p.add_argument("--_memory-child", dest="memory_child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_ort-child", dest="ort_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.threads) < 1:
        p.error("--threads must be >= 1")
    if min(args.sizes) < 32:
        p.error("--sizes must be >= 32 (GhostNet's stride is 32)")
    args.thread_list = list(dict.fromkeys(args.threads))  # in order, without repeats
    args.threads = args.thread_list[0]  # what a section measures at: main sets each value in turn
    args.throughput_cases = THROUGHPUT_CASES
    if args.reps < 1 or args.warmup < 0:
        p.error("--reps must be >= 1 and --warmup >= 0")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad or not sections:
        p.error(f"unknown section(s) {bad}; choose from {','.join(SECTIONS)}")
    if args.quick:
        args.reps, args.warmup = 8, 2
        if args.sections == ",".join(SECTIONS):  # the smoke test leaves out the slowest sections
            sections = [s for s in sections if s not in ("compile", "engines")]
    args.section_list = sections
    return args


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.threads)
        return 0
    import torchvision

    from ghostdet.utils.runtime import tune_malloc

    malloc = "glibc defaults"
    if args.malloc == "tuned":
        malloc = "tuned (tune_malloc)" if tune_malloc() else "tune_malloc unavailable: defaults"

    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": cpu_model(),
        "machine": f"{platform.machine()} {os.cpu_count()} logical CPUs",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": args.thread_list,
        "malloc": malloc,
        "load_avg_start": os.getloadavg(),
    }
    print("# ghostdet CPU benchmark")
    for k, v in info.items():
        print(f"  {k}: {v}")
    results: dict = {"info": info, "runs": {}}
    for threads in args.thread_list:
        args.threads = threads
        torch.set_num_threads(threads)
        print(f"\n# {threads} thread(s)")
        run: dict = {}
        if {"backbone", "throughput"} & set(args.section_list):
            args.peak_gflops = run["peak_fp32_gflops"] = peak_fp32_gflops(threads)
            print(
                f"  peak FP32: {args.peak_gflops:.1f} GFLOP/s, measured (best of 8 float32 2048x2048 "
                f"torch.mm at {threads} thread(s)); share of peak = 2 x MACs / time / peak"
            )
        for name in args.section_list:
            if name not in ONCE:
                run[name] = globals()[f"section_{name}"](args)
        results["runs"][str(threads)] = run
    for name in args.section_list:
        if name in ONCE:
            results[name] = globals()[f"section_{name}"](args)
    # the speed-ups are from the fewest threads profiled to each larger count
    profiled = sorted(
        t
        for t in args.thread_list
        if "skipped" not in results["runs"][str(t)].get("onnxprofile", {"skipped": 1})
    )
    if len(profiled) > 1:
        results["onnxprofile_scaling"] = profile_scaling(results["runs"], profiled)
        print(format_profile_scaling(results["onnxprofile_scaling"], profiled))
    info["load_avg_end"] = os.getloadavg()
    print(f"\n  load average at end: {info['load_avg_end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
