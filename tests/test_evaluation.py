"""COCO evaluator core: compared with direct pycocotools COCOeval runs."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ghostdet.evaluation import (
    COCO_STAT_NAMES,
    CocoEvaluator,
    evaluate_detections,
    load_coco,
    per_category_ap,
    run_inference,
)

COCO128 = Path(__file__).resolve().parents[2] / "shared/data/coco128"

# Non-contiguous category ids, as in real COCO.
CATS = [{"id": 3, "name": "car"}, {"id": 7, "name": "train"}, {"id": 12, "name": "stop"}]
LABEL_TO_CAT = {1: 3, 2: 7, 3: 12}


def _gt_dict() -> dict:
    images = [{"id": i, "width": 200, "height": 150, "file_name": f"{i}.jpg"} for i in (10, 11, 12)]
    boxes = [  # image, cat, xywh
        (10, 3, [10, 10, 50, 40]),
        (10, 7, [100, 20, 60, 60]),
        (11, 3, [5, 5, 20, 20]),
        (11, 12, [50, 60, 100, 80]),
        (12, 7, [0, 0, 199, 149]),
        (12, 12, [30, 30, 10, 12]),
    ]
    anns = [
        {"id": j + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
        for j, (i, c, b) in enumerate(boxes)
    ]
    return {"images": images, "annotations": anns, "categories": CATS}


def _coco(d: dict) -> COCO:
    coco = COCO()
    coco.dataset = json.loads(json.dumps(d))
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


# Detections per image as (label, xyxy, score); labels are contiguous model labels.
DETS = {
    10: [(1, [12, 9, 61, 52], 0.9), (2, [95, 25, 160, 80], 0.8), (2, [0, 0, 30, 30], 0.3)],
    11: [(1, [5, 5, 24, 26], 0.7), (3, [48, 62, 150, 140], 0.95), (1, [60, 60, 90, 90], 0.2)],
    12: [(2, [0, 0, 190, 149], 0.6), (3, [31, 29, 40, 42], 0.5), (3, [100, 100, 120, 120], 0.4)],
}


def _outputs(img_id: int) -> dict[str, torch.Tensor]:
    dets = DETS[img_id]
    return {
        "boxes": torch.tensor([d[1] for d in dets], dtype=torch.float32),
        "labels": torch.tensor([d[0] for d in dets], dtype=torch.int64),
        "scores": torch.tensor([d[2] for d in dets], dtype=torch.float32),
    }


def _independent_results(img_ids) -> list[dict]:
    out = []
    for i in img_ids:
        for label, (x1, y1, x2, y2), s in DETS[i]:
            # Same float32 rounding as the model output tensors.
            x1, y1, x2, y2, s = (float(np.float32(v)) for v in (x1, y1, x2, y2, s))
            out.append(
                {
                    "image_id": i,
                    "category_id": LABEL_TO_CAT[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": s,
                }
            )
    return out


def _direct_cocoeval(gt: COCO, results: list[dict], img_ids=None) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        if img_ids is not None:
            ev.params.imgIds = list(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_matches_direct_cocoeval_exactly():
    gt = _coco(_gt_dict())
    ev = CocoEvaluator(gt, LABEL_TO_CAT)
    ev.update([_outputs(10), _outputs(11)], [10, torch.tensor(11)])
    ev.update([_outputs(12)], [12])
    stats = ev.evaluate()
    assert tuple(stats) == COCO_STAT_NAMES
    assert all(type(v) is float for v in stats.values())
    expected = _direct_cocoeval(_coco(_gt_dict()), _independent_results([10, 11, 12]))
    assert [stats[k] for k in COCO_STAT_NAMES] == [float(v) for v in expected]
    assert 0.0 < stats["AP"] < 1.0  # a non-trivial case
    assert "Average Precision" in ev.summary_text and "maxDets=100" in ev.summary_text
    assert "Running per image" not in ev.summary_text


def test_results_use_real_category_ids_xywh_and_python_floats(tmp_path):
    ev = CocoEvaluator(_coco(_gt_dict()), LABEL_TO_CAT)
    ev.update([_outputs(11)], [11])
    res = ev.results
    assert [r["category_id"] for r in res] == [3, 12, 3]
    assert res[1]["bbox"] == pytest.approx([48.0, 62.0, 102.0, 78.0])
    assert all(type(v) is float for r in res for v in [*r["bbox"], r["score"]])
    assert all(type(r["image_id"]) is int and type(r["category_id"]) is int for r in res)
    path = ev.write_results(tmp_path / "sub" / "res.json")
    assert json.loads(path.read_text()) == res
    # The written file is accepted by loadRes unchanged, and the evaluator did not mutate results.
    with contextlib.redirect_stdout(io.StringIO()):
        dt = _coco(_gt_dict()).loadRes(str(path))
    assert len(dt.anns) == 3
    ev.evaluate()
    assert set(ev.results[0]) == {"image_id", "category_id", "bbox", "score"}


def test_unknown_labels_dropped_and_identity_mapping():
    outs = {"boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]]), "labels": torch.tensor([1, 9]),
            "scores": torch.tensor([0.5, 0.6])}  # fmt: skip
    ev = CocoEvaluator(None, LABEL_TO_CAT)
    ev.update([outs], [10])
    assert [r["category_id"] for r in ev.results] == [3] and ev.dropped == 1
    ident = CocoEvaluator(None, None)
    ident.update([outs], [10])
    assert [r["category_id"] for r in ident.results] == [1, 9]
    with pytest.raises(RuntimeError, match="no ground truth"):
        ident.evaluate()


def test_score_threshold_and_max_dets():
    ev = CocoEvaluator(_coco(_gt_dict()), LABEL_TO_CAT, score_threshold=0.5, max_dets=1)
    ev.update([_outputs(10), _outputs(11)], [10, 11])
    assert [(r["image_id"], r["score"]) for r in ev.results] == [
        (10, pytest.approx(0.9)),
        (11, pytest.approx(0.95)),
    ]


def test_zero_detections_gives_zeros_not_crash():
    gt = _coco(_gt_dict())
    ev = CocoEvaluator(gt, LABEL_TO_CAT, score_threshold=0.99)
    ev.update([_outputs(10)], [10])
    assert ev.results == [] and ev.img_ids == [10]
    stats = ev.evaluate()
    assert stats == dict.fromkeys(COCO_STAT_NAMES, 0.0)
    assert "0.000" in ev.summary_text
    assert ev.per_category_ap() == []
    assert evaluate_detections(gt, []) == dict.fromkeys(COCO_STAT_NAMES, 0.0)


def test_restricted_to_seen_images():
    gt = _coco(_gt_dict())
    ev = CocoEvaluator(gt, LABEL_TO_CAT)
    ev.update([_outputs(11)], [11])
    stats = ev.evaluate()
    subset = _direct_cocoeval(_coco(_gt_dict()), _independent_results([11]), img_ids=[11])
    whole = _direct_cocoeval(_coco(_gt_dict()), _independent_results([11]))
    assert [stats[k] for k in COCO_STAT_NAMES] == [float(v) for v in subset]
    assert stats["AR100"] > whole[8]  # unseen images' GT are not counted as misses


def test_evaluate_detections_from_file_and_per_category(tmp_path):
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(_gt_dict()))
    res = _independent_results([10, 11, 12])
    res_path = tmp_path / "res.json"
    res_path.write_text(json.dumps(res))
    stats = evaluate_detections(gt_path, res_path)
    expected = _direct_cocoeval(load_coco(gt_path), res)
    assert [stats[k] for k in COCO_STAT_NAMES] == [float(v) for v in expected]

    # Per-category AP against an independent computation from the precision array.
    with contextlib.redirect_stdout(io.StringIO()):
        gt = load_coco(gt_path)
        cev = COCOeval(gt, gt.loadRes(str(res_path)), "bbox")
        cev.evaluate()
        cev.accumulate()
    rows = per_category_ap(cev)
    assert [(c, n) for c, n, _ in rows] == [(3, "car"), (7, "train"), (12, "stop")]
    for k, (_, _, ap) in enumerate(rows):
        p = cev.eval["precision"][:, :, k, 0, 2]
        assert ap == pytest.approx(float(p[p > -1].mean()), abs=1e-12)
    # The mean of per-category APs is the overall AP (every category has GT here).
    assert np.mean([ap for *_, ap in rows]) == pytest.approx(stats["AP"], abs=1e-12)


class _FakeDetector(torch.nn.Module):
    """Returns the canned detections of each image id encoded in pixel (0, 0)."""

    def forward(self, images):
        return [_outputs(int(img[0, 0, 0].item())) for img in images]


def test_run_inference_feeds_evaluator():
    loader = [
        ([torch.full((3, 4, 4), 10.0), torch.full((3, 4, 4), 11.0)], [{"image_id": 10}, {"image_id": 11}]),
        ((), ()),  # a batch whose images were all unreadable
        ([torch.full((3, 4, 4), 12.0)], [{"image_id": torch.tensor(12)}]),
    ]
    ev = CocoEvaluator(_coco(_gt_dict()), LABEL_TO_CAT)
    info = run_inference(_FakeDetector(), loader, "cpu", ev, progress=False)
    assert info["images"] == 3
    assert ev.img_ids == [10, 11, 12]
    assert ev.results == _independent_results([10, 11, 12])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_worker(rank: int, world: int, port: int, gt: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ev = CocoEvaluator(_coco(gt), LABEL_TO_CAT)
        # rank 0: images 10, 11; rank 1: images 12 and a padded repeat of 10.
        ids = [10, 11] if rank == 0 else [12, 10]
        ev.update([_outputs(i) for i in ids], ids)
        ev.synchronize()
        stats = ev.evaluate()
        Path(out_dir, f"{rank}.json").write_text(json.dumps({"stats": stats, "n": len(ev.results)}))
    finally:
        torch.distributed.destroy_process_group()


def test_synchronize_gathers_across_two_gloo_ranks(tmp_path):
    mp.spawn(_dist_worker, args=(2, _free_port(), _gt_dict(), str(tmp_path)), nprocs=2, join=True)
    expected = _direct_cocoeval(_coco(_gt_dict()), _independent_results([10, 11, 12]))
    for rank in (0, 1):
        got = json.loads((tmp_path / f"{rank}.json").read_text())
        assert got["n"] == 9  # the repeated image is counted once
        assert [got["stats"][k] for k in COCO_STAT_NAMES] == [float(v) for v in expected]


def test_synchronize_is_noop_without_distributed():
    ev = CocoEvaluator(None, LABEL_TO_CAT)
    ev.update([_outputs(10)], [10])
    before = ev.results
    ev.synchronize()
    assert ev.results == before


@pytest.mark.skipif(not COCO128.is_dir(), reason="../shared/data/coco128 not present")
def test_coco128_ground_truth_as_detections_scores_one():
    gt = load_coco(COCO128 / "annotations/instances_train2017.json")
    cat_ids = sorted(gt.getCatIds())
    label_to_cat = {i + 1: c for i, c in enumerate(cat_ids)}
    cat_to_label = {c: lbl for lbl, c in label_to_cat.items()}
    ev = CocoEvaluator(gt, label_to_cat)
    n_boxes = 0
    for img_id in gt.getImgIds():
        anns = [a for a in gt.imgToAnns[img_id] if not a["iscrowd"]]
        boxes = torch.tensor(
            [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float64
        )
        out = {
            "boxes": boxes.reshape(-1, 4),
            "labels": torch.tensor([cat_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "scores": torch.ones(len(anns)),
        }
        ev.update([out], [img_id])
        n_boxes += len(anns)
    assert len(ev.results) == n_boxes == 929
    stats = ev.evaluate()
    for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"):
        assert stats[k] == pytest.approx(1.0, abs=1e-12), k
    assert all(math.isclose(ap, 1.0) for _, _, ap in ev.per_category_ap() if not math.isnan(ap))
