"""Ghost feature-map capture, cosine similarity and tools/visualize_ghost_maps.py."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ghostdet.analysis.ghost_maps import (
    capture_ghost_maps,
    ghost_cosine,
    list_ghost_modules,
    resolve_module_name,
)
from ghostdet.errors import InputError
from ghostdet.models import GhostModule, get_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _randomise_bn(module: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.randn(m.num_features, generator=g)
            m.bias.data = torch.randn(m.num_features, generator=g)
            m.running_mean = torch.randn(m.num_features, generator=g)
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5


def _independent_cosine(intr: np.ndarray, ghost: np.ndarray, ratio: int) -> np.ndarray:
    out = []
    for c in range(ghost.shape[1]):
        src = c // (ratio - 1)  # depthwise conv with groups = intrinsic channels
        sims = []
        for n in range(ghost.shape[0]):
            a, b = ghost[n, c].ravel(), intr[n, src].ravel()
            if np.linalg.norm(a) > 0 and np.linalg.norm(b) > 0:  # all-zero maps have no direction
                sims.append(float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)))
        out.append(np.mean(sims) if sims else np.nan)
    return np.array(out)


@pytest.mark.parametrize(("oup", "ratio", "relu"), [(7, 3, False), (6, 2, True), (5, 2, False)])
def test_capture_and_cosine_match_independent_computation(oup, ratio, relu):
    torch.manual_seed(0)
    gm = GhostModule(3, oup, kernel_size=1, ratio=ratio, dw_size=3, relu=relu)
    _randomise_bn(gm)
    net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), gm).eval()
    x = torch.randn(2, 3, 9, 11)
    maps = capture_ghost_maps(net, x)
    assert list(maps) == ["1"]
    got = maps["1"]
    m = -(-oup // ratio)
    with torch.no_grad():
        y = net[0](x)
        intr = gm.primary_conv(y)
        ghost = gm.cheap_operation(intr)[:, : oup - m]
        full = net(x)
    assert got.intrinsic.shape == (2, m, 9, 11) and got.ghost.shape == (2, oup - m, 9, 11)
    torch.testing.assert_close(got.intrinsic, intr)
    torch.testing.assert_close(got.ghost, ghost)
    torch.testing.assert_close(torch.cat([got.intrinsic, got.ghost], 1), full)  # what the module outputs
    expected = _independent_cosine(intr.double().numpy(), ghost.double().numpy(), ratio)
    np.testing.assert_allclose(got.cosine().numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ghost_cosine(intr, ghost, ratio).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_cosine_of_identity_cheap_op_is_one():
    gm = GhostModule(4, 8, ratio=2, dw_size=3, relu=False).eval()
    with torch.no_grad():
        w = torch.zeros_like(gm.cheap_operation[0].weight)
        w[:, :, 1, 1] = 2.0  # each ghost map = 2 x its intrinsic map (then BN identity)
        gm.cheap_operation[0].weight.copy_(w)
    maps = capture_ghost_maps(nn.Sequential(gm), torch.randn(1, 4, 6, 6))["0"]
    torch.testing.assert_close(maps.cosine(), torch.ones(4, dtype=torch.float64), atol=1e-6, rtol=0)


def test_names_and_suffix_resolution():
    net = get_model("ghostnet_050")
    names = list_ghost_modules(net)
    assert len(names) == 32 and names[0] == "blocks.0.0.ghost1" and "blocks.6.0.ghost1" in names
    det = get_model("fasterrcnn_ghostnet_320_fpn", num_classes=3, width=0.5)
    assert resolve_module_name(det, "blocks.6.0.ghost1") == "backbone.body.blocks.6.0.ghost1"
    with pytest.raises(InputError, match=r"no GhostModule named 'blocks\.6\.0'"):
        resolve_module_name(net, "blocks.6.0")


# ------------------------------------------------------------------ the tool


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("tool_visualize", ROOT / "tools/visualize_ghost_maps.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "pic.png"
    yy, xx = np.mgrid[0:80, 0:100]
    arr = np.stack([xx * 2.5, yy * 3, (xx + yy) % 64 * 4], -1).clip(0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_tool_prints_every_layer_and_writes_grid(tool, image, tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = [
        str(image),
        "--model",
        "ghostnet_050",
        "--size",
        "64",
        "--module",
        "6.0.ghost1",
        "--num-maps",
        "6",
        "--columns",
        "3",
        "--output",
        str(out),
    ]
    assert tool.main(argv) == 0
    text = capsys.readouterr().out
    rows = re.findall(r"^(blocks\.\S+)\s+(\d+)\+(\d+)\s+(\d+)x(\d+)\s+(-?\d\.\d{3})$", text, re.M)
    assert len(rows) == 32
    assert all(-1.0 <= float(r[5]) <= 1.0 for r in rows)
    # Independent check of one printed value: same seed, same preprocessing, hooks on our own.
    torch.manual_seed(0)
    net = get_model("ghostnet_050").eval()
    from ghostdet.analysis.ghost_maps import _prepare_classifier_input
    from ghostdet.data.images import read_rgb_tensor as read_image

    x = _prepare_classifier_input(read_image(image), 64)
    gm = net.get_submodule("blocks.6.0.ghost1")
    caught = {}
    gm.primary_conv.register_forward_hook(lambda m, i, o: caught.__setitem__("i", o))
    gm.cheap_operation.register_forward_hook(lambda m, i, o: caught.__setitem__("g", o))
    with torch.no_grad():
        net(x)
    used = gm.oup - caught["i"].shape[1]
    per_map = _independent_cosine(caught["i"].double().numpy(), caught["g"][:, :used].double().numpy(), 2)
    assert np.isnan(per_map).sum() < len(per_map) // 2
    expected = np.nanmean(per_map)
    printed = {r[0]: float(r[5]) for r in rows}["blocks.6.0.ghost1"]
    assert printed == pytest.approx(expected, abs=5e-4)
    assert "wrote" in text and "blocks.6.0.ghost1" in text.splitlines()[-1]
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > 3 * 2 * 72 and img.size[1] > 2 * 72


def test_tool_list(tool, capsys):
    assert tool.main(["--list", "--model", "ghostnet_050"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 32 and lines[0].startswith("blocks.0.0.ghost1  in=")


@pytest.mark.parametrize("model", ["ghostnetv2_100", "ghostnetv3_050"])
def test_tool_draws_v2_and_v3_modules(tool, image, model, tmp_path, capsys):
    """V2's gated modules and V3's re-parameterised ones are listed and drawn like V1's."""
    assert tool.main(["--list", "--model", model]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 32 and lines[17].startswith("blocks.6.2.ghost2  in=") and lines[17].endswith("s=2")
    out = tmp_path / "maps.png"
    argv = [str(image), "--model", model, "--module", "blocks.6.2.ghost1", "--output", str(out)]
    assert tool.main(argv) == 0
    assert "blocks.6.2.ghost1" in capsys.readouterr().out and out.is_file()


def test_tool_detector_checkpoint(tool, image, tmp_path, capsys):
    det = get_model("fasterrcnn_ghostnet_320_fpn", num_classes=3, width=0.5)
    ckpt = {
        "model": det.state_dict(),
        "detector": "fasterrcnn_ghostnet_320_fpn",
        "width": 0.5,
        "num_classes": 3,
        "config": {"min_size": 64, "max_size": 96},
    }
    torch.save(ckpt, tmp_path / "det.pth")
    out = tmp_path / "det.png"
    argv = [
        str(image),
        "--checkpoint",
        str(tmp_path / "det.pth"),
        "--module",
        "blocks.3.0.ghost1",
        "--output",
        str(out),
    ]
    assert tool.main(argv) == 0
    text = capsys.readouterr().out
    assert "backbone.body.blocks.3.0.ghost1" in text and out.is_file()
    # blocks 0-8 run in the detector trunk: 16 bottlenecks x 2 GhostModules.
    assert len(re.findall(r"^backbone\.body\.blocks\.\S+ .*\d\.\d{3}$", text, re.M)) == 32


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["IMG", "--module", "blocks.99.0.ghost1", "--model", "ghostnet_050"], "no GhostModule named"),
        (["MISSING", "--model", "ghostnet_050"], "cannot read image"),
        (["IMG", "--model", "resnet50"], "--model: model must be one of"),
        (["IMG", "--model", "ghostnet_050", "--weights", "MISSING"], "could not load weights"),
    ],
)
def test_tool_errors_one_line(tool, image, tmp_path, capsys, argv, message):
    subst = {"IMG": str(image), "MISSING": str(tmp_path / "missing.file")}
    assert tool.main([subst.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_tool_usage_errors(tool, capsys):
    with pytest.raises(SystemExit) as e:
        tool.main([])
    assert e.value.code == 2 and capsys.readouterr().err.count("\n") == 1
