"""ghostdet.predict.Predictor: every input kind, batching, skipped inputs, COCO/JSON output, 'best'.

A random-weight tiny Faster R-CNN (score threshold 0, so every image has detections) is the
detector; each input kind is compared with predicting the same image from its file.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ghostdet.data.validation import check_results
from ghostdet.errors import ArgumentError, InputError
from ghostdet.models import get_model
from ghostdet.predict import Detections, Predictions, Predictor, available_runtimes, read_best_threshold
from ghostdet.predict.drawing import PALETTE
from ghostdet.predict.predictor import SkippedInputWarning, padded_input_size

TOL = 1e-4


def _checkpoint(path: Path, max_size: int = 64, metrics: dict | None = None) -> Path:
    torch.manual_seed(0)
    name = "fasterrcnn_ghostnet_320_fpn"
    model = get_model(name, num_classes=2, width=0.5, min_size=64, max_size=max_size)
    cfg = {"detector": name, "width": 0.5, "min_size": 64, "max_size": max_size}
    ckpt = {"model": model.state_dict(), "epoch": 0, "config": cfg, "detector": name, "width": 0.5}
    ckpt["num_classes"] = 2
    if metrics is not None:
        ckpt["metrics"] = metrics
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pth")


@pytest.fixture(scope="module")
def predictor(ckpt) -> Predictor:
    return Predictor(ckpt, runtime="eager", device="cpu", score_threshold=0.0)


def _images(folder: Path, sizes=((64, 64), (48, 64), (80, 60))) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def _same(a: Detections, b: Detections) -> None:
    assert len(a) == len(b) > 0
    assert torch.allclose(a.boxes, b.boxes, atol=TOL)
    assert torch.allclose(a.scores, b.scores, atol=TOL)
    assert torch.equal(a.labels, b.labels)
    assert a.image_size == b.image_size


def test_every_input_kind_gives_the_file_s_detections(predictor, tmp_path):
    paths = _images(tmp_path / "imgs")
    ref = predictor.predict([str(p) for p in paths])
    assert [d.source for d in ref] == [str(p) for p in paths]
    assert [d.image_size for d in ref] == [(64, 64), (48, 64), (80, 60)]
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    kinds = {
        "Path objects": paths,
        "folder": [tmp_path / "imgs"],
        "glob": [str(tmp_path / "imgs" / "img*.png")],
        "PIL images": [Image.open(p) for p in paths],
        "HWC uint8 arrays": arrays,
        "CHW float tensors": [torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255 for a in arrays],
        "CHW uint8 tensors": [torch.from_numpy(a.copy()).permute(2, 0, 1) for a in arrays],
    }
    for kind, inputs in kinds.items():
        got = predictor.predict(inputs)
        assert len(got) == len(ref), kind
        for a, b in zip(got, ref):
            _same(a, b)
        in_memory = not isinstance(inputs[0], (str, Path))
        assert [d.source for d in got] == (list(range(3)) if in_memory else [str(p) for p in paths]), kind
    # one image alone, a mixed list, a 4-D stack
    _same(predictor.predict(arrays[1])[0], ref[1])
    mixed = predictor.predict([arrays[2], str(paths[0]), Image.open(paths[1])])
    for a, b in zip(mixed, (ref[2], ref[0], ref[1])):
        _same(a, b)
    assert [d.source for d in mixed] == [0, str(paths[0]), 2]
    stack = predictor.predict(np.stack([arrays[0], arrays[0]]))
    assert len(stack) == 2 and stack[1].source == 1
    _same(stack[1], ref[0])


def test_the_padded_size_is_the_detector_s(tmp_path):
    # batches group images by this size: it must be the one torchvision's transform pads to
    model = get_model("fasterrcnn_ghostnet_320_fpn", num_classes=2, width=0.5, min_size=64, max_size=128)
    model.eval()
    for h, w in [(64, 64), (100, 37), (333, 517), (71, 99), (480, 640), (1080, 1920), (20, 700)]:
        padded, _ = model.transform([torch.rand(3, h, w)])
        assert padded_input_size(model, h, w) == tuple(padded.tensors.shape[-2:]), (h, w)


def test_batches_equal_one_by_one(tmp_path):
    # max_size 128: these images pad to three different sizes (64x64, 64x128, 128x64), which
    # would change each other's detections if they shared a batch
    ckpt = _checkpoint(tmp_path / "wide.pth", max_size=128)
    sizes = [(64, 64), (64, 128), (50, 50), (128, 64), (64, 120), (64, 64), (30, 90)]
    paths = _images(tmp_path / "imgs", sizes)
    one = Predictor(ckpt, runtime="eager", device="cpu", score_threshold=0.0, batch_size=1).predict(paths)
    batched = Predictor(ckpt, runtime="eager", device="cpu", score_threshold=0.0, batch_size=3)
    for got in (batched.predict(paths), batched.predict(paths, batch_size=4)):
        assert [d.source for d in got] == [str(p) for p in paths]
        for a, b in zip(got, one):
            _same(a, b)
    # and the grouping is what keeps them equal: one call on images of two padded sizes differs
    mixed = batched.predict_batch([torch.rand(3, 64, 64), torch.rand(3, 64, 128)])
    alone = batched.predict_batch([mixed[0].image])[0]
    assert len(alone) != len(mixed[0]) or not torch.allclose(alone.boxes, mixed[0].boxes, atol=TOL)


def test_unreadable_inputs_are_counted_and_skipped(ckpt, tmp_path):
    paths = _images(tmp_path / "imgs")
    bad = tmp_path / "imgs" / "zz_text.png"
    bad.write_text("not an image")
    trunc = tmp_path / "imgs" / "zz_trunc.png"
    trunc.write_bytes(paths[0].read_bytes()[:200])
    lines: list[str] = []
    p = Predictor(ckpt, runtime="eager", device="cpu", score_threshold=0.0, batch_size=2, warn=lines.append)
    got = p.predict([tmp_path / "imgs", paths[1]])
    assert [d.source for d in got] == [str(x) for x in (*paths, paths[1])]
    assert got.skipped == [str(bad), str(trunc)] == p.skipped
    assert len(lines) == 2 and str(bad) in lines[0] and str(trunc) in lines[1]
    assert all("\n" not in line for line in lines)
    p.predict([bad])
    assert p.skipped == [str(bad), str(trunc), str(bad)]  # the predictor keeps counting
    # default: a warning naming the file
    q = Predictor(ckpt, runtime="eager", device="cpu", score_threshold=0.0)
    with pytest.warns(SkippedInputWarning, match="zz_text.png"):
        assert q.predict([bad, paths[0]]).skipped == [str(bad)]


def test_inputs_that_are_not_images_are_refused_clearly(predictor, tmp_path):
    with pytest.raises(InputError, match="not found"):
        predictor.predict([tmp_path / "missing.png"])
    cases = [
        (np.zeros((8, 8, 3), np.float64), "uint8"),
        (np.zeros((8, 8, 4), np.uint8), r"\(H, W, 3\)"),
        (torch.full((3, 8, 8), 2.0), r"\[0, 1\]"),
        (torch.zeros(8, 8), r"\(3, H, W\)"),
        (42, "int"),
    ]
    for obj, words in cases:
        with pytest.raises(ArgumentError, match=words) as e:
            predictor.predict([obj])
        assert e.value.argument == "inputs"


def test_coco_and_json_output(predictor, tmp_path):
    paths = _images(tmp_path / "imgs")
    got = predictor.predict(paths)
    ids = {str(p): i + 1 for i, p in enumerate(paths)}
    entries = got.to_coco(ids)
    checked, dropped = check_results(entries, "predictions", image_ids=set(ids.values()))
    assert len(checked) == sum(len(d) for d in got) and dropped == 0
    first = got[0].to_coco(image_id=7)
    x1, y1, x2, y2 = got[0].boxes[0].tolist()
    assert first[0]["image_id"] == 7 and first[0]["category_id"] == got[0].category_ids[0] == 1
    assert first[0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    assert first[0]["score"] == pytest.approx(got[0].scores[0].item())
    with pytest.raises(ArgumentError, match="image_id") as e:
        got[0].to_coco()
    assert e.value.argument == "image_id"
    assert predictor.predict(np.zeros((40, 40, 3), np.uint8))[0].to_coco()[0]["image_id"] == 0
    doc = json.loads(got[1].to_json())
    assert doc["file"] == str(paths[1]) and (doc["width"], doc["height"]) == (64, 48)
    assert len(doc["detections"]) == len(got[1])
    assert doc["detections"][0]["box"] == pytest.approx(got[1].boxes[0].tolist())
    assert doc["detections"][0]["name"] == got[1].names[0] == "1"


def test_draw_puts_the_boxes_on_the_image(predictor, tmp_path):
    grey = np.full((64, 64, 3), 128, np.uint8)
    det = predictor.predict([grey])[0]
    drawn = det.draw()
    assert drawn.size == (64, 64)
    x1, y1, _, y2 = det.boxes[0].long().tolist()
    colour = list(PALETTE[det.labels[0].item() % len(PALETTE)])
    assert np.asarray(drawn)[(y1 + y2) // 2, x1].tolist() == colour
    path = tmp_path / "g.png"
    Image.fromarray(grey).save(path)
    from_file = predictor.predict(path)[0]
    assert np.array_equal(np.asarray(from_file.draw()), np.asarray(drawn))  # the file is read again


def test_score_threshold_best(ckpt, tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"bbox": {}, "best_f1": {"global": {"threshold": 0.4995, "f1": 0.5}}}))
    best = Predictor(ckpt, runtime="eager", device="cpu", score_threshold="best", thresholds_from=metrics)
    assert best.score_threshold == 0.4995 == read_best_threshold(thresholds_from=metrics)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    det = best.predict(image)[0]
    assert bool((det.scores >= 0.4995).all())
    every = Predictor(ckpt, runtime="eager", device="cpu", score_threshold=0.0).predict(image)[0]
    assert len(det) == int((every.scores >= 0.4995).sum())
    # recorded in the checkpoint
    with_metrics = _checkpoint(tmp_path / "m.pth", metrics={"best_f1": {"global": {"threshold": 0.25}}})
    assert (
        Predictor(with_metrics, runtime="eager", device="cpu", score_threshold="best").score_threshold == 0.25
    )
    # nothing recorded: one clear error naming the parameter and what to do
    missing = tmp_path / "none.json"
    for kwargs, arg in (({}, "score_threshold"), ({"thresholds_from": missing}, "thresholds_from")):
        with pytest.raises(InputError) as e:
            Predictor(ckpt, runtime="eager", device="cpu", score_threshold="best", **kwargs)
        assert e.value.argument == arg
    metrics.write_text(json.dumps({"bbox": {"AP": 0.1}}))
    with pytest.raises(InputError, match=r"no best-F1 threshold.*eval.*or give a number"):
        Predictor(ckpt, runtime="eager", device="cpu", score_threshold="best", thresholds_from=metrics)
    with pytest.raises(InputError, match=r"tiny.pth records no best-F1 threshold.*eval"):
        Predictor(ckpt, runtime="eager", device="cpu", score_threshold="best")
    for bad in (1.5, -0.1, "bestest", None):
        with pytest.raises(ArgumentError) as e:
            Predictor(ckpt, runtime="eager", device="cpu", score_threshold=bad)
        assert e.value.argument == "score_threshold"


def test_runtimes(ckpt, tmp_path):
    assert {"auto", "eager", "torch", "deploy", "onnxruntime", "openvino"} <= set(available_runtimes())
    with pytest.raises(InputError, match="unknown runtime 'tensorrt': available are auto, eager") as e:
        Predictor(ckpt, runtime="tensorrt")
    assert e.value.argument == "runtime"
    with pytest.raises(ArgumentError) as e:
        Predictor(ckpt, runtime="eager", device="cpu", batch_size=0)
    assert e.value.argument == "batch_size"
    paths = _images(tmp_path / "imgs")
    eager = Predictor(ckpt, runtime="eager", device="cpu", score_threshold=0.0).predict(paths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missing C compiler falls back to oneDNN, with a warning
        fused = Predictor(ckpt, runtime="deploy", score_threshold=0.0, batch_size=2)
    assert fused.device.type == "cpu" and fused.runtime.name == "torch"  # deploy: the fused mode
    got = fused.predict(paths)
    assert isinstance(got, Predictions)
    for a, b in zip(got, eager):
        assert len(a) == len(b)
        assert torch.allclose(a.boxes, b.boxes, atol=1e-3) and torch.allclose(a.scores, b.scores, atol=1e-3)


def test_predict_command_batch_size_and_best(ckpt, tmp_path, capsys):
    from ghostdet.cli.main import main

    paths = _images(tmp_path / "imgs")
    base = ["predict", str(ckpt), str(tmp_path / "imgs"), "--device", "cpu"]
    one, four = tmp_path / "one", tmp_path / "four"
    assert main([*base, "--score-threshold", "0", "--output-dir", str(one)]) == 0
    assert main([*base, "--score-threshold", "0", "--output-dir", str(four), "--batch-size", "4"]) == 0
    capsys.readouterr()
    a = json.loads((one / "detections.json").read_text())
    b = json.loads((four / "detections.json").read_text())
    assert [e["file"] for e in a] == [e["file"] for e in b] == [str(p) for p in paths]
    for ea, eb in zip(a, b):
        assert len(ea["detections"]) == len(eb["detections"]) > 0
        boxes_a = torch.tensor([d["box"] for d in ea["detections"]])
        assert torch.allclose(boxes_a, torch.tensor([d["box"] for d in eb["detections"]]), atol=TOL)
    # best: from a metrics.json, or one error line naming the flag
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"best_f1": {"global": {"threshold": 0.4995}}}))
    out = tmp_path / "best"
    argv = [*base, "--score-threshold", "best", "--thresholds-from", str(metrics), "--output-dir", str(out)]
    assert main(argv) == 0
    assert ">= 0.4995" in capsys.readouterr().out
    assert all(
        d["score"] >= 0.4995
        for e in json.loads((out / "detections.json").read_text())
        for d in e["detections"]
    )
    assert main([*base, "--score-threshold", "best", "--output-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ghostdet predict: error: --score-threshold:")
    assert "eval" in err[0] and "give a number" in err[0]
    for flags, words in (
        (["--runtime", "onnx"], "--runtime: unknown runtime 'onnx'"),
        (["--batch-size", "0"], "--batch-size"),
        (["--score-threshold", "1.5"], "--score-threshold"),
    ):
        try:  # a flag's own check exits through argparse, a library refusal returns 2
            code = main([*base, *flags, "--output-dir", str(tmp_path / "y")])
        except SystemExit as e:
            code = e.code
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "auto"])
def test_exported_runtimes_equal_eager_image_by_image(ckpt, tmp_path, runtime, capsys):
    pytest.importorskip("onnxruntime")
    if runtime == "openvino":
        pytest.importorskip("openvino")
    paths = _images(tmp_path / "imgs")
    eager = Predictor(ckpt, runtime="eager", device="cpu", score_threshold=0.0).predict(paths)
    p = Predictor(ckpt, runtime=runtime, device="auto", score_threshold=0.0, batch_size=2)
    got = p.predict(paths)
    assert p.device.type == "cpu"
    if runtime == "auto":  # it says what it picked, and runs it
        line = capsys.readouterr().out
        assert "runtime auto: " in line and p.runtime.name == f"auto:{p.runtime.compiled.runtime}"
    for a, b in zip(got, eager):
        assert len(a) == len(b) > 0
        assert torch.allclose(a.boxes, b.boxes, atol=1e-3) and torch.allclose(a.scores, b.scores, atol=1e-3)
