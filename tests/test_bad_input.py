"""Bad data input: every class of problem is counted with example ids, or is one clear error.

One parametrised case per class of bad input (and its obvious neighbours): invalid annotation
and image entries (counted in the dataset's ``report``; a ``DataError`` under ``strict``),
malformed annotation files, empty splits, nonsense synthetic-generator arguments, and the same
through ``tools/train_det.py`` / ``tools/make_synthetic_coco.py`` (exit status 2, one message
naming the file, no traceback). Every case checks that no input file changed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image

from ghostdet.data import BadImageWarning, CocoDetection, DataError, build_coco_datasets, make_synthetic_coco
from ghostdet.data.coco import LENIENT_PROBLEMS, PROBLEMS

REPO = Path(__file__).resolve().parents[1]
_DEL = object()  # "remove this key" in a mutation


# ------------------------------------------------------------------------------- helpers
def _base() -> dict:
    """3 images of 48x40 pixels with one valid box each; categories 1 and 3."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 48, "height": 40} for i in (1, 2, 3)]
    anns = [
        {"id": 10 + i, "image_id": i, "category_id": 1, "bbox": [4, 4, 20, 16], "area": 320.0, "iscrowd": 0}
        for i in (1, 2, 3)
    ]
    return {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}],
    }


def _write(root: Path, data: dict | str | bytes, split: str = "train") -> tuple[Path, Path]:
    """Images of ``_base()`` under root/split/ and ``data`` as root/split.json."""
    img_dir = root / split
    img_dir.mkdir(parents=True, exist_ok=True)
    for i in (1, 2, 3):
        Image.new("RGB", (48, 40), (40 * i, 90, 200)).save(img_dir / f"{i}.png")
    ann = root / f"{split}.json"
    if isinstance(data, bytes):
        ann.write_bytes(data)
    else:
        ann.write_text(data if isinstance(data, str) else json.dumps(data))
    return img_dir, ann


def _mutate(entry: dict, change: dict) -> dict:
    out = dict(entry)
    for k, v in change.items():
        if v is _DEL:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


