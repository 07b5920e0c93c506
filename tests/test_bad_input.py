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
from ghostdet.data.validation import LENIENT_PROBLEMS, PROBLEMS
from ghostdet.errors import ArgumentError, GhostdetError, InputError

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
        "--config", str(REPO / "configs" / _RECIPE),
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
        "--config", str(REPO / "configs" / _RECIPE), "--device", "cpu",
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
    assert "train.json" in r.stderr and "NaN/inf" in r.stderr and "strict_data is on" in r.stderr
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


# ===================================================================== the tools' one error path
# Every tool: a bad input is one line "prog: error: ..." naming the file or key and its flag, exit
# status 2, no traceback (unless --debug), and no input file changes.
def _one_error_line(err: str, *expected: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and ": error: " in lines[0], err
    assert all(s in lines[0] for s in expected), err


def _tiny_data(root: Path) -> None:
    _write(root, _base(), "train")
    _write(root, _base(), "val")


class _Reduce:
    """A pickle that would run code on loading (weights-only loading refuses it)."""

    def __reduce__(self):
        return (print, ("pwned",))


def _weights_file(root: Path, kind: str) -> Path:
    """A bad weights file of one class."""
    import torch

    from ghostdet.models import ghostnet

    if kind == "truncated":
        good = root / "good.pth"
        torch.save(ghostnet(width=0.3).state_dict(), good)
        path = root / "truncated.pth"
        path.write_bytes(good.read_bytes()[:5000])
        good.unlink()
    elif kind == "pickle_with_code":
        path = root / "code.pth"
        torch.save({"x": _Reduce()}, path)
    elif kind == "wrong_width":
        path = root / "w03.pth"
        torch.save(ghostnet(width=0.3).state_dict(), path)
    elif kind == "garbage_safetensors":
        path = root / "garbage.safetensors"
        path.write_bytes(b"\x00\x01not a safetensors file" * 20)
    elif kind == "not_a_state_dict":
        path = root / "list.pth"
        torch.save([1, 2, 3], path)
    elif kind == "no_tensors":
        path = root / "empty.pth"
        torch.save({"epoch": 3}, path)
    elif kind == "missing":
        path = root / "nowhere.pth"
    else:
        raise AssertionError(kind)
    return path


WEIGHTS_CASES = [
    ("truncated", "could not read checkpoint"),
    ("pickle_with_code", "weights-only loading refuses"),
    ("wrong_width", "shape mismatch"),
    ("garbage_safetensors", "could not read checkpoint"),
    ("not_a_state_dict", "expected a dict of tensors"),
    ("no_tensors", "no tensors"),
    ("missing", "not found"),
]


@pytest.mark.parametrize("kind,expected", WEIGHTS_CASES, ids=[c[0] for c in WEIGHTS_CASES])
def test_train_tool_bad_weights_backbone_is_one_line(tmp_path, capsys, kind, expected):
    _tiny_data(tmp_path)
    weights = _weights_file(tmp_path, kind)
    before = _hashes(tmp_path)
    assert _load_tool("train_det")(_train_argv(tmp_path, "--weights-backbone", str(weights))) == 2
    cap = capsys.readouterr()
    _one_error_line(cap.err, "--weights-backbone", weights.name, expected)
    assert "weights=" not in cap.err and "pwned" not in cap.out + cap.err
    assert not (tmp_path / "run" / "checkpoint.pth").exists()
    assert {k: v for k, v in _hashes(tmp_path).items() if "/run/" not in k} == before


def test_train_tool_imagenet_offline_is_one_line_with_the_flag(tmp_path, capsys, monkeypatch):
    """'imagenet' without network: the URL, the cache path and --weights-backbone, no traceback."""
    import urllib.error

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr("ghostdet.models.weights._download_to_file", offline)
    _tiny_data(tmp_path)
    argv = _train_argv(tmp_path, "--weights-backbone", "imagenet")
    argv[argv.index("--width") + 1] = "1.0"  # the published width
    assert _load_tool("train_det")(argv) == 2
    err = capsys.readouterr().err
    _one_error_line(err, "--weights-backbone", "could not download weights from https://", "ghostnet_1x.pth")
    assert "weights=" not in err


def test_train_tool_imagenet_at_unpublished_width_names_the_flag(tmp_path, capsys):
    _tiny_data(tmp_path)
    assert _load_tool("train_det")(_train_argv(tmp_path, "--weights-backbone", "imagenet")) == 2
    err = capsys.readouterr().err
    _one_error_line(err, "--weights-backbone", "no published ImageNet weights", "width 0.5")
    assert "weights=" not in err


def test_train_tool_debug_prints_the_traceback(tmp_path, capsys):
    _tiny_data(tmp_path)
    weights = _weights_file(tmp_path, "garbage_safetensors")
    argv = _train_argv(tmp_path, "--weights-backbone", str(weights), "--debug")
    assert _load_tool("train_det")(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "CheckpointReadError" in err
    assert err.strip().splitlines()[-1].startswith("train_det.py: error: --weights-backbone")


def test_train_tool_subprocess_bad_weights_backbone(tmp_path):
    _tiny_data(tmp_path)
    weights = _weights_file(tmp_path, "truncated")
    before = _hashes(tmp_path)
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_det.py"),
         *_train_argv(tmp_path, "--weights-backbone", str(weights))],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    _one_error_line(r.stderr, "train_det.py: error: --weights-backbone", str(weights))
    assert {k: v for k, v in _hashes(tmp_path).items() if "/run/" not in k} == before


# ---------------------------------------------------------------------------- config keys and flags
_RECIPE = "retinanet_ghostnet_synthetic.yaml"
CONFIG_CASES = [
    ("set_unknown_key", ["--set", "no_such_key=1"], ["--set no_such_key=1", "known keys", "strict_data,"],
     _RECIPE),
    ("set_unknown_nested_key", ["--set", "synthetic.colour=red"],
     ["--set synthetic.colour=red", "unknown config key 'synthetic.colour'"], _RECIPE),
    ("set_wrong_type", ["--set", "epochs=many"], ["--set epochs=many", "expected an integer"],
     _RECIPE),
    ("set_out_of_range", ["--set", "lr=-1"], ["--set lr=-1", "must be > 0"], _RECIPE),
    ("set_without_equals", ["--set", "epochs"], ["--set expects KEY=VALUE"], None),
    ("flag_out_of_range", ["--epochs", "0"], ["--epochs: must be >= 1"], _RECIPE),
    ("flag_with_underscore", ["--batch-size", "0"], ["--batch-size: must be >= 1"], None),
]  # fmt: skip


@pytest.mark.parametrize("case,extra,expected,absent", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_train_tool_config_error_names_its_source(tmp_path, capsys, case, extra, expected, absent):
    _tiny_data(tmp_path)
    before = _hashes(tmp_path)
    assert _load_tool("train_det")(_train_argv(tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    _one_error_line(err, *expected)
    if absent is not None:  # the value did not come from the recipe file: it is not blamed
        assert absent not in err
    assert _hashes(tmp_path) == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "recipe,expected",
    [("no_such_key: 1\n", "unknown config key 'no_such_key'"), ("epochs: -3\n", "epochs: must be >= 1")],
    ids=["unknown_key", "bad_value"],
)
def test_train_tool_recipe_error_names_the_file(tmp_path, capsys, recipe, expected):
    _tiny_data(tmp_path)
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(recipe)
    argv = _train_argv(tmp_path)
    argv[argv.index("--config") + 1] = str(cfg)
    argv.remove("--epochs")
    argv.remove("1")
    before = _hashes(tmp_path)
    assert _load_tool("train_det")(argv) == 2
    _one_error_line(capsys.readouterr().err, expected, str(cfg))
    assert _hashes(tmp_path) == before


# --------------------------------------------------------------------------------- resume guards
def _fake_checkpoint(path: Path, **change) -> Path:
    """A checkpoint dict as train_det writes it (metadata of a width-0.5 RetinaNet on _base())."""
    import torch

    ckpt = {"model": {}, "epoch": 1, "detector": "retinanet_ghostnet_fpn", "width": 0.5, "num_classes": 3,
            "config": {"detector": "retinanet", "width": 0.5}}  # fmt: skip
    ckpt.update(change)
    torch.save(ckpt, path)
    return path


RESUME_CASES = [
    ("other_detector", {"detector": "fasterrcnn_ghostnet_fpn"}, "detector 'fasterrcnn_ghostnet_fpn'"),
    ("other_width", {"width": 1.1}, "width 1.1"),
    ("other_backbone", {"config": {"backbone": "ghostnetv9"}}, "backbone 'ghostnetv9'"),
    ("other_class_count", {"num_classes": 7}, "classes incl. background 7"),
    ("weights_do_not_fit", {}, "weights do not fit"),
    ("not_a_training_checkpoint", {"epoch": _DEL}, "not a tools/train_det.py checkpoint"),
]


@pytest.mark.parametrize("case,change,expected", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_train_tool_resume_of_another_model_is_one_line(tmp_path, capsys, case, change, expected):
    import torch

    _tiny_data(tmp_path)
    path = tmp_path / "other.pth"
    _fake_checkpoint(path, **{k: v for k, v in change.items() if v is not _DEL})
    if any(v is _DEL for v in change.values()):
        ckpt = torch.load(path, weights_only=True)
        for k in [k for k, v in change.items() if v is _DEL]:
            del ckpt[k]
        torch.save(ckpt, path)
    before = _hashes(tmp_path)
    assert _load_tool("train_det")(_train_argv(tmp_path, "--resume", str(path))) == 2
    _one_error_line(capsys.readouterr().err, str(path), expected)
    assert not (tmp_path / "run" / "checkpoint.pth").exists()
    assert {k: v for k, v in _hashes(tmp_path).items() if "/run/" not in k} == before


# ------------------------------------------------------------------------------ SIGTERM in training
def _sigterm_during_save(monkeypatch, nth: int) -> list[int]:
    """torch.save's nth call writes a few bytes, then this process receives SIGTERM."""
    import os
    import signal
    import time

    import torch

    calls = [0]
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] != nth:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"partial checkpoint")
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(200):  # the handler runs in this (main) thread at the next bytecode
            time.sleep(0.01)
        raise AssertionError("SIGTERM was not delivered")

    monkeypatch.setattr(torch, "save", save)
    return calls


@pytest.mark.parametrize("epochs,nth", [(1, 1), (2, 2)], ids=["first_save", "second_save"])
def test_train_tool_sigterm_cleans_up_and_keeps_the_last_checkpoint(
    tmp_path, capsys, monkeypatch, epochs, nth
):
    """SIGTERM while a checkpoint is written: no temp file, a message, the previous checkpoint kept,
    and the resume hint only when there is something to resume."""
    import signal

    _tiny_data(tmp_path)
    before = _hashes(tmp_path)
    _sigterm_during_save(monkeypatch, nth)
    handler = signal.getsignal(signal.SIGTERM)
    argv = _train_argv(tmp_path, "--set", "eval_every=0")
    argv[argv.index("--epochs") + 1] = str(epochs)
    assert _load_tool("train_det")(argv) == 143
    err = capsys.readouterr().err
    assert "Traceback" not in err and "terminated (SIGTERM)" in err
    run = tmp_path / "run"
    assert not [p.name for p in run.iterdir() if ".tmp-" in p.name]
    if nth == 1:
        assert "nothing to resume" in err and "--resume auto" not in err
        assert not (run / "checkpoint.pth").exists()
    else:
        assert "resume with --resume auto" in err and str(run / "checkpoint.pth") in err
        import torch

        assert torch.load(run / "checkpoint.pth", weights_only=True)["epoch"] == 1
    assert signal.getsignal(signal.SIGTERM) is handler  # the tool's handler is gone again
    assert {k: v for k, v in _hashes(tmp_path).items() if "/run/" not in k} == before


# ------------------------------------------------------------------------------------ tools/infer.py
def _images(root: Path) -> Path:
    folder = root / "photos"
    folder.mkdir()
    for i in (1, 2):
        Image.new("RGB", (40, 32), (60 * i, 20, 90)).save(folder / f"p{i}.png")
    return folder


INFER_CASES = [
    ("output_is_the_input_folder", lambda d: d, "holds the input image"),
    ("output_is_the_input_folder_spelled_otherwise", lambda d: d / ".." / d.name, "holds the input image"),
    ("output_is_an_input_file", lambda d: d / "p1.png", "is a file"),
    ("output_under_a_file", lambda d: d / "p1.png" / "out", "is under the file"),
]


@pytest.mark.parametrize("case,out,expected", INFER_CASES, ids=[c[0] for c in INFER_CASES])
def test_infer_refuses_to_overwrite_inputs(tmp_path, capsys, case, out, expected):
    folder = _images(tmp_path)
    before = _hashes(tmp_path)
    out_dir = out(folder)
    argv = ["--model", "fasterrcnn", "--weights", str(tmp_path / "unused.pth"), str(folder),
            "--output-dir", str(out_dir), "--device", "cpu"]  # fmt: skip
    assert _load_tool("infer")(argv) == 2
    _one_error_line(capsys.readouterr().err, "infer.py: error: --output-dir", expected)
    assert _hashes(tmp_path) == before


def _links_to_photos(folder: Path) -> Path:
    """A folder of symbolic links to the photos (a user's selection)."""
    sel = folder.parent / "sel"
    sel.mkdir()
    for p in sorted(folder.iterdir()):
        (sel / p.name).symlink_to(p)
    return sel


LINK_CASES = [
    # (input, output folder): the same photos reached through links
    ("folder_of_symlinks_as_input_and_output", "sel", "sel"),
    ("output_is_a_symlink_to_the_input_folder", "photos", "link"),
    ("input_through_a_linked_folder", "link", "photos"),
]


@pytest.mark.parametrize("case,given,out", LINK_CASES, ids=[c[0] for c in LINK_CASES])
def test_infer_refuses_inputs_reached_through_links(tmp_path, capsys, case, given, out):
    folder = _images(tmp_path)
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    _links_to_photos(folder)
    before = _hashes(folder)
    argv = ["--model", "fasterrcnn", "--weights", str(tmp_path / "unused.pth"), str(tmp_path / given),
            "--output-dir", str(tmp_path / out), "--device", "cpu"]  # fmt: skip
    assert _load_tool("infer")(argv) == 2
    _one_error_line(capsys.readouterr().err, "infer.py: error: --output-dir", "holds the input image")
    assert _hashes(folder) == before


def _tiny_detector_checkpoint(path: Path) -> Path:
    import torch

    from ghostdet.models import get_model

    torch.manual_seed(0)
    model = get_model("fasterrcnn_ghostnet_320_fpn", num_classes=2, width=0.5, min_size=64, max_size=64)
    cfg = {"detector": "fasterrcnn_ghostnet_320_fpn", "width": 0.5, "min_size": 64, "max_size": 64}
    ckpt = {"model": model.state_dict(), "epoch": 0, "config": cfg, "detector": cfg["detector"], "width": 0.5}
    torch.save({**ckpt, "num_classes": 2}, path)
    return path


def test_infer_never_writes_an_input_or_through_a_link(tmp_path, capsys):
    folder = _images(tmp_path)
    ckpt = _tiny_detector_checkpoint(tmp_path / "ck.pth")
    notes = tmp_path / "notes.txt"
    notes.write_text("a user's file")
    out = tmp_path / "out"
    out.mkdir()
    (out / "p1.json").symlink_to(notes)  # a link in the output folder: replaced, never written through
    before = _hashes(folder)
    infer = _load_tool("infer")
    argv = [str(ckpt), str(folder), "--output-dir", str(out), "--device", "cpu", "--score-threshold", "0"]
    assert infer(argv) == 0
    capsys.readouterr()
    assert notes.read_text() == "a user's file" and not (out / "p1.json").is_symlink()
    assert json.loads((out / "p1.json").read_text())["file"] == str(folder / "p1.png")

    # a hard link of an input where a drawn copy goes: refused before it is replaced
    (out / "p2.png").unlink()
    (out / "p2.png").hardlink_to(folder / "p2.png")
    assert infer(argv) == 2
    _one_error_line(capsys.readouterr().err, "infer.py: error:", f"{out / 'p2.png'}", "the same file as")
    assert _hashes(folder) == before
    assert (out / "p2.png").samefile(folder / "p2.png")


EVAL_OVERWRITE_CASES = [
    # (output file made a link to an input, how, argv extras)
    ("metrics_json_is_a_symlink_to_the_results", "metrics.json", "symlink", "results"),
    ("metrics_json_is_a_hard_link_to_the_annotations", "metrics.json", "hardlink", "ann"),
    ("detections_json_is_the_annotation_file", "detections.json", "same", "model"),
]


@pytest.mark.parametrize("case,name,how,mode", EVAL_OVERWRITE_CASES, ids=[c[0] for c in EVAL_OVERWRITE_CASES])
def test_eval_never_writes_an_input(tmp_path, capsys, case, name, how, mode):
    img_dir, ann = _write(tmp_path, _base(), "val")
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 16], "score": 0.9}]))
    out = tmp_path / "out"
    out.mkdir()
    source = results if mode == "results" else ann
    if how == "symlink":
        (out / name).symlink_to(source)
    elif how == "hardlink":
        (out / name).hardlink_to(source)
    else:  # the annotation file itself lies in the output folder under the output's name
        ann = ann.rename(out / name)
    before = _hashes(tmp_path)
    argv = ["--val-ann", str(ann), "--output-dir", str(out), "--device", "cpu"]
    if mode == "model":
        argv += [
            "--checkpoint",
            str(_tiny_detector_checkpoint(tmp_path / "ck.pth")),
            "--val-images",
            str(img_dir),
        ]
        before = _hashes(tmp_path)
    else:
        argv += ["--results", str(results)]
    assert _load_tool("eval_det")(argv) == 2
    _one_error_line(capsys.readouterr().err, "eval_det.py: error:", f"refusing to write {out / name}")
    assert _hashes(tmp_path) == before


