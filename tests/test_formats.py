"""YOLO and Pascal VOC datasets: read directly, converted to and from COCO JSON.

The sets are made in the tests from COCO-format sets (the generated shapes set always, the
shared coco128 where it is present) by the writers, then read back and compared with the COCO
JSON they came from, box by box.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import yaml
from PIL import Image

from ghostdet.data import DataError, build_coco_datasets, make_synthetic_coco
from ghostdet.data.coco import CocoDetection
from ghostdet.data.convert import write_coco_json, write_voc, write_yolo
from ghostdet.data.formats import detect_format, read_split, read_voc, read_yolo, yolo_label_path
from ghostdet.data.validation import read_annotations

COCO128 = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco128"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    paths = make_synthetic_coco(root, num_train=6, num_val=4, image_size=(48, 64), seed=3)
    return {k: Path(v) for k, v in paths.items()}


def _sets() -> list[tuple[str, str, str]]:
    out = [("shapes", "val_ann", "val_images")]
    if COCO128.is_dir():
        out.append(("coco128", "annotations/instances_train2017.json", "train2017"))
    return out


def _coco(name: str, shapes: dict[str, Path], ann: str, images: str) -> tuple[Path, Path]:
    if name == "shapes":
        return shapes[ann], shapes[images]
    return COCO128 / ann, COCO128 / images


def _boxes(data: dict, names_of: dict[int, str], crowd: bool) -> dict[str, list[tuple[str, list[float]]]]:
    """file name -> sorted (class name, bbox) of the (non-)crowd annotations."""
    file_of = {im["id"]: Path(im["file_name"]).name for im in data["images"]}
    out: dict[str, list] = {f: [] for f in file_of.values()}
    for a in data["annotations"]:
        if bool(a.get("iscrowd", 0)) == crowd:
            out[file_of[a["image_id"]]].append((names_of[a["category_id"]], [float(v) for v in a["bbox"]]))
    return {k: sorted(v) for k, v in out.items()}


def _close(a: dict, b: dict, tol: float) -> None:
    """Every image has the same boxes (each matched to the nearest of its class) within ``tol``."""
    assert a.keys() == b.keys()
    for f in a:
        assert sorted(n for n, _ in a[f]) == sorted(n for n, _ in b[f]), f
        left = list(b[f])
        for name, x in a[f]:
            err, j = min(
                (max(abs(u - v) for u, v in zip(x, y)), j) for j, (n, y) in enumerate(left) if n == name
            )
            assert err <= tol, (f, name, x, left[j][1])
            left.pop(j)


@pytest.mark.parametrize("name,ann,images", _sets(), ids=[s[0] for s in _sets()])
def test_coco_to_yolo_and_back_keeps_boxes_and_names(tmp_path, shapes, name, ann, images):
    ann_file, img_dir = _coco(name, shapes, ann, images)
    ref, _ = read_annotations(ann_file, img_dir, min_box_size=0.0)
    summary = write_yolo(ann_file, img_dir, tmp_path / "yolo", split="val")
    assert detect_format(tmp_path / "yolo") == "yolo"
    src = read_yolo(tmp_path / "yolo" / "data.yaml", "val")
    names = [c["name"] for c in ref["categories"]]
    assert [c["name"] for c in src.data["categories"]] == names
    n_crowd = sum(1 for a in ref["annotations"] if a.get("iscrowd"))
    assert summary["crowd_left_out"] == n_crowd
    ref_names = {c["id"]: c["name"] for c in ref["categories"]}
    got_names = {c["id"]: c["name"] for c in src.data["categories"]}
    # YOLO keeps 6 decimals of the normalised values: within 1e-6 * 2 * the largest side
    side = max(max(im["width"], im["height"]) for im in ref["images"])
    _close(_boxes(src.data, got_names, False), _boxes(ref, ref_names, False), 2e-6 * side + 1e-9)
    # and back to COCO JSON
    out = write_coco_json(tmp_path / "yolo", tmp_path / "back.json", split="val")
    back = json.loads((tmp_path / "back.json").read_text())
    assert out["images_dir"] == str((tmp_path / "yolo").absolute()) and len(back["images"]) == len(
        ref["images"]
    )
    assert [c["name"] for c in back["categories"]] == names
    assert (Path(out["images_dir"]) / back["images"][0]["file_name"]).is_file()


@pytest.mark.parametrize("name,ann,images", _sets(), ids=[s[0] for s in _sets()])
def test_coco_to_voc_and_back_keeps_boxes_crowd_as_difficult(tmp_path, shapes, name, ann, images):
    ann_file, img_dir = _coco(name, shapes, ann, images)
    ref, _ = read_annotations(ann_file, img_dir, min_box_size=0.0)
    write_voc(ann_file, img_dir, tmp_path / "voc", split="val")
    assert detect_format(tmp_path / "voc") == "voc"
    src = read_voc(tmp_path / "voc", "val")
    ref_names = {c["id"]: c["name"] for c in ref["categories"]}
    got_names = {c["id"]: c["name"] for c in src.data["categories"]}
    assert [c["name"] for c in src.data["categories"]] == sorted(
        {ref_names[a["category_id"]] for a in ref["annotations"]}
    )
    # VOC keeps whole pixels: every side within one pixel after rounding both corners
    for crowd in (False, True):
        _close(_boxes(src.data, got_names, crowd), _boxes(ref, ref_names, crowd), 1.0)
    # "difficult" objects trained on: nothing is crowd any more
    as_objects = read_voc(tmp_path / "voc", "val", difficult="object")
    assert not any(a["iscrowd"] for a in as_objects.data["annotations"])


def test_dataset_from_yolo_equals_the_coco_json(tmp_path, shapes):
    """build_coco_datasets on a data.yaml gives the same training targets as on the COCO JSON."""
    for split in ("train", "val"):
        write_yolo(shapes[f"{split}_ann"], shapes[f"{split}_images"], tmp_path / "yolo", split=split)
    train_y, val_y = build_coco_datasets(data_path=tmp_path / "yolo" / "data.yaml")
    train_c, val_c = build_coco_datasets(data_path=shapes["root"])
    for ds_y, ds_c in ((train_y, train_c), (val_y, val_c)):
        assert len(ds_y) == len(ds_c) and ds_y.category_names == ds_c.category_names
        for i in range(len(ds_c)):
            (img_y, t_y), (img_c, t_c) = ds_y[i], ds_c[i]
            assert Path(ds_y.image_path(i)).name == Path(ds_c.image_path(i)).name
            assert (img_y == img_c).all()
            assert (t_y["labels"] == t_c["labels"]).all()
            assert (t_y["boxes"] - t_c["boxes"]).abs().max().item() <= 1e-3 if len(t_c["boxes"]) else True


def _tiny_yolo(root: Path, rows: dict[str, str | None], names=("a", "b")) -> Path:
    """images/train/*.png (64x32) with the given label rows (None: no label file)."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for stem, text in rows.items():
        Image.new("RGB", (64, 32), (90, 90, 200)).save(root / "images" / "train" / f"{stem}.png")
        if text is not None:
            (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    (root / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train", "val": "images/train", "names": list(names)})
    )
    return root / "data.yaml"


def test_yolo_rows_are_read_and_bad_rows_counted(tmp_path):
    data_yaml = _tiny_yolo(
        tmp_path,
        {
            "good": "0 0.5 0.5 0.25 0.5\n1 0.25 0.5 0.5 1.0\n",
            "segment": "1 0.1 0.2 0.3 0.2 0.3 0.6 0.1 0.6\n",
            "bad": "0 0.5 0.5 0.25\n7 0.5 0.5 0.1 0.1\nx 1 2 3 4\n0 nan 0.5 0.1 0.1\n0 0.5 0.5 0 0.2\n",
            "none": None,
        },
    )
    src = read_yolo(data_yaml, "train")
    file_of = {im["id"]: im["file_name"] for im in src.data["images"]}
    by_file = {}
    for a in src.data["annotations"]:
        by_file.setdefault(Path(file_of[a["image_id"]]).stem, []).append(a)
    good = [(a["category_id"], a["bbox"]) for a in by_file["good"]]
    assert good == [(1, [24.0, 8.0, 16.0, 16.0]), (2, [0.0, 0.0, 32.0, 32.0])]  # 64x32 image
    seg = by_file["segment"][0]["bbox"]
    assert [round(v, 6) for v in seg] == [6.4, 6.4, 12.8, 12.8]
    ds = CocoDetection(None, None, source=src)
    counts = ds.report.counts
    assert counts["malformed"] == 2 and counts["unknown_category"] == 1 and counts["non_finite"] == 1
    assert counts["invalid_geometry"] == 1 and counts["no_label_file"] == 1
    with pytest.raises(DataError, match=r"data\.yaml"):
        CocoDetection(None, None, source=src, strict=True)


def test_yolo_paths_names_dict_list_files_and_links(tmp_path, monkeypatch):
    real = tmp_path / "real"
    _tiny_yolo(real, {"p1": "0 0.5 0.5 0.5 0.5\n", "p2": "1 0.5 0.5 0.5 0.5\n"})
    # a dataset linked into place: labels found beside the link's images/ -> labels/
    site = tmp_path / "site"
    site.mkdir()
    (site / "images").symlink_to(real / "images", target_is_directory=True)
    (site / "labels").symlink_to(real / "labels", target_is_directory=True)
    (site / "list.txt").write_text("./images/train/p2.png\n")
    cfg = {
        "path": "..",
        "train": ["site/images/train"],
        "val": "site/list.txt",
        "names": {0: "cat", 1: "dog"},
    }
    (site / "data.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path / "real")  # another working directory: the path is the YAML's
    train = read_split(Path("../site"), "train")
    assert [c["name"] for c in train.data["categories"]] == ["cat", "dog"]
    assert [im["file_name"] for im in train.data["images"]] == [
        os.path.join("site", "images", "train", f"p{i}.png") for i in (1, 2)
    ]
    val = read_split(tmp_path / "site" / "data.yaml", "val")
    assert len(val.data["images"]) == 1 and val.data["annotations"][0]["category_id"] == 2
    assert yolo_label_path("a/images/x/images/b.jpg") == Path("a/images/x/labels/b.txt")


def test_bad_yolo_and_voc_sets_are_one_error_naming_the_file(tmp_path):
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "data.yaml").write_text("names: 3\ntrain: images\n")
    with pytest.raises(DataError, match=r"data\.yaml: 'names' must be"):
        read_yolo(tmp_path / "y", "train")
    (tmp_path / "y" / "data.yaml").write_text("names: [a]\ntrain: nowhere\n")
    with pytest.raises(DataError, match=r"'train' path not found"):
        read_yolo(tmp_path / "y", "train")
    with pytest.raises(DataError, match=r"no 'val' split"):
        read_yolo(tmp_path / "y", "val")
    (tmp_path / "v" / "Annotations").mkdir(parents=True)
    (tmp_path / "v" / "JPEGImages").mkdir()
    with pytest.raises(DataError, match=r"VOC split list not found: .*val\.txt"):
        read_voc(tmp_path / "v", "val")


def test_voc_boxes_are_one_based(tmp_path):
    root = tmp_path / "voc"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(root / "JPEGImages" / "a.jpg")
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>40</width><height>30</height></size>"
        "<object><name>dog</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>10</xmax><ymax>5</ymax></bndbox></object>"
        "<object><name>cat</name><difficult>1</difficult><bndbox><xmin>5</xmin><ymin>6</ymin>"
        "<xmax>5</xmax><ymax>6</ymax></bndbox></object></annotation>"
    )
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    src = read_voc(root, "train")
    assert [c["name"] for c in src.data["categories"]] == ["cat", "dog"]
    a, b = src.data["annotations"]
    assert a["bbox"] == [0.0, 0.0, 10.0, 5.0] and a["category_id"] == 2 and a["iscrowd"] == 0  # 10 columns
    assert b["bbox"] == [4.0, 5.0, 1.0, 1.0] and b["iscrowd"] == 1  # a one-pixel difficult object
    assert math.isclose(a["area"], 50.0)


def test_writers_refuse_an_existing_split_and_never_touch_inputs(tmp_path, shapes):
    from ghostdet.errors import OutputError

    write_yolo(shapes["val_ann"], shapes["val_images"], tmp_path / "y", split="val")
    before = (tmp_path / "y" / "data.yaml").read_bytes()
    with pytest.raises(OutputError, match=r"already exists"):
        write_yolo(shapes["val_ann"], shapes["val_images"], tmp_path / "y", split="val")
    assert (tmp_path / "y" / "data.yaml").read_bytes() == before
    with pytest.raises(OutputError, match=r"refusing to write"):
        write_coco_json(tmp_path / "y", tmp_path / "y" / "data.yaml", split="val")


def test_eval_of_a_yolo_val_split_equals_the_coco_json(tmp_path, shapes):
    import torch

    from ghostdet.evaluation.evaluate import run_eval
    from tests.test_bad_input import _tiny_detector_checkpoint

    torch.set_num_threads(1)
    ck = _tiny_detector_checkpoint(tmp_path / "ck.pth")
    write_yolo(shapes["val_ann"], shapes["val_images"], tmp_path / "yolo", split="val")
    common = {"checkpoint": ck, "device": "cpu", "progress": False, "log": lambda s: None, "workers": 0}
    common["score_threshold"] = 0.0
    from_json = run_eval(
        val_images=shapes["val_images"], val_ann=shapes["val_ann"], output_dir=tmp_path / "a", **common
    )
    from_yolo = run_eval(data_path=tmp_path / "yolo", output_dir=tmp_path / "b", **common)
    # YOLO has no 'area' (COCO's small/medium/large split): the box area stands in for it, so the
    # size-free stats equal the original JSON's, and all twelve equal the converted JSON's
    for key in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100"):
        assert from_yolo[key] == pytest.approx(from_json[key], abs=1e-9), key
    conv = write_coco_json(tmp_path / "yolo", tmp_path / "conv.json", split="val")
    from_conv = run_eval(
        val_images=conv["images_dir"], val_ann=tmp_path / "conv.json", output_dir=tmp_path / "c", **common
    )
    assert from_yolo["stats"] == pytest.approx(from_conv["stats"], abs=1e-9)
    n_dets = len(json.loads((tmp_path / "a" / "detections.json").read_text()))
    assert n_dets > 0 and n_dets == len(json.loads((tmp_path / "b" / "detections.json").read_text()))


# ----------------------------------------------------------------------------- through the tools
def _tool(name: str):
    from tests.test_bad_input import _load_tool

    return _load_tool(name)


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_train_det_trains_one_epoch_on_a_yolo_or_voc_set(tmp_path, shapes, capsys, fmt):
    write = write_yolo if fmt == "yolo" else write_voc
    for split in ("train", "val"):
        write(shapes[f"{split}_ann"], shapes[f"{split}_images"], tmp_path / fmt, split=split)
    recipe = Path(__file__).resolve().parents[1] / "configs" / "retinanet_320_ghostnet_synthetic.yaml"
    argv = ["--data-path", str(tmp_path / fmt), "--config", str(recipe), "--width", "0.5", "--epochs", "1"]
    argv += [
        "--batch-size",
        "2",
        "--warmup-iters",
        "0",
        "--workers",
        "0",
        "--threads",
        "1",
        "--device",
        "cpu",
    ]
    argv += ["--output-dir", str(tmp_path / "run"), "--set", "vis_images=0"]
    assert _tool("train_det")(argv) == 0
    out = capsys.readouterr().out
    assert f"{len(json.loads(shapes['train_ann'].read_text())['images'])} train" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "AP" in metrics["final"]
    ckpt = __import__("torch").load(tmp_path / "run" / "checkpoint.pth", weights_only=True)
    names = [c["name"] for c in json.loads(shapes["val_ann"].read_text())["categories"]]
    assert sorted(ckpt["category_names"].values()) == sorted(names)


def test_convert_tool_round_trip_and_bad_yolo_is_one_line(tmp_path, shapes, capsys):
    convert = _tool("convert_dataset")
    argv = ["--to", "yolo", "--input", str(shapes["val_ann"]), "--images", str(shapes["val_images"]),
            "--output", str(tmp_path / "y"), "--split", "val"]  # fmt: skip
    assert convert(argv) == 0
    assert convert(["--input", str(tmp_path / "y"), "--output", str(tmp_path / "back.json")]) == 0
    out = capsys.readouterr().out
    assert f"relative to {(tmp_path / 'y').absolute()}" in out
    back = json.loads((tmp_path / "back.json").read_text())
    ref = json.loads(shapes["val_ann"].read_text())
    assert [c["name"] for c in back["categories"]] == [c["name"] for c in ref["categories"]]
    assert len(back["annotations"]) == len(ref["annotations"])
    (tmp_path / "y" / "data.yaml").write_text("names: 3\nval: images/val\n")
    before = (tmp_path / "y" / "data.yaml").read_bytes()
    assert convert(["--input", str(tmp_path / "y"), "--output", str(tmp_path / "again.json")]) == 2
    err = capsys.readouterr().err
    assert (
        "Traceback" not in err and len(err.strip().splitlines()) == 1 and "data.yaml: 'names' must be" in err
    )
    assert (tmp_path / "y" / "data.yaml").read_bytes() == before and not (tmp_path / "again.json").exists()
