"""tools/eval_det.py end to end on a tiny synthetic COCO set and a randomly initialised detector."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ghostdet.evaluation import COCO_STAT_NAMES
from ghostdet.models import get_model

ROOT = Path(__file__).resolve().parents[1]
COCO128 = Path(__file__).resolve().parents[2] / "shared/data/coco128"
CATS = [{"id": 5, "name": "square"}, {"id": 9, "name": "disc"}]  # non-contiguous ids
N_IMAGES = 6
pytestmark = pytest.mark.filterwarnings("ignore:skipping unreadable image:UserWarning")


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _one_thread():
    # 2-thread OpenMP on a shared 2-core machine is far slower than 1 thread.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def eval_tool():
    return _load_tool("eval_det")


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """6 JPEGs with a square and a disc each, plus one truncated JPEG listed in the JSON."""
    root = tmp_path_factory.mktemp("tiny_coco")
    (root / "images").mkdir()
    g = torch.Generator().manual_seed(0)
    images, anns = [], []
    for i in range(N_IMAGES):
        img_id = 100 + 7 * i
        im = Image.new("RGB", (96, 80), (40, 60, 80))
        draw = ImageDraw.Draw(im)
        for j, cat in enumerate(CATS):
            x, y = (int(v) for v in torch.randint(0, 50, (2,), generator=g))
            s = 20 + 6 * j
            (draw.rectangle if j == 0 else draw.ellipse)([x, y, x + s, y + s], fill=(220, 200, 30))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": cat["id"],
                    "bbox": [x, y, s + 1, s + 1],
                    "area": (s + 1) ** 2,
                    "iscrowd": 0,
                }
            )
        name = f"{img_id:012d}.jpg"
        im.save(root / "images" / name)
        images.append({"id": img_id, "file_name": name, "width": 96, "height": 80})
    bad = root / "images" / "000000000999.jpg"
    bad.write_bytes((root / "images" / images[0]["file_name"]).read_bytes()[:200])  # truncated
    images.append({"id": 999, "file_name": bad.name, "width": 96, "height": 80})
    anns.append(
        {
            "id": len(anns) + 1,
            "image_id": 999,
            "category_id": 5,
            "bbox": [1, 1, 30, 30],
            "area": 900,
            "iscrowd": 0,
        }
    )
    ann = root / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATS}))

    torch.manual_seed(0)
    model = get_model("fasterrcnn_ghostnet_320_fpn", num_classes=3, width=0.5)
    # The checkpoint layout written by tools/train_det.py (see the project guide).
    ckpt = {
        "model": model.state_dict(),
        "optimizer": {},
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
    torch.save(model.state_dict(), root / "plain.pth")
    return {
        "root": root,
        "images": root / "images",
        "ann": ann,
        "ckpt": root / "ckpt.pth",
        "plain": root / "plain.pth",
        "good_ids": [im["id"] for im in images[:N_IMAGES]],
    }


def _independent_stats(ann: Path, results: Path, img_ids=None) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        dt = gt.loadRes(str(results))  # the file exactly as written
        ev = COCOeval(gt, dt, "bbox")
        if img_ids is not None:
            ev.params.imgIds = sorted(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def _args(template: str, **paths) -> list[str]:
    """Split a flag string after substituting (quoted) paths: ``_args("--x {a}", a=path)``."""
    return shlex.split(template.format(**{k: shlex.quote(str(v)) for k, v in paths.items()}))


def _run(tool, capsys, *argv) -> tuple[int, str, str]:
    code = tool.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _base(tiny_set, out_dir) -> list:
    return [
        "--val-images",
        tiny_set["images"],
        "--val-ann",
        tiny_set["ann"],
        "--output-dir",
        out_dir,
        "--workers",
        "0",
        "--no-progress",
        "--device",
        "cpu",
    ]


def test_printed_and_written_ap_equal_independent_cocoeval(eval_tool, tiny_set, tmp_path, capsys):
    argv = _args("--checkpoint {c} --score-threshold 0.0", c=tiny_set["ckpt"])
    code, out, _ = _run(eval_tool, capsys, *argv, *_base(tiny_set, tmp_path))
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    res_path = tmp_path / "detections.json"
    results = json.loads(res_path.read_text())
    assert results, "a random detector with threshold 0 should produce detections"
    assert {r["category_id"] for r in results} <= {5, 9}
    # The truncated image is skipped and counted, and its ground truth is not scored.
    assert metrics["images"] == N_IMAGES and metrics["skipped_images"] == 1
    assert {r["image_id"] for r in results} <= set(tiny_set["good_ids"])
    expected = _independent_stats(tiny_set["ann"], res_path, tiny_set["good_ids"])
    for name, value in zip(COCO_STAT_NAMES, expected):
        assert metrics[name] == pytest.approx(value, abs=1e-9), name
    assert any(v > 0 for v in expected)  # non-trivial numbers
    printed = [float(x) for x in re.findall(r"\] = (-?\d\.\d{3})", out)]
    assert printed == [round(v, 3) for v in expected]
    # per-category table, worst first
    rows = re.findall(r"^(square|disc)\s+(\d+)\s+(\S+)$", out, re.M)
    assert {r[1] for r in rows} == {"5", "9"}
    aps = [float(r[2]) for r in rows]
    assert aps == sorted(aps)
    assert re.search(r"\d+ images in [\d.]+ s: [\d.]+ images/s", out)


def test_limit_scores_only_the_first_images(eval_tool, tiny_set, tmp_path, capsys):
    argv = _args("--checkpoint {c} --score-threshold 0 --limit 2 --batch-size 2", c=tiny_set["ckpt"])
    code, _, _ = _run(eval_tool, capsys, *argv, *_base(tiny_set, tmp_path))
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["images"] == 2
    results_path = tmp_path / "detections.json"
    assert {r["image_id"] for r in json.loads(results_path.read_text())} <= set(tiny_set["good_ids"][:2])
    expected = _independent_stats(tiny_set["ann"], results_path, tiny_set["good_ids"][:2])
    assert [metrics[k] for k in COCO_STAT_NAMES] == pytest.approx(expected, abs=1e-9)


def test_zero_detections_table_of_zeros_exit_0(eval_tool, tiny_set, tmp_path, capsys):
    argv = _args("--checkpoint {c} --score-threshold 1.01", c=tiny_set["ckpt"])
    code, out, _ = _run(eval_tool, capsys, *argv, *_base(tiny_set, tmp_path))
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [metrics[k] for k in COCO_STAT_NAMES] == [0.0] * 12
    assert json.loads((tmp_path / "detections.json").read_text()) == []
    assert out.count("= 0.000") == 12


def test_builder_name_and_weights(eval_tool, tiny_set, tmp_path, capsys):
    # A plain state dict has no mapping: 3 classes = 2 categories + background -> sorted category ids.
    argv = _args(
        "--model fasterrcnn_320 --weights {w} --width 0.5 --min-size 96 --max-size 128 --score-threshold 0 "
        "--limit 2",
        w=tiny_set["plain"],
    )
    code, out, _ = _run(eval_tool, capsys, *argv, *_base(tiny_set, tmp_path))
    assert code == 0
    results = json.loads((tmp_path / "detections.json").read_text())
    assert results and {r["category_id"] for r in results} <= {5, 9}
    assert "sorted dataset category ids" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--checkpoint {c} --model retinanet", "holds a fasterrcnn_ghostnet_320_fpn, not the requested"),
        ("--checkpoint {c} --width 1.0", "has width 0.5, not the requested 1"),
        ("--model fasterrcnn_320 --weights {p}", "do not match fasterrcnn_ghostnet_320_fpn (width 1)"),
        ("--model retinanet --weights {p} --width 0.5", "do not match retinanet_ghostnet_fpn"),
        ("--checkpoint {p}", "is not a tools/train_det.py checkpoint"),
        ("--checkpoint {m}", "checkpoint file not found"),
        ("--checkpoint {a}", "could not read"),
    ],
)
def test_mismatching_checkpoint_one_line_exit_2(eval_tool, tiny_set, tmp_path, capsys, flags, message):
    argv = _args(flags, c=tiny_set["ckpt"], p=tiny_set["plain"], m=tmp_path / "nope.pth", a=tiny_set["ann"])
    code, _, err = _run(eval_tool, capsys, *argv, *_base(tiny_set, tmp_path))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("eval_det.py: error:") and message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not a COCO-format JSON file"),
        ("[1, 2]", "is not a COCO-format JSON file"),
        ('{"images": [], "annotations": [], "categories": []}', "lists no images"),
        ('{"images": [{"id": 1, "file_name": "a.jpg"}], "categories": []}', "add --results-only"),
    ],
)
def test_bad_annotation_files(eval_tool, tiny_set, tmp_path, capsys, content, message):
    (tmp_path / "ann.json").write_text(content)
    argv = _args(
        "--checkpoint {c} --val-images {i} --val-ann {a} --output-dir {o}",
        c=tiny_set["ckpt"],
        i=tiny_set["images"],
        a=tmp_path / "ann.json",
        o=tmp_path,
    )
    code, _, err = _run(eval_tool, capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1


def test_bad_data_paths_and_flags(eval_tool, tiny_set, tmp_path, capsys):
    code, _, err = _run(
        eval_tool, capsys, *_args("--checkpoint {c} --data-path {d}", c=tiny_set["ckpt"], d=tmp_path)
    )
    assert code == 2 and "image folder not found" in err and err.count("\n") == 1
    argv = _args(
        "--checkpoint {c} --val-images {i} --val-ann {a}",
        c=tiny_set["ckpt"],
        i=tiny_set["images"],
        a=tmp_path / "missing.json",
    )
    code, _, err = _run(eval_tool, capsys, *argv)
    assert code == 2 and "annotation file not found" in err
    for bad in ("--val-images {i}", "--checkpoint {c} --limit 0", "--checkpoint {c} --score-threshold x"):
        with pytest.raises(SystemExit) as e:
            eval_tool.main(_args(bad, i=tiny_set["images"], c=tiny_set["ckpt"]))
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err


def test_results_only_without_annotations(eval_tool, tiny_set, tmp_path, capsys):
    folder = tmp_path / "test_images"
    folder.mkdir()
    for img_id in tiny_set["good_ids"][:3]:
        name = f"{img_id:012d}.jpg"
        (folder / name).write_bytes((tiny_set["images"] / name).read_bytes())
    argv = _args(
        "--checkpoint {c} --val-images {f} --results-only --score-threshold 0 --output-dir {o} --workers 0 "
        "--no-progress",
        c=tiny_set["ckpt"],
        f=folder,
        o=tmp_path / "out",
    )
    code, out, _ = _run(eval_tool, capsys, *argv)
    assert code == 0
    results = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert {r["image_id"] for r in results} == set(tiny_set["good_ids"][:3])  # ids from the file names
    assert {r["category_id"] for r in results} <= {5, 9}  # the checkpoint's mapping
    assert all(len(r["bbox"]) == 4 and r["bbox"][2] >= 0 and r["bbox"][3] >= 0 for r in results)
    assert "Average Precision" not in out
    assert "stats" not in json.loads((tmp_path / "out" / "metrics.json").read_text())
    images = json.loads((tmp_path / "out" / "images.json").read_text())
    assert images == [{"id": i, "file_name": f"{i:012d}.jpg"} for i in tiny_set["good_ids"][:3]]


@pytest.mark.skipif(not COCO128.is_dir(), reason="../shared/data/coco128 not present")
def test_coco128_ground_truth_as_results_scores_one(eval_tool, tmp_path, capsys):
    ann = COCO128 / "annotations/instances_train2017.json"
    gt = json.loads(ann.read_text())
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in gt["annotations"]
        if not a["iscrowd"]
    ]
    res = tmp_path / "gt_as_results.json"
    res.write_text(json.dumps(results))
    code, out, _ = _run(eval_tool, capsys, "--results", res, "--val-ann", ann, "--output-dir", tmp_path)
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["AP50"] == metrics["AP75"] == pytest.approx(1.0, abs=1e-12)
    assert out.splitlines()[0].endswith("= 1.000")


def test_help_runs_as_a_script():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools/eval_det.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    flags = "--checkpoint --model --weights --data-path --val-images --val-ann --limit --results-only "
    flags += "--score-threshold --max-dets --batch-size --device --workers --output-dir"
    for flag in flags.split():
        assert flag in proc.stdout


def _script(*argv, out_dir, torchrun=False) -> subprocess.CompletedProcess:
    launcher = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2"]
    cmd = [*(launcher if torchrun else [sys.executable]), str(ROOT / "tools/eval_det.py"), *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*cmd, "--output-dir", str(out_dir)], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow
def test_torchrun_two_processes_match_single(tiny_set, tmp_path):
    base = _args(
        "--checkpoint {c} --val-images {i} --val-ann {a} --score-threshold 0 --workers 0 --no-progress "
        "--threads 1",
        c=tiny_set["ckpt"],
        i=tiny_set["images"],
        a=tiny_set["ann"],
    )
    single = _script(*base, out_dir=tmp_path / "one")
    assert single.returncode == 0, single.stderr
    multi = _script(*base, out_dir=tmp_path / "two", torchrun=True)
    assert multi.returncode == 0, multi.stderr
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["processes"] == 2 and two["images"] == one["images"] == N_IMAGES
    assert two["detections"] == one["detections"]
    for k in COCO_STAT_NAMES:
        assert two[k] == pytest.approx(one[k], abs=1e-9)
    assert multi.stdout.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all") == 1  # rank 0 only


# ---------------------------------------------------------------- tools/infer.py


@pytest.fixture(scope="module")
def infer_tool():
    return _load_tool("infer")


def test_infer_folder_glob_and_bad_file(infer_tool, tiny_set, tmp_path, capsys):
    from ghostdet.data.images import read_rgb_tensor as read_image

    src = tmp_path / "src"
    src.mkdir()
    names = [f"{i:012d}.jpg" for i in tiny_set["good_ids"][:2]]
    for n in names:
        (src / n).write_bytes((tiny_set["images"] / n).read_bytes())
    Image.open(src / names[0]).save(src / "third.png")
    (src / "broken.jpg").write_bytes(b"not an image")
    out_dir = tmp_path / "out"
    argv = _args(
        "--checkpoint {c} {g} {b} --score-threshold 0.2 --output-dir {o} --device cpu",
        c=tiny_set["ckpt"],
        g=src / "0*.jpg",
        b=src / "broken.jpg",
        o=out_dir,
    )
    code, out, err = _run(infer_tool, capsys, *argv, str(src / "third.png"))
    assert code == 0
    assert "broken.jpg" in err and "skipping" in err
    assert "3 image(s)" in out and "1 unreadable file(s) skipped" in out
    entries = json.loads((out_dir / "detections.json").read_text())
    assert [Path(e["file"]).name for e in entries] == [*names, "third.png"]

    # Independent run of the same weights on the same decoded image.
    ckpt = torch.load(tiny_set["ckpt"], weights_only=True)
    model = get_model("fasterrcnn_ghostnet_320_fpn", num_classes=3, width=0.5, min_size=96, max_size=128)
    model.load_state_dict(ckpt["model"])
    model.eval()
    with torch.no_grad():
        ref = model([read_image(src / names[0])])[0]
    keep = ref["scores"] >= 0.2
    dets = entries[0]["detections"]
    assert len(dets) == int(keep.sum()) > 0
    assert torch.allclose(torch.tensor([d["box"] for d in dets]), ref["boxes"][keep], atol=1e-4)
    assert [d["name"] for d in dets] == [{1: "square", 2: "disc"}[int(lbl)] for lbl in ref["labels"][keep]]
    assert {d["category_id"] for d in dets} <= {5, 9}
    assert all(d["score"] >= 0.2 for e in entries for d in e["detections"])

    # Drawn copies keep the image size; per-image JSON equals the combined entry.
    for e, stem, suffix in zip(entries, [Path(n).stem for n in names] + ["third"], [".jpg", ".jpg", ".png"]):
        drawn = Image.open(out_dir / f"{stem}{suffix}")
        assert drawn.size == (e["width"], e["height"]) == (96, 80)
        assert json.loads((out_dir / f"{stem}.json").read_text()) == e


def test_infer_draws_boxes_only_where_detections_are(infer_tool, tiny_set, tmp_path, capsys):
    src = tmp_path / "img.png"
    Image.open(tiny_set["images"] / f"{tiny_set['good_ids'][0]:012d}.jpg").save(src)
    original = torch.from_numpy(np.asarray(Image.open(src).convert("RGB")).copy())
    for thr, changed in (("1.0", False), ("0.0", True)):
        out_dir = tmp_path / f"out{thr}"
        argv = _args(
            "{c} {s} --score-threshold {t} --output-dir {o}", c=tiny_set["ckpt"], s=src, t=thr, o=out_dir
        )
        assert _run(infer_tool, capsys, *argv)[0] == 0
        drawn = torch.from_numpy(np.asarray(Image.open(out_dir / "img.png").convert("RGB")).copy())
        assert drawn.shape == original.shape
        assert bool((drawn != original).any()) is changed


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--checkpoint {c} {b}", "none of the 1 input file(s) could be read"),
        ("--checkpoint {c} {m}", "input not found"),
        ("--checkpoint {c} {e}", "no image files in"),
        ("--checkpoint {p} {b}", "is not a tools/train_det.py checkpoint"),
    ],
)
def test_infer_errors_one_line(infer_tool, tiny_set, tmp_path, capsys, flags, message):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "empty").mkdir()
    argv = _args(
        flags,
        c=tiny_set["ckpt"],
        p=tiny_set["plain"],
        b=bad,
        m=tmp_path / "missing.jpg",
        e=tmp_path / "empty",
    )
    code, _, err = _run(infer_tool, capsys, *argv, "--output-dir", str(tmp_path / "o"))
    assert code == 2
    assert message in err.splitlines()[-1] and err.splitlines()[-1].startswith("infer.py: error:")
    assert "Traceback" not in err


def test_infer_flag_errors(infer_tool, tiny_set, capsys):
    for bad in ("--model retinanet x.jpg", "--checkpoint {c} x.jpg --score-threshold 2", "{c}"):
        with pytest.raises(SystemExit) as e:
            infer_tool.main(_args(bad, c=tiny_set["ckpt"]))
        assert e.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1


# ---------------------------------------------------------------- load_detector details


def test_load_detector_frozen_bn_checkpoint_and_model_kwargs(tmp_path):
    from ghostdet.models.fpn import _to_frozen_bn
    from ghostdet.models.loading import load_detector

    torch.manual_seed(0)
    trained = get_model("fasterrcnn_ghostnet_320_fpn", num_classes=4, width=0.5, box_detections_per_img=7)
    _to_frozen_bn(trained.backbone.body)  # what a run with an ImageNet-pretrained trunk saves
    trained.eval()
    sd = trained.state_dict()
    assert not any(k.startswith("backbone.body") and k.endswith("num_batches_tracked") for k in sd)
    cfg = {
        "detector": "fasterrcnn_320",
        "width": 0.5,
        "min_size": 96,
        "max_size": 128,
        "model_kwargs": {"box_detections_per_img": 7},
    }
    torch.save(
        {
            "model": sd,
            "detector": "fasterrcnn_ghostnet_320_fpn",
            "width": 0.5,
            "num_classes": 4,
            "config": cfg,
        },
        tmp_path / "frozen.pth",
    )
    det = load_detector(tmp_path / "frozen.pth")
    assert det.model.roi_heads.detections_per_img == 7
    assert det.model.transform.min_size == (96,) and det.model.transform.max_size == 128
    assert det.meta["num_classes"] == 4
    trained.transform.min_size, trained.transform.max_size = (96,), 128
    x = [torch.rand(3, 80, 96)]
    with torch.no_grad():
        ref, got = trained(x)[0], det.model(x)[0]
    torch.testing.assert_close(got["boxes"], ref["boxes"])
    torch.testing.assert_close(got["scores"], ref["scores"])
    # The builder path infers the class count from the weights (RetinaNet: per-anchor logits).
    retina = get_model("retinanet_ghostnet_fpn", num_classes=5, width=0.5)
    torch.save(retina.state_dict(), tmp_path / "retina.pth")
    det = load_detector(model_name="retinanet", weights=tmp_path / "retina.pth", width=0.5)
    assert det.meta["num_classes"] == 5 and det.label_to_cat_id is None


def test_data_path_root_layout(eval_tool, tiny_set, tmp_path, capsys):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").symlink_to(tiny_set["images"], target_is_directory=True)
    (root / "annotations" / "instances_val2017.json").write_text(tiny_set["ann"].read_text())
    argv = _args(
        "--checkpoint {c} --data-path {r} --limit 3 --score-threshold 0 --output-dir {o} --workers 0 "
        "--no-progress",
        c=tiny_set["ckpt"],
        r=root,
        o=tmp_path / "out",
    )
    code, out, _ = _run(eval_tool, capsys, *argv)
    assert code == 0 and "on 3 images of" in out
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["images"] == 3


def test_results_only_with_image_info_json(eval_tool, tiny_set, tmp_path, capsys):
    gt = json.loads(tiny_set["ann"].read_text())
    info = {"images": gt["images"][1:3], "categories": gt["categories"]}  # test-dev style: no annotations
    (tmp_path / "info.json").write_text(json.dumps(info))
    argv = _args(
        "--checkpoint {c} --val-images {i} --val-ann {a} --results-only --score-threshold 0 "
        "--output-dir {o} --workers 0 --no-progress",
        c=tiny_set["ckpt"],
        i=tiny_set["images"],
        a=tmp_path / "info.json",
        o=tmp_path / "out",
    )
    code, out, _ = _run(eval_tool, capsys, *argv)
    assert code == 0 and "Average Precision" not in out
    results = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert {r["image_id"] for r in results} == {im["id"] for im in info["images"]}


def test_folder_with_non_numeric_names_gets_sequential_ids(tmp_path):
    from ghostdet.evaluation.evaluate import CocoImageList

    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    ds = CocoImageList.from_folder(tmp_path)
    assert ds.entries == [(1, "a.jpg"), (2, "b.png")]


@pytest.mark.slow
def test_eval_det_reproduces_train_det_evaluation(tmp_path):
    """A train_det checkpoint scored by eval_det gives the training loop's AP and detections."""
    if not (ROOT / "tools/train_det.py").is_file():
        pytest.skip("tools/train_det.py not present")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    train = [
        sys.executable,
        str(ROOT / "tools/train_det.py"),
        "--detector",
        "fasterrcnn_320",
        "--width",
        "0.5",
        "--synthetic-root",
        str(tmp_path / "syn"),
        "--synthetic-num-train",
        "8",
        "--synthetic-num-val",
        "6",
        "--synthetic-image-size",
        "128",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--threads",
        "1",
        "--workers",
        "0",
        "--output-dir",
        str(tmp_path / "train"),
    ]
    proc = subprocess.run(train, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    val_ann = tmp_path / "syn" / "annotations" / "instances_val.json"
    argv = _args(
        "--checkpoint {c} --val-images {i} --val-ann {a} --workers 0 --no-progress --threads 1",
        c=tmp_path / "train" / "checkpoint.pth",
        i=tmp_path / "syn" / "val",
        a=val_ann,
    )
    proc = _script(*argv, out_dir=tmp_path / "eval")
    assert proc.returncode == 0, proc.stderr[-2000:]
    trained = json.loads((tmp_path / "train" / "metrics.json").read_text())["evaluations"][-1]
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for k in COCO_STAT_NAMES:
        assert evaluated[k] == pytest.approx(trained[k], abs=1e-9), k
    ours = json.loads((tmp_path / "eval" / "detections.json").read_text())
    theirs = json.loads((tmp_path / "train" / "detections.json").read_text())
    assert len(ours) == len(theirs)
    key = lambda r: (r["image_id"], -r["score"], r["category_id"])  # noqa: E731
    for a, b in zip(sorted(ours, key=key), sorted(theirs, key=key)):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3) and a["score"] == pytest.approx(
            b["score"], abs=1e-5
        )