# ------------------------------------------------------------- invalid entries: the matrix
# (case, change of annotation 13 (image 3's only box) or None, change of image 3's entry or None,
#  problem class, expected example, image 3 counted as having lost all its boxes)
ENTRY_CASES = [
    ("negative_width", {"bbox": [4, 4, -5, 10]}, None, "invalid_geometry", "13", True),
    ("zero_height", {"bbox": [4, 4, 10, 0]}, None, "invalid_geometry", "13", True),
    ("box_right_of_image", {"bbox": [48, 4, 10, 10]}, None, "invalid_geometry", "13", True),
    ("box_above_image", {"bbox": [4, -30, 10, 20]}, None, "invalid_geometry", "13", True),
    ("nan_coordinate", {"bbox": [float("nan"), 4, 10, 10]}, None, "non_finite", "13", True),
    ("inf_size", {"bbox": [4, 4, float("inf"), 10]}, None, "non_finite", "13", True),
    ("nan_area", {"area": float("nan")}, None, "non_finite", "13", True),
    ("unknown_category", {"category_id": 42}, None, "unknown_category", "13", True),
    ("orphan_annotation", {"image_id": 999}, None, "orphan", "13", False),
    ("crowd", {"iscrowd": 1}, None, "crowd", "13", True),
    ("tiny_box", {"bbox": [4, 4, 0.5, 10]}, None, "tiny", "13", True),
    ("tiny_after_clipping", {"bbox": [47.5, 4, 10, 10]}, None, "tiny", "13", True),
    ("missing_bbox", {"bbox": _DEL}, None, "malformed", "13 (bbox not 4 numbers)", True),
    ("bbox_wrong_length", {"bbox": [1, 2, 3]}, None, "malformed", "13 (bbox not 4 numbers)", True),
    ("bbox_strings", {"bbox": ["4", "4", "10", "10"]}, None, "malformed", "13 (bbox not 4 numbers)", True),
    ("bbox_not_a_list", {"bbox": "4 4 10 10"}, None, "malformed", "13 (bbox not 4 numbers)", True),
    ("category_id_string", {"category_id": "1"}, None, "malformed", "13 (category_id not an integer)", True),
    ("image_id_missing", {"image_id": _DEL}, None, "malformed", "13 (image_id not an integer)", False),
    ("image_id_list", {"image_id": [3]}, None, "malformed", "13 (image_id not an integer)", False),
    ("category_id_bool", {"category_id": True}, None, "malformed", "13 (category_id not an integer)", True),
    ("annotation_id_missing", {"id": _DEL}, None, "malformed", "#2 (id not an integer)", True),
    ("duplicate_annotation_id", {"id": 11}, None, "malformed", "11 (duplicate id)", True),
    ("area_string", {"area": "big"}, None, "malformed", "13 (area not a number)", True),
    ("image_without_width", None, {"width": _DEL}, "malformed_image", "3 (width not a positive", False),
    ("image_negative_height", None, {"height": -40}, "malformed_image", "3 (height not a positive", False),
    ("image_id_string", None, {"id": "3"}, "malformed_image", "#2 (id not an integer)", False),
    ("image_duplicate_id", None, {"id": 2}, "malformed_image", "2 (duplicate id)", False),
    ("image_without_file_name", None, {"file_name": _DEL}, "malformed_image", "3 (file_name", False),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,ann_change,img_change,problem,example,lost", ENTRY_CASES, ids=[c[0] for c in ENTRY_CASES]
)
def test_invalid_entry_is_counted_or_strict_error(
    tmp_path, case, ann_change, img_change, problem, example, lost
):
    data = _base()
    if ann_change is not None:
        data["annotations"][2] = _mutate(data["annotations"][2], ann_change)
    if img_change is not None:
        data["images"][2] = _mutate(data["images"][2], img_change)
    images, ann = _write(tmp_path, data)
    before = _hashes(tmp_path)

    ds = CocoDetection(images, ann)
    rep = ds.report
    assert rep.counts[problem] == 1
    assert rep.examples[problem][0].startswith(example)
    # only this class (plus the consequences below) was counted; the two other boxes are kept
    consequences = {"lost_all_boxes"} | ({"orphan"} if img_change is not None else set())
    assert set(rep.counts) - consequences == {problem}
    assert rep.boxes == 2 and len(ds.coco.getAnnIds()) == 2 + (problem in LENIENT_PROBLEMS)
    assert ("lost_all_boxes" in rep.counts) == lost and rep.examples.get("lost_all_boxes", ["3"]) == ["3"]
    if img_change is not None:  # the broken image entry is left out, its annotation is an orphan
        assert len(ds) == 2 and rep.examples["orphan"] == ["13"]
    else:
        assert len(ds) == 3
        assert len(ds[ds.ids.index(3)][1]["boxes"]) == 0  # image 3 stays, as a negative
    summary = rep.summary()
    assert str(ann) in summary and f"1 {PROBLEMS[problem][1]}" in summary and example in summary

    if problem in LENIENT_PROBLEMS:  # normal COCO content: never an error
        assert CocoDetection(images, ann, strict=True).report.counts == rep.counts
    else:
        with pytest.raises(DataError) as err:
            CocoDetection(images, ann, strict=True)
        msg = str(err.value)
        assert msg.startswith(str(ann)) and f"1 {PROBLEMS[problem][1]}" in msg and example in msg
        assert "strict_data" in msg and "\n" not in msg
    assert _hashes(tmp_path) == before


def test_counts_every_entry_and_lists_a_few_examples(tmp_path):
    data = _base()
    data["annotations"] += [
        {"id": 100 + k, "image_id": 1, "category_id": 3, "bbox": [4, 4, -1.0 - k, 5]} for k in range(7)
    ]
    images, ann = _write(tmp_path, data)
    rep = CocoDetection(images, ann).report
    assert rep.counts == {"invalid_geometry": 7} and rep.boxes == 3
    assert rep.examples["invalid_geometry"] == ["100", "101", "102", "103", "104"]
    assert "7 annotations with invalid geometry" in rep.summary() and rep.errors() == {"invalid_geometry": 7}


