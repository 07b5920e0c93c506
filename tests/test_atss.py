"""ATSS anchor assignment (ghostdet.models.atss) and its RetinaNet."""

from __future__ import annotations

import statistics

import pytest
import torch
from helpers import detection_batch

from ghostdet.models.atss import ATSSRetinaNet, atss_match
from ghostdet.models.detection import retinanet_ghostnet_320_fpn

SMALL = {"min_size": 128, "max_size": 128}


def _reference(
    boxes: list[list[float]], anchors: list[list[float]], counts: list[int], topk: int
) -> list[int]:
    """ATSS as the paper writes it, one box and one level at a time in plain Python."""

    def iou(a: list[float], b: list[float]) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    def centre(b: list[float]) -> tuple[float, float]:
        return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2

    best: dict[int, tuple[float, int]] = {}
    for j, box in enumerate(boxes):
        bx, by = centre(box)
        candidates, start = [], 0
        for count in counts:
            level = range(start, start + count)
            dist = {
                i: ((centre(anchors[i])[0] - bx) ** 2 + (centre(anchors[i])[1] - by) ** 2) ** 0.5
                for i in level
            }
            candidates += sorted(level, key=lambda i: dist[i])[:topk]
            start += count
        ious = [iou(box, anchors[i]) for i in candidates]
        threshold = statistics.mean(ious) + (statistics.stdev(ious) if len(ious) > 1 else 0.0)
        for i, v in zip(candidates, ious):
            cx, cy = centre(anchors[i])
            inside = box[0] < cx < box[2] and box[1] < cy < box[3]
            if v >= threshold and inside and (i not in best or v > best[i][0]):
                best[i] = (v, j)
    return [best[i][1] if i in best else -1 for i in range(len(anchors))]


