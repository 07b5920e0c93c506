"""compile(): every runtime gives the eval model's outputs; auto picks only what is installed.

Outputs are compared with the eval model's on the same input: classifiers and backbones within
1e-3 of the output's scale, detections by the rule :func:`ghostdet.deploy.onnx.export_onnx` verifies with.
onnxruntime and OpenVINO cases skip where the runtime is not installed (the extras).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from ghostdet.deploy import runtimes
from ghostdet.deploy.onnx import matched_fraction, randomize_heads
from ghostdet.deploy.runtimes import available_runtimes, compile_model
from ghostdet.errors import InputError
from ghostdet.models import get_model

HAVE = {name: importlib.util.find_spec(name) is not None for name in ("onnxruntime", "openvino")}
HAVE["onnxruntime"] = HAVE["onnxruntime"] and importlib.util.find_spec("onnx") is not None


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _runtime(name: str):
    marks = (
        [] if name in ("eager", "torch") or HAVE[name] else [pytest.mark.skip(reason=f"{name} not installed")]
    )
    return pytest.param(name, marks=marks, id=name)


RUNTIMES = [_runtime(n) for n in ("eager", "torch", "onnxruntime", "openvino")]


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {"width": 0.5}
    if "fpn" in name and not name.endswith("_fpn_backbone") and not name.startswith("ghostnet"):
        kwargs["num_classes"] = 4
    model = get_model(name, **kwargs).eval()
    for m in model.modules():  # BatchNorm statistics away from the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    if "rcnn" in name or "retinanet" in name:
        randomize_heads(model)
    return model


def _check(model: torch.nn.Module, example, runtime: str) -> None:
    compiled = compile_model(model, example, runtime=runtime, threads=1)
    assert compiled.runtime == runtime and runtime in repr(compiled)
    with torch.inference_mode():
        ref, got = model(example), compiled(example)
        if isinstance(ref, list) and runtime in ("onnxruntime", "openvino"):
            # exported detectors take one image per call; torchvision pads the images of a batch
            # to one size, so the reference is the eval model on each image alone
            ref = [model([img])[0] for img in example]
    if isinstance(ref, list):  # detections
        assert len(got) == len(ref)
        for r, g in zip(ref, got):
            # export_onnx's rule: the same count, and >= 98% of the detections with a same-label
            # partner within 1e-3 (near-tied scores may swap a detection at the top-k cut)
            assert r["boxes"].shape[0] > 0 and g["boxes"].shape == r["boxes"].shape
            assert matched_fraction(r, g) >= 0.98
    else:
        refs = [ref] if isinstance(ref, torch.Tensor) else list(ref.values())
        gots = [got] if isinstance(got, torch.Tensor) else list(got.values())
        if not isinstance(ref, torch.Tensor):
            assert list(got) == list(ref)  # the same feature-map names, in order
        for r, g in zip(refs, gots):
            assert g.shape == r.shape
            assert (g - r).abs().max().item() <= 1e-3 * r.abs().max().item()


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", ["ghostnet", "ghostnetv2", "ghostnetv3"])
def test_classifiers(name, runtime):
    _check(_model(name), torch.rand(2, 3, 160, 192), runtime)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_backbone(runtime):
    _check(_model("ghostnet_fpn"), torch.rand(1, 3, 160, 224), runtime)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", ["fasterrcnn_ghostnet_320_fpn", "retinanet_ghostnet_320_fpn"])
def test_320_presets(name, runtime):
    # 200x320: the size the traced resize once made 319x511 (eager: 320x512)
    images = [torch.rand(3, 240, 320), torch.rand(3, 200, 320), torch.rand(3, 180, 240)]
    _check(_model(name), images, runtime)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(
    "name",
    [
        "fasterrcnn_ghostnet_fpn",
        "retinanet_ghostnet_fpn",
        "fasterrcnn_ghostnetv2_320_fpn",
        "retinanet_ghostnetv3_320_fpn",
    ],
)
def test_full_size_and_v2_v3_detectors(name, runtime):
    _check(_model(name), [torch.rand(3, 320, 416)], runtime)


def test_auto_picks_only_installed_runtimes_and_says_which(monkeypatch):
    monkeypatch.setattr(runtimes, "_installed", lambda name: False)
    assert available_runtimes() == ["eager", "torch"]
    lines: list[str] = []
    model = _model("ghostnet")
    compiled = compile_model(
        model, torch.rand(1, 3, 128, 128), runtime="auto", threads=1, rounds=2, log=lines.append
    )
    assert compiled.runtime in ("eager", "torch") and set(compiled.report["measured_ms"]) == {
        "eager",
        "torch",
    }
    best = min(compiled.report["measured_ms"], key=compiled.report["measured_ms"].get)
    assert compiled.runtime == best and lines == [lines[0]] and f"auto: {best} is the fastest" in lines[0]
    assert (
        repr(compiled) == f"CompiledModel(runtime={best!r}, kind='classifier', threads=1, precision='fp32')"
    )


@pytest.mark.parametrize("name,extra", [("openvino", "openvino"), ("onnxruntime", "export")])
def test_a_missing_runtime_is_one_clear_error(monkeypatch, name, extra):
    monkeypatch.setattr(runtimes, "_installed", lambda n: n != name)
    with pytest.raises(
        InputError, match=rf"runtime '{name}' is not installed: pip install 'ghostdet\[{extra}\]'"
    ) as e:
        compile_model(_model("ghostnet"), torch.rand(1, 3, 64, 64), runtime=name)
    assert e.value.argument == "runtime"


def test_bad_arguments():
    with pytest.raises(InputError, match="unknown runtime 'tensorrt'"):
        compile_model(_model("ghostnet"), torch.rand(1, 3, 64, 64), runtime="tensorrt")
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(InputError, match="unknown precision 'fp16'") as e:
        compile_model(_model("ghostnet"), x, precision="fp16")
    assert e.value.argument == "precision"
    for runtime in ("torch", "eager"):
        with pytest.raises(
            InputError, match=f"int8 runs in OpenVINO or onnxruntime .*not in the '{runtime}'"
        ) as e:
            compile_model(_model("ghostnet"), x, runtime=runtime, precision="int8", calibration=[x])
        assert e.value.argument == "runtime"
    if HAVE["onnxruntime"]:  # int8 classifiers and backbones measured no faster there
        for name, inp in (("ghostnet", x), ("ghostnet_fpn", x)):
            with pytest.raises(
                InputError, match=r"int8 (classifier|backbone)s run in OpenVINO, not in 'onnxruntime'"
            ) as e:
                compile_model(_model(name), inp, runtime="onnxruntime", precision="int8", calibration=[inp])
            assert e.value.argument == "runtime"
    with pytest.raises(InputError, match="calibration is for precision='int8'") as e:
        compile_model(_model("ghostnet"), x, calibration=[x])
    assert e.value.argument == "calibration"


def test_int8_names_the_extras_it_needs(monkeypatch):
    x = torch.rand(1, 3, 64, 64)
    for missing, extra in (("openvino", "ghostdet[openvino]"), ("onnxruntime", "ghostdet[export]")):
        monkeypatch.setattr(runtimes, "_installed", lambda name, _m=missing: name != _m)
        with pytest.raises(InputError, match=extra.replace("[", r"\[")) as e:
            compile_model(_model("ghostnet"), x, precision="int8", calibration=[x])
        assert e.value.argument == "precision"


@pytest.mark.skipif(not HAVE["openvino"], reason="openvino not installed")
def test_int8_needs_a_readable_calibration(tmp_path):
    x = torch.rand(1, 3, 64, 64)
    for calibration, message in (
        (None, "int8 needs calibration"),
        (tmp_path / "missing", "does not exist"),
        (tmp_path, "holds no image"),
    ):
        with pytest.raises(InputError, match=message) as e:
            compile_model(
                _model("ghostnet"), x, runtime="openvino", precision="int8", calibration=calibration
            )
        assert e.value.argument == "calibration"


def _dequantized_weights(model) -> set[str]:
    """The initializers an int8 QDQ model feeds through DequantizeLinear (quantized weights)."""
    return {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}


@pytest.mark.skipif(not HAVE["onnxruntime"], reason="onnxruntime not installed")
@pytest.mark.parametrize("float_depthwise", [True, False])
def test_quantize_onnx_keeps_depthwise_convs_float_when_asked(tmp_path, float_depthwise):
    import onnx

    from ghostdet.deploy.onnx import export_onnx
    from ghostdet.deploy.quantize import depthwise_conv_nodes, quantize_onnx

    model = _model("ghostnet")
    fp32 = tmp_path / "m.onnx"
    # the fused form: one ONNX conv per model conv, channels as the model's (the portable form pads)
    export_onnx(model, fp32, image=torch.rand(3, 64, 64), verify=False, portable=False)
    graph = onnx.load(str(fp32))
    depthwise = depthwise_conv_nodes(graph)
    # an independent count: the model's convs with one input channel per group
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(depthwise) == sum(1 for m in convs if m.groups > 1 and m.groups == m.in_channels) > 0
    calib = [torch.randn(1, 3, 64, 64) for _ in range(4)]
    q = onnx.load(str(quantize_onnx(fp32, tmp_path / "q.onnx", calib, float_depthwise=float_depthwise)))
    dq = _dequantized_weights(q)
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    dw_weights = {n.input[1] for n in convs if n.name in set(depthwise)}
    dense_weights = {n.input[1] for n in convs} - dw_weights
    assert len(dw_weights) == len(depthwise)
    # dense convs read dequantized int8 weights; depthwise ones float weights (or int8 too)
    assert dense_weights <= {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    dequantized_out = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    assert (dw_weights.isdisjoint(dequantized_out)) == float_depthwise
    assert dq  # something was quantized


@pytest.mark.skipif(not HAVE["onnxruntime"], reason="onnxruntime not installed")
def test_every_quantized_conv_gets_an_int8_weight_and_int32_bias_even_with_equal_biases(tmp_path):
    """torch's exporter stores equal tensors once (an untrained model's folded biases are all
    zero) and feeds the other convs through Identity nodes; onnxruntime's quantizer then left
    those convs in float between DequantizeLinear and QuantizeLinear, which ran 2.4x slower than
    FP32 in onnxruntime. ``own_parameters`` gives each its own initializers: every conv is
    quantized, and the float graph computes what it did."""
    import onnx
    import onnxruntime as ort
    from torchvision.models import mobilenet_v3_small

    from ghostdet.deploy.quantize import own_parameters, quantize_onnx

    torch.manual_seed(0)
    net, x = mobilenet_v3_small().eval(), torch.rand(1, 3, 64, 64)
    fp32 = tmp_path / "m.onnx"
    torch.onnx.export(net, (x,), str(fp32), input_names=["x"], dynamo=False, opset_version=17)
    model = onnx.load(str(fp32))
    assert any(n.op_type == "Identity" for n in model.graph.node)  # the exporter shared equal tensors
    own = tmp_path / "own.onnx"
    assert own_parameters(model) > 0
    onnx.save(model, str(own))
    inits = {i.name for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert all(n.input[1] in inits and n.input[2] in inits for n in convs)
    assert len({n.input[2] for n in convs}) == len(convs)  # no bias shared
    run = {f: ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]) for f in (fp32, own)}
    outs = [run[f].run(None, {"x": x.numpy()})[0] for f in (fp32, own)]
    assert (outs[0] == outs[1]).all()
    q = onnx.load(str(quantize_onnx(fp32, tmp_path / "q.onnx", [torch.rand(1, 3, 64, 64) for _ in range(2)])))
    made_by = {o: n for n in q.graph.node for o in n.output}
    qinit = {i.name: i for i in q.graph.initializer}
    for n in [n for n in q.graph.node if n.op_type == "Conv"]:
        weight, bias = made_by[n.input[1]], made_by[n.input[2]]
        assert weight.op_type == bias.op_type == "DequantizeLinear", n.name
        assert qinit[weight.input[0]].data_type == onnx.TensorProto.INT8
        assert qinit[bias.input[0]].data_type == onnx.TensorProto.INT32


@pytest.mark.skipif(not HAVE["onnxruntime"], reason="onnxruntime not installed (it quantizes)")
@pytest.mark.parametrize("runtime", [r for r in RUNTIMES if r.values[0] == "openvino"] + ["auto"])
def test_int8_classifier_stays_close_to_fp32(runtime):
    """int8 with calibration on inputs like the test's: the logits keep their ranking on most
    inputs (random weights, so the bar is agreement with FP32, not accuracy)."""
    torch.manual_seed(1)
    model = _model("ghostnet")
    calib = [torch.randn(2, 3, 64, 64) for _ in range(8)]
    x = torch.randn(16, 3, 64, 64)
    compiled = compile_model(model, x[:1], runtime=runtime, threads=1, precision="int8", calibration=calib)
    assert compiled.runtime == "openvino" and compiled.precision == "int8" and "int8" in repr(compiled)
    with torch.inference_mode():
        ref, got = model(x), compiled(x)
    assert got.shape == ref.shape
    err = ((got - ref).abs().max() / ref.abs().max()).item()
    assert err < 0.2, err
    assert (got.argmax(1) == ref.argmax(1)).float().mean() >= 0.75


@pytest.mark.skipif(not (HAVE["onnxruntime"] and HAVE["openvino"]), reason="needs onnxruntime and openvino")
@pytest.mark.parametrize("runtime", [r for r in RUNTIMES if r.id in ("onnxruntime", "openvino")])
def test_int8_detector_calibrates_on_an_image_folder(tmp_path, runtime):
    """int8 detectors run in both engines (onnxruntime: detectors only)."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        pixels = (torch.rand(96, 128, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i}.jpg")
    model = _model("fasterrcnn_ghostnet_320_fpn")
    img = torch.rand(3, 96, 128)
    compiled = compile_model(model, [img], runtime=runtime, threads=1, precision="int8", calibration=folder)
    assert compiled.precision == "int8" and compiled.runtime == runtime
    with torch.inference_mode():
        (out,) = compiled([img])
    assert set(out) == {"boxes", "labels", "scores"} and out["boxes"].shape[1:] == (4,)


