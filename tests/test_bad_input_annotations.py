"""Bad annotation and results files: one validation pass, shared by training and evaluation.

The matrix covers the annotation keys checked with the rest of an entry (``iscrowd`` 0/1 or a
bool, ``area`` a finite number, ``segmentation`` a list or object) through the library (a counted
skip, or a ``DataError`` naming the file under ``strict``), the val split checked before the first
epoch (bad entries, no readable image), and ``tools/eval_det.py``: its ground truth goes through the
same pass (left out and counted, or refused with ``--strict-data``) and a ``--results`` file is
checked entry by entry (one line naming the file, the entry and the key, exit status 2). Every case
checks that no input file changed.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from test_bad_input import _DEL, _base, _hashes, _load_tool, _mutate, _one_error_line, _train_argv, _write

from ghostdet.data import BadImageWarning, CocoDetection, DataError, build_coco_datasets, count_valid_boxes
from ghostdet.data.validation import PROBLEMS, check_results, read_annotations, read_results
from ghostdet.evaluation import COCO_STAT_NAMES, evaluate_detections

MALFORMED = PROBLEMS["malformed"][1]  # "malformed annotations"


def _inputs_unchanged(root: Path, before: dict[str, str]) -> None:
    """No input file changed (what the tools write under run/ and eval/ is left aside)."""
    now = {k: v for k, v in _hashes(root).items() if "/run/" not in k and "/eval/" not in k}
    assert now == before


# ------------------------------------------------------------------------ the library: the matrix
# (case, change of annotation 13 (image 3's only box), the reason printed next to its id)
BAD_ANNOTATION_CASES = [
    ("iscrowd_string_zero", {"iscrowd": "0"}, "iscrowd not 0, 1 or a bool"),
    ("iscrowd_string_no", {"iscrowd": "no"}, "iscrowd not 0, 1 or a bool"),
    ("iscrowd_list", {"iscrowd": [0]}, "iscrowd not 0, 1 or a bool"),
    ("iscrowd_two", {"iscrowd": 2}, "iscrowd not 0, 1 or a bool"),
    ("iscrowd_float", {"iscrowd": 0.0}, "iscrowd not 0, 1 or a bool"),
    ("iscrowd_null", {"iscrowd": None}, "iscrowd not 0, 1 or a bool"),
    ("area_list", {"area": [320]}, "area not a number"),
    ("area_null", {"area": None}, "area not a number"),
    ("area_bool", {"area": True}, "area not a number"),
    ("segmentation_string", {"segmentation": "polygon"}, "segmentation not a list or object"),
    ("segmentation_number", {"segmentation": 5}, "segmentation not a list or object"),
    ("segmentation_null", {"segmentation": None}, "segmentation not a list or object"),
]  # fmt: skip


@pytest.mark.parametrize("case,change,reason", BAD_ANNOTATION_CASES, ids=[c[0] for c in BAD_ANNOTATION_CASES])
def test_bad_annotation_key_is_counted_or_strict_error(tmp_path, case, change, reason):
    data = _base()
    data["annotations"][2] = _mutate(data["annotations"][2], change)
    images, ann = _write(tmp_path, data)
    before = _hashes(tmp_path)

    ds = CocoDetection(images, ann)
    rep = ds.report
    assert rep.counts == {"malformed": 1, "lost_all_boxes": 1}  # never "crowd"
    assert rep.examples["malformed"] == [f"13 ({reason})"] and rep.examples["lost_all_boxes"] == ["3"]
    assert rep.boxes == 2 and count_valid_boxes(ds) == 2 and sorted(ds.coco.getAnnIds()) == [11, 12]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every image readable: no skip warning
        trained = {ds.ids[i]: len(ds[i][1]["boxes"]) for i in range(len(ds))}
    assert trained == {1: 1, 2: 1, 3: 0}  # image 3 stays, as a negative
    assert f"1 {MALFORMED}, e.g. annotation ids 13 ({reason})" in rep.summary()

    with pytest.raises(DataError) as err:
        CocoDetection(images, ann, strict=True)
    msg = str(err.value)
    assert msg.startswith(str(ann)) and f"1 {MALFORMED}, e.g. annotation ids 13 ({reason})" in msg
    assert "strict_data is on" in msg and "\n" not in msg
    assert _hashes(tmp_path) == before


# (case, change of annotation 13): valid neighbours, kept
GOOD_ANNOTATION_CASES = [
    ("iscrowd_false", {"iscrowd": False}, "box"),
    ("iscrowd_missing", {"iscrowd": _DEL}, "box"),
    ("iscrowd_true", {"iscrowd": True}, "crowd"),
    ("iscrowd_one", {"iscrowd": 1}, "crowd"),
    ("area_int", {"area": 320}, "box"),
    ("area_missing", {"area": _DEL}, "box"),
    ("segmentation_polygons", {"segmentation": [[4, 4, 24, 4, 24, 20]]}, "box"),
    ("segmentation_rle", {"segmentation": {"size": [40, 48], "counts": "abc"}}, "box"),
    ("segmentation_empty_list", {"segmentation": []}, "box"),
]  # fmt: skip


@pytest.mark.parametrize("case,change,kind", GOOD_ANNOTATION_CASES, ids=[c[0] for c in GOOD_ANNOTATION_CASES])
def test_valid_annotation_keys_are_kept_and_normalised(tmp_path, case, change, kind):
    data = _base()
    data["annotations"][2] = _mutate(data["annotations"][2], change)
    images, ann = _write(tmp_path, data)
    ds = CocoDetection(images, ann, strict=True)
    assert "malformed" not in ds.report.counts
    assert ds.report.boxes == (3 if kind == "box" else 2) and count_valid_boxes(ds) == ds.report.boxes
    assert ds.report.counts.get("crowd", 0) == (kind == "crowd")
    kept = ds.coco.anns[13]  # kept for evaluation either way, with what COCOeval needs
    assert type(kept["iscrowd"]) is int and kept["iscrowd"] == (kind == "crowd")
    assert kept["area"] == 20 * 16  # as given, or w * h when missing


def test_iscrowd_string_zero_no_longer_makes_every_box_crowd(tmp_path):
    """The tester's file: iscrowd "0" everywhere used to count all boxes as crowd (nothing trained)."""
    data = _base()
    # image 1: four boxes with every spelling; images 2 and 3: iscrowd "0" (a string)
    spellings = [("int0", 0), ("false", False), ("missing", _DEL), ("int1", 1), ("true", True),
                 ("str0", "0"), ("str1", "1")]  # fmt: skip
    data["annotations"] = [
        _mutate({"id": 100 + k, "image_id": 1, "category_id": 1, "bbox": [2 + k, 2, 10, 10], "area": 100.0},
                {"iscrowd": v})
        for k, (_, v) in enumerate(spellings)
    ] + [{**a, "iscrowd": "0"} for a in _base()["annotations"][1:]]  # fmt: skip
    images, ann = _write(tmp_path, data)
    ds = CocoDetection(images, ann)
    # independently: a training box is one whose iscrowd is exactly 0 / false / absent
    expected_boxes = sum(1 for _, v in spellings if v is _DEL or (not isinstance(v, str) and v == 0))
    assert expected_boxes == 3
    assert ds.report.boxes == expected_boxes == count_valid_boxes(ds)
    assert ds.report.counts["crowd"] == 2 and ds.report.examples["crowd"] == ["103", "104"]
    assert ds.report.counts["malformed"] == 4  # "0", "1" on image 1 and the "0" of images 2, 3
    assert ds.report.examples["malformed"][:2] == [
        "105 (iscrowd not 0, 1 or a bool)",
        "106 (iscrowd not 0, 1 or a bool)",
    ]
    assert len(ds[ds.ids.index(1)][1]["boxes"]) == expected_boxes