def test_infer_subprocess_refuses_output_dir_equal_to_input(tmp_path):
    folder = _images(tmp_path)
    before = _hashes(tmp_path)
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "infer.py"), "--model", "fasterrcnn", "--weights",
         str(tmp_path / "unused.pth"), str(folder / "p1.png"), "--output-dir", str(folder)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 2
    _one_error_line(r.stderr, "--output-dir", str(folder / "p1.png"), "would overwrite")
    assert _hashes(tmp_path) == before


# --------------------------------------------------------------------- tools/eval_det.py, export_onnx.py
def test_eval_tool_garbage_safetensors_is_one_line(tmp_path, capsys):
    _write(tmp_path, _base(), "val")
    weights = _weights_file(tmp_path, "garbage_safetensors")
    before = _hashes(tmp_path)
    argv = ["--model", "fasterrcnn", "--weights", str(weights), "--val-images", str(tmp_path / "val"),
            "--val-ann", str(tmp_path / "val.json"), "--device", "cpu", "--workers", "0",
            "--output-dir", str(tmp_path / "eval")]  # fmt: skip
    assert _load_tool("eval_det")(argv) == 2
    _one_error_line(capsys.readouterr().err, "eval_det.py: error:", str(weights))
    assert _hashes(tmp_path) == before


