"""browse_dataset: the sample's images drawn with their ground truth, for COCO, YOLO and VOC sets,
before and after augmentation.

The images are plain grey with boxes at known whole-pixel places, so a drawn box is checked by
the outline colour on its left edge (the palette colour of its label) and the grey elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ghostdet.data.convert import write_voc, write_yolo
from ghostdet.errors import ArgumentError, OutputError
from ghostdet.predict import browse_dataset
from ghostdet.predict.drawing import PALETTE

GREY = (128, 128, 128)
SIZE = (160, 120)  # width, height
# per image: (category_id, [x, y, w, h]) with whole pixels, boxes tall enough that the left
# edge's middle lies below the caption
BOXES = [
    [(1, [10, 20, 50, 60])],
    [(2, [70, 30, 60, 70]), (1, [8, 10, 40, 50])],
    [(2, [30, 40, 80, 60])],
    [(1, [100, 5, 50, 100])],
    [(2, [20, 50, 50, 60]), (1, [90, 20, 40, 80])],
]


def _coco(root: Path) -> Path:
    """A COCO set in the synthetic layout (train = the five images, val = the first two)."""
    for split, n in (("train", len(BOXES)), ("val", 2)):
        folder = root / split
        folder.mkdir(parents=True)
        images, anns = [], []
        for i, boxes in enumerate(BOXES[:n]):
            name = f"{split}_{i}.png"
            Image.new("RGB", SIZE, GREY).save(folder / name)
            images.append({"id": i + 1, "file_name": name, "width": SIZE[0], "height": SIZE[1]})
            for cat, box in boxes:
                anns.append(
                    {"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "bbox": box,
                     "area": box[2] * box[3], "iscrowd": 0}
                )  # fmt: skip
        cats = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
        (root / "annotations").mkdir(exist_ok=True)
        doc = {"images": images, "annotations": anns, "categories": cats}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return root


def _boxes_of(png: Path) -> list[tuple[int, list[int]]]:
    index = int(png.stem.split("_")[0])
    return BOXES[index]


def _check_drawn(png: Path, mirrored: bool = False) -> None:
    arr = np.asarray(Image.open(png).convert("RGB"))
    assert arr.shape == (SIZE[1], SIZE[0], 3)
    for cat, (x, y, w, h) in _boxes_of(png):
        left = SIZE[0] - (x + w) if mirrored else x
        colour = list(PALETTE[cat % len(PALETTE)])  # label = category id here (ids 1, 2)
        assert arr[y + h // 2 + 5, left].tolist() == colour, (png.name, cat)
        assert arr[y + h - 1, left + w // 2].tolist() == colour, (png.name, cat)  # bottom edge
    assert arr[SIZE[1] - 1, :].tolist().count(list(GREY)) > 0  # grey stays grey


def test_browse_coco_draws_the_ground_truth(tmp_path):
    root = _coco(tmp_path / "data")
    lines: list[str] = []
    out = browse_dataset(root, tmp_path / "browse", num_images=3, log=lines.append)
    assert len(out) == 3 and all(p.suffix == ".png" and p.parent == tmp_path / "browse" for p in out)
    assert sorted(p.name for p in (tmp_path / "browse").iterdir()) == sorted(p.name for p in out)
    for png in out:
        _check_drawn(png)
    assert len(lines) == 1 and "3 of 5 image(s)" in lines[0]
    # the sample depends on the seed only; more than the split holds: all of it
    again = browse_dataset(root, tmp_path / "again", num_images=3, log=None)
    assert [p.name for p in again] == [p.name for p in out]
    everything = browse_dataset(root, tmp_path / "all", num_images=50, split="val", log=None)
    assert [p.name for p in everything] == ["0000_val_0.png", "0001_val_1.png"]
    # explicit image folder + annotation file
    explicit = browse_dataset(
        train_images=root / "train", train_ann=root / "annotations" / "instances_train.json",
        output_dir=tmp_path / "explicit", num_images=5, log=None,
    )  # fmt: skip
    assert len(explicit) == 5
    for png in explicit:
        _check_drawn(png)


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_browse_yolo_and_voc(tmp_path, fmt):
    root = _coco(tmp_path / "data")
    target = tmp_path / fmt
    write = write_yolo if fmt == "yolo" else write_voc
    for split in ("train", "val"):
        write(root / "annotations" / f"instances_{split}.json", root / split, target, split=split)
    out = browse_dataset(target, tmp_path / "browse", num_images=5, log=None)
    assert len(out) == 5
    for png in out:
        _check_drawn(png)


def test_browse_after_augmentation(tmp_path):
    root = _coco(tmp_path / "data")
    flip_only = {"hflip_prob": 1.0, "crop_prob": 0.0, "scale_prob": 0.0, "color_prob": 0.0}
    out = browse_dataset(root, tmp_path / "aug", num_images=5, augmented=True, augment=flip_only, log=None)
    assert len(out) == 5
    for png in out:
        _check_drawn(png, mirrored=True)


def test_browse_refuses_bad_arguments(tmp_path):
    root = _coco(tmp_path / "data")
    before = {p: p.read_bytes() for p in (root / "train").iterdir()}
    with pytest.raises(OutputError, match="holds the input image") as e:
        browse_dataset(root, root / "train", log=None)
    assert e.value.argument == "output_dir"
    assert {p: p.read_bytes() for p in (root / "train").iterdir()} == before
    with pytest.raises(ArgumentError) as e:
        browse_dataset(root, tmp_path / "o", num_images=0, log=None)
    assert e.value.argument == "num_images"


def test_browse_command(tmp_path, capsys):
    from ghostdet.cli.main import main

    root = _coco(tmp_path / "data")
    out = tmp_path / "browse"
    assert main(["browse", "--data-path", str(root), "--num-images", "2", "--output-dir", str(out)]) == 0
    assert "drew 2 of 5 image(s)" in capsys.readouterr().out
    assert len(list(out.glob("*.png"))) == 2
    for png in out.glob("*.png"):
        _check_drawn(png)
    # --augmented with a recipe's augment settings
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("augment:\n  hflip_prob: 1.0\n  crop_prob: 0.0\n  scale_prob: 0.0\n  color_prob: 0.0\n")
    aug = tmp_path / "aug"
    argv = [
        "browse",
        "--data-path",
        str(root),
        "--augmented",
        "--config",
        str(recipe),
        "--output-dir",
        str(aug),
    ]
    assert main(argv) == 0
    capsys.readouterr()
    assert len(list(aug.glob("*.png"))) == 5
    for png in aug.glob("*.png"):
        _check_drawn(png, mirrored=True)
    # a user error is one line naming the flag
    assert main(["browse", "--data-path", str(tmp_path / "nothing"), "--output-dir", str(aug)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ghostdet browse: error: --data-path")