# ------------------------------------------------------------------- the val split, before epoch 1
def _bad_iscrowd_val() -> dict:
    data = _base()
    data["annotations"][0]["iscrowd"] = [0]
    return data


def _paths(root: Path) -> dict[str, Path]:
    return {"train_images": root / "train", "train_ann": root / "train.json", "val_images": root / "val",
            "val_ann": root / "val.json"}  # fmt: skip


def test_bad_val_entry_is_caught_when_the_datasets_are_built(tmp_path):
    _write(tmp_path, _base(), "train")
    _write(tmp_path, _bad_iscrowd_val(), "val")
    before = _hashes(tmp_path)
    with pytest.raises(DataError) as err:
        build_coco_datasets(**_paths(tmp_path), strict=True)
    assert str(err.value).startswith(str(tmp_path / "val.json")) and "iscrowd not 0, 1 or a bool" in str(
        err.value
    )

    train, val = build_coco_datasets(**_paths(tmp_path))
    assert train.report.counts == {} and val.report.counts["malformed"] == 1
    # the val set scores without a traceback: its own valid boxes as detections give AP 1
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in val.coco.dataset["annotations"]]  # fmt: skip
    assert len(dets) == 2 and evaluate_detections(val.coco, dets)["AP"] == pytest.approx(1.0)
    _inputs_unchanged(tmp_path, before)