@pytest.mark.parametrize(
    "runtime", [r for r in RUNTIMES if r.values[0] != "eager"] + [pytest.param("auto", id="auto")]
)
def test_eval_ap_through_a_runtime_equals_eager(tmp_path, runtime):
    """The same twelve COCO stats within 1e-3 (one image per call, as the ONNX runtimes run)."""
    from ghostdet.data import make_synthetic_coco
    from ghostdet.evaluation.evaluate import run_eval
    from tests.test_bad_input import _tiny_detector_checkpoint

    data = make_synthetic_coco(tmp_path / "data", num_train=1, num_val=6, image_size=(64, 80), seed=5)
    ck = _tiny_detector_checkpoint(tmp_path / "ck.pth")
    common = {"checkpoint": ck, "val_images": data["val_images"], "val_ann": data["val_ann"], "device": "cpu"}
    common.update(
        progress=False, workers=0, batch_size=1, score_threshold=0.0, analysis=False, log=lambda s: None
    )
    ref = run_eval(output_dir=tmp_path / "eager", runtime="eager", **common)
    got = run_eval(output_dir=tmp_path / runtime, runtime=runtime, **common)
    assert ref["AP50"] > 0  # detections that score: the comparison is not between zeros
    assert got["stats"] == pytest.approx(ref["stats"], abs=1e-3)


