"""Classification training: data readers, the train_cls loop, checkpoints as backbone weights, ablation."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ghostdet.config.classification import ClsConfig, load_cls_config
from ghostdet.config.detection import CONFIG_DIR, ConfigError, default_config_path, load_config
from ghostdet.data.classification import (
    CIFAR_MEAN,
    CIFAR_STD,
    build_classification_datasets,
    make_synthetic_classification,
)
from ghostdet.engine.checkpoint import load_checkpoint
from ghostdet.engine.train_cls import build_classifier, load_classifier, topk_correct, train_classifier
from ghostdet.errors import ArgumentError, InputError
from ghostdet.models import IMAGENET_URLS, WeightsMismatchError, ghostnet
from ghostdet.models.weights import resolve_weights

REPO = Path(__file__).resolve().parents[1]
COLOURS = ("red", "green", "blue")


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _colour_set(root: Path, n_train: int, n_val: int, size: int = 16, seed: int = 0) -> Path:
    """An ImageFolder set whose class is the dominant colour channel (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for k, name in enumerate(COLOURS):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 90, (size, size, 3)).astype(np.uint8)
                img[..., k] += 140
                Image.fromarray(img).save(root / split / name / f"{i:03d}.png")
    return root


def _cfg(data: Path, out: Path, **kw) -> ClsConfig:
    base = dict(
        data_path=str(data), model="ghostnet", width=0.1, dropout=0.0, image_size=16, epochs=3,
        batch_size=8, lr=0.02, workers=0, threads=1, device="cpu", output_dir=str(out), print_freq=100,
    )  # fmt: skip
    return load_cls_config(None, {**base, **kw})


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short GhostNet run on the colour set (shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("cls")
    data = _colour_set(tmp / "data", 24, 8)
    torch.set_num_threads(1)
    doc = train_classifier(_cfg(data, tmp / "run"))
    return tmp, data, doc


# ----------------------------------------------------------------------------- data
def _write_cifar10(root: Path, n_per_batch: int = 4) -> tuple[np.ndarray, list[int]]:
    """CIFAR-10 in torchvision's python on-disk format (made-up pixels); returns the test batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    test = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
        if name == "test_batch":
            test = (data, labels)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    return test  # type: ignore[return-value]


def test_cifar10_reader_on_torchvision_format(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    data, labels = _write_cifar10(tmp_path)
    # made-up files cannot match torchvision's md5 sums: check existence only (the CLI keeps md5)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    train, val, classes = build_classification_datasets("cifar10", tmp_path, 32)
    assert len(train) == 20 and len(val) == 4 and classes[0] == "airplane" and len(classes) == 10
    x, y = val[2]
    assert x.shape == (3, 32, 32) and y == labels[2]
    # the evaluation transform is ToTensor + CIFAR normalisation of the CHW-stored row
    raw = data[2].reshape(3, 32, 32).astype(np.float32) / 255
    want = (raw - np.array(CIFAR_MEAN)[:, None, None]) / np.array(CIFAR_STD)[:, None, None]
    np.testing.assert_allclose(x.numpy(), want, atol=1e-5)
    xt, _ = train[0]
    assert xt.shape == (3, 32, 32)  # pad-4 random crop keeps the size


def test_cifar_missing_is_one_error_naming_files_and_download(tmp_path):
    with pytest.raises(InputError) as e:
        build_classification_datasets("cifar10", tmp_path, 32)
    msg = str(e.value)
    assert (
        "cifar-10-batches-py" in msg and "data_batch_1" in msg and "test_batch" in msg and "download" in msg
    )
    assert e.value.argument == "data_path"


def _tool(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_tool", REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_keeps_md5_check_for_made_up_cifar(tmp_path, capsys):
    _write_cifar10(tmp_path / "cifar")
    argv = [
        "--dataset",
        "cifar10",
        "--data-path",
        str(tmp_path / "cifar"),
        "--output-dir",
        str(tmp_path / "o"),
    ]
    assert _tool("train_cls").main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupted" in err[0] and "batches.meta" in err[0] and "download=True" in err[0]


def test_imagefolder_errors(tmp_path):
    with pytest.raises(InputError, match="train/ and val/"):
        build_classification_datasets("imagefolder", tmp_path, 32)
    make_synthetic_classification(tmp_path / "a", num_classes=2, num_train=1, num_val=1, image_size=16)
    (tmp_path / "a" / "val" / "circle").rename(tmp_path / "a" / "val" / "blob")
    with pytest.raises(ValueError, match="same class folders"):
        build_classification_datasets("imagefolder", tmp_path / "a", 16)


def test_synthetic_set_layout_and_determinism(tmp_path):
    a = make_synthetic_classification(tmp_path / "a", num_classes=3, num_train=2, num_val=1, image_size=24)
    b = make_synthetic_classification(tmp_path / "b", num_classes=3, num_train=2, num_val=1, image_size=24)
    train, val, classes = build_classification_datasets("imagefolder", a, 24)
    assert classes == ["circle", "square", "triangle"] and len(train) == 6 and len(val) == 3
    for p in sorted(a.rglob("*.png")):
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(b / p.relative_to(a))))


def test_topk_correct_against_manual_count():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 0])
    # sample 0: top-1 hit; sample 1: label 2 is 2nd; sample 2: label 0 is 3rd
    assert topk_correct(logits, labels, (1, 2, 3, 5)) == [1, 2, 3, 3]


# ----------------------------------------------------------------------------- the loop
def test_imagefolder_training_learns(trained, tmp_path):
    # width 0.1 (the shared run) is too narrow to learn reliably: float noise alone moved one CI run
    # from 0.96 to chance. At width 0.25, seeds 0-7 all reached 1.0 by epoch 7 and finished at 1.0
    # but one, which kept one class confused with another (0.67): so the best epoch must be near
    # perfect and the last clearly above chance (1/3)
    doc = train_classifier(_cfg(trained[1], tmp_path / "long", width=0.25, epochs=12))
    assert max(h["top1"] for h in doc["history"]) > 0.9
    assert doc["top1"] > 0.5


def test_imagefolder_training_writes_outputs(trained):
    tmp, _, doc = trained
    out = tmp / "run"
    assert doc["top5"] == 1.0  # 3 classes: top-5 always hits
    assert [h["epoch"] for h in doc["history"]] == [1, 2, 3]
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["top1"] == doc["top1"] and 0 <= on_disk["top1"] <= 1
    assert yaml.safe_load((out / "config.yaml").read_text())["width"] == 0.1
    assert "val top-1" in (out / "log.txt").read_text()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    best = torch.load(out / "best.pth", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["classes"] == sorted(COLOURS) and ckpt["task"] == "classification"
    assert best["metrics"]["top1"] == max(h["top1"] for h in doc["history"])
    # the stored model reproduces the reported accuracy
    model, _ = load_classifier(out / "checkpoint.pth")
    _, val, _ = build_classification_datasets("imagefolder", tmp / "data", 16)
    x = torch.stack([val[i][0] for i in range(len(val))])
    y = torch.tensor([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert acc == pytest.approx(doc["top1"])


def test_resume_equals_uninterrupted_run(trained, tmp_path, monkeypatch):
    from ghostdet.engine import train_cls

    tmp, data, _ = trained
    real_eval, calls = train_cls.evaluate_classifier, []

    def eval_then_crash(*args, **kwargs):  # the run dies in epoch 2, before its checkpoint
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(train_cls, "evaluate_classifier", eval_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(_cfg(data, tmp_path / "resumed"))
    assert torch.load(tmp_path / "resumed" / "checkpoint.pth", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(train_cls, "evaluate_classifier", real_eval)
    doc = train_classifier(_cfg(data, tmp_path / "resumed", resume="auto"))
    a = torch.load(tmp / "run" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pth", weights_only=True)
    assert b["epoch"] == 3 and b["global_step"] == a["global_step"] == 27
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [h["top1"] for h in doc["history"]] == [h["top1"] for h in a["history"]]
    assert "resumed from" in (tmp_path / "resumed" / "log.txt").read_text()


def test_nan_guard_stops_training(trained, tmp_path):
    from ghostdet.engine import NonFiniteLossError

    _, data, _ = trained
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        train_classifier(_cfg(data, tmp_path / "nan", epochs=1, lr=1e30))
    assert not (tmp_path / "nan" / "checkpoint.pth").exists()


def test_build_classifier_models_and_errors():
    from ghostdet.models.ghostnet import GhostModule

    base = ClsConfig(model="resnet56_cifar", ghostify=True, ratio=3, dw_size=1)
    m = build_classifier(base, 7)
    assert m.fc.out_features == 7 and isinstance(m.layer1[0].conv1, GhostModule)
    assert m.layer1[0].conv1.ratio == 3
    assert build_classifier(ClsConfig(model="mobilenet_v2"), 5).classifier[-1].out_features == 5
    with pytest.raises(ConfigError, match="not one of"):
        build_classifier(ClsConfig(model="alexnet9"), 5)
    with pytest.raises(ConfigError, match="weights"):
        build_classifier(ClsConfig(model="vgg16_cifar", weights="imagenet"), 5)
    with pytest.raises(ConfigError, match="weights"):
        build_classifier(ClsConfig(model="resnet50", weights="imagenet"), 5)


def test_classifier_names_come_from_the_registry():
    from ghostdet.engine.train_cls import TORCHVISION_BASELINES, classifier_names
    from ghostdet.models import list_models

    names = classifier_names()
    assert set(names) == set(list_models(kind="classifier")) | set(TORCHVISION_BASELINES)
    assert {"ghostnet", "ghostnet_050", "vgg16_cifar", "resnet56_cifar", "mobilenet_v3_large"} <= set(names)
    # the generic "ghostnet" takes the config's width; a name that binds a width keeps its own
    half = build_classifier(ClsConfig(model="ghostnet", width=0.5), 4)
    named = build_classifier(ClsConfig(model="ghostnet_050", width=1.3), 4)
    assert [p.shape for p in half.parameters()] == [p.shape for p in named.parameters()]
    assert half.classifier.out_features == 4


# ----------------------------------------------------------------------------- checkpoint as backbone
@pytest.fixture(scope="module")
def ckpt_110(tmp_path_factory):
    """A width-1.1 GhostNet checkpoint written by the train_cls loop (1 epoch on tiny images)."""
    tmp = tmp_path_factory.mktemp("cls110")
    data = _colour_set(tmp / "data", 4, 2)
    torch.set_num_threads(1)
    train_classifier(_cfg(data, tmp / "run", width=1.1, epochs=1, batch_size=4))
    return tmp / "run" / "best.pth"


def test_checkpoint_is_ghostnet_weights_unchanged(ckpt_110):
    trunk = load_checkpoint(ckpt_110)["model"]
    same = ghostnet(width=1.1, num_classes=3, weights=ckpt_110)
    for k, v in same.state_dict().items():
        assert torch.equal(v, trunk[k]), k
    other = ghostnet(width=1.1, num_classes=1000, weights=ckpt_110)  # new head: only it is skipped
    assert torch.equal(other.conv_stem.weight, trunk["conv_stem.weight"])
    with pytest.raises(WeightsMismatchError, match="shape mismatch"):
        ghostnet(width=1.0, num_classes=3, weights=ckpt_110)


@pytest.mark.parametrize(
    "builder", ["fasterrcnn_ghostnet_fpn", "fasterrcnn_ghostnet_320_fpn", "retinanet_ghostnet_fpn"]
)
def test_checkpoint_as_weights_backbone_is_strict(ckpt_110, builder, tmp_path):
    from ghostdet.models import get_model

    trunk = load_checkpoint(ckpt_110)["model"]
    det = get_model(builder, num_classes=4, width=1.1, weights_backbone=str(ckpt_110))
    body = det.backbone.body
    assert torch.equal(body.conv_stem.weight, trunk["conv_stem.weight"])
    bn = body.blocks[6][3].ghost1.primary_conv[1]
    assert torch.equal(bn.running_var, trunk["blocks.6.3.ghost1.primary_conv.1.running_var"])
    # strict: a checkpoint missing one trunk tensor is refused, naming it
    bad = dict(load_checkpoint(ckpt_110))
    bad["model"] = {k: v for k, v in bad["model"].items() if k != "blocks.3.0.se.conv_reduce.weight"}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsMismatchError, match=r"missing \(1\): blocks\.3\.0\.se\.conv_reduce\.weight"):
        get_model(builder, num_classes=4, width=1.1, weights_backbone=str(tmp_path / "bad.pth"))


def test_train_det_weights_backbone_file_uses_the_checkpoint(ckpt_110):
    from ghostdet.engine.train import build_model

    tool = _tool("train_det")
    args = tool.parse_args(
        ["--config", str(CONFIG_DIR / "fasterrcnn_ghostnet110_coco_1x.yaml"), "--data-path", "/nowhere",
         "--weights-backbone", str(ckpt_110)]
    )  # fmt: skip
    cfg = tool.resolve_config(args)
    assert cfg.width == 1.1 and cfg.weights_backbone == str(ckpt_110)
    det = build_model(cfg, num_classes=3)
    trunk = load_checkpoint(ckpt_110)["model"]
    assert torch.equal(det.backbone.body.blocks[7][0].conv_dw.weight, trunk["blocks.7.0.conv_dw.weight"])


# ----------------------------------------------------------------------------- recipes and messages
def test_no_11_weights_message_names_both_ways_out():
    with pytest.raises(ArgumentError, match=r"no published ImageNet weights for GhostNet width 1\.1") as e:
        resolve_weights("imagenet", 1.1)
    assert "Train from scratch (no weights)" in str(e.value) and "give a checkpoint file" in str(e.value)
    assert "train_cls.py --model ghostnet --width 1.1" in str(e.value)


def test_default_coco_recipes_have_published_weights():
    for det in ("fasterrcnn", "fasterrcnn_320", "retinanet"):
        cfg = load_config(default_config_path(det, real_data=True))
        assert cfg.detector == det and cfg.width == 1.0 and cfg.weights_backbone == "imagenet"
        assert cfg.width in IMAGENET_URLS
        paper = CONFIG_DIR / default_config_path(det, real_data=True).name.replace(
            "ghostnet100", "ghostnet110"
        )
        header = paper.read_text().split("\ndetector:")[0]
        assert (
            load_config(paper).width == 1.1
            and "tools/train_cls.py" in header
            and "--weights-backbone" in header
        )


def test_classification_recipes():
    for name, model, ghost in [
        ("cls_vgg16_cifar10", "vgg16_cifar", False),
        ("cls_ghost_vgg16_cifar10", "vgg16_cifar", True),
        ("cls_resnet56_cifar10", "resnet56_cifar", False),
        ("cls_ghost_resnet56_cifar10", "resnet56_cifar", True),
    ]:
        c = load_cls_config(CONFIG_DIR / f"{name}.yaml")
        assert (c.model, c.ghostify, c.dataset, c.image_size) == (model, ghost, "cifar10", 32)
        assert (c.opt, c.momentum, c.lr, c.lr_scheduler, c.epochs, c.batch_size, c.weight_decay) == (
            "sgd", 0.9, 0.1, "cosine", 200, 128, 5e-4,
        )  # fmt: skip
        if ghost:
            assert (c.ratio, c.dw_size) == (2, 3)
    for w in (1.0, 1.1):
        c = load_cls_config(CONFIG_DIR / f"cls_ghostnet{round(w * 100)}_imagenet.yaml")
        assert (c.model, c.width, c.dropout, c.momentum, c.weight_decay) == ("ghostnet", w, 0.2, 0.9, 4e-5)
        assert c.lr == 0.4 and c.batch_size * 8 == 1024 and c.image_size == 224
    with pytest.raises(ConfigError, match="'epochz'"):
        load_cls_config(None, {"epochz": 1})


# ----------------------------------------------------------------------------- ablation and visualisation
def test_ablation_writes_table_and_skips_done_cells(trained, tmp_path, monkeypatch):
    from ghostdet.analysis import count_macs, count_params
    from ghostdet.engine import ablation
    from ghostdet.models.ghostify import ghostify

    _, data, _ = trained
    base = _cfg(data, tmp_path / "unused", epochs=1)
    rows = ablation.run_ablation(base, tmp_path / "sweep", ratios=[2, 3], dw_sizes=[1], baseline=False)
    assert [(r["s"], r["d"]) for r in rows] == [("2", "1"), ("3", "1")]
    for r in rows:
        ref, _ = ghostify(ghostnet(width=0.1, num_classes=3), ratio=int(r["s"]), dw_size=1)
        assert r["params"] == count_params(ref)
        assert r["macs"] == count_macs(ref.eval(), (1, 3, 16, 16))
    assert rows[0]["params"] > rows[1]["params"]  # larger s: fewer parameters
    md = (tmp_path / "sweep" / "ablation.md").read_text()
    assert md.count("\n| ghostnet | ") == 2 and "top-1" in md
    # a resumed run skips both cells (training would fail) and keeps the table
    monkeypatch.setattr("ghostdet.engine.train_cls.train_classifier", lambda cfg: 1 / 0)
    resumed = dataclasses.replace(base, resume="auto")
    again = ablation.run_ablation(resumed, tmp_path / "sweep", ratios=[2, 3], dw_sizes=[1], baseline=False)
    assert [r["top1"] for r in again] == [r["top1"] for r in rows]
    # a new sweep leaves the folder alone and takes the next free name
    before = (tmp_path / "sweep" / "ablation.csv").read_bytes()
    lines: list[str] = []
    with pytest.raises(ZeroDivisionError):  # it trains its own cells
        ablation.run_ablation(
            base, tmp_path / "sweep", ratios=[2], dw_sizes=[1], baseline=False, log=lines.append
        )
    assert (tmp_path / "sweep" / "ablation.csv").read_bytes() == before
    assert "writing to" in lines[0] and str(tmp_path / "sweep2") in lines[0]


def test_visualize_accepts_train_cls_checkpoint(trained, tmp_path):
    from ghostdet.analysis.ghost_maps import run_visualize

    tmp, data, _ = trained
    image = next((data / "val" / "red").glob("*.png"))
    lines: list[str] = []
    res = run_visualize(
        image,
        "blocks.1.0.ghost1",
        checkpoint=tmp / "run" / "best.pth",
        output=tmp_path / "g.png",
        log=lines.append,
    )
    assert Path(res["output"]).is_file() and res["module"] == "blocks.1.0.ghost1"
    assert "blocks.1.0.ghost1" in res["cosine"] and any("best.pth" in s or "wrote" in s for s in lines)


# ----------------------------------------------------------------------------- processes
@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_weights(trained, tmp_path):
    tmp, data, _ = trained
    out = tmp_path / "killed"
    args = [
        sys.executable, str(REPO / "tools" / "train_cls.py"), "--data-path", str(data), "--model", "ghostnet",
        "--width", "0.1", "--set", "dropout=0.0", "--image-size", "16", "--epochs", "3", "--batch-size", "8",
        "--lr", "0.02", "--workers", "0", "--threads", "1", "--device", "cpu", "--output-dir", str(out),
        "--print-freq", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    killed_at = None
    try:
        for line in proc.stdout:
            # 9 iterations per epoch: kill mid-way through epoch 2, after checkpoint 1 exists
            if line.startswith("epoch 2/3 [4/9]") and (out / "checkpoint.pth").exists():
                killed_at = torch.load(out / "checkpoint.pth", weights_only=True)["epoch"]
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL and killed_at == 1
    r = subprocess.run([*args, "--resume", "auto"], capture_output=True, text=True, timeout=600, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed from" in r.stdout and "epoch 1/3" not in r.stdout
    a = torch.load(tmp / "run" / "checkpoint.pth", weights_only=True)
    b = torch.load(out / "checkpoint.pth", weights_only=True)
    assert b["epoch"] == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert not list(out.glob(".*tmp*"))


@pytest.mark.slow
def test_two_process_torchrun(trained, tmp_path):
    _, data, _ = trained
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
        str(REPO / "tools" / "train_cls.py"), "--data-path", str(data), "--model", "ghostnet",
        "--width", "0.1", "--image-size", "16", "--epochs", "2", "--batch-size", "4", "--workers", "0",
        "--device", "cpu", "--output-dir", str(out),
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es)" in r.stdout and r.stdout.count("epoch 2/2:") == 1  # only rank 0 logs
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    # 72 train images over 2 ranks, 4 per batch per rank: 9 iterations per epoch
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 18
    assert not any(k.startswith("module.") for k in ckpt["model"])
    assert "(24 images)" in r.stdout  # every val image evaluated once across the two ranks
