"""Bad flags and recipe values: every one is a single error line naming the flag or key and its source.

The ranges are declared with the config fields (``ghostdet.config.recipe.setting``), so the matrix
runs each class of bad value through each tool's ``main()`` (exit status 2, one line, no
traceback, nothing written, the recipe file unchanged), and the library tests check the
declarations themselves and the ``model_kwargs`` check against the builders' real signatures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
import typing
from pathlib import Path

import pytest
import torch
from test_bad_input import _load_tool

from ghostdet.config.classification import ClsConfig, load_cls_config
from ghostdet.config.detection import (
    MAX_SEED,
    MAX_SYNTHETIC_IMAGE_SIZE,
    TrainConfig,
    config_from_dict,
    load_config,
)
from ghostdet.config.recipe import Check, ConfigError, flag_type

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "retinanet_ghostnet_synthetic.yaml"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(tool: str, argv: list[str]) -> int:
    """A tool's exit status: its return value, or argparse's SystemExit code."""
    try:
        return _load_tool(tool)(argv)
    except SystemExit as e:
        return e.code


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and ": error: " in lines[0], err
    return lines[0]


# ------------------------------------------------------------------------- files the cases use
def _recipes(root: Path) -> dict[str, Path]:
    files = {
        "binary.yaml": b"\xff\xfe\x00\x01GIF89a\x00",
        "inf_lr.yaml": b"lr: .inf\n",
        "typo_kwargs.yaml": b"detector: fasterrcnn\nmodel_kwargs:\n  box_detections_per_imgs: 5\n",
        "cls_binary.yaml": b"\x89PNG\r\n\x1a\n\x00\x00",
    }
    out = {}
    for name, data in files.items():
        (root / name).write_bytes(data)
        out[name] = root / name
    return out


# (case, tool, argv (RECIPE / FILE:<name> substituted), strings the error line must hold,
#  a string it must not hold (the recipe's name when the value came from a flag))
_R = "retinanet_ghostnet_synthetic.yaml"
CASES = [
    # train_det: flags out of range
    ("det_min_size_zero", "train_det", ["--min-size", "0"],
     ["--min-size", "must be in [1, 8192]", "got 0"], _R),
    ("det_min_size_negative", "train_det", ["--min-size", "-4"], ["--min-size", "got -4"], _R),
    ("det_lr_inf", "train_det", ["--lr", "inf"], ["--lr", "must be a finite number", "inf"], _R),
    ("det_lr_nan", "train_det", ["--lr", "nan"], ["--lr", "must be a finite number", "nan"], _R),
    ("det_seed_overflow", "train_det", ["--seed", str(2**63)], ["--seed", "2**63 - 1", str(2**63)], _R),
    ("det_seed_negative", "train_det", ["--seed", "-1"], ["--seed", "must be in [0, 2**63 - 1]"], _R),
    ("det_device_meta", "train_det", ["--device", "meta"],
     ["--device", "auto, cpu, cuda or cuda:N", "'meta'"], _R),
    ("det_device_mps", "train_det", ["--device", "mps"], ["--device", "'mps'"], _R),
    ("det_synthetic_huge", "train_det", ["--synthetic-image-size", "100000"],
     ["--synthetic-image-size", f"must be in [32, {MAX_SYNTHETIC_IMAGE_SIZE}]", "sane"], _R),
    ("det_lr_steps_item", "train_det", ["--lr-steps", "3", "0"], ["--lr-steps", "lr_steps[1]", ">= 1"], _R),
    ("det_tbl_range", "train_det", ["--trainable-backbone-layers", "7"],
     ["--trainable-backbone-layers", "[0, 5]"], _R),
    # train_det: --set (blamed on --set, never on the recipe file)
    ("det_set_lr_inf", "train_det", ["--set", "lr=.inf"], ["--set lr=.inf", "finite"], _R),
    ("det_set_momentum_nan", "train_det", ["--set", "momentum=.nan"], ["--set momentum=.nan", "finite"], _R),
    ("det_set_seed_huge", "train_det", ["--set", f"seed={10**30}"], ["--set seed=", "2**63 - 1"], _R),
    ("det_set_augment_unknown", "train_det", ["--set", "augment.hflip=0"],
     ["--set augment.hflip=0", "unknown augmentation option", "did you mean hflip_prob"], _R),
    ("det_set_augment_range", "train_det", ["--set", "augment.hflip_prob=2"],
     ["--set augment.hflip_prob=2", "[0, 1]"], _R),
    ("det_set_augment_inf", "train_det", ["--set", "augment.translate=.inf"],
     ["--set augment.translate=.inf", "finite"], _R),
    ("det_set_kwargs_typo", "train_det", ["--set", "model_kwargs.topk_candidate=5"],
     ["--set model_kwargs.topk_candidate=5", "'topk_candidate'", "did you mean topk_candidates"], _R),
    ("det_set_kwargs_type", "train_det", ["--set", "model_kwargs.score_thresh=high"],
     ["--set model_kwargs.score_thresh=high", "must be a finite number", "'high'"], _R),
    ("det_set_kwargs_module", "train_det", ["--set", "model_kwargs.head=big"],
     ["--set model_kwargs.head=big", "a module"], _R),
    ("det_set_synthetic_item", "train_det", ["--set", "synthetic.object_size=[4, 9]"],
     ["--set synthetic.object_size=[4, 9]", "synthetic.object_size[0]", "[8, "], _R),
    # train_det: recipe files (the file is named)
    ("det_recipe_binary", "train_det", ["--config", "FILE:binary.yaml"],
     ["binary.yaml", "not UTF-8 text"], None),
    ("det_recipe_inf", "train_det", ["--config", "FILE:inf_lr.yaml"],
     ["inf_lr.yaml", "lr: must be a finite"], None),
    ("det_recipe_kwargs_typo", "train_det", ["--config", "FILE:typo_kwargs.yaml"],
     ["typo_kwargs.yaml", "model_kwargs.box_detections_per_imgs", "did you mean box_detections_per_img"],
     None),
    # train_cls / ablate_ghost share ClsConfig's declarations
    ("cls_lr_inf", "train_cls", ["--lr", "inf"], ["--lr", "finite"], None),
    ("cls_seed_negative", "train_cls", ["--seed", "-1"], ["--seed", "[0, 2**63 - 1]"], None),
    ("cls_device_meta", "train_cls", ["--device", "meta"], ["--device", "'meta'"], None),
    ("cls_image_size_huge", "train_cls", ["--image-size", "100000"],
     ["--image-size", "[1, 8192]", "sane"], None),
    ("cls_dw_size_even", "train_cls", ["--dw-size", "4"], ["--dw-size", "odd integer"], None),
    ("cls_set_dropout_nan", "train_cls", ["--set", "dropout=.nan"], ["--set dropout=.nan", "finite"], None),
    ("cls_set_kwargs_typo", "train_cls", ["--set", "model_kwargs.progres=true"],
     ["--set model_kwargs.progres=true", "did you mean progress"], None),
    ("cls_recipe_binary", "train_cls", ["--config", "FILE:cls_binary.yaml"],
     ["cls_binary.yaml", "not UTF-8"], None),
    ("ablate_lr_nan", "ablate_ghost", ["--lr", "nan"], ["--lr", "finite"], None),
    ("ablate_seed_overflow", "ablate_ghost", ["--seed", str(2**64)], ["--seed", "2**63 - 1"], None),
    # argparse-level range checks of the other tools
    ("eval_min_size_zero", "eval_det", ["--model", "fasterrcnn", "--min-size", "0"],
     ["argument --min-size", "must be in [1, 8192]", "got 0"], None),
    ("eval_max_size_huge", "eval_det", ["--model", "fasterrcnn", "--max-size", "100000"],
     ["argument --max-size", "got 100000", "sane"], None),
    ("infer_min_size_negative", "infer", ["--model", "fasterrcnn", "--min-size", "-1", "x.jpg"],
     ["argument --min-size", "got -1"], None),
    ("export_opset_99", "export_onnx", ["--opset", "99"], ["argument --opset", "got 99"], None),
    ("export_opset_10", "export_onnx", ["--opset", "10"], ["argument --opset", "must be in [11, "], None),
    ("synth_image_huge", "make_synthetic_coco", ["--image-size", "100000"],
     ["argument --image-size", f"must be <= {MAX_SYNTHETIC_IMAGE_SIZE}", "sane"], None),
    ("synth_image_hw_huge", "make_synthetic_coco", ["--image-size", "64", "9000"],
     ["--image-size", "got 9000"], None),
    ("synth_image_three", "make_synthetic_coco", ["--image-size", "64", "64", "64"],
     ["--image-size", "S or H W"], None),
    ("synth_seed_overflow", "make_synthetic_coco", ["--seed", str(2**63)],
     ["argument --seed", "2**63 - 1"], None),
    ("compare_det_size_huge", "compare_backbones", ["--det-sizes", "1000000x1000000"],
     ["argument --det-sizes", "at most 8192", "1000000x1000000"], None),
]  # fmt: skip


@pytest.mark.parametrize("case,tool,argv,expected,absent", CASES, ids=[c[0] for c in CASES])
def test_bad_flag_is_one_line_exit_2(tmp_path, monkeypatch, capsys, case, tool, argv, expected, absent):
    monkeypatch.chdir(tmp_path)  # whatever a tool might write lands here, and is checked below
    files = _recipes(tmp_path)
    argv = [str(files[a[5:]]) if a.startswith("FILE:") else a for a in argv]
    out = tmp_path / "out"
    if tool in ("train_det", "train_cls", "ablate_ghost"):
        argv = ["--output-dir", str(out), *argv]
        if tool == "train_det" and "--config" not in argv:
            argv = ["--config", str(RECIPE), *argv]
    before = {p.name: _sha(p) for p in files.values()}
    recipe_sha = _sha(RECIPE)
    assert _run(tool, argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert all(s in line for s in expected), line
    if absent is not None:  # the value came from a flag: the recipe file is not blamed
        assert absent not in line, line
    assert {p.name: _sha(p) for p in files.values()} == before and _sha(RECIPE) == recipe_sha
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)  # nothing written


def test_infer_device_meta_is_refused_before_anything_runs(tmp_path, capsys):
    from PIL import Image

    from ghostdet.models import get_model

    weights = tmp_path / "w.pth"
    torch.save(get_model("fasterrcnn_ghostnet_320_fpn", width=0.5, num_classes=3).state_dict(), weights)
    Image.new("RGB", (64, 48), (10, 200, 30)).save(tmp_path / "x.jpg")
    before = {p.name: _sha(p) for p in tmp_path.iterdir()}
    argv = ["--model", "fasterrcnn_320", "--weights", str(weights), "--device", "meta",
            "--output-dir", str(tmp_path / "out"), str(tmp_path / "x.jpg")]  # fmt: skip
    assert _run("infer", argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert (
        line.startswith("infer.py: error: --device: unsupported device 'meta'")
        and "cpu, cuda or cuda:N" in line
    )
    assert {p.name: _sha(p) for p in tmp_path.iterdir()} == before


# ------------------------------------------------------------------------------- resolve_device
@pytest.mark.parametrize(
    "device,expected",
    [("meta", "unsupported device 'meta'"), ("mps", "unsupported device 'mps'"),
     ("xla", "unsupported device 'xla'"), ("cpu:1", "one CPU device"),
     ("gpu", "bad device 'gpu'"), ("cuda:99", "cuda")],
)  # fmt: skip
def test_resolve_device_only_takes_devices_that_exist(device, expected):
    from ghostdet.errors import InputError
    from ghostdet.utils.devices import resolve_device

    if device == "cuda:99" and torch.cuda.is_available():
        expected = f"there are {torch.cuda.device_count()} CUDA device(s)"
    with pytest.raises(InputError) as e:
        resolve_device(device)
    assert expected in str(e.value) and e.value.argument == "device"
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------- declared field ranges
def _checked_numbers(cls: type) -> list[tuple[str, type, Check]]:
    """(key, int or float, check) of every numeric field with a declared lower or upper bound."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        base = hints[f.name]
        if typing.get_origin(base) is typing.Union:  # Optional[int] -> int
            base = next(a for a in typing.get_args(base) if a is not type(None))
        check = f.metadata.get("check")
        if base in (int, float) and check is not None:
            out.append((f.name, base, check))
    return out


