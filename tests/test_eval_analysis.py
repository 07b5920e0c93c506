"""Error analysis after evaluation (ghostdet.evaluation.analysis), against independent computations."""

from __future__ import annotations

import builtins
import contextlib
import csv
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ghostdet.evaluation.analysis import best_f1_thresholds, confusion_matrix, pr_curves, write_analysis
from ghostdet.models import get_model

ROOT = Path(__file__).resolve().parents[1]
CATS = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 8, "name": "bird"}]
pytestmark = pytest.mark.filterwarnings("ignore:skipping image:UserWarning")


def _coco(images, anns, cats=CATS) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": cats}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _cocoeval(gt: COCO, dets, cat_ids=None) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes([dict(d) for d in dets]), "bbox")
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _random_case(seed: int, n_images: int = 7, crowd: bool = True):
    """Ground truth of 3 classes on several images and noisy detections of it (right class
    mostly, shifted boxes, duplicates, background boxes), with distinct random scores."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(n_images):
        img_id = 10 + i
        images.append({"id": img_id, "file_name": f"{img_id}.jpg", "width": 200, "height": 160})
        for _ in range(rng.integers(1, 5)):
            w, h = rng.uniform(15, 60, 2)
            x, y = rng.uniform(0, 200 - w), rng.uniform(0, 160 - h)
            cat = int(rng.choice([3, 7]) if rng.random() < 0.8 else 8)
            is_crowd = int(crowd and rng.random() < 0.1)
            anns.append(
                {"id": len(anns) + 1, "image_id": img_id, "category_id": cat, "bbox": [x, y, w, h]}
                | {"area": w * h, "iscrowd": is_crowd}
            )
            for _ in range(rng.integers(0, 3)):  # 0-2 detections per object
                jitter = rng.normal(0, 0.15, 4) * [w, h, w, h]
                guess = cat if rng.random() < 0.75 else int(rng.choice([3, 7, 8]))
                box = [x + jitter[0], y + jitter[1], max(w + jitter[2], 2), max(h + jitter[3], 2)]
                dets.append({"image_id": img_id, "category_id": guess, "bbox": box})
        for _ in range(rng.integers(0, 3)):  # background detections
            w, h = rng.uniform(10, 40, 2)
            box = [rng.uniform(0, 200 - w), rng.uniform(0, 160 - h), w, h]
            dets.append({"image_id": img_id, "category_id": int(rng.choice([3, 7, 8])), "bbox": box})
    scores = rng.permutation(len(dets)) / len(dets) * 0.9 + 0.05  # distinct
    for d, s in zip(dets, scores):
        d["score"] = float(s)
    return images, anns, dets


# ----------------------------------------------------------------------------- PR curves


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pr_curve_area_equals_pycocotools_per_class_ap(seed):
    images, anns, dets = _random_case(seed)
    gt = _coco(images, anns)
    curves = pr_curves(_cocoeval(gt, dets))
    assert len(curves["recall"]) == 101
    by_id = {c["id"]: c for c in curves["classes"]}
    checked = 0
    for cat in CATS:
        # independent reference: pycocotools' own summary of a one-category evaluation
        ref = _cocoeval(gt, dets, cat_ids=[cat["id"]]).stats
        c = by_id[cat["id"]]
        if ref[0] < 0:  # no ground truth of this class
            assert c["precision_50"] is None and c["ap"] is None
            continue
        for key, ref_ap in (("precision_50", ref[1]), ("precision_50_95", ref[0])):
            curve = np.array([np.nan if v is None else v for v in c[key]], dtype=float)
            area = float(np.nanmean(curve))  # the 101-point interpolated mean, -1 (None) left out
            assert area == pytest.approx(ref_ap, abs=1e-6), (cat["name"], key)
        assert c["ap"] == pytest.approx(ref[0], abs=1e-6) and c["ap50"] == pytest.approx(ref[1], abs=1e-6)
        checked += 1
    assert checked >= 2
    assert any(0 < c["ap"] < 1 for c in curves["classes"] if c["ap"] is not None)  # a non-trivial case


# ----------------------------------------------------------------------------- confusion matrix


def test_confusion_matrix_equals_a_hand_count():
    cats = CATS[:2]  # cat (3), dog (7)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 300, "height": 300} for i in (1, 2, 3)]

    def ann(aid, img, cat, box, crowd=0):
        return {"id": aid, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3]} | {
            "iscrowd": crowd
        }

    anns = [
        ann(1, 1, 3, [10, 10, 40, 40]),  # cat: found by a cat detection
        ann(2, 1, 7, [100, 100, 40, 40]),  # dog: detected as a cat (a confusion)
        ann(3, 2, 3, [10, 10, 30, 30]),  # cat: missed
        ann(4, 3, 7, [0, 0, 100, 100], crowd=1),  # a crowd of dogs
    ]
    dets = [
        {"image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 40], "score": 0.9},  # correct
        {"image_id": 1, "category_id": 3, "bbox": [12, 12, 40, 40], "score": 0.7},  # duplicate: false
        {"image_id": 1, "category_id": 3, "bbox": [101, 99, 40, 40], "score": 0.8},  # dog seen as cat
        {"image_id": 2, "category_id": 7, "bbox": [200, 200, 30, 30], "score": 0.6},  # on background
        {"image_id": 2, "category_id": 3, "bbox": [10, 10, 30, 30], "score": 0.1},  # below the threshold
        {"image_id": 3, "category_id": 7, "bbox": [10, 10, 80, 80], "score": 0.95},  # on the crowd box
    ]
    result = confusion_matrix(_coco(images, anns, cats), dets, score_threshold=0.5)
    # rows: cat, dog, background (false detections); columns: cat, dog, background (missed)
    expected = [
        [1, 0, 1],  # cat: 1 correct, 1 missed
        [1, 0, 0],  # dog: 1 taken for a cat
        [1, 1, 0],  # background: the duplicate cat, the dog on background
    ]
    assert result.matrix.tolist() == expected
    assert result.names == ["cat", "dog", "background"]
    assert result.ignored_on_crowd == 1
    record = result.to_json()
    counts = [record[k] for k in ("correct", "confused", "false_detections", "missed")]
    assert counts == [1, 1, 2, 1]
    # per image: false positives = false detections + confusions; false negatives = missed + confused
    per_image = [
        (result.images[i]["false_positives"], result.images[i]["false_negatives"]) for i in (1, 2, 3)
    ]
    assert per_image == [(2, 1), (1, 1), (0, 0)]
    # without a threshold the low-scoring cat on image 2 finds its object
    everything = confusion_matrix(_coco(images, anns, cats), dets, score_threshold=None)
    assert everything.matrix.tolist() == [[2, 0, 0], [1, 0, 0], [1, 1, 0]]


def test_detections_without_ground_truth_are_all_false(tmp_path):
    images = [{"id": 1, "file_name": "1.jpg", "width": 50, "height": 50}]
    dets = [
        {"image_id": 1, "category_id": c, "bbox": [5, 5, 20, 20], "score": s} for c, s in ((3, 0.9), (7, 0.4))
    ]
    gt = _coco(images, [])
    written = write_analysis(tmp_path, gt, _cocoeval(gt, dets), dets, log=lambda _m: None)
    assert written["best_f1"]["global"]["threshold"] is None and written["confusion_score"] is None
    cm = json.loads((tmp_path / "confusion_matrix.json").read_text())
    assert cm["matrix"][-1] == [1, 1, 0, 0] and cm["false_detections"] == 2
    assert all(c["ap"] is None for c in json.loads((tmp_path / "pr_curves.json").read_text())["classes"])


# ----------------------------------------------------------------------------- best-F1 thresholds


def _iou_xywh(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _brute_force_best(dets, anns, cat_ids):
    """Same-class greedy matching at IoU 0.5 (score order), then every distinct score as threshold."""
    outcome = []  # (score, is_tp)
    for cat in cat_ids:
        for img in {a["image_id"] for a in anns} | {d["image_id"] for d in dets}:
            gts = [a for a in anns if a["image_id"] == img and a["category_id"] == cat]
            taken = set()
            mine = [d for d in dets if d["image_id"] == img and d["category_id"] == cat]
            for d in sorted(mine, key=lambda d: -d["score"]):
                best, best_iou = None, 0.5
                for j, g in enumerate(gts):
                    iou = _iou_xywh(d["bbox"], g["bbox"])
                    if j not in taken and iou >= best_iou:
                        best, best_iou = j, iou
                if best is not None:
                    taken.add(best)
                outcome.append((cat, d["score"], best is not None))
    results = {}
    for cat in [*cat_ids, None]:
        rows = [(s, tp) for c, s, tp in outcome if cat is None or c == cat]
        n_gt = sum(1 for a in anns if cat is None or a["category_id"] == cat)
        best = None
        for t in sorted({s for s, _ in rows}, reverse=True):
            tp = sum(1 for s, ok in rows if s >= t and ok)
            fp = sum(1 for s, ok in rows if s >= t and not ok)
            p, r = tp / (tp + fp), tp / n_gt if n_gt else 0.0
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            if best is None or f1 > best[1]:  # strictly better: the highest threshold wins a tie
                best = (t, f1, p, r)
        results[cat] = best
    return results


@pytest.mark.parametrize("seed", [3, 4])
def test_best_f1_threshold_equals_a_brute_force_scan(seed):
    images, anns, dets = _random_case(seed, n_images=8, crowd=False)
    gt = _coco(images, anns)
    found = best_f1_thresholds(_cocoeval(gt, dets))
    expected = _brute_force_best(dets, anns, [c["id"] for c in CATS])
    for cat in CATS:
        got, ref = found["per_class"][cat["name"]], expected[cat["id"]]
        if ref is None or not any(a["category_id"] == cat["id"] for a in anns):
            assert got["threshold"] is None
            continue
        assert (got["threshold"], got["f1"], got["precision"], got["recall"]) == pytest.approx(ref, abs=1e-12)
    g, ref = found["global"], expected[None]
    assert (g["threshold"], g["f1"], g["precision"], g["recall"]) == pytest.approx(ref, abs=1e-12)
    assert 0 < g["f1"] < 1


# ----------------------------------------------------------------------------- through tools/eval_det.py


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def eval_tool():
    spec = importlib.util.spec_from_file_location("tool_eval_det_analysis", ROOT / "tools" / "eval_det.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """4 JPEGs with a square and a disc each (as tests/test_tools_eval.py), a random detector."""
    root = tmp_path_factory.mktemp("tiny_analysis")
    (root / "images").mkdir()
    cats = [{"id": 5, "name": "square"}, {"id": 9, "name": "disc"}]
    g = torch.Generator().manual_seed(0)
    images, anns = [], []
    for i in range(4):
        img_id = 100 + i
        im = Image.new("RGB", (96, 80), (40, 60, 80))
        draw = ImageDraw.Draw(im)
        for j, cat in enumerate(cats):
            x, y = (int(v) for v in torch.randint(0, 50, (2,), generator=g))
            s = 20 + 6 * j
            (draw.rectangle if j == 0 else draw.ellipse)([x, y, x + s, y + s], fill=(220, 200, 30))
            box = [x, y, s + 1, s + 1]
            anns.append(
                {"id": len(anns) + 1, "image_id": img_id, "category_id": cat["id"], "bbox": box}
                | {"area": (s + 1) ** 2, "iscrowd": 0}
            )
        im.save(root / "images" / f"{img_id}.jpg")
        images.append({"id": img_id, "file_name": f"{img_id}.jpg", "width": 96, "height": 80})
    ann = root / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    torch.manual_seed(0)
    model = get_model("fasterrcnn_ghostnet_320_fpn", num_classes=3, width=0.5)
    ckpt = {
        "model": model.state_dict(),
        "epoch": 0,
        "config": {"detector": "fasterrcnn_ghostnet_320_fpn", "width": 0.5, "min_size": 96, "max_size": 128},
        "detector": "fasterrcnn_ghostnet_320_fpn",
        "width": 0.5,
        "num_classes": 3,
        "label_to_cat_id": {1: 5, 2: 9},
        "category_names": {1: "square", 2: "disc"},
        "metrics": {},
    }
    torch.save(ckpt, root / "ckpt.pth")
    return {"images": root / "images", "ann": ann, "ckpt": root / "ckpt.pth", "n_gt": len(anns)}


def _eval(tool, tiny_set, out, capsys, *extra):
    argv = ["--checkpoint", tiny_set["ckpt"], "--val-images", tiny_set["images"]]
    argv += ["--val-ann", tiny_set["ann"], "--output-dir", out, "--workers", "0", "--no-progress"]
    argv += ["--device", "cpu", "--score-threshold", "0"]
    code = tool.main([str(a) for a in [*argv, *extra]])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_eval_det_writes_the_analysis(eval_tool, tiny_set, tmp_path, capsys):
    out = _eval(eval_tool, tiny_set, tmp_path, capsys, "--error-images", "2")
    for name in ("pr_curves", "thresholds", "confusion_matrix"):
        for ext in ("json", "csv", "png"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
    assert Image.open(tmp_path / "pr_curves.png").format == "PNG"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    thresholds = json.loads((tmp_path / "thresholds.json").read_text())
    assert metrics["best_f1"] == thresholds
    best = metrics["best_f1"]["global"]["threshold"]  # what --score-threshold best reads
    detections = json.loads((tmp_path / "detections.json").read_text())
    assert best in {d["score"] for d in detections}
    # the curves' APs are the AP the evaluation printed
    curves = json.loads((tmp_path / "pr_curves.json").read_text())
    ap = {c["id"]: c["AP"] for c in metrics["per_category_ap"]}
    assert {c["id"]: c["ap"] for c in curves["classes"]} == pytest.approx(ap, abs=1e-12)
    # every ground-truth box is in a row: correct, confused or missed
    cm = json.loads((tmp_path / "confusion_matrix.json").read_text())
    assert cm["score_threshold"] == best and cm["labels"] == ["square", "disc", "background"]
    matrix = np.array(cm["matrix"])
    assert matrix[:2].sum() == tiny_set["n_gt"]
    assert matrix[2].sum() == sum(1 for d in detections if d["score"] >= best) - matrix[:2, :2].sum()
    with open(tmp_path / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    assert [int(v) for v in rows[3][1:]] == cm["matrix"][2]
    errors = json.loads((tmp_path / "errors.json").read_text())
    listed = errors["most_false_positives"] + errors["most_false_negatives"]
    assert listed and len(errors["most_false_negatives"]) <= 2
    for e in listed:  # drawn; small images enlarged (x4 at most)
        assert Image.open(tmp_path / e["drawing"]).size == (96 * 4, 80 * 4)
    assert "error analysis in" in out and "plots skipped" not in out


def test_eval_det_without_matplotlib_writes_json_and_csv(eval_tool, tiny_set, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    out = _eval(eval_tool, tiny_set, tmp_path, capsys, "--error-images", "1")
    for name in ("pr_curves", "thresholds", "confusion_matrix"):
        assert (tmp_path / f"{name}.json").is_file() and (tmp_path / f"{name}.csv").is_file()
        assert not (tmp_path / f"{name}.png").exists()
    notes = [line for line in out.splitlines() if "plots skipped" in line]
    assert len(notes) == 1 and "pip install ghostdet[plot]" in notes[0]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["analysis"]["plots"] is False and metrics["best_f1"]["global"]["threshold"] is not None
    assert json.loads((tmp_path / "errors.json").read_text())["most_false_negatives"]  # still drawn (PIL)


def test_no_analysis_and_a_given_confusion_score(eval_tool, tiny_set, tmp_path, capsys):
    _eval(eval_tool, tiny_set, tmp_path / "off", capsys, "--no-analysis")
    assert not list((tmp_path / "off").glob("confusion_matrix.*"))
    assert "best_f1" not in json.loads((tmp_path / "off" / "metrics.json").read_text())
    _eval(eval_tool, tiny_set, tmp_path / "on", capsys, "--confusion-score", "0.25", "--error-images", "0")
    cm = json.loads((tmp_path / "on" / "confusion_matrix.json").read_text())
    assert cm["score_threshold"] == 0.25
    assert not (tmp_path / "on" / "errors").exists()


def test_rescoring_a_results_file_and_no_detections(eval_tool, tiny_set, tmp_path, capsys):
    _eval(eval_tool, tiny_set, tmp_path / "run", capsys, "--error-images", "1")
    # --results (no model): the same analysis from the detections file, drawn from --val-images
    argv = ["--results", tmp_path / "run" / "detections.json", "--val-ann", tiny_set["ann"]]
    argv += ["--val-images", tiny_set["images"], "--output-dir", tmp_path / "again", "--error-images", "1"]
    assert eval_tool.main([str(a) for a in argv]) == 0, capsys.readouterr().err
    capsys.readouterr()
    for name in ("thresholds.json", "confusion_matrix.json", "pr_curves.json"):
        again, run = (json.loads((tmp_path / d / name).read_text()) for d in ("again", "run"))
        assert again == run, name  # the detections file holds the scores exactly
    errors = json.loads((tmp_path / "again" / "errors.json").read_text())
    assert (tmp_path / "again" / errors["most_false_negatives"][0]["drawing"]).is_file()
    # no detections at all: no threshold, every object missed
    out = _eval(eval_tool, tiny_set, tmp_path / "none", capsys, "--score-threshold", "1.01")
    metrics = json.loads((tmp_path / "none" / "metrics.json").read_text())
    assert metrics["detections"] == 0 and metrics["best_f1"]["global"]["threshold"] is None
    cm = json.loads((tmp_path / "none" / "confusion_matrix.json").read_text())
    assert cm["missed"] == tiny_set["n_gt"] and cm["correct"] == cm["false_detections"] == 0
    curves = json.loads((tmp_path / "none" / "pr_curves.json").read_text())
    assert all(c["ap"] == 0.0 and set(c["precision_50"]) == {0.0} for c in curves["classes"])
    assert "best-F1 score threshold n/a" in out