def test_eval_warns_when_the_ground_truth_has_no_annotations(tmp_path, capsys):
    _write(tmp_path, {**_base(), "annotations": []}, "val")
    results = tmp_path / "dets.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 16], "score": 0.9}]))
    before = _hashes(tmp_path)
    argv = ["--results", str(results), "--val-ann", str(tmp_path / "val.json"), "--output-dir",
            str(tmp_path / "eval")]  # fmt: skip
    assert _load_tool("eval_det")(argv) == 0
    out = capsys.readouterr().out
    assert "warning: the annotation file has no ground-truth annotations" in out
    assert "says nothing about the model" in out
    assert {k: v for k, v in _hashes(tmp_path).items() if "/eval/" not in k} == before


@pytest.mark.parametrize("kind", ["truncated", "wrong_width", "not_a_state_dict"])
def test_export_tool_bad_weights_is_one_line(tmp_path, capsys, kind):
    weights = _weights_file(tmp_path, kind)
    before = _hashes(tmp_path)
    argv = ["--model", "classifier", "--width", "0.5", "--weights", str(weights), "--out",
            str(tmp_path / "x.onnx"), "--no-verify"]  # fmt: skip
    assert _load_tool("export_onnx")(argv) == 2
    _one_error_line(capsys.readouterr().err, "export_onnx.py: error:", weights.name)
    assert _hashes(tmp_path) == before and not (tmp_path / "x.onnx").exists()