def _grid_anchors(
    size: int, strides: list[int], sizes: list[float], g: torch.Generator
) -> tuple[torch.Tensor, list[int]]:
    """Square anchors on a grid per level, each jittered so no two distances tie."""
    levels, counts = [], []
    for stride, side in zip(strides, sizes):
        c = torch.arange(stride / 2, size, stride)
        cy, cx = torch.meshgrid(c, c, indexing="ij")
        centres = torch.stack([cx.flatten(), cy.flatten()], 1) + 0.01 * torch.rand(cx.numel(), 2, generator=g)
        half = side / 2 * (1 + 0.1 * torch.rand(cx.numel(), 1, generator=g))
        levels.append(torch.cat([centres - half, centres + half], 1))
        counts.append(cx.numel())
    return torch.cat(levels), counts


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("topk", [1, 4, 9])
def test_atss_match_equals_the_papers_procedure(seed: int, topk: int) -> None:
    g = torch.Generator().manual_seed(seed)
    anchors, counts = _grid_anchors(96, [8, 16, 32], [32.0, 64.0, 128.0], g)
    xy = torch.rand(5, 2, generator=g) * 70
    wh = 8 + torch.rand(5, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[4] = boxes[3] + 3  # two overlapping boxes compete for anchors
    got = atss_match(boxes, anchors, counts, topk)
    want = _reference(boxes.tolist(), anchors.tolist(), counts, topk)
    assert got.tolist() == want
    assert got.dtype == torch.int64 and (got >= 0).any()


def test_atss_match_gives_every_box_positives_of_its_own_scale() -> None:
    g = torch.Generator().manual_seed(0)
    anchors, counts = _grid_anchors(256, [8, 16, 32, 64], [32.0, 64.0, 128.0, 256.0], g)
    boxes = torch.tensor([[40.0, 40.0, 64.0, 64.0], [100.0, 60.0, 220.0, 180.0]])
    matched = atss_match(boxes, anchors, counts)
    for j, box in enumerate(boxes):
        mine = anchors[matched == j]
        assert len(mine) >= 1
        sides = (mine[:, 2] - mine[:, 0]).tolist()
        side = float(box[2] - box[0])
        # the positives lie on the level whose anchors are nearest the box's size
        assert all(side / 2 <= s <= side * 2 for s in sides), (side, sides)


def test_atss_match_edge_cases() -> None:
    g = torch.Generator().manual_seed(0)
    anchors, counts = _grid_anchors(64, [8, 16], [32.0, 64.0], g)
    empty = atss_match(torch.zeros(0, 4), anchors, counts)
    assert empty.shape == (len(anchors),) and (empty == -1).all()
    # a box far outside every anchor's centre gets no positive, and nothing fails
    assert (atss_match(torch.tensor([[500.0, 500.0, 510.0, 510.0]]), anchors, counts) == -1).all()
    # a level of 0 anchors and a topk above a level's size
    assert atss_match(torch.tensor([[10.0, 10.0, 40.0, 40.0]]), anchors, [*counts, 0], topk=1000).max() == 0
    with pytest.raises(ValueError, match="sums to"):
        atss_match(torch.tensor([[0.0, 0.0, 8.0, 8.0]]), anchors, [counts[0]])
    with pytest.raises(ValueError, match="topk"):
        atss_match(torch.tensor([[0.0, 0.0, 8.0, 8.0]]), anchors, counts, topk=0)


def test_atss_retinanet_uses_atss_in_training_and_keeps_the_state_dict(tmp_path) -> None:
    torch.manual_seed(0)
    model = retinanet_ghostnet_320_fpn(num_classes=4, **SMALL).train()  # the preset's default
    assert isinstance(model, ATSSRetinaNet) and model.atss_topk == 9
    calls = []
    model.proposal_matcher = lambda *a: calls.append(a)  # the IoU matcher must not be asked
    images, targets = detection_batch(empty_second=True)
    losses = model(images, targets)
    assert not calls
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    assert model._grid_sizes == [(16, 16), (8, 8), (4, 4), (2, 2)]
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing
    # the same parameters as the IoU-matched preset: checkpoints load either way
    torch.save(model.state_dict(), tmp_path / "atss.pth")
    plain = retinanet_ghostnet_320_fpn(num_classes=4, weights=tmp_path / "atss.pth", matcher="iou", **SMALL)
    assert type(plain).__name__ == "RetinaNet"
    again = retinanet_ghostnet_320_fpn(num_classes=4, weights=tmp_path / "atss.pth", **SMALL)
    assert isinstance(again, ATSSRetinaNet)
    with torch.no_grad():
        out = again.eval()(images[:1])
    assert set(out[0]) == {"boxes", "scores", "labels"}


def test_atss_retinanet_loss_equals_the_head_loss_on_atss_matches() -> None:
    torch.manual_seed(0)
    model = retinanet_ghostnet_320_fpn(
        num_classes=4,
        atss_topk=5,
        anchor_scale=4,
        scales_per_octave=3,
        aspect_ratios=(0.5, 1.0, 2.0),
        **SMALL,
    ).train()
    images, targets = detection_batch(empty_second=True)
    captured = {}
    original = model.head.compute_loss

    def spy(targets, head_outputs, anchors, matched_idxs):
        captured.update(anchors=anchors, matched=matched_idxs)
        return original(targets, head_outputs, anchors, matched_idxs)

    model.head.compute_loss = spy
    model(images, targets)
    counts = [h * w * 9 for h, w in [(16, 16), (8, 8), (4, 4), (2, 2)]]
    for t, a, m in zip(targets, captured["anchors"], captured["matched"]):
        assert torch.equal(m, atss_match(t["boxes"], a, counts, topk=5))
    assert (captured["matched"][0] >= 0).sum() > 0 and (captured["matched"][1] == -1).all()


def test_matcher_errors() -> None:
    with pytest.raises(ValueError, match="matcher must be one of"):
        retinanet_ghostnet_320_fpn(matcher="hungarian")
    with pytest.raises(ValueError, match="atss_topk"):
        retinanet_ghostnet_320_fpn(matcher="atss", atss_topk=0)


def test_a_checkpoint_of_the_nine_anchor_preset_names_the_arguments_that_load_it(tmp_path) -> None:
    old_anchors = {"anchor_scale": 4, "scales_per_octave": 3, "aspect_ratios": (0.5, 1.0, 2.0)}
    old = retinanet_ghostnet_320_fpn(num_classes=4, matcher="iou", **old_anchors, **SMALL)
    torch.save(old.state_dict(), tmp_path / "old.pth")
    with pytest.raises(ValueError, match=r"predicts 9 anchors per location, this model 1.*matcher='iou'"):
        retinanet_ghostnet_320_fpn(num_classes=4, weights=tmp_path / "old.pth", **SMALL)
    again = retinanet_ghostnet_320_fpn(weights=tmp_path / "old.pth", matcher="iou", **old_anchors, **SMALL)
    assert again.head.classification_head.num_classes == 4
    for k, v in old.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
