"""Bad input images: one reader (ghostdet.data.images) with one size rule and one EXIF rule.

* The size rule: an image above the pixel limit (2 x ``PIL.Image.MAX_IMAGE_PIXELS``, PIL's
  decompression-bomb error threshold, read at call time) is refused with an ``ImageReadError``
  naming the file, never a ``DecompressionBombError`` traceback. The tests lower
  ``MAX_IMAGE_PIXELS`` instead of writing a 180-megapixel file. Every tool counts and skips such
  an image (infer goes on with the rest of the folder, eval_det and train_cls count it, train_det's
  dataset skips it) except the single-image visualisation tool, where it is its one error line.
* The EXIF rule: plain images (infer, classification folders) are read as displayed (EXIF
  orientation applied); annotated images in the orientation whose size is the JSON's; neither is
  a counted skip. Training and evaluation read the same pixels because they call the same
  function, checked here against rotations computed independently with numpy.

Every case checks that the input files are unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from pycocotools.coco import COCO

from ghostdet.data import BadImageWarning, CocoDetection
from ghostdet.data.classification import SkippingImageFolder, collate_skipping
from ghostdet.data.images import ImageReadError, open_rgb, pixel_limit, read_rgb_array
from ghostdet.evaluation.evaluate import CocoImageList
from ghostdet.models import get_model

REPO = Path(__file__).resolve().parents[1]
ORIENTATION = 0x0112


# ------------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"_img_tool_{name}", REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def _one_error_line(err: str, *expected: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and ": error: " in lines[0], err
    assert all(s in lines[0] for s in expected), err


def _pattern(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An asymmetric RGB picture (a bright strip on the left, a gradient) of ``width x height``."""
    yy, xx = np.mgrid[0:height, 0:width]
    arr = np.stack([xx * 5 % 256, yy * 7 % 256, np.full_like(xx, 40 + seed * 30)], -1).astype(np.uint8)
    arr[:, : max(1, width // 4)] = 255
    return arr


def _save_jpeg(path: Path, arr: np.ndarray, orientation: int | None = None) -> np.ndarray:
    """Write a JPEG (with an EXIF orientation tag when given); returns its decoded stored pixels."""
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    Image.fromarray(arr).save(path, exif=exif, quality=100)
    with Image.open(path) as im:  # the stored pixels, no orientation applied
        return np.asarray(im.convert("RGB")).copy()


def _big_png(path: Path, side: int) -> None:
    Image.fromarray(_pattern(side, side)).save(path)


# ------------------------------------------------------------------------- the reader itself
@pytest.mark.parametrize(
    "expected,orientation_used",
    [(None, "displayed"), ((20, 40), "displayed"), ((40, 20), "stored")],
    ids=["plain_image", "annotated_as_displayed", "annotated_as_stored"],
)
def test_exif_orientation_follows_the_annotated_size(tmp_path, expected, orientation_used):
    path = tmp_path / "r.jpg"
    stored = _save_jpeg(path, _pattern(40, 20), orientation=6)  # 6: turn 90 degrees clockwise to show
    before = _hashes(tmp_path)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        got = read_rgb_array(path, expected)
    if orientation_used == "displayed":
        want = np.rot90(stored, k=-1)  # clockwise, computed here without PIL
        assert got.shape == (40, 20, 3)
        assert got[:8].mean() > 250 and got[12:, :, 0].mean() < 200  # the left strip is now on top
        assert not [w for w in rec if "EXIF" in str(w.message)]
    else:
        want = stored
        assert got.shape == (20, 40, 3)
        assert any("EXIF orientation 6" in str(w.message) and "r.jpg" in str(w.message) for w in rec)
    assert np.array_equal(got, want)
    assert _hashes(tmp_path) == before


def test_size_keeping_orientation_is_applied_when_both_sizes_match(tmp_path):
    """Orientation 3 (180 degrees) keeps the size: the JSON cannot tell, the displayed image is used."""
    path = tmp_path / "upside_down.jpg"
    stored = _save_jpeg(path, _pattern(30, 18), orientation=3)
    assert np.array_equal(read_rgb_array(path, (30, 18)), np.rot90(stored, k=2))
    assert np.array_equal(read_rgb_array(path), np.rot90(stored, k=2))


@pytest.mark.parametrize("orientation", [None, 6], ids=["no_tag", "rotated_tag"])
def test_size_matching_neither_orientation_is_refused(tmp_path, orientation):
    path = tmp_path / "s.jpg"
    _save_jpeg(path, _pattern(40, 20), orientation=orientation)
    with pytest.raises(ImageReadError) as e:
        open_rgb(path, (33, 21))
    assert e.value.reason == "size_mismatch" and e.value.path == str(path)
    msg = str(e.value)
    assert str(path) in msg and "40x20" in msg and "width 33, height 21" in msg
    assert ("20x40 with its EXIF orientation" in msg) == (orientation == 6)


def test_pixel_limit_is_read_at_call_time(tmp_path, monkeypatch):
    path = tmp_path / "p.png"
    arr = _pattern(20, 20)
    Image.fromarray(arr).save(path)  # 400 pixels
    before = _hashes(tmp_path)

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)
    assert pixel_limit() == 300
    with pytest.raises(ImageReadError) as e:
        open_rgb(path)
    assert e.value.reason == "too_large" and isinstance(e.value, OSError)
    msg = str(e.value)
    assert msg.startswith("image too large: ") and str(path) in msg
    assert "400 pixels" in msg and "limit of 300 pixels" in msg and "MAX_IMAGE_PIXELS" in msg

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 250)  # 400 <= 2 x 250: read, with PIL's own warning
    with pytest.warns(Image.DecompressionBombWarning):
        assert np.array_equal(read_rgb_array(path), arr)

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's guard off: no limit
    assert pixel_limit() is None
    assert np.array_equal(read_rgb_array(path), arr)
    assert _hashes(tmp_path) == before