def test_export_tool_never_writes_over_its_weights(tmp_path, capsys):
    import torch

    from ghostdet.models import get_model

    weights = tmp_path / "w.pth"
    torch.save(get_model("ghostnet", width=0.5).state_dict(), weights)
    link = tmp_path / "w.onnx"
    link.symlink_to(weights)
    before = _hashes(tmp_path)
    for out in (weights, link):
        argv = [
            "--model",
            "classifier",
            "--width",
            "0.5",
            "--weights",
            str(weights),
            "--out",
            str(out),
            "--no-verify",
        ]
        assert _load_tool("export_onnx")(argv) == 2
        _one_error_line(
            capsys.readouterr().err, "export_onnx.py: error:", f"refusing to write {out}", "w.pth"
        )
    assert _hashes(tmp_path) == before


def test_visualize_never_writes_over_its_image(tmp_path, capsys):
    image = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(image)
    before = _hashes(tmp_path)
    argv = [str(image), "--model", "ghostnet_050", "--size", "64", "--output", str(image)]
    assert _load_tool("visualize_ghost_maps")(argv) == 2
    _one_error_line(capsys.readouterr().err, "visualize_ghost_maps.py: error:", f"refusing to write {image}")
    assert _hashes(tmp_path) == before


@pytest.mark.parametrize(
    "tool,argv",
    [("eval_det", ["--model", "fasterrcnn"]), ("infer", ["--model", "fasterrcnn", "x.jpg"]),
     ("export_onnx", ["--opset", "9"]), ("make_synthetic_coco", ["--num-train", "x"]),
     ("visualize_ghost_maps", []), ("compare_backbones", ["--runs", "0"]), ("paper_tables", ["--bogus"]),
     ("train_det", ["--epochs", "x"])],
    ids=lambda v: v if isinstance(v, str) else None,
)  # fmt: skip
def test_every_tool_usage_error_is_one_line_exit_2(capsys, tool, argv):
    with pytest.raises(SystemExit) as e:
        _load_tool(tool)(argv)
    assert e.value.code == 2
    _one_error_line(capsys.readouterr().err, "(see --help)")


