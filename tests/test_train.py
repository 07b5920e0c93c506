"""Tests for the training engine and tools/train_det.py on tiny synthetic data.

Every run here is tiny (a few 96-pixel images, GhostNet 0.5x) so the default set stays fast;
the subprocess-heavy cases (a SIGKILLed run, 2 gloo processes) are marked slow.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ghostdet.config.detection import config_from_dict, load_config
from ghostdet.data.synthetic import SHAPE_CATEGORIES, make_synthetic_coco
from ghostdet.engine import NonFiniteLossError, build_datasets, train
from ghostdet.engine import state as state_module
from ghostdet.engine.solver import LRSchedule, build_optimizer
from ghostdet.engine.state import best_entry, match_param_layout
from ghostdet.errors import InputError
from ghostdet.evaluation import COCO_STAT_NAMES

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "train_det.py"
train_module = importlib.import_module(
    "ghostdet.engine.train"
)  # the module (the package exports the function)
CKPT_KEYS = {
    "model", "optimizer", "lr_scheduler", "scaler", "epoch", "config", "detector", "width", "num_classes",
    "label_to_cat_id", "category_names", "metrics",
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return make_synthetic_coco(root, num_train=16, num_val=4, image_size=96, seed=1, object_size=(24, 48))


def tiny_cfg(data, out, **over):
    base = {
        "detector": "retinanet",
        "width": 0.5,
        "min_size": 96,
        "max_size": 96,
        "train_images": data["train_images"],
        "train_ann": data["train_ann"],
        "val_images": data["val_images"],
        "val_ann": data["val_ann"],
        "epochs": 2,
        "batch_size": 4,
        "opt": "adamw",
        "lr": 2e-3,
        "lr_scheduler": "multistep",
        "lr_steps": [100],
        "warmup_iters": 0,
        "workers": 0,
        "threads": 1,
        "print_freq": 1,
        "vis_images": 1,
        "output_dir": str(out),
    }
    base.update(over)
    return config_from_dict(base)


def _tb_scalars(logdir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    out = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    out["__images__"] = acc.Tags()["images"]
    return out


def test_short_run_lowers_loss_and_writes_outputs(tiny_data, tmp_path):
    out = tmp_path / "run"
    doc = train(tiny_cfg(tiny_data, out, epochs=3, eval_every=1))

    # loss goes down: mean training loss of the last epoch below the first epoch's
    evals = json.loads((out / "metrics.json").read_text())
    assert evals == json.loads(json.dumps(doc))
    losses = [e["train_loss"] for e in evals["evaluations"]]
    assert [e["epoch"] for e in evals["evaluations"]] == [1, 2, 3]
    assert losses[-1] < losses[0]
    for entry in [*evals["evaluations"], evals["final"], evals["best"]]:
        for k in COCO_STAT_NAMES:
            assert 0.0 <= entry[k] <= 1.0 or entry[k] == -1.0
    assert evals["final"]["epoch"] == 3
    assert evals["best"]["AP"] == max(e["AP"] for e in evals["evaluations"])

    # checkpoints: the guide's format, readable with weights_only=True
    ckpt = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=True)
    assert set(ckpt) >= CKPT_KEYS
    assert ckpt["epoch"] == 3 and ckpt["detector"] == "retinanet_ghostnet_fpn" and ckpt["width"] == 0.5
    assert ckpt["num_classes"] == 5
    cats = dict(SHAPE_CATEGORIES[:4])
    assert ckpt["label_to_cat_id"] == {i + 1: c for i, c in enumerate(sorted(cats))}
    assert ckpt["category_names"] == {i + 1: cats[c] for i, c in enumerate(sorted(cats))}
    assert ckpt["config"]["detector"] == "retinanet" and ckpt["config"]["width"] == 0.5
    assert set(ckpt["metrics"]) == set(COCO_STAT_NAMES)
    assert (out / "best.pth").is_file()
    best = torch.load(out / "best.pth", map_location="cpu", weights_only=True)
    assert best["metrics"]["AP"] == evals["best"]["AP"] and best["epoch"] == evals["best"]["epoch"]

    # the resolved config is saved and reloads to the same config
    assert load_config(out / "config.yaml") == tiny_cfg(tiny_data, out, epochs=3, eval_every=1)

    # detections of the last evaluation: COCO results with the dataset's (non-contiguous) ids
    dets = json.loads((out / "detections.json").read_text())
    assert isinstance(dets, list)
    assert all(d["category_id"] in cats and len(d["bbox"]) == 4 for d in dets)

    # TensorBoard: every loss term, lr, AP metrics and validation images
    tb = _tb_scalars(out / "tensorboard")
    for tag in (
        "train/classification",
        "train/bbox_regression",
        "train/loss",
        "train/lr",
        "val/AP",
        "val/AP50",
    ):
        assert tag in tb, tag
    assert len(tb["val/AP"]) == 3
    assert len(tb["train/loss"]) == 3 * 4  # print_freq 1: one point per iteration (16 images / 4)
    assert any(t.startswith("val/image_0") for t in tb["__images__"])
    assert "epoch 3/3" in (out / "log.txt").read_text()


def _same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_resume_continues_exactly(tiny_data, tmp_path):
    # uninterrupted 2 epochs vs 1 epoch + resume: same weights, optimizer step count, lr, metrics
    full = tmp_path / "full"
    train(tiny_cfg(tiny_data, full, workers=1, warmup_iters=3))
    part = tmp_path / "part"
    train(tiny_cfg(tiny_data, part, epochs=1, workers=1, warmup_iters=3))
    first = torch.load(part / "checkpoint.pth", weights_only=True)
    assert first["epoch"] == 1 and first["global_step"] == 4
    train(tiny_cfg(tiny_data, part, epochs=2, workers=1, warmup_iters=3, resume="auto"))
    a = torch.load(full / "checkpoint.pth", weights_only=True)
    b = torch.load(part / "checkpoint.pth", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["global_step"] == b["global_step"] == 8
    assert a["lr_scheduler"]["last_epoch"] == b["lr_scheduler"]["last_epoch"] == 8
    _same_state(a["model"], b["model"])
    assert a["metrics"] == pytest.approx(b["metrics"], abs=1e-6)
    mb = json.loads((part / "metrics.json").read_text())
    assert [e["epoch"] for e in mb["evaluations"]] == [1, 2]
    ma = json.loads((full / "metrics.json").read_text())
    assert a["best_epoch"] == b["best_epoch"] == mb["best"]["epoch"] == ma["best"]["epoch"]
    # resuming a finished run trains nothing and keeps its results
    doc = train(tiny_cfg(tiny_data, part, epochs=2, workers=1, warmup_iters=3, resume="auto"))
    assert doc["final"]["epoch"] == 2


def test_resume_restores_the_lr_position_not_the_old_schedule():
    params = [torch.nn.Parameter(torch.zeros(1))]

    def scheduler(epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
        opt = torch.optim.SGD(params, lr=1.0)
        return torch.optim.lr_scheduler.LambdaLR(opt, LRSchedule("cosine", 10, epochs))

    old = scheduler(1)
    for _ in range(3):
        old.optimizer.step()
        old.step()
    new = scheduler(4)  # resumed with a longer --epochs
    state_module._restore_scheduler(new, old.state_dict())
    assert new.last_epoch == 3 and new.lr_lambdas[0].total_iters == 40
    new.optimizer.step()
    new.step()
    assert new.get_last_lr()[0] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 40)))


def test_best_evaluation_is_found_by_epoch():
    history = [{"epoch": 1, "AP": 0.25}, {"epoch": 2, "AP": 0.5}, {"epoch": 3, "AP": 0.5}]
    assert best_entry({"best_epoch": 1}, history) is history[0]
    assert best_entry({}, history) is history[1]  # older checkpoints: first highest AP
    assert best_entry({"best_epoch": 0}, []) is None


def test_nonfinite_loss_names_image_ids_and_keeps_checkpoint(tiny_data, tmp_path, monkeypatch):
    real_build = train_module.build_model
    seen: dict[str, list[int]] = {}

    def build_with_nan(cfg, num_classes):
        model = real_build(cfg, num_classes)
        forward = model.forward
        calls = {"n": 0}

        def patched(images, targets=None):
            out = forward(images, targets)
            if model.training:
                calls["n"] += 1
                if calls["n"] == 6:  # second batch of epoch 2 (4 batches per epoch)
                    seen["ids"] = [int(t["image_id"]) for t in targets]
                    out = {k: v * float("nan") for k, v in out.items()}
            return out

        model.forward = patched
        return model

    monkeypatch.setattr(train_module, "build_model", build_with_nan)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError) as e:
        train(tiny_cfg(tiny_data, out, epochs=3))
    msg = str(e.value)
    assert "epoch 2" in msg and "iteration 2" in msg
    assert len(seen["ids"]) == 4
    for i in seen["ids"]:
        assert str(i) in msg
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not list(out.glob(".*tmp*"))


def test_unreadable_images_are_skipped_and_counted(tiny_data, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(Path(tiny_data["root"]), root)
    victim = sorted((root / "train").glob("*.jpg"))[3]
    victim.write_bytes(b"not a jpeg at all")
    cfg = tiny_cfg(
        tiny_data, tmp_path / "bad", epochs=1, data_path=str(root), train_images=None, train_ann=None,
        val_images=None, val_ann=None,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="unreadable"):
        doc = train(cfg)
    assert doc["final"]["train_skipped_images"] == 1
    assert "skipped 1 unreadable image(s)" in (tmp_path / "bad" / "log.txt").read_text()


def test_synthetic_data_is_generated_from_the_recipe(tmp_path):
    root = tmp_path / "gen"
    cfg = config_from_dict(
        {"synthetic": {"root": str(root), "num_train": 6, "num_val": 2, "image_size": 64, "seed": 5,
                       "object_size": [16, 32], "num_categories": 3}}
    )  # fmt: skip
    assert cfg.uses_synthetic()
    train_ds, val_ds = build_datasets(cfg)
    assert (len(train_ds), len(val_ds)) == (6, 2)
    assert train_ds.num_classes == 4 and train_ds.label_to_cat_id == {1: 1, 2: 3, 3: 5}
    manifest = json.loads((root / "ghostdet_synthetic.json").read_text())
    assert manifest["object_size"] == [16, 32] and manifest["image_size"] == [64, 64]
    assert manifest["seed"] == 5
    image, _ = val_ds[0]
    assert image.shape == (3, 64, 64)
    before = (root / "annotations" / "instances_train.json").stat().st_mtime_ns
    build_datasets(cfg)  # second use: not regenerated
    assert (root / "annotations" / "instances_train.json").stat().st_mtime_ns == before


def test_missing_data_is_a_clear_error_before_training(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data, tmp_path / "x", train_ann=str(tmp_path / "nope.json"))
    with pytest.raises(InputError, match=r"nope\.json"):
        train(cfg)
    assert not (tmp_path / "x" / "checkpoint.pth").exists()


def test_amp_on_cpu_uses_bfloat16(tiny_data, tmp_path):
    doc = train(tiny_cfg(tiny_data, tmp_path / "amp", epochs=1, amp=True))
    assert doc["final"]["epoch"] == 1
    assert "bfloat16" in (tmp_path / "amp" / "log.txt").read_text()


def _tool_args(data, out, *extra):
    return [
        str(TOOL), "--config", str(REPO / "configs" / "retinanet_ghostnet_synthetic.yaml"),
        "--width", "0.5", "--min-size", "96", "--max-size", "96",
        "--train-images", data["train_images"], "--train-ann", data["train_ann"],
        "--val-images", data["val_images"], "--val-ann", data["val_ann"],
        "--batch-size", "2", "--opt", "adamw", "--lr", "0.002", "--warmup-iters", "0", "--workers", "0",
        "--print-freq", "1", "--output-dir", str(out), "--set", "vis_images=0", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_sigkilled_run_resumes_cleanly(tiny_data, tmp_path):
    out = tmp_path / "killed"
    # a fixed recipe (no lr steps reached), so the resumed run must reproduce the same epochs
    args = _tool_args(
        tiny_data, out, "--epochs", "3", "--eval-every", "1", "--lr-steps", "100", "--threads", "1"
    )
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    killed_at = None
    try:
        for line in proc.stdout:
            # 8 iterations per epoch: kill mid-way through epoch 2, after checkpoint 1 exists
            if line.startswith("epoch 2/3 [4/8]") and (out / "checkpoint.pth").exists():
                killed_at = torch.load(out / "checkpoint.pth", weights_only=True)["epoch"]
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL and killed_at == 1
    mid = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in mid["evaluations"]] == [1] and "final" not in mid

    r = subprocess.run(
        [sys.executable, *args, "--resume", "auto"], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed from" in r.stdout and "(epoch 1 done" in r.stdout
    assert "epoch 1/3" not in r.stdout  # nothing of epoch 1 is re-run
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["global_step"] == 3 * 8
    doc = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in doc["evaluations"]] == [1, 2, 3]
    assert doc["final"]["epoch"] == 3 and set(COCO_STAT_NAMES) <= set(doc["final"])
    assert not list(out.glob(".*tmp*"))


@pytest.mark.slow
def test_two_process_gloo_run(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
        *_tool_args(tiny_data, out, "--epochs", "2", "--device", "cpu"),
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es)" in r.stdout
    assert r.stdout.count("epoch 2/2:") == 1  # only rank 0 logs
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["final"]["epoch"] == 2
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    # 16 train images over 2 ranks, 2 per batch per rank: 4 iterations per epoch
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 8
    assert not any(k.startswith("module.") for k in ckpt["model"])
    # evaluation was gathered: every val image has been scored, not only rank 0's half
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["device"] == "cpu"
    assert doc["final"]["val_images_evaluated"] == 4
    dets = json.loads((out / "detections.json").read_text())
    val = json.loads(Path(tiny_data["val_ann"]).read_text())
    assert {d["image_id"] for d in dets} <= {im["id"] for im in val["images"]}


@pytest.mark.slow
def test_two_process_gloo_run_with_the_training_options_resumes(tiny_data, tmp_path):
    """EMA, accumulation, multi-scale sizes and patience under torchrun (2 gloo processes), then
    resumed for one more epoch: optimizer steps, EMA updates and the schedule count together."""
    out = tmp_path / "ddp_opts"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    opts = ["--device", "cpu", "--ema", "--ema-decay", "0.9", "--ema-warmup", "1", "--accum-steps", "2"]
    opts += ["--patience", "5", "--set", "min_size=[64,96]", "--set", "max_size=128"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launch += ["--master_port", "29519"]
    for extra in (["--epochs", "2"], ["--epochs", "3", "--resume", "auto"]):
        args = _tool_args(tiny_data, out, *extra, *opts)
        r = subprocess.run([*launch, *args], capture_output=True, text=True, timeout=900, env=env)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es)" in r.stdout and "EMA decay 0.9" in r.stdout
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    # 16 train images over 2 ranks, 2 per batch per rank: 4 batches an epoch, 2 optimizer steps
    assert ckpt["epoch"] == 3 and ckpt["global_step"] == 12
    assert ckpt["ema_updates"] == ckpt["lr_scheduler"]["last_epoch"] == 6
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["final"]["epoch"] == 3 and "ema" in doc["evaluations"][-1] and doc["stopped_early"] is False


def test_adamw_is_fused_and_steps_like_the_per_tensor_loop() -> None:
    from types import SimpleNamespace

    torch.manual_seed(0)
    # no norm after a biased conv: Adam would turn that bias's ~0 gradient (rounding noise) into full steps
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    twin = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    twin.load_state_dict(model.state_dict())
    cfg = SimpleNamespace(opt="adamw", lr=1e-2, weight_decay=0.05, momentum=0.9)
    fused = build_optimizer(cfg, model)
    assert fused.defaults["fused"] is True
    # norms and biases without weight decay, as in the per-tensor reference below
    decay = [p for n, p in twin.named_parameters() if p.ndim > 1]
    rest = [p for n, p in twin.named_parameters() if p.ndim <= 1]
    reference = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
        lr=1e-2,
        foreach=False,
    )
    x = torch.randn(2, 3, 9, 9)
    for _ in range(3):
        for net, opt in ((model, fused), (twin, reference)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
    assert not torch.equal(model[0].weight, twin[0].weight.new_zeros(()))  # it moved
    assert build_optimizer(SimpleNamespace(**{**vars(cfg), "opt": "sgd"}), model).defaults["momentum"] == 0.9


def test_optimizer_state_takes_the_parameter_layout_on_resume() -> None:
    # a state saved by a contiguous run, resumed into a channels_last model: the fused AdamW pairs
    # elements by storage order, so without match_param_layout this step would be wrong
    torch.manual_seed(0)
    ref = torch.nn.Parameter(torch.randn(6, 4, 3, 3))
    grads = [torch.randn(6, 4, 3, 3) for _ in range(3)]
    opt_ref = torch.optim.AdamW([ref], lr=1e-2, fused=True)
    for g in grads[:2]:
        ref.grad = g.clone()
        opt_ref.step()
    saved = copy.deepcopy(opt_ref.state_dict())
    results = {}
    for fix in (False, True):
        p = torch.nn.Parameter(ref.detach().clone().to(memory_format=torch.channels_last))
        opt = torch.optim.AdamW([p], lr=1e-2, fused=True)
        opt.load_state_dict(copy.deepcopy(saved))
        if fix:
            match_param_layout(opt)
            assert opt.state[p]["exp_avg"].stride() == p.stride()
        p.grad = grads[2].to(memory_format=torch.channels_last)
        opt.step()
        results[fix] = p.detach()
    ref.grad = grads[2].clone()
    opt_ref.step()
    torch.testing.assert_close(results[True], ref.detach())
    assert not torch.allclose(results[False], ref.detach(), atol=1e-4)  # the failure it prevents


def test_channels_last_run_trains_and_resumes(tiny_data, tmp_path):
    out = tmp_path / "cl"
    train(tiny_cfg(tiny_data, out, epochs=1))
    doc = train(tiny_cfg(tiny_data, out, epochs=2, channels_last=True, resume="auto"))
    assert doc["final"]["epoch"] == 2 and math.isfinite(doc["final"]["AP"])
    ckpt = torch.load(out / "checkpoint.pth", weights_only=True)
    conv = ckpt["model"]["backbone.body.conv_stem.weight"]
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    exp_avg = next(s["exp_avg"] for s in ckpt["optimizer"]["state"].values() if s["exp_avg"].dim() == 4)
    assert exp_avg.is_contiguous(memory_format=torch.channels_last)