@pytest.mark.parametrize("cls", [TrainConfig, ClsConfig], ids=lambda c: c.__name__)
def test_every_declared_bound_is_enforced_at_its_edge(cls):
    load = config_from_dict if cls is TrainConfig else (lambda d: load_cls_config(None, d))
    fields = _checked_numbers(cls)
    assert len(fields) >= 15  # the bounds are declared, not scattered through validate()
    for key, base, check in fields:
        step = 1 if base is int else 1e-6
        edges = []  # (value, accepted)
        if check.ge is not None:
            edges += [(check.ge, True), (check.ge - step, False)]
        if check.gt is not None:
            edges += [(check.gt, False)]
        if check.le is not None:
            edges += [(check.le, True), (check.le + step, False)]
        if check.lt is not None:
            edges += [(check.lt, False)]
        for value, accepted in edges:
            value = base(value)
            if check.odd and accepted and value % 2 == 0:
                continue
            if accepted:
                assert getattr(load({key: value}), key) == value
            else:
                with pytest.raises(ConfigError) as e:
                    load({key: value})
                assert str(e.value).startswith(f"{key}: ") and e.value.key == key, str(e.value)


@pytest.mark.parametrize("cls", [TrainConfig, ClsConfig], ids=lambda c: c.__name__)
def test_every_float_field_must_be_finite(cls):
    load = config_from_dict if cls is TrainConfig else (lambda d: load_cls_config(None, d))
    hints = typing.get_type_hints(cls)
    floats = [n for n, tp in hints.items() if tp is float or float in typing.get_args(tp)]
    assert "lr" in floats and "momentum" in floats
    for key in floats:
        for bad in (math.inf, -math.inf, math.nan):
            with pytest.raises(ConfigError, match=f"^{key}: must be a finite number"):
                load({key: bad})