# ------------------------------------------------------------------------ builders and fused models
_STAGES = "must be an integer in [0, 5]"
BUILDER_CASES = [
    ("retinanet_ghostnet_fpn", {"num_classes": 0}, "num_classes must be an integer >= 1"),
    ("retinanet_ghostnet_fpn", {"num_classes": 2.5}, "num_classes must be an integer >= 1"),
    ("retinanet_ghostnet_fpn", {"width": 0}, "width must be a finite number > 0"),
    ("fasterrcnn_ghostnet_fpn", {"width": -1.0}, "width must be a finite number > 0"),
    ("fasterrcnn_ghostnet_fpn", {"width": "1.0"}, "width must be a finite number > 0"),
    ("fasterrcnn_ghostnet_fpn", {"width": float("nan")}, "width must be a finite number > 0"),
    ("fasterrcnn_ghostnet_320_fpn", {"trainable_backbone_layers": 6}, "trainable_backbone_layers " + _STAGES),
    ("fasterrcnn_ghostnet_fpn", {"trainable_backbone_layers": -1}, "trainable_backbone_layers " + _STAGES),
    ("retinanet_ghostnet_fpn", {"fpn_channels": 0}, "fpn_channels must be an integer >= 1"),
    ("retinanet_ghostnet_fpn", {"weights_backbone": 3}, "weights_backbone must be 'imagenet', a URL"),
    ("retinanet_ghostnet_fpn", {"backbone": 1}, "backbone must be a family name"),
    ("ghostnet_fpn", {"trainable_layers": 9}, "trainable_layers must be an integer in [0, 5]"),
    ("ghostnet_fpn", {"out_channels": 0}, "out_channels must be an integer >= 1"),
    ("ghostnet_100", {"num_classes": 0}, "num_classes must be an integer >= 1"),
    ("ghostnet_100", {"dropout": 1.5}, "dropout must be a number in [0, 1)"),
    ("ghostnetv2", {"width": 0}, "width must be a finite number > 0"),
    ("ghostnetv3", {"num_classes": "10"}, "num_classes must be an integer >= 1"),
    ("vgg16_cifar", {"num_classes": 0}, "num_classes must be an integer >= 1"),
    ("resnet56_cifar", {"num_classes": True}, "num_classes must be an integer >= 1"),
]  # fmt: skip