@pytest.mark.parametrize("name", ["fasterrcnn_ghostnet_320_fpn", "retinanet_ghostnet_320_fpn"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_detector_with_no_detection_gives_empty_outputs(runtime, name):
    """No box above the score threshold: every runtime gives zero rows (OpenVINO returns one row
    of garbage for an empty output; torchvision's box clipping, traced, was a reshape that
    onnxruntime cannot run on an empty pyramid level)."""
    from ghostdet.models.loading import configure_postprocess

    model = _model(name)
    configure_postprocess(model, 1.0, None)  # nothing scores 1.0
    compiled = compile_model(model, [torch.rand(3, 80, 96)], runtime=runtime, threads=1)
    out = compiled([torch.rand(3, 80, 96)])[0]
    assert {k: tuple(v.shape) for k, v in out.items()} == {"boxes": (0, 4), "labels": (0,), "scores": (0,)}


def test_export_box_clipping_equals_torchvisions():
    from torchvision.ops import boxes as box_ops

    from ghostdet.deploy.onnx import _clip_boxes_to_image

    boxes = torch.randn(50, 3, 4) * 100
    want = box_ops.clip_boxes_to_image(boxes, (40, 60))
    torch.testing.assert_close(_clip_boxes_to_image(boxes, (40, 60)), want)
    assert _clip_boxes_to_image(torch.zeros(0, 4), (4, 4)).shape == (0, 4)


@pytest.mark.parametrize("runtime", [r for r in RUNTIMES if r.id in ("onnxruntime", "openvino")])
def test_a_recurring_input_shape_runs_on_a_session_of_its_own(tmp_path, runtime, monkeypatch):
    """The runners give a shape its own fixed-shape session on its SPECIALIZE_AFTER-th call, at
    most SPECIALIZED_SHAPES of them; every call, specialised or not, gives the model's outputs."""
    from ghostdet.deploy.onnx import export_onnx

    monkeypatch.setattr(runtimes, "SPECIALIZED_SHAPES", 2)
    model = _model("retinanet_ghostnet_320_fpn")
    path = tmp_path / "det.onnx"
    export_onnx(model, path, image=torch.rand(3, 96, 128), verify=False)
    run, names = getattr(runtimes, f"{runtime}_runner")(path, threads=1)
    images = [torch.rand(3, 96, 128), torch.rand(3, 96, 128), torch.rand(3, 80, 64), torch.rand(3, 80, 64)]
    images += [torch.rand(3, 64, 96), torch.rand(3, 64, 96), torch.rand(3, 96, 128)]
    shapes_after = []
    for img in images:
        got = dict(zip(names, map(torch.from_numpy, run(img.numpy()))))
        with torch.inference_mode():
            ref = model([img])[0]
        assert ref["boxes"].shape[0] > 0 and got["boxes"].shape == ref["boxes"].shape
        assert matched_fraction(ref, got) >= 0.98
        shapes_after.append(sorted(run.specialized))
    first, second = (3, 96, 128), (3, 80, 64)
    assert shapes_after[0] == [] and shapes_after[1] == [first]  # on its second call
    assert shapes_after[3] == sorted([first, second])
    assert shapes_after[-1] == sorted([first, second])  # the limit: (3, 64, 96) stays dynamic


class _Resize(torch.nn.Module):
    """The detectors' transform up to the resize (no padding to a multiple of 32)."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models.detection.transform import GeneralizedRCNNTransform

        self.t = GeneralizedRCNNTransform(320, 640, [0.0] * 3, [1.0] * 3, size_divisible=1)

    def forward(self, image):
        return self.t([image])[0].tensors


@pytest.mark.parametrize("runtime", [r for r in RUNTIMES if r.id in ("onnxruntime", "openvino")])
def test_exported_resize_gives_eagers_size_on_every_input(tmp_path, runtime):
    """Traced, torchvision's resize computed its output size in float32 and made a 200x320 image
    319x511 instead of eager's 320x512 (one size in nine), so every detection moved. Exported
    within ``torchvision_export_fixes`` the graph gives eager's size and pixels on every shape
    tried, in both engines: among them the sizes where eager's double arithmetic lands a pixel
    below the exact quotient (77, 154) and an exact tie of that rounding (134x154)."""
    from ghostdet.deploy.onnx import torchvision_export_fixes

    model, path = _Resize().eval(), tmp_path / "resize.onnx"
    with torchvision_export_fixes(), torch.no_grad():
        torch.onnx.export(
            model,
            (torch.rand(3, 200, 320),),
            str(path),
            input_names=["x"],
            dynamic_axes={"x": {1: "h", 2: "w"}},
            dynamo=False,
            opset_version=17,
        )
    run = getattr(runtimes, f"{runtime}_runner")(path, threads=1)[0]
    sizes = [(h, w) for h in range(20, 1100, 7) for w in (77, 154, 320, 427, 640, 1333)]
    sizes += [(200, 320), (77, 120), (134, 154), (536, 640), (640, 638)]
    wrong = []
    for h, w in sizes:
        x = torch.zeros(3, h, w)
        want, got = tuple(model(x).shape), run(x.numpy())[0].shape
        if tuple(got[-3:]) != want[-3:]:
            wrong.append(((h, w), want, got))
    assert not wrong, wrong[:5]
    x = torch.rand(3, 200, 320)
    torch.testing.assert_close(torch.from_numpy(run(x.numpy())[0]), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not (HAVE["onnxruntime"] and HAVE["openvino"]), reason="needs onnxruntime and openvino")
def test_eval_command_runs_int8_with_a_calibration_folder(tmp_path):
    """``ghostdet eval --precision int8 --calibration DIR`` scores the int8 model; without
    --calibration it is one line naming the flag."""
    import json
    import subprocess
    import sys

    from ghostdet.data import make_synthetic_coco
    from tests.test_bad_input import _tiny_detector_checkpoint

    data = make_synthetic_coco(tmp_path / "data", num_train=3, num_val=4, image_size=(64, 80), seed=5)
    ck = _tiny_detector_checkpoint(tmp_path / "ck.pth")
    cmd = [sys.executable, "-m", "ghostdet", "eval", "--checkpoint", str(ck), "--device", "cpu"]
    cmd += ["--val-images", str(data["val_images"]), "--val-ann", str(data["val_ann"]), "--workers", "0"]
    cmd += ["--runtime", "openvino", "--precision", "int8", "--no-progress", "--no-analysis"]
    bad = subprocess.run([*cmd, "--output-dir", str(tmp_path / "bad")], capture_output=True, text=True)
    assert bad.returncode == 2 and "--calibration" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    run = [*cmd, "--calibration", str(data["train_images"]), "--output-dir", str(tmp_path / "q")]
    ok = subprocess.run(run, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "runtime openvino, int8" in ok.stdout
    metrics = json.loads((tmp_path / "q" / "metrics.json").read_text())
    assert 0.0 <= metrics["AP"] <= 1.0


@pytest.mark.parametrize(
    ("background", "score", "label", "kept"),
    [
        (True, 0.9, 0, 0),  # two-stage: label 0 is the background, never a detection
        (False, 1.8e-43, 0, 0),  # RetinaNet: below its threshold, OpenVINO's empty-output row
        (False, 0.9, 0, 1),  # RetinaNet: label 0 is a class, a real detection
        (True, 0.9, 2, 1),
    ],
)
def test_openvino_empty_output_row_is_dropped_and_only_it(monkeypatch, background, score, label, kept):
    import numpy as np

    def runner(path, threads):
        outs = [np.zeros((1, 4), np.float32), np.array([score], np.float32), np.array([label])]
        return (lambda x: outs), ["boxes", "scores", "labels"]

    monkeypatch.setattr(runtimes, "openvino_runner", runner)
    fn = runtimes._openvino_fn("unused.onnx", "detector", 1, (0.05, background))
    (out,) = fn([torch.rand(3, 8, 8)])
    assert out["scores"].shape == (kept,) and out["boxes"].shape == (kept, 4)