def test_flag_types_use_the_fields_declarations():
    import argparse

    for key, ok, bad in (
        ("min_size", "8192", "8193"),
        ("synthetic.image_size", "32", "31"),
        ("seed", "0", "-1"),
    ):
        parse = flag_type(TrainConfig, key)
        assert parse(ok) == int(ok)
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)
    assert flag_type(TrainConfig, "seed")(str(MAX_SEED)) == MAX_SEED
    with pytest.raises(argparse.ArgumentTypeError, match="finite"):
        flag_type(TrainConfig, "lr")("inf")


def test_programmatic_override_is_not_blamed_on_the_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(recipe, {"lr": -1.0})
    assert str(e.value) == "lr: must be > 0, got -1.0" and e.value.key == "lr"
    recipe.write_text("lr: -1\n")
    with pytest.raises(ConfigError, match=rf"^{recipe}: lr: must be > 0"):
        load_config(recipe)


# ------------------------------------------------------------------------ model_kwargs vs builder
def _model(cfg: TrainConfig) -> torch.nn.Module:
    from ghostdet.engine.train import build_model

    torch.manual_seed(0)
    return build_model(cfg, num_classes=3)


@pytest.mark.parametrize(
    "detector,backbone,typo,suggestion",
    [("retinanet", "ghostnet", "topk_candidate", "topk_candidates"),
     ("retinanet_320", "ghostnet", "detection_per_img", "detections_per_img"),
     ("fasterrcnn", "ghostnet", "box_detection_per_img", "box_detections_per_img"),
     ("fasterrcnn_320", "ghostnetv2", "rpn_nms_tresh", "rpn_nms_thresh"),
     ("retinanet", "ghostnetv3", "size_divisable", "size_divisible"),
     ("retinanet", "ghostnet", "separable_heads", "separable_head")],
)  # fmt: skip
def test_model_kwargs_typo_is_refused_with_a_suggestion(detector, backbone, typo, suggestion):
    with pytest.raises(ConfigError) as e:
        config_from_dict({"detector": detector, "backbone": backbone, "model_kwargs": {typo: 5}})
    msg = str(e.value)
    assert msg.startswith(f"model_kwargs.{typo}: ") and e.value.key == f"model_kwargs.{typo}"
    assert f"did you mean {suggestion}" in msg and "\n" not in msg