def test_valid_file_reports_nothing_and_strict_accepts_it(tmp_path):
    images, ann = _write(tmp_path, _base())
    rep = CocoDetection(images, ann, strict=True).report
    assert rep.counts == {} and rep.boxes == 3 and (rep.images, rep.annotations) == (3, 3)
    assert "every entry is valid" in rep.summary()


def test_strict_requires_every_image_file(tmp_path):
    images, ann = _write(tmp_path, _base())
    (images / "2.png").unlink()
    before = _hashes(tmp_path)
    ds = CocoDetection(images, ann)  # lenient: found while loading, skipped and counted then
    assert "missing_image" not in ds.report.counts
    with pytest.warns(BadImageWarning, match="2.png"):
        assert ds[1] is None
    assert ds.skipped == 1
    with pytest.raises(DataError, match=r"1 missing image files, e\.g\. image ids 2") as err:
        CocoDetection(images, ann, strict=True)
    assert str(ann) in str(err.value)
    assert _hashes(tmp_path) == before


# ------------------------------------------------------------------ malformed annotation files
def _without(key: str) -> dict:
    data = _base()
    del data[key]
    return data


FILE_CASES = [
    ("not_json", "{not json", "not valid JSON"),
    ("empty_file", "", "not valid JSON"),
    ("not_utf8", b"\xff\xfe\x00\x81garbage", "not valid JSON"),
    ("json_list", "[1, 2]", "not a COCO instances JSON"),
    ("json_number", "42", "not a COCO instances JSON"),
    ("no_images", _without("images"), "not a COCO instances JSON"),
    ("no_annotations", _without("annotations"), "not a COCO instances JSON"),
    ("no_categories", _without("categories"), "not a COCO instances JSON"),
    ("images_not_a_list", {**_base(), "images": {"1": "a.png"}}, "'images' must be a list"),
    ("annotations_not_a_list", {**_base(), "annotations": "none"}, "'annotations' must be a list"),
    ("categories_empty", {**_base(), "categories": []}, "'categories' is empty"),
    ("category_without_id", {**_base(), "categories": [{"name": "a"}]}, "category entry #0 needs"),
    ("category_string_id", {**_base(), "categories": [{"id": "1", "name": "a"}]}, "category entry #0"),
    ("category_without_name", {**_base(), "categories": [{"id": 1}]}, "category entry #0"),
    ("category_twice", {**_base(), "categories": [{"id": 1, "name": "a"}] * 2}, "id 1 is listed twice"),
]  # fmt: skip


