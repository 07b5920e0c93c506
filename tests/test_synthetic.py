"""Tests for the embedded synthetic COCO dataset (ghostdet.data.synthetic, tools/make_synthetic_coco.py)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from ghostdet.data import synthetic
from ghostdet.data.synthetic import SHAPE_CATEGORIES, ensure_synthetic_coco, make_synthetic_coco
from ghostdet.errors import OutputError

REPO = Path(__file__).resolve().parents[1]
SMALL = {"num_train": 8, "num_val": 4, "image_size": 96, "object_size": (20, 40)}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    a = make_synthetic_coco(tmp_path / "a", seed=3, **SMALL)
    make_synthetic_coco(tmp_path / "b", seed=3, **SMALL)
    make_synthetic_coco(tmp_path / "c", seed=4, **SMALL)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(fa) == 8 + 4 + 3  # images + two JSON files + manifest
    assert fa == fb
    assert set(fa) == set(fc)
    assert fa["annotations/instances_train.json"] != fc["annotations/instances_train.json"]
    jpgs = [k for k in fa if k.endswith(".jpg")]
    assert all(fa[k] != fc[k] for k in jpgs)
    assert set(a) == {"root", "train_images", "train_ann", "val_images", "val_ann", "manifest"}


def test_coco_json_is_valid_and_boxes_inside_images(tmp_path):
    paths = make_synthetic_coco(tmp_path, num_train=20, num_val=6, image_size=(64, 96), seed=1,
                                num_categories=6, object_size=(16, 40))  # fmt: skip
    for split, n in (("train", 20), ("val", 6)):
        coco = COCO(paths[f"{split}_ann"])
        assert len(coco.getImgIds()) == n
        assert [(c["id"], c["name"]) for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_CATEGORIES)
        assert all(c["supercategory"] == "shape" for c in coco.dataset["categories"])
        assert {"info", "licenses"} <= set(coco.dataset)
        for img in coco.dataset["images"]:
            with Image.open(Path(paths[f"{split}_images"]) / img["file_name"]) as im:
                assert im.size == (img["width"], img["height"]) == (96, 64)
                assert im.format == "JPEG" and im.mode == "RGB"
        anns = coco.dataset["annotations"]
        assert len({a["id"] for a in anns}) == len(anns)
        for a in anns:
            x, y, w, h = a["bbox"]
            assert x >= 0 and y >= 0 and w >= 1 and h >= 1
            assert x + w <= 96 and y + h <= 64
            assert a["iscrowd"] == 0
            assert 0 < a["area"] <= w * h
            assert a["category_id"] in {c for c, _ in SHAPE_CATEGORIES}


def test_boxes_are_tight_around_coloured_shapes(tmp_path, monkeypatch):
    """On a plain grey background, a shape's saturated pixels fill its box and touch all its sides."""
    monkeypatch.setattr(synthetic, "_background", lambda rng, h, w: np.full((h, w, 3), 128.0, np.float32))
    paths = make_synthetic_coco(tmp_path, num_train=12, num_val=1, image_size=128, seed=5, max_objects=1,
                                empty_prob=0.0, object_size=(30, 60), jpeg_quality=100)  # fmt: skip
    data = json.loads(Path(paths["train_ann"]).read_text())
    for img, ann in zip(data["images"], data["annotations"]):
        assert ann["image_id"] == img["id"]
        rgb = np.asarray(Image.open(Path(paths["train_images"]) / img["file_name"]), dtype=np.float32)
        sat = rgb.max(-1) - rgb.min(-1)  # grey background ~0 (+noise), shapes >= ~80
        x, y, w, h = (int(v) for v in ann["bbox"])
        inside = sat[y : y + h, x : x + w] > 50
        assert inside.sum() > 0.8 * ann["area"]
        outside = (sat > 50).sum() - inside.sum()
        assert outside < 0.05 * ann["area"]
        rows, cols = np.nonzero(inside)
        assert rows.min() <= 2 and rows.max() >= h - 3 and cols.min() <= 2 and cols.max() >= w - 3


def test_some_images_are_empty_and_ids_are_split_unique(tmp_path):
    paths = make_synthetic_coco(tmp_path, num_train=30, num_val=10, image_size=64, seed=0, empty_prob=0.5,
                                object_size=(16, 24))  # fmt: skip
    train = json.loads(Path(paths["train_ann"]).read_text())
    val = json.loads(Path(paths["val_ann"]).read_text())
    with_boxes = {a["image_id"] for a in train["annotations"]}
    n_empty = sum(1 for im in train["images"] if im["id"] not in with_boxes)
    assert 0 < n_empty < 30
    assert not {im["id"] for im in train["images"]} & {im["id"] for im in val["images"]}