def test_accepted_kwargs_follow_the_chain_into_torchvision():
    from torchvision.models.detection import FasterRCNN, RetinaNet
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from ghostdet.config.model_kwargs import accepted_kwargs, builder_of

    def named(c):  # keyword parameters of a torchvision constructor, read independently
        return {
            n for n, p in inspect.signature(c).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and not n.startswith("_")
        }  # fmt: skip

    transform = named(GeneralizedRCNNTransform)
    for name, tv in (("fasterrcnn_ghostnet_fpn", FasterRCNN), ("retinanet_ghostnetv2_320_fpn", RetinaNet)):
        got = accepted_kwargs(*builder_of(name))
        assert not got.open
        assert named(tv) | transform <= set(got.params), named(tv) | transform - set(got.params)
    assert "atss_topk" in accepted_kwargs(*builder_of("retinanet_ghostnet_fpn")).params


def test_real_torchvision_kwargs_reach_the_built_model():
    cfg = config_from_dict(
        {"detector": "retinanet", "width": 0.5,
         "model_kwargs": {"topk_candidates": 77, "detections_per_img": 11, "size_divisible": 64,
                          "score_thresh": 0.25, "image_mean": [0.5, 0.5, 0.5]}}
    )  # fmt: skip
    m = _model(cfg)
    assert (m.topk_candidates, m.detections_per_img, m.score_thresh) == (77, 11, 0.25)
    assert m.transform.size_divisible == 64 and list(m.transform.image_mean) == [0.5, 0.5, 0.5]
    cfg = config_from_dict(
        {"detector": "fasterrcnn_320", "width": 0.5,
         "model_kwargs": {"box_detections_per_img": 7, "rpn_post_nms_top_n_test": 33,
                          "fixed_size": [96, 128]}}
    )  # fmt: skip
    m = _model(cfg)
    assert m.roi_heads.detections_per_img == 7 and m.rpn._post_nms_top_n["testing"] == 33
    assert list(m.transform.fixed_size) == [96, 128]
    m.eval()
    with torch.inference_mode():  # fixed_size really resizes (torchvision reads it as (W, H))
        images, _ = m.transform([torch.rand(3, 50, 70)])
    assert tuple(images.tensors.shape[-2:]) == (128, 96)