@pytest.mark.parametrize("case,content,expected", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_malformed_annotation_file_is_one_clear_error(tmp_path, case, content, expected):
    images, ann = _write(tmp_path, content)
    before = _hashes(tmp_path)
    for strict in (False, True):
        with pytest.raises(DataError) as err:
            CocoDetection(images, ann, strict=strict)
        assert expected in str(err.value) and str(ann) in str(err.value)
    assert isinstance(err.value, ValueError)
    assert _hashes(tmp_path) == before


# ------------------------------------------------------------------------------- empty splits
def _crowd_only() -> dict:
    data = _base()
    data["annotations"] = [{**a, "iscrowd": 1} for a in data["annotations"]]
    return data


SPLIT_CASES = [
    ("train_without_images", {**_base(), "images": [], "annotations": []}, {}, "'images' list is empty"),
    ("drop_empty_leaves_nothing", _crowd_only(), {"drop_empty_train": True}, "drop_empty removed all 3"),
    ("every_image_entry_invalid", {**_base(), "images": [{"id": 1}]}, {},
     "invalid: 1 malformed image entries, e.g. image ids 1 (file_name"),
]  # fmt: skip


@pytest.mark.parametrize("case,train,kwargs,expected", SPLIT_CASES, ids=[c[0] for c in SPLIT_CASES])
def test_split_without_images_is_an_error(tmp_path, case, train, kwargs, expected):
    train_images, train_ann = _write(tmp_path, train, "train")
    val_images, val_ann = _write(tmp_path, _base(), "val")
    before = _hashes(tmp_path)
    with pytest.raises(DataError, match="the train split has no images") as err:
        build_coco_datasets(
            train_images=train_images, train_ann=train_ann, val_images=val_images, val_ann=val_ann, **kwargs
        )
    assert expected in str(err.value) and str(train_ann) in str(err.value)
    assert _hashes(tmp_path) == before


# ---------------------------------------------------------------------- the synthetic generator
SYNTH_CASES = [
    ("no_train_images", {"num_train": 0}, "num_train must be an integer >= 1 (an empty split"),
    ("no_val_images", {"num_val": 0}, "num_val must be an integer >= 1"),
    ("negative_split", {"num_train": -3}, "num_train"),
    ("fractional_split", {"num_train": 2.5}, "num_train"),
    ("bool_split", {"num_val": True}, "num_val"),
    ("negative_image_size", {"image_size": -64}, "image_size"),
    ("negative_image_height", {"image_size": (-64, 64)}, "image_size"),
    ("image_size_three_values", {"image_size": (64, 64, 3)}, "image_size"),
    ("negative_seed", {"seed": -1}, "seed must be an integer >= 0"),
    ("no_categories", {"num_categories": 0}, "num_categories"),
    ("negative_object_size", {"object_size": (-8, 20)}, "object_size"),
    ("object_size_one_value", {"object_size": (20,)}, "object_size"),
    ("no_objects", {"max_objects": 0}, "max_objects"),
    ("empty_prob_above_one", {"empty_prob": 1.5}, "empty_prob"),
    ("overlap_negative", {"max_overlap_iou": -0.1}, "max_overlap_iou"),
    ("jpeg_quality_zero", {"jpeg_quality": 0}, "jpeg_quality"),
]  # fmt: skip


@pytest.mark.parametrize("case,kwargs,expected", SYNTH_CASES, ids=[c[0] for c in SYNTH_CASES])
def test_synthetic_generator_refuses_nonsense(tmp_path, case, kwargs, expected):
    args = {"num_train": 2, "num_val": 1, "image_size": 64, "object_size": (16, 24), **kwargs}
    with pytest.raises(ValueError) as err:
        make_synthetic_coco(tmp_path / "syn", **args)
    assert expected in str(err.value)
    assert not (tmp_path / "syn").exists()  # nothing written


TOOL_SYNTH_CASES = [
    ("num_train_zero", ["--num-train", "0"], "num_train"),
    ("num_val_zero", ["--num-val", "0"], "num_val"),
    ("negative_image_size", ["--image-size", "-64"], "image_size"),
    ("negative_seed", ["--seed", "-2"], "seed"),
    ("negative_min_object_size", ["--min-object-size", "-4"], "object_size"),
    ("empty_prob_two", ["--empty-prob", "2"], "empty_prob"),
]  # fmt: skip


@pytest.mark.parametrize("case,argv,expected", TOOL_SYNTH_CASES, ids=[c[0] for c in TOOL_SYNTH_CASES])
def test_make_synthetic_tool_refuses_nonsense(tmp_path, capsys, case, argv, expected):
    main = _load_tool("make_synthetic_coco")
    out = tmp_path / "syn"
    assert main(["--output", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and expected in err
    assert not out.exists()


def test_make_synthetic_tool_subprocess_empty_split(tmp_path):
    out = tmp_path / "syn"
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_synthetic_coco.py"), "--output", str(out),
         "--num-train", "0"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "num_train must be an integer >= 1" in r.stderr and not out.exists()


# ---------------------------------------------------------------------------- tools/train_det.py
def _train_argv(root: Path, *extra: str) -> list[str]:
    return [
        "--config", str(REPO / "configs" / "retinanet_ghostnet_synthetic.yaml"),
        "--width", "0.5", "--min-size", "48", "--max-size", "48", "--epochs", "1", "--batch-size", "2",
        "--train-images", str(root / "train"), "--train-ann", str(root / "train.json"),
        "--val-images", str(root / "val"), "--val-ann", str(root / "val.json"),
        "--warmup-iters", "0", "--workers", "0", "--threads", "1", "--device", "cpu",
        "--output-dir", str(root / "run"), "--set", "vis_images=0", *extra,
    ]  # fmt: skip


def _nan_box() -> dict:
    data = _base()
    data["annotations"][1]["bbox"] = [float("nan"), 4, 10, 10]
    return data


TRAIN_CASES = [
    ("strict_nan_box", _nan_box(), ["--strict-data"], ["train.json", "1 annotations with NaN/inf", "12"]),
    ("strict_orphan", {**_base(), "annotations": [{**_base()["annotations"][0], "image_id": 7}]},
     ["--strict-data"], ["train.json", "1 orphan annotations", "11"]),
    ("not_json", "{oops", [], ["train.json", "not valid JSON"]),
    ("no_annotations_key", _without("annotations"), [], ["train.json", "not a COCO instances JSON"]),
    ("train_without_images", {**_base(), "images": [], "annotations": []}, [], ["train.json", "no images"]),
    ("drop_empty_leaves_nothing", _crowd_only(), [], ["train.json", "drop_empty removed all 3"]),
]  # fmt: skip


@pytest.mark.parametrize("case,train,extra,expected", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_tool_bad_data_is_one_line_exit_2(tmp_path, capsys, case, train, extra, expected):
    _write(tmp_path, train, "train")
    _write(tmp_path, _base(), "val")
    before = _hashes(tmp_path)
    assert _load_tool("train_det")(_train_argv(tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert all(s in err for s in expected), err
    assert not (tmp_path / "run" / "checkpoint.pth").exists()
    assert {k: v for k, v in _hashes(tmp_path).items() if "/run/" not in k} == before


def test_train_tool_refuses_empty_synthetic_split(tmp_path, capsys):
    argv = [
        "--config", str(REPO / "configs" / "retinanet_ghostnet_synthetic.yaml"), "--device", "cpu",
        "--synthetic-root", str(tmp_path / "syn"), "--synthetic-num-train", "0",
        "--output-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    assert _load_tool("train_det")(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "num_train must be" in err
    assert not (tmp_path / "syn").exists()


def test_train_tool_subprocess_strict_error(tmp_path):
    _write(tmp_path, _nan_box(), "train")
    _write(tmp_path, _base(), "val")
    before = _hashes(tmp_path)
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_det.py"), *_train_argv(tmp_path, "--strict-data")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "train.json" in r.stderr and "NaN/inf" in r.stderr and "strict_data" in r.stderr
    assert {k: v for k, v in _hashes(tmp_path).items() if "/run/" not in k} == before


def test_train_epoch_without_usable_batch_stops_with_reason(tmp_path, capsys):
    """Every train image unreadable: the summary is logged, then one error line instead of KeyError."""
    _write(tmp_path, _nan_box(), "train")
    _write(tmp_path, _base(), "val")
    for p in (tmp_path / "train").glob("*.png"):
        p.write_bytes(b"not a png")
    before = _hashes(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadImageWarning)
        assert _load_tool("train_det")(_train_argv(tmp_path)) == 2
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err and len(cap.err.strip().splitlines()) == 1
    assert "epoch 1 had no usable batch" in cap.err and "unreadable (2 skipped" in cap.err
    log = (tmp_path / "run" / "log.txt").read_text()
    for text in (cap.out, log):  # the start-up summary: console and log.txt
        assert f"data {tmp_path / 'train.json'}" in text and "1 annotations with NaN/inf values" in text
        assert "e.g. annotation ids 12" in text and "images lost all their boxes" in text
    assert {k: v for k, v in _hashes(tmp_path).items() if "/run/" not in k} == before