@pytest.mark.parametrize(
    "name,kwargs,expected", BUILDER_CASES, ids=[f"{c[0]}-{next(iter(c[1]))}" for c in BUILDER_CASES]
)
def test_builders_refuse_nonsense_arguments(name, kwargs, expected):
    from ghostdet.models import get_model
    from ghostdet.models.ghostnetv2 import ghostnetv2
    from ghostdet.models.ghostnetv3 import ghostnetv3

    build = {"ghostnetv2": ghostnetv2, "ghostnetv3": ghostnetv3}.get(name, lambda **kw: get_model(name, **kw))
    with pytest.raises(ValueError) as e:
        build(**kwargs)
    assert expected in str(e.value) and "\n" not in str(e.value)


@pytest.fixture(scope="module")
def fused_classifier():
    import torch

    from ghostdet.deploy import fuse
    from ghostdet.models import ghostnet

    torch.manual_seed(0)
    return fuse(ghostnet(width=0.5, num_classes=10).eval(), native_kernels=False)


def test_fused_model_refuses_train(fused_classifier):
    with pytest.raises(RuntimeError, match="cannot train"):
        fused_classifier.train()
    fused_classifier.eval()  # eval mode stays allowed
    assert not any(m.training for m in fused_classifier.modules())


@pytest.mark.parametrize(
    "shape,expected",
    [((1, 1, 64, 64), r"4-D input \(N, 3, H, W\), got shape \(1, 1, 64, 64\)"),
     ((3, 64, 64), r"got shape \(3, 64, 64\) \(add a batch dimension"),
     ((1, 4, 64, 64), r"got shape \(1, 4, 64, 64\)"),
     ((1, 1, 3, 64, 64), r"got shape \(1, 1, 3, 64, 64\)")],
    ids=["one_channel", "three_d", "four_channels", "five_d"],
)  # fmt: skip
def test_fused_model_checks_its_input_shape(fused_classifier, shape, expected):
    import torch

    with torch.inference_mode(), pytest.raises(ValueError, match=expected):
        fused_classifier(torch.zeros(shape))
    with torch.inference_mode():  # a good batch still runs
        assert fused_classifier(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


# ------------------------------------------------------------------------------ cli.user_message
USER_MESSAGE_CASES = [
    ("argument_leads_as_its_flag", InputError("could not download URL", argument="weights_backbone"), None,
     "--weights-backbone: could not download URL"),
    ("leading_name_replaced", ArgumentError("num_classes: must be >= 1", argument="num_classes"), None,
     "--num-classes: must be >= 1"),
    ("message_never_rewritten", GhostdetError("use weights_backbone='imagenet' (strict_data is on)"), None,
     "use weights_backbone='imagenet' (strict_data is on)"),
    ("argument_without_a_flag", ArgumentError("ratio must be >= 2", argument="ratio"), None,
     "ratio must be >= 2"),
    ("tool_mapping_adds_flags", ArgumentError("epochs: must be >= 1", argument="epochs"),
     {"epochs": "--epochs"}, "--epochs: must be >= 1"),
    ("tool_mapping_overrides", InputError("x.pth not found", argument="weights"),
     {"weights": "--weights-backbone"}, "--weights-backbone: x.pth not found"),
    ("already_led_by_the_flag", InputError("--device: bad device 'x'", argument="device"), None,
     "--device: bad device 'x'"),
    ("set_item_untouched", GhostdetError("--set batch_size=0: must be >= 1"), None,
     "--set batch_size=0: must be >= 1"),
    ("multi_line_joined", GhostdetError("first\n  second", argument="output_dir"), None,
     "--output-dir: first; second"),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,err,argument_flags,expected", USER_MESSAGE_CASES, ids=[c[0] for c in USER_MESSAGE_CASES]
)
def test_user_message_leads_with_the_flag_of_err_argument(case, err, argument_flags, expected):
    """The CLI's one translation: ``err.argument`` -> its flag, leading the line; the text itself is
    the library's (parameter names in it are not rewritten)."""
    from ghostdet.cli import user_message

    assert user_message(err, argument_flags=argument_flags) == expected