@pytest.mark.parametrize(
    "detector,kwargs,expected",
    [("fasterrcnn", {"box_detections_per_img": "many"}, "must be an integer"),
     ("fasterrcnn", {"box_detections_per_img": 2.5}, "must be an integer"),
     ("fasterrcnn", {"box_score_thresh": True}, "must be a finite number"),
     ("fasterrcnn", {"rpn_nms_thresh": float("nan")}, "must be a finite number"),
     ("fasterrcnn", {"fixed_size": [96, 96, 3]}, "a list of 2 integers"),
     ("fasterrcnn", {"image_std": "0.2"}, "a list of finite numbers"),
     ("fasterrcnn", {"box_head": "mlp"}, "a module"),
     ("retinanet", {"separable_head": "yes"}, "true/false"),
     ("retinanet", {"aspect_ratios": [1.0, "wide"]}, "a list of finite numbers"),
     ("retinanet", {"extra_levels": 2}, "a string"),
     ("retinanet", {"anchor_generator": [32, 64]}, "an AnchorGenerator object")],
)  # fmt: skip
def test_model_kwargs_of_the_wrong_type_are_refused(detector, kwargs, expected):
    (key,) = kwargs
    with pytest.raises(ConfigError) as e:
        config_from_dict({"detector": detector, "model_kwargs": kwargs})
    assert str(e.value).startswith(f"model_kwargs.{key}: ") and expected in str(e.value), str(e.value)


def test_model_kwargs_right_types_pass_and_ints_count_as_floats():
    cfg = config_from_dict(
        {
            "detector": "retinanet",
            "model_kwargs": {"anchor_scale": 8, "group_norm": None, "returned_layers": [3, 4, 5]},
        }
    )
    assert cfg.model_kwargs["anchor_scale"] == 8


def test_cls_model_kwargs_checked_against_the_classifier_builder():
    with pytest.raises(ConfigError, match=r"^model_kwargs\.shortcutt: .*did you mean shortcut"):
        load_cls_config(None, {"model": "resnet56_cifar", "model_kwargs": {"shortcutt": "B"}})
    with pytest.raises(ConfigError, match=r"^model_kwargs\.shortcut: must be a string"):
        load_cls_config(None, {"model": "resnet56_cifar", "model_kwargs": {"shortcut": 2}})
    cfg = load_cls_config(None, {"model": "resnet56_cifar", "model_kwargs": {"shortcut": "B"}})
    assert cfg.model_kwargs == {"shortcut": "B"}


# ---------------------------------------------------------------------------------- export opset
def test_export_refuses_an_opset_torch_cannot_write(tmp_path):
    pytest.importorskip("onnx")
    from torch.onnx import _constants

    from ghostdet.deploy.onnx import ExportError, export_onnx, supported_opsets
    from ghostdet.models import ghostnet

    lo, hi = supported_opsets()
    assert (lo, hi) == (11, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    model = ghostnet(width=0.5, num_classes=10).eval()
    for opset in (hi + 1, 99, lo - 1, "17"):
        with pytest.raises(ExportError, match=rf"opset must be an integer in \[{lo}, {hi}\]"):
            export_onnx(model, tmp_path / "m.onnx", opset=opset, verify=False)
    assert not any(tmp_path.iterdir())