def test_bad_parameters_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        make_synthetic_coco(tmp_path / "x", image_size=8)
    with pytest.raises(ValueError, match="num_categories"):
        make_synthetic_coco(tmp_path / "x", num_categories=7)
    with pytest.raises(ValueError, match="object_size"):
        make_synthetic_coco(tmp_path / "x", object_size=(40, 20))
    assert not (tmp_path / "x").exists()


def test_option_defaults_match_signature():
    sig = inspect.signature(make_synthetic_coco)
    for name, default in synthetic._OPTION_DEFAULTS.items():
        assert sig.parameters[name].default == default, name


def test_ensure_generates_once_and_regenerates_on_change(tmp_path):
    root = tmp_path / "syn"
    p1 = ensure_synthetic_coco(root, seed=0, **SMALL)
    ann = Path(p1["train_ann"])
    first = ann.stat().st_mtime_ns
    p2 = ensure_synthetic_coco(root, seed=0, **SMALL)
    assert p2 == p1 and ann.stat().st_mtime_ns == first  # untouched

    ensure_synthetic_coco(root, seed=0, **{**SMALL, "num_train": 5})
    assert len(json.loads(ann.read_text())["images"]) == 5
    assert len(list(Path(p1["train_images"]).glob("*.jpg"))) == 5  # stale images removed

    # an interrupted generation leaves the manifest it writes first, marked partial
    manifest = Path(p1["manifest"])
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "partial": True}))
    ensure_synthetic_coco(root, seed=0, **SMALL)
    assert "partial" not in json.loads(manifest.read_text())
    assert len(json.loads(ann.read_text())["images"]) == SMALL["num_train"]

    with pytest.raises(TypeError, match="bogus"):
        ensure_synthetic_coco(root, bogus=1)


def test_ensure_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("do not delete")
    with pytest.raises(OutputError, match=r"mine\.txt"):
        ensure_synthetic_coco(tmp_path, **SMALL)
    assert (tmp_path / "mine.txt").read_text() == "do not delete"


def _real_dataset(root: Path) -> dict[str, str]:
    """A user's COCO-layout folder (train/ val/ annotations/, the layout --data-path reads)."""
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / split / "photo.jpg").write_bytes(b"\xff\xd8 user photo " + split.encode())
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train.json").write_text('{"images": []}')
    return {str(p): p.read_bytes().hex() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("call", ["ensure", "make"])
def test_a_real_dataset_folder_is_never_replaced(tmp_path, call):
    root = tmp_path / "coco"
    before = _real_dataset(root)
    fn = ensure_synthetic_coco if call == "ensure" else make_synthetic_coco
    with pytest.raises(OutputError, match=r"annotations, train, val.*left untouched"):
        fn(root, **SMALL)
    assert {str(p): p.read_bytes().hex() for p in sorted(root.rglob("*")) if p.is_file()} == before


def test_train_tool_synthetic_root_on_a_real_dataset_is_one_line(tmp_path):
    root = tmp_path / "coco"
    before = _real_dataset(root)
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_det.py"), "--synthetic-root", str(root),
         "--epochs", "1", "--output-dir", str(tmp_path / "run")],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert str(root) in r.stderr and "left untouched" in r.stderr
    assert {str(p): p.read_bytes().hex() for p in sorted(root.rglob("*")) if p.is_file()} == before


def test_tool_writes_dataset_and_reports_bad_input(tmp_path):
    tool = REPO / "tools" / "make_synthetic_coco.py"
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, str(tool), "--output", str(out), "--num-train", "3", "--num-val", "2",
         "--image-size", "48", "64", "--seed", "7", "--min-object-size", "12", "--max-object-size", "24"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert str(out / "train") in r.stdout
    data = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert len(data["images"]) == 2 and data["images"][0]["height"] == 48 and data["images"][0]["width"] == 64
    assert len(list((out / "train").glob("*.jpg"))) == 3


def _tool_main():
    spec = importlib.util.spec_from_file_location(
        "make_synthetic_coco_tool", REPO / "tools" / "make_synthetic_coco.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def test_tool_bad_input_is_one_line_and_help_lists_flags(tmp_path, capsys):
    main = _tool_main()
    assert main(["--output", str(tmp_path / "bad"), "--image-size", "10"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "image_size" in err
    assert not (tmp_path / "bad").exists()

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--output", "--num-train", "--num-val", "--image-size", "--seed", "--num-categories"):
        assert flag in out