@pytest.mark.parametrize("how", ["not_images", "missing_files"])
def test_val_split_without_a_readable_image_is_an_error(tmp_path, how):
    _write(tmp_path, _base(), "train")
    _write(tmp_path, _base(), "val")
    for p in sorted((tmp_path / "val").glob("*.png")):
        if how == "missing_files":
            p.unlink()
        else:
            p.write_bytes(b"not a png")
    before = _hashes(tmp_path)
    with pytest.raises(DataError) as err:
        build_coco_datasets(**_paths(tmp_path))
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "val.json")) and "none of the 3 val images" in msg
    assert "1.png" in msg and "\n" not in msg  # the first failure, naming its file
    _inputs_unchanged(tmp_path, before)


def test_val_split_with_one_readable_image_is_accepted(tmp_path):
    _write(tmp_path, _base(), "train")
    _write(tmp_path, _base(), "val")
    (tmp_path / "val" / "1.png").write_bytes(b"not a png")
    (tmp_path / "val" / "2.png").unlink()
    _, val = build_coco_datasets(**_paths(tmp_path))
    assert len(val) == 3 and val.skipped == 0  # the probe leaves the counter alone
    with pytest.warns(BadImageWarning, match="1.png"):
        assert val[0] is None


# --------------------------------------------------------------------------- tools/train_det.py
def _first_annotation(**change) -> dict:
    """``_base()`` with only its first annotation (id 11, image 1), changed."""
    return {**_base(), "annotations": [{**_base()["annotations"][0], **change}]}