@pytest.mark.parametrize("kind", ["missing", "truncated", "not_an_image", "empty"])
def test_unreadable_file_is_one_error_type_naming_the_file(tmp_path, kind):
    good = tmp_path / "good.jpg"
    _save_jpeg(good, _pattern(64, 48))
    path = tmp_path / f"{kind}.jpg"
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[:300])
    elif kind == "not_an_image":
        path.write_text("this is not an image")
    elif kind == "empty":
        path.write_bytes(b"")
    before = _hashes(tmp_path)
    with pytest.raises(ImageReadError) as e:
        open_rgb(path)
    assert e.value.reason == "unreadable" and isinstance(e.value, OSError)
    assert str(e.value).startswith(f"cannot read image {path}: ")
    assert _hashes(tmp_path) == before


# ------------------------------------------------------- training and evaluation read alike
def _coco_set(root: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Images with EXIF tags and bad sizes, one box each, and the pixels each one should give."""
    img_dir = root / "images"
    img_dir.mkdir()
    want: dict[str, np.ndarray] = {}
    stored = _save_jpeg(img_dir / "displayed.jpg", _pattern(48, 32, 1), orientation=6)
    want["displayed.jpg"] = np.rot90(stored, k=-1)  # annotated as shown: 32 x 48
    want["stored.jpg"] = _save_jpeg(img_dir / "stored.jpg", _pattern(48, 32, 2), orientation=6)
    want["flipped.jpg"] = np.rot90(
        _save_jpeg(img_dir / "flipped.jpg", _pattern(48, 32, 3), orientation=3), k=2
    )
    want["plain.png"] = _pattern(48, 32, 4)
    Image.fromarray(want["plain.png"]).save(img_dir / "plain.png")
    _save_jpeg(img_dir / "mismatch.jpg", _pattern(48, 32, 5))
    _big_png(img_dir / "big.png", 60)  # 3600 pixels: too large under the lowered limit
    sizes = {
        "displayed.jpg": (32, 48),
        "stored.jpg": (48, 32),
        "flipped.jpg": (48, 32),
        "plain.png": (48, 32),
        "mismatch.jpg": (50, 32),
        "big.png": (60, 60),
    }
    images = [
        {"id": i, "file_name": n, "width": w, "height": h} for i, (n, (w, h)) in enumerate(sizes.items(), 1)
    ]
    anns = [
        {"id": 10 + i, "image_id": i, "category_id": 1, "bbox": [2, 3, 20, 25], "area": 500.0, "iscrowd": 0}
        for i in range(1, len(images) + 1)
    ]
    ann = root / "ann.json"
    ann.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]})
    )
    return img_dir, ann, want


def test_training_and_evaluation_read_the_same_pixels(tmp_path, monkeypatch):
    img_dir, ann, want = _coco_set(tmp_path)
    before = _hashes(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1600)  # limit 3200: the 48x32 images pass, big.png not
    train = CocoDetection(img_dir, ann)
    gt = COCO()
    gt.dataset = json.loads(ann.read_text())
    gt.createIndex()
    evaluation = CocoImageList.from_coco(img_dir, gt)
    names = [e[1] for e in evaluation.entries]
    assert [train.coco.imgs[i]["file_name"] for i in train.ids] == names

    with pytest.warns(BadImageWarning) as rec, warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*stored.jpg: EXIF orientation")
        train_items = [train[i] for i in range(len(train))]
        eval_items = [evaluation[i] for i in range(len(evaluation))]
    for name, t_item, e_item in zip(names, train_items, eval_items):
        if name in ("mismatch.jpg", "big.png"):
            assert t_item is None and e_item is None, name
            continue
        expected = torch.from_numpy(want[name].copy()).permute(2, 0, 1).float() / 255.0
        assert torch.equal(t_item[0], expected), name
        assert torch.equal(e_item[0], expected), name
        h, w = expected.shape[1:]
        assert float(t_item[1]["boxes"][:, 2].max()) <= w and float(t_item[1]["boxes"][:, 3].max()) <= h
    assert train.skipped == evaluation.skipped == 2
    messages = [str(w.message) for w in rec]
    for name, reason in (("mismatch.jpg", "image size mismatch"), ("big.png", "image too large")):
        assert sum(name in m and reason in m for m in messages) == 2, messages  # train and eval, once each
    assert _hashes(tmp_path) == before


# ------------------------------------------------------------------------------ the tools
@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """A random 2-class detector checkpoint in train_det's layout (small input size)."""
    root = tmp_path_factory.mktemp("det")
    torch.manual_seed(0)
    model = get_model("fasterrcnn_ghostnet_320_fpn", num_classes=2, width=0.5)
    ckpt = {
        "model": model.state_dict(),
        "optimizer": {},
        "epoch": 0,
        "config": {"detector": "fasterrcnn_ghostnet_320_fpn", "width": 0.5, "min_size": 64, "max_size": 96},
        "detector": "fasterrcnn_ghostnet_320_fpn",
        "width": 0.5,
        "num_classes": 2,
        "label_to_cat_id": {1: 1},
        "category_names": {1: "thing"},
        "metrics": {},
    }
    torch.save(ckpt, root / "ckpt.pth")
    return root / "ckpt.pth"


def test_infer_skips_a_too_large_image_and_goes_on_with_the_folder(tmp_path, detector, capsys, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        Image.fromarray(_pattern(40, 32)).save(folder / name)
    _big_png(folder / "b.png", 60)
    rotated = _save_jpeg(folder / "d.jpg", _pattern(40, 32, 2), orientation=6)
    before = _hashes(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1600)  # limit 3200 < 60 x 60
    out_dir = tmp_path / "out"
    argv = [str(folder), "--checkpoint", str(detector), "--output-dir", str(out_dir), "--device", "cpu",
            "--score-threshold", "0"]  # fmt: skip
    assert _load_tool("infer")(argv) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    skip_lines = [line for line in cap.err.splitlines() if "b.png" in line]
    assert len(skip_lines) == 1 and "skipping" in skip_lines[0] and "image too large" in skip_lines[0]
    assert "3 image(s)" in cap.out and "1 unreadable file(s) skipped" in cap.out
    entries = json.loads((out_dir / "detections.json").read_text())
    assert [Path(e["file"]).name for e in entries] == ["a.png", "c.png", "d.jpg"]
    # a plain image is read as displayed: the EXIF-rotated JPEG is 32 wide, 40 high
    h, w = np.rot90(rotated, k=-1).shape[:2]
    assert (entries[2]["width"], entries[2]["height"]) == (w, h) == (32, 40)
    with Image.open(out_dir / "d.jpg") as drawn:
        assert drawn.size == (32, 40)
    assert {k: v for k, v in _hashes(tmp_path).items() if "/out/" not in k} == before


def test_eval_skips_and_counts_too_large_and_mismatched_images(tmp_path, detector, capsys, monkeypatch):
    img_dir, ann, _ = _coco_set(tmp_path)
    before = _hashes(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1600)
    out_dir = tmp_path / "eval"
    argv = ["--checkpoint", str(detector), "--val-images", str(img_dir), "--val-ann", str(ann),
            "--output-dir", str(out_dir), "--workers", "0", "--no-progress", "--device", "cpu",
            "--score-threshold", "0"]  # fmt: skip
    with pytest.warns(BadImageWarning) as rec, warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*stored.jpg: EXIF orientation")
        assert _load_tool("eval_det")(argv) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["images"] == 4 and metrics["skipped_images"] == 2
    assert "skipped 2 unreadable image(s)" in cap.out
    messages = [str(w.message) for w in rec]
    assert any("big.png" in m and "image too large" in m for m in messages), messages
    assert any("mismatch.jpg" in m and "image size mismatch" in m for m in messages), messages
    # only the images read are scored: no detection on the skipped ids (5, 6)
    dets = json.loads((out_dir / "detections.json").read_text())
    assert {d["image_id"] for d in dets} <= {1, 2, 3, 4}
    assert {k: v for k, v in _hashes(tmp_path).items() if "/eval/" not in k} == before


def _colour_folder(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k, name in enumerate(("red", "green", "blue")):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 90, (16, 16, 3)).astype(np.uint8)
                img[..., k] += 140
                Image.fromarray(img).save(root / split / name / f"{i:03d}.png")
    return root


def test_classification_folder_skips_counts_and_applies_exif(tmp_path, monkeypatch):
    data = _colour_folder(tmp_path / "data", 1)
    _big_png(data / "train" / "red" / "big.png", 30)
    rotated = _save_jpeg(data / "train" / "green" / "r.jpg", _pattern(20, 12), orientation=6)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # limit 600 < 900
    ds = SkippingImageFolder(data / "train")
    names = [Path(p).name for p, _ in ds.samples]
    with pytest.warns(BadImageWarning, match="big.png.*image too large"):
        items = [ds[i] for i in range(len(ds))]
    assert [n for n, it in zip(names, items) if it is None] == ["big.png"] and ds.skipped == 1
    assert np.array_equal(np.asarray(items[names.index("r.jpg")][0]), np.rot90(rotated, k=-1))
    batch = collate_skipping([(torch.zeros(3, 4, 4), 0), None, (torch.ones(3, 4, 4), 2)])
    assert batch.skipped == 1 and batch[1].tolist() == [0, 2] and batch[0].shape == (2, 3, 4, 4)
    empty = collate_skipping([None, None])
    assert empty.skipped == 2 and len(empty[1]) == 0


def test_train_cls_skips_and_counts_a_too_large_image(tmp_path, capsys, monkeypatch):
    data = _colour_folder(tmp_path / "data", 8)
    _big_png(data / "train" / "red" / "big.png", 40)  # 25 training images: batch 5 loads every one
    _big_png(data / "val" / "green" / "huge.png", 40)
    before = _hashes(tmp_path / "data")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # limit 800: 16x16 images pass, 40x40 not
    out = tmp_path / "run"
    argv = ["--data-path", str(data), "--model", "ghostnet", "--width", "0.1", "--image-size", "16",
            "--epochs", "1", "--batch-size", "5", "--workers", "0", "--threads", "1", "--device", "cpu",
            "--output-dir", str(out)]  # fmt: skip
    with pytest.warns(BadImageWarning) as rec:
        assert _load_tool("train_cls")(argv) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    messages = [str(w.message) for w in rec]
    assert any("big.png" in m and "image too large" in m for m in messages), messages
    assert any("huge.png" in m and "image too large" in m for m in messages), messages
    doc = json.loads((out / "metrics.json").read_text())
    entry = doc["history"][0]
    assert entry["train_skipped_images"] == 1 and entry["val_skipped_images"] == 1
    assert "skipped 1 train / 1 val unreadable image(s)" in cap.out + cap.err
    assert "(24 images)" in cap.out + cap.err  # val: the 24 readable images were scored
    assert _hashes(tmp_path / "data") == before


def test_visualize_too_large_image_is_one_line(tmp_path, capsys, monkeypatch):
    image = tmp_path / "big.png"
    _big_png(image, 60)
    before = _hashes(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    out = tmp_path / "grid.png"
    argv = [str(image), "--model", "ghostnet_050", "--size", "64", "--output", str(out)]
    assert _load_tool("visualize_ghost_maps")(argv) == 2
    _one_error_line(capsys.readouterr().err, "visualize_ghost_maps.py: error: image too large", str(image))
    assert not out.exists() and _hashes(tmp_path) == before


def test_train_det_dataset_skips_a_too_large_image(tmp_path, monkeypatch):
    """train_det's rule, under the call-time limit: warned, counted, ``None`` (collate drops it)."""
    img_dir = tmp_path / "img"
    img_dir.mkdir()
    im = Image.new("RGB", (48, 40), (10, 200, 30))
    ImageDraw.Draw(im).rectangle([4, 4, 20, 20], fill=(250, 250, 250))
    im.save(img_dir / "ok.png")
    _big_png(img_dir / "big.png", 80)
    images = [
        {"id": 1, "file_name": "ok.png", "width": 48, "height": 40},
        {"id": 2, "file_name": "big.png", "width": 80, "height": 80},
    ]
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    before = _hashes(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # limit 4000: 48x40 passes, 80x80 not
    ds = CocoDetection(img_dir, ann)
    with pytest.warns(BadImageWarning, match=r"big\.png.*image too large"):
        items = [ds[i] for i in range(len(ds))]
    assert items[1] is None and ds.skipped == 1
    assert tuple(items[0][0].shape) == (3, 40, 48)
    assert _hashes(tmp_path) == before
