"""Tests for the training config: YAML recipes, typed loading, CLI overrides, lr schedule."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ghostdet.config.detection import (
    CONFIG_DIR,
    ConfigError,
    TrainConfig,
    config_from_dict,
    default_config_path,
    load_config,
)
from ghostdet.config.recipe import save_config
from ghostdet.engine.solver import LRSchedule
from ghostdet.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("train_det_tool", REPO / "tools" / "train_det.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_shipped_recipe_loads():
    paths = sorted(p for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("cls_"))  # cls_: train_cls
    assert len(paths) >= 5
    for p in paths:
        cfg = load_config(p)
        assert isinstance(cfg, TrainConfig)


@pytest.mark.parametrize(
    "name, detector, lr",
    [
        ("fasterrcnn_ghostnet110_coco_1x", "fasterrcnn", 0.02),
        ("retinanet_ghostnet110_coco_1x", "retinanet", 0.01),
    ],
)
def test_paper_coco_recipes(name, detector, lr):
    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    assert cfg.detector == detector
    assert cfg.width == 1.1
    assert cfg.weights_backbone == "imagenet"
    assert cfg.epochs == 12
    assert cfg.lr_scheduler == "multistep" and cfg.lr_steps == [8, 11] and cfg.lr_gamma == 0.1
    assert cfg.opt == "sgd" and cfg.lr == lr
    assert (cfg.min_size, cfg.max_size) == ([800], 1333)  # one size (a list: multi-scale training)
    assert cfg.warmup_iters > 0
    assert cfg.batch_size * 8 == 16  # per process, for 8 processes


@pytest.mark.parametrize(
    ("name", "builder"),
    [
        ("fasterrcnn_ghostnetv2_100_coco_1x", "fasterrcnn_ghostnetv2_fpn"),
        ("retinanet_ghostnetv2_100_coco_1x", "retinanet_ghostnetv2_fpn"),
    ],
)
def test_ghostnetv2_coco_recipes_are_the_paper_setting_on_v2(name, builder):
    """The V2 1.0x recipes differ from the GhostNet 1.1x ones only in trunk and output folder."""
    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    assert (cfg.backbone, cfg.width, cfg.builder) == ("ghostnetv2", 1.0, builder)
    v1 = load_config(CONFIG_DIR / f"{name.replace('ghostnetv2_100', 'ghostnet110')}.yaml").to_dict()
    diff = {k for k, v in cfg.to_dict().items() if v1[k] != v}
    assert diff == {"backbone", "width", "output_dir"}


def test_default_recipe_selection():
    for det in ("fasterrcnn", "fasterrcnn_320", "retinanet"):
        p = default_config_path(det)
        assert p.is_file()
        cfg = load_config(p)
        assert cfg.detector == det
        assert cfg.uses_synthetic()
        assert cfg.weights_backbone is None  # must run without a download
    coco = load_config(default_config_path("retinanet", real_data=True))
    assert coco.weights_backbone == "imagenet" and coco.min_size == [800]
    assert coco.width == 1.0  # the published checkpoint's width (1.1x needs a train_cls.py checkpoint)
    with pytest.raises(ConfigError, match="detector"):
        default_config_path("yolo")
    # the file name is the alias's: {alias}_ghostnet100_coco_1x.yaml
    coco_320 = default_config_path("fasterrcnn_320", real_data=True)
    assert coco_320.name == "fasterrcnn_320_ghostnet100_coco_1x.yaml"
    with pytest.raises(ConfigError, match=r"no COCO recipe for --detector retinanet_320 .*--config FILE"):
        default_config_path("retinanet_320", real_data=True)  # no such recipe is shipped


def test_unknown_keys_are_errors_naming_the_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("detector: retinanet\nepochz: 3\n")
    with pytest.raises(ConfigError, match="'epochz'") as e:
        load_config(p)
    assert str(p) in str(e.value)
    p.write_text("synthetic:\n  num_trian: 3\n")
    with pytest.raises(ConfigError, match=r"'synthetic\.num_trian'"):
        load_config(p)
    p.write_text("augment:\n  flip: 0.5\n")
    with pytest.raises(ConfigError, match="flip"):
        load_config(p)
    with pytest.raises(ConfigError, match="'lr_stepz'"):
        config_from_dict({}, {"lr_stepz": [1]})


def test_types_and_values_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="epochs: expected an integer"):
        config_from_dict({"epochs": "ten"})
    with pytest.raises(ConfigError, match="amp: expected true/false"):
        config_from_dict({"amp": "yes"})
    with pytest.raises(ConfigError, match="opt"):
        config_from_dict({"opt": "lamb"})
    with pytest.raises(ConfigError, match="batch_size: must be >= 1"):
        config_from_dict({"batch_size": 0})
    with pytest.raises(ConfigError, match="lr_steps: must be increasing"):
        config_from_dict({"lr_steps": [11, 8]})
    with pytest.raises(ConfigError, match="model_kwargs"):
        config_from_dict({"model_kwargs": {"num_classes": 3}})
    # ints are accepted for floats, a scalar for a list
    cfg = config_from_dict({"lr": 1, "lr_steps": 5})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.lr_steps == [5]
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)
    with pytest.raises(InputError, match=r"missing\.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_save_and_reload_round_trip(tmp_path):
    cfg = config_from_dict(
        {
            "detector": "fasterrcnn",
            "lr_steps": [3, 4],
            "synthetic": {"num_train": 7, "object_size": [10, 20]},
        },
        {"augment": {"hflip_prob": 0.0}, "model_kwargs": {"box_score_thresh": 0.1}},
    )
    back = load_config(save_config(cfg, tmp_path / "c.yaml"))
    assert back == cfg
    assert back.synthetic.generator_kwargs()["object_size"] == (10, 20)
    assert "num_categories" not in back.synthetic.generator_kwargs()  # None -> generator default


def test_cli_flags_override_only_when_passed(tmp_path):
    tool = _tool()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("detector: fasterrcnn\nepochs: 7\nlr: 0.5\nwidth: 0.5\namp: true\n")
    cfg = tool.resolve_config(tool.parse_args(["--config", str(recipe)]))
    assert (cfg.detector, cfg.epochs, cfg.lr, cfg.width, cfg.amp) == ("fasterrcnn", 7, 0.5, 0.5, True)
    # defaults of TrainConfig must not leak in over the YAML: untouched keys keep the recipe's value
    cfg = tool.resolve_config(
        tool.parse_args(
            ["--config", str(recipe), "--epochs", "2", "--lr-steps", "1", "2", "--no-amp",
             "--detector", "retinanet", "--set", "synthetic.num_train=5",
             "--set", "augment={hflip_prob: 0.0}", "--weights-backbone", "none"]
        )
    )  # fmt: skip
    assert (cfg.detector, cfg.epochs, cfg.lr, cfg.width, cfg.amp) == ("retinanet", 2, 0.5, 0.5, False)
    assert cfg.lr_steps == [1, 2] and cfg.synthetic.num_train == 5 and cfg.augment == {"hflip_prob": 0.0}
    assert cfg.weights_backbone is None
    # no --config: the synthetic recipe of the detector, or the COCO recipe with a data path
    cfg = tool.resolve_config(tool.parse_args(["--detector", "fasterrcnn_320"]))
    assert cfg == load_config(CONFIG_DIR / "fasterrcnn_320_ghostnet_synthetic.yaml")
    cfg = tool.resolve_config(tool.parse_args(["--data-path", str(tmp_path)]))
    assert cfg.detector == "retinanet" and cfg.width == 1.0 and cfg.data_path == str(tmp_path)
    assert cfg.weights_backbone == "imagenet"  # the published 1.0x checkpoint
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        tool.resolve_config(tool.parse_args(["--set", "nothing"]))


def test_tool_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector: retinanet\nbogus_key: 1\n")
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_det.py"), "--config", str(bad)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "bogus_key" in lines[0] and "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_det.py"), "--detector", "yolo"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "yolo" in r.stderr
    r = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_det.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0
    for flag in ("--detector", "--lr-scheduler", "--warmup-iters", "--resume", "--eval-every", "--min-size"):
        assert flag in r.stdout


def _expected_multistep(it, ipe, steps, gamma, warm, wf):
    f = gamma ** len([s for s in steps if it // ipe >= s])
    if it < warm:
        f *= wf + (1 - wf) * it / warm
    return f


def test_lr_schedule_values():
    s = LRSchedule("multistep", iters_per_epoch=10, epochs=12, steps=[8, 11], gamma=0.1, warmup_iters=5,
                   warmup_factor=0.001)  # fmt: skip
    for it in (0, 1, 4, 5, 79, 80, 109, 110, 119):
        assert s(it) == pytest.approx(_expected_multistep(it, 10, [8, 11], 0.1, 5, 0.001))
    assert s(0) == pytest.approx(0.001)
    assert s(80) == pytest.approx(0.1) and s(110) == pytest.approx(0.01)
    c = LRSchedule("cosine", iters_per_epoch=10, epochs=4, warmup_iters=0, min_ratio=0.1)
    assert c(0) == pytest.approx(1.0)
    assert c(20) == pytest.approx(0.1 + 0.9 * 0.5)
    assert c(40) == pytest.approx(0.1)
    assert c(10) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_yaml_of_config_is_plain():
    # the resolved config goes into checkpoints read with weights_only=True: plain types only
    d = load_config(CONFIG_DIR / "retinanet_ghostnet_synthetic.yaml").to_dict()
    assert yaml.safe_load(yaml.safe_dump(d)) == d