TRAIN_TOOL_CASES = [
    ("val_iscrowd_list_strict", "val", _bad_iscrowd_val(), ["--strict-data"],
     ["val.json", "iscrowd not 0, 1 or a bool", "strict_data is on"]),
    ("train_iscrowd_no_strict", "train", _first_annotation(iscrowd="no"), ["--strict-data"],
     ["train.json", "11 (iscrowd not 0, 1 or a bool)"]),
    ("val_area_string_strict", "val", _first_annotation(area="big"), ["--strict-data"],
     ["val.json", "11 (area not a number)"]),
    ("val_segmentation_number_strict", "val", _first_annotation(segmentation=3), ["--strict-data"],
     ["val.json", "11 (segmentation not a list or object)"]),
    ("val_unreadable", "val", None, [], ["val.json", "none of the 3 val images", "can be read"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,split,data,extra,expected", TRAIN_TOOL_CASES, ids=[c[0] for c in TRAIN_TOOL_CASES]
)
def test_train_tool_bad_val_fails_before_training(tmp_path, capsys, case, split, data, extra, expected):
    _write(tmp_path, _base(), "train")
    _write(tmp_path, _base(), "val")
    if data is not None:
        _write(tmp_path, data, split)
    else:
        for p in (tmp_path / "val").glob("*.png"):
            p.write_bytes(b"\x89PNG truncated")
    before = _hashes(tmp_path)
    assert _load_tool("train_det")(_train_argv(tmp_path, *extra)) == 2
    cap = capsys.readouterr()
    _one_error_line(cap.err, "train_det.py: error:", *expected)
    assert "epoch 1" not in cap.out  # nothing trained
    run = tmp_path / "run"
    assert not (run / "checkpoint.pth").exists() and not (run / "best.pth").exists()
    _inputs_unchanged(tmp_path, before)


def test_train_tool_lenient_counts_and_trains_on_the_right_boxes(tmp_path, capsys):
    """Bad iscrowd values are counted skips: train on the valid boxes, evaluate the valid val boxes."""
    train = _base()
    train["annotations"][1]["iscrowd"] = "0"
    _write(tmp_path, train, "train")
    _write(tmp_path, _bad_iscrowd_val(), "val")
    before = _hashes(tmp_path)
    assert _load_tool("train_det")(_train_argv(tmp_path)) == 0
    out = capsys.readouterr().out
    assert f"data {tmp_path / 'train.json'}: 3 images, 3 annotations, 2 training boxes" in out
    assert f"data {tmp_path / 'val.json'}: 3 images, 3 annotations, 2 training boxes" in out
    assert f"1 {MALFORMED}, e.g. annotation ids 12 (iscrowd not 0, 1 or a bool)" in out
    assert f"1 {MALFORMED}, e.g. annotation ids 11 (iscrowd not 0, 1 or a bool)" in out
    assert "crowd annotations" not in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["final"]["epoch"] == 1 and metrics["final"]["val_images_evaluated"] == 3
    _inputs_unchanged(tmp_path, before)


# ---------------------------------------------------------------------------- tools/eval_det.py
def _gt_results() -> list[dict]:
    """The 3 boxes of ``_base()`` as detections (a perfect detector)."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in _base()["annotations"]]  # fmt: skip


def _eval_argv(root: Path, *extra: str) -> list[str]:
    return ["--results", str(root / "dets.json"), "--val-ann", str(root / "val.json"),
            "--output-dir", str(root / "eval"), *extra]  # fmt: skip


def _direct_stats(gt: dict, dets: list[dict]) -> list[float]:
    """pycocotools alone, on a ground truth that is already clean."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes([dict(d) for d in dets]), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


# (case, change of annotation 11 or None, change of image 1 or None, problem lines expected)
EVAL_GT_CASES = [
    ("iscrowd_list", {"iscrowd": [0]}, None, {"malformed": 1}, "11 (iscrowd not 0, 1 or a bool)"),
    ("iscrowd_string_zero", {"iscrowd": "0"}, None, {"malformed": 1}, "11 (iscrowd not 0, 1 or a bool)"),
    ("area_string", {"area": "big"}, None, {"malformed": 1}, "11 (area not a number)"),
    ("segmentation_number", {"segmentation": 7}, None, {"malformed": 1}, "11 (segmentation not a list"),
    ("annotation_without_bbox", {"bbox": _DEL}, None, {"malformed": 1}, "11 (bbox not 4 numbers)"),
    ("image_without_file_name", None, {"file_name": _DEL}, {"malformed_image": 1, "orphan": 1},
     "1 (file_name not a string)"),
]  # fmt: skip


@pytest.mark.parametrize(
    "case,ann_change,img_change,skipped,example", EVAL_GT_CASES, ids=[c[0] for c in EVAL_GT_CASES]
)
def test_eval_tool_ground_truth_left_out_and_counted(
    tmp_path, capsys, case, ann_change, img_change, skipped, example
):
    data = _base()
    if ann_change is not None:
        data["annotations"][0] = _mutate(data["annotations"][0], ann_change)
    if img_change is not None:
        data["images"][0] = _mutate(data["images"][0], img_change)
    _write(tmp_path, data, "val")
    (tmp_path / "dets.json").write_text(json.dumps(_gt_results()))
    before = _hashes(tmp_path)

    assert _load_tool("eval_det")(_eval_argv(tmp_path)) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    assert f"ground truth {tmp_path / 'val.json'}: entries left out" in cap.out and example in cap.out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["skipped_ground_truth"] == skipped
    # independently: pycocotools on the file with the bad entries removed by hand
    clean = _base()
    clean["annotations"] = clean["annotations"][1:]
    dets = _gt_results()
    if img_change is not None:  # the image itself is gone: its detection cannot be scored
        clean["images"] = clean["images"][1:]
        dets = dets[1:]
    assert metrics["dropped_detections"] == (img_change is not None)
    expected = _direct_stats(clean, dets)
    assert [metrics[k] for k in COCO_STAT_NAMES] == pytest.approx(expected, abs=1e-12)
    if img_change is None:  # image 1's detection now has no ground truth: a false positive
        assert metrics["AP"] < 1.0
    else:
        assert metrics["AP"] == pytest.approx(1.0)

    assert _load_tool("eval_det")(_eval_argv(tmp_path, "--strict-data")) == 2
    _one_error_line(capsys.readouterr().err, "eval_det.py: error:", str(tmp_path / "val.json"), example,
                    "strict_data is on")  # fmt: skip
    _inputs_unchanged(tmp_path, before)


def _entry(**change) -> list:
    return [_mutate(_gt_results()[0], change), *_gt_results()[1:]]


# (case, results file content, what the one line must say)
EVAL_RESULTS_CASES = [
    ("bbox_three_numbers", _entry(bbox=[4, 4, 20]),
     ["entry #0 (image_id 1)", "'bbox' must be 4 finite", "[4, 4, 20]"]),
    ("bbox_strings", _entry(bbox=["4", "4", "20", "16"]),
     ["entry #0 (image_id 1)", "'bbox' must be 4", '"4"']),
    ("bbox_negative_width", _entry(bbox=[4, 4, -20, 16]), ["entry #0", "'bbox'", "w, h >= 0"]),
    ("bbox_nan", _entry(bbox=[4, 4, float("nan"), 16]), ["entry #0", "'bbox' must be 4 finite numbers"]),
    ("bbox_missing", _entry(bbox=_DEL), ["entry #0 (image_id 1)", "no 'bbox' key"]),
    ("score_string", _entry(score="0.9"),
     ["entry #0 (image_id 1)", "'score' must be a finite number", '"0.9"']),
    ("score_nan", _entry(score=float("nan")), ["entry #0", "'score' must be a finite number", "NaN"]),
    ("score_missing", _entry(score=_DEL), ["entry #0", "no 'score' key"]),
    ("image_id_string", _entry(image_id="1"), ["entry #0:", "'image_id' must be an integer", '"1"']),
    ("category_id_float", _entry(category_id=1.0), ["entry #0", "'category_id' must be an integer"]),
    ("image_id_unknown", _entry(image_id=77), ["entry #0 (image_id 77)", "'image_id' 77 is not an image of",
                                               "val.json"]),
    ("list_of_ints", [1, 2, 3],
     ["entry #0:", "a JSON number (1), not an {image_id", "3 of 3 entries are bad"]),
    ("list_of_lists", [[1, 1, [4, 4, 20, 16], 0.9]], ["entry #0:", "a JSON list"]),
    ("second_entry_bad", [*_gt_results()[:1], {**_gt_results()[1], "score": None}],
     ["entry #1 (image_id 2)", "'score'", "null"]),
    ("object_not_list", {"image_id": 1}, ["is not a COCO results file", "JSON object, not a list"]),
    ("not_json", "[{oops", ["is not a COCO results file: not valid JSON"]),
]  # fmt: skip


@pytest.mark.parametrize("case,content,expected", EVAL_RESULTS_CASES, ids=[c[0] for c in EVAL_RESULTS_CASES])
def test_eval_tool_bad_results_file_is_one_line(tmp_path, capsys, case, content, expected):
    _write(tmp_path, _base(), "val")
    results = tmp_path / "dets.json"
    results.write_text(content if isinstance(content, str) else json.dumps(content))
    before = _hashes(tmp_path)
    assert _load_tool("eval_det")(_eval_argv(tmp_path)) == 2
    _one_error_line(capsys.readouterr().err, "eval_det.py: error:", f"{results}", *expected)
    assert not (tmp_path / "eval" / "metrics.json").exists()
    _inputs_unchanged(tmp_path, before)


def test_results_checks_in_the_library(tmp_path):
    """read_results/check_results directly: good entries are copied, a bad one is a DataError."""
    good = _gt_results()
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(good))
    entries, dropped = read_results(path, {1, 2, 3})
    assert entries == good and dropped == 0 and entries[0] is not good[0]
    # detections on ground-truth images that validation left out are dropped and counted
    entries, dropped = check_results(good, "dets", image_ids={2, 3}, skipped_image_ids={1})
    assert entries == good[1:] and dropped == 1
    with pytest.raises(
        DataError, match=r"^dets: results entry #0 \(image_id 1\): 'image_id' 1 is not an image"
    ):
        check_results(good, "dets", image_ids={2, 3})
    with pytest.raises(DataError, match=r"^x\.json: results entry #2 \(image_id 3\): 'score'"):
        check_results([*good[:2], {**good[2], "score": True}], "x.json")
    # evaluate_detections on a results file goes through the same checks
    _, ann = _write(tmp_path, _base(), "val")
    path.write_text(json.dumps([{**good[0], "bbox": [1, 2, 3]}]))
    with pytest.raises(DataError, match=r"dets\.json: results entry #0 \(image_id 1\): 'bbox'"):
        evaluate_detections(ann, path)


def test_eval_ground_truth_read_as_training_reads_it(tmp_path):
    """The one pass: eval's GT (image list allowed) and training's dataset keep the same entries."""
    data = _base()
    data["annotations"][0]["iscrowd"] = "0"
    data["annotations"][1]["iscrowd"] = True
    images, ann = _write(tmp_path, data, "val")
    ds = CocoDetection(images, ann)
    gt, report = read_annotations(ann, None, 1.0, image_list_ok=True)
    assert report.counts == ds.report.counts == {"malformed": 1, "crowd": 1, "lost_all_boxes": 2}
    assert gt["annotations"] == ds.coco.dataset["annotations"]
    assert [a["iscrowd"] for a in gt["annotations"]] == [1, 0] and type(
        gt["annotations"][0]["iscrowd"]
    ) is int
    # an image list (test-dev style) needs no annotations, categories or sizes
    info = tmp_path / "info.json"
    info.write_text(
        json.dumps({"images": [{"id": 5, "file_name": "5.png"}, {"id": "6", "file_name": "6.png"}]})
    )
    gt, report = read_annotations(info, None, 1.0, image_list_ok=True)
    assert [im["id"] for im in gt["images"]] == [5] and "annotations" not in gt
    assert report.counts == {"malformed_image": 1} and report.skipped_image_ids == set()
    with pytest.raises(DataError, match="not a COCO instances JSON"):
        read_annotations(info, None, 1.0)
