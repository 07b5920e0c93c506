"""MAC/param accounting vs hand computation, thop isolation, paper figures, comparison tool."""

from __future__ import annotations

import csv
import importlib.util
import statistics
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from ghostdet.analysis import (
    BACKBONES,
    DETECTION_BACKBONES,
    ComparisonRow,
    compare_backbones,
    count_macs,
    count_params,
    format_markdown,
    input_shape,
    layer_macs,
    measure_latency,
    plot_macs_latency,
    profile,
    split_macs,
    thop_macs,
    time_interleaved,
    write_csv,
)
from ghostdet.analysis.paper import fc_as_conv
from ghostdet.models import ghostnet, ghostnet_fpn_backbone

REPO = Path(__file__).resolve().parents[1]


def _out(size: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """Output length of a convolution (PyTorch's formula)."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class HandNet(nn.Module):
    """Conv with stride/padding, grouped conv with bias, dilated depthwise conv, non-square
    conv, a conv applied twice, and a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 12, 5, padding=2, groups=4, bias=True)
        self.dw = nn.Conv2d(12, 12, 3, padding=0, dilation=2, groups=12, bias=False)
        self.c3 = nn.Conv2d(12, 6, (3, 1), stride=(2, 1), padding=(1, 0), bias=False)
        self.shared = nn.Conv2d(6, 6, 1, bias=False)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.c1(x)))
        x = self.dw(self.c2(x))
        x = self.shared(self.shared(self.c3(x)))
        return self.fc(x.mean((2, 3)))


def _hand_macs(n: int, h: int, w: int) -> dict[str, int]:
    h1, w1 = _out(h, 3, 2, 1), _out(w, 3, 2, 1)
    c1 = n * 8 * h1 * w1 * 3 * 3 * 3
    c2 = n * 12 * h1 * w1 * (8 // 4) * 5 * 5
    h2, w2 = _out(h1, 3, 1, 0, 2), _out(w1, 3, 1, 0, 2)
    dw = n * 12 * h2 * w2 * 1 * 3 * 3
    h3, w3 = _out(h2, 3, 2, 1), _out(w2, 1, 1, 0)
    c3 = n * 6 * h3 * w3 * 12 * 3 * 1
    shared = 2 * n * 6 * h3 * w3 * 6
    fc = n * 5 * 6
    return {"c1": c1, "c2": c2, "dw": dw, "c3": c3, "shared": shared, "fc": fc}


@pytest.mark.parametrize(("n", "h", "w"), [(1, 17, 17), (2, 23, 30)])
def test_macs_match_hand_computation(n: int, h: int, w: int) -> None:
    net = HandNet()
    expected = _hand_macs(n, h, w)
    assert dict(layer_macs(net, (n, 3, h, w))) == expected
    assert count_macs(net, (n, 3, h, w)) == sum(expected.values())


def test_params_match_hand_computation() -> None:
    expected = (
        8 * 3 * 9  # c1
        + 2 * 8  # bn weight/bias (running stats are buffers)
        + 12 * 2 * 25
        + 12  # c2 (groups=4 -> 2 input channels per group) + bias
        + 12 * 9  # dw
        + 6 * 12 * 3  # c3
        + 6 * 6  # shared, counted once
        + 6 * 5
        + 5  # fc
    )
    net = HandNet()
    assert count_params(net) == expected
    net.fc.requires_grad_(False)
    assert count_params(net, trainable_only=True) == expected - 35


def test_conv_transpose_and_linear_on_sequences() -> None:
    net = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2), nn.Flatten(2))
    # every input element meets (out/groups) * k*k weights
    assert count_macs(net, (1, 4, 5, 7)) == 4 * 5 * 7 * (6 // 2) * 9
    # a Linear applied to (N, L, in) counts N*L*out*in; modules without weights count 0
    net = nn.Sequential(nn.Conv2d(2, 7, 1), nn.Flatten(2), _Transpose(), nn.Linear(7, 3), nn.ReLU())
    assert count_macs(net, (2, 2, 3, 4)) == 2 * 7 * 12 * 2 + 2 * 12 * 3 * 7
    assert count_macs(nn.Sequential(nn.MaxPool2d(2), nn.BatchNorm2d(3)), 8) == 0


class _PerImage(nn.Module):
    """A detector-like forward: a list of CHW images, one conv on each."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.conv(img[None]) for img in images]


def test_macs_of_a_model_called_with_its_own_inputs() -> None:
    """``inputs=`` runs the model on what it takes (e.g. a detector's image list): every call counts."""
    net = _PerImage()
    images = [torch.rand(3, 10, 12), torch.rand(3, 7, 5)]
    # a 3x3 conv without padding: (H-2)*(W-2) pixels x 4 outputs x 3*9 weights, per image
    assert count_macs(net, inputs=images) == (8 * 10 + 5 * 3) * 4 * 27
    conv = nn.Conv2d(3, 4, 3)
    assert count_macs(conv, inputs=torch.rand(2, 3, 6, 6)) == count_macs(conv, (2, 3, 6, 6))


class _Transpose(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


def test_input_shape_forms_and_errors() -> None:
    assert input_shape(224) == (1, 3, 224, 224)
    assert input_shape((800, 1333)) == (1, 3, 800, 1333)
    assert input_shape((1, 32, 32)) == (1, 1, 32, 32)
    assert input_shape([2, 3, 8, 9]) == (2, 3, 8, 9)
    for bad in (0, (3, 0), (1, 2, 3, 4, 5), "224", True, (2.0, 3)):
        with pytest.raises(ValueError, match="input_size"):
            input_shape(bad)  # type: ignore[arg-type]


def test_counting_leaves_model_state_alone() -> None:
    net = HandNet().train()
    net.c2.eval()  # mixed flags must be restored exactly
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_macs(net, 17)
    assert net.training and not net.c2.training and net.bn.training
    after = net.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), k  # BN running stats not updated
    assert not net._forward_hooks and not net.c1._forward_hooks


def test_thop_buffers_do_not_leak() -> None:
    model = ghostnet(width=0.5)
    keys = list(model.state_dict())
    total = thop_macs(model, 64)
    assert total > 0
    assert list(model.state_dict()) == keys
    assert not any(hasattr(m, "total_ops") or hasattr(m, "total_params") for m in model.modules())
    # and a torch.save'd state dict has no thop entries
    assert not any("total_" in k for k in model.state_dict())
    prof = profile(model, 64)
    assert list(model.state_dict()) == keys
    assert prof.thop_macs == total and prof.macs == count_macs(model, 64)


def test_thop_equals_paper_count_without_bn_and_exceeds_it_with_bn() -> None:
    plain = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.Flatten(), nn.Linear(4 * 64, 10)
    )
    assert thop_macs(plain, 8) == count_macs(plain, 8) == 8 * 64 * 27 + 4 * 64 * 8 + 10 * 256
    with_bn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))
    assert thop_macs(with_bn, 8) > count_macs(with_bn, 8)


@pytest.mark.parametrize(
    ("builder", "params_m", "macs_m"),
    [
        (lambda: ghostnet(width=0.5), 2.6, 42),
        (lambda: ghostnet(width=1.0), 5.2, 141),
        (lambda: ghostnet(width=1.3), 7.3, 226),
        (lambda: torchvision.models.mobilenet_v2(weights=None), 3.5, 300),  # torchvision's 3.5M
        (lambda: torchvision.models.mobilenet_v3_large(weights=None), 5.4, 219),
    ],
)
def test_paper_figures_within_2_percent(builder, params_m: float, macs_m: float) -> None:
    model = builder()
    assert count_params(model) / 1e6 == pytest.approx(params_m, rel=0.02)
    assert count_macs(model, 224) / 1e6 == pytest.approx(macs_m, rel=0.02)


def test_ghostnet_11_figure_is_the_trunk_without_head() -> None:
    model = ghostnet(width=1.1)
    per_layer = layer_macs(model, 224)
    full = sum(per_layer.values())
    head = per_layer["conv_head"] + per_layer["classifier"]
    # classifier head: 1056 -> 1280 1x1 conv on a 1x1 map and a 1280 -> 1000 Linear
    assert head == 1056 * 1280 + 1280 * 1000
    assert full / 1e6 == pytest.approx(164, rel=0.02)
    assert (full - head) / 1e6 == pytest.approx(164, rel=0.005)


def test_split_macs_of_detection_backbone() -> None:
    backbone = ghostnet_fpn_backbone(width=0.5)
    split = split_macs(backbone, (64, 96))
    assert split["body"] == count_macs(backbone.body, (64, 96))
    assert split["fpn"] > 0 and split["other"] == 0
    assert split["total"] == count_macs(backbone, (64, 96)) == split["body"] + split["fpn"]
    with pytest.raises(ValueError, match="no submodule 'neck'"):
        split_macs(backbone, 64, parts=("body", "neck"))


def test_fc_as_conv_is_equivalent() -> None:
    fc = nn.Linear(6, 4)
    conv = fc_as_conv(fc)
    x = torch.randn(3, 6)
    torch.testing.assert_close(conv(x), fc(x))
    as_conv = count_macs(nn.Sequential(nn.Flatten(), conv), (3, 6, 1, 1))
    assert as_conv == count_macs(nn.Sequential(nn.Flatten(), fc), (3, 6, 1, 1)) == 3 * 24


def test_measure_latency_contract() -> None:
    a, b = nn.Conv2d(3, 4, 3), nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    b.train()
    threads = torch.get_num_threads()
    calls: list[str] = []

    def spy(name: str, model: nn.Module):
        def run(x: torch.Tensor) -> torch.Tensor:
            calls.append(name)
            assert not torch.is_grad_enabled()
            return model(x)

        return run

    lat = measure_latency({"a": spy("a", a), "b": b}, torch.randn(1, 3, 8, 8), runs=3, warmup=1, threads=1)
    assert set(lat) == {"a", "b"} and all(v >= 0 for v in lat.values())
    assert calls == ["a"] * 4
    assert torch.get_num_threads() == threads and b.training and b[1].training
    order: list[str] = []
    measure_latency({n: (lambda x, n=n: order.append(n)) for n in "xyz"}, torch.zeros(1), runs=3, warmup=0)
    assert order == list("xyzyzxzxy")  # interleaved, rotated each repetition
    with pytest.raises(ValueError, match="runs"):
        measure_latency({"a": a}, torch.zeros(1), runs=0)
    with pytest.raises(ValueError, match="threads"):
        measure_latency({"a": a}, torch.zeros(1), threads=0)
    with pytest.raises(ValueError, match="no input"):
        measure_latency({"a": a}, {"b": torch.zeros(1)})


def test_time_interleaved_keeps_every_sample_in_the_chosen_order() -> None:
    seen: list[tuple[str, bool, bool]] = []

    def spy(name: str):
        return lambda: seen.append((name, torch.is_grad_enabled(), torch.is_inference_mode_enabled()))

    fns = {n: spy(n) for n in "ab"}
    timings = time_interleaved(fns, runs=3, warmup=1, rotate=False, context=torch.inference_mode)
    assert [n for n, _, _ in seen] == list("ab") * 4  # warm-up included, never rotated
    assert all(inference and not grad for _, grad, inference in seen)
    assert {n: len(t) for n, t in timings.seconds.items()} == {"a": 3, "b": 3}
    assert timings.medians() == {n: statistics.median(t) for n, t in timings.seconds.items()}
    assert timings.minor_faults == {} and timings.mean_faults() == {}
    seen.clear()
    timings = time_interleaved(fns, runs=2, warmup=1, context=torch.enable_grad, count_faults=True)
    assert [n for n, _, _ in seen] == list("abbaab") and all(grad for _, grad, _ in seen)
    assert {n: len(f) for n, f in timings.minor_faults.items()} == {"a": 2, "b": 2}
    assert timings.mean_faults() == {n: sum(f) / 2 for n, f in timings.minor_faults.items()}
    assert time_interleaved({}, runs=1).seconds == {}
    with pytest.raises(ValueError, match="warmup >= 0"):
        time_interleaved(fns, warmup=-1)


def test_compare_backbones_rows_and_outputs(tmp_path: Path) -> None:
    rows = compare_backbones(
        ["ghostnet_050", "mobilenet_v3_small"], det_sizes=[(64, 96)], cls_size=64, latency=False
    )
    assert [r.name for r in rows] == ["ghostnet_050", "mobilenet_v3_small"]
    g = ghostnet(width=0.5)
    assert rows[0].params == count_params(g)
    assert rows[0].macs_224 == count_macs(g, 64)
    assert rows[0].det_macs == {
        "64x96": count_macs(nn.Sequential(g.conv_stem, g.bn1, g.act1, g.blocks), (64, 96))
    }
    assert rows[0].thop_macs_224 > rows[0].macs_224
    table = format_markdown(rows, cls_size=64)
    assert "| GhostNet 0.5x |" in table and "MACs@64 (M)" in table and "latency" not in table
    write_csv(rows, tmp_path / "rows.csv")
    with open(tmp_path / "rows.csv") as f:
        got = list(csv.DictReader(f))
    assert (
        int(got[1]["params"]) == rows[1].params
        and int(got[0]["trunk_macs_64x96"]) == rows[0].det_macs["64x96"]
    )
    with pytest.raises(ValueError, match="unknown backbone"):
        compare_backbones(["resnet18"], latency=False)


def test_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows = [
        ComparisonRow("a", "GhostNet A", False, 1, 10**8, 2 * 10**8, latency_224_ms=5.0),
        ComparisonRow("b", "MobileNet B", False, 1, 3 * 10**8, 4 * 10**8, latency_224_ms=4.0),
    ]
    out = tmp_path / "p.png"
    plot_macs_latency(rows, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no latency"):
        plot_macs_latency([ComparisonRow("c", "C", False, 1, 1, 1)], out)


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_backbones_tool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tool = _load_tool("compare_backbones")
    out_csv = tmp_path / "t.csv"
    rc = tool.main(
        [
            "--models",
            "ghostnet_050",
            "--cls-size",
            "64",
            "--det-sizes",
            "64x80",
            "--no-latency",
            "--quiet",
            "--csv",
            str(out_csv),
        ]
    )
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "| GhostNet 0.5x | 2.59 |" in stdout and "thop also counts" in stdout
    assert out_csv.exists()
    for argv, msg in (
        (["--det-sizes", "80by60"], "expected HxW"),
        (["--runs", "0"], "must be >= 1"),
        (["--models", "resnet18"], "invalid choice"),
        (["--plot", str(tmp_path / "x.png"), "--no-latency"], "--plot needs latency"),
    ):
        with pytest.raises(SystemExit) as exc:
            tool.main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err


def test_backbone_registry_paper_figures() -> None:
    # the paper figures stored for the table are the ones the issue/paper quote
    assert {n: (s.paper_params_m, s.paper_macs_m) for n, s in BACKBONES.items()} == {
        "ghostnet_050": (2.6, 42),
        "ghostnet_100": (5.2, 141),
        "ghostnet_110": (None, 164),
        "ghostnet_130": (7.3, 226),
        "ghostnetv2_100": (6.1, 167),
        "ghostnetv2_130": (8.9, 271),
        "ghostnetv2_160": (12.3, 399),
        "ghostnetv3_050": (None, None),
        "ghostnetv3_100": (None, None),
        "ghostnetv3_130": (None, None),
        "ghostnetv3_160": (None, None),
        "mobilenet_v2": (3.4, 300),
        "mobilenet_v3_large": (5.4, 219),
        "mobilenet_v3_small": (2.5, 56),
    }
    assert not any(s.detection for s in BACKBONES.values())


def test_comparison_rows_come_from_the_registry() -> None:
    """Every registered family width is a row, labelled by the family's title, the width and its form."""
    labels = {n: s.label for n, s in {**BACKBONES, **DETECTION_BACKBONES}.items()}
    assert labels["ghostnet_110"] == "GhostNet 1.1x" and labels["ghostnetv2_130"] == "GhostNetV2 1.3x"
    assert labels["ghostnetv3_050"] == "GhostNetV3 0.5x (deploy form)"
    assert labels["mobilenet_v3_small"] == "MobileNetV3-Small 1.0x"
    ghostdet_fpns = ["ghostnet_100_fpn", "ghostnet_110_fpn", "ghostnetv2_100_fpn", "ghostnetv3_100_fpn"]
    assert list(DETECTION_BACKBONES) == [*ghostdet_fpns, "mobilenet_v3_large_fpn"]
    assert labels["ghostnetv3_100_fpn"] == "GhostNetV3 1.0x FPN (deploy form)"
    assert labels["mobilenet_v3_large_fpn"] == "MobileNetV3-Large FPN (torchvision)"
    # the row builds the registered model at its width
    assert BACKBONES["ghostnet_130"].build().width == 1.3
    assert all(s.detection for s in DETECTION_BACKBONES.values())


def test_v2_v3_comparison_rows_count_the_inference_form() -> None:
    """GhostNetV3's rows are built re-parameterised: V2's size plus nothing (the DFC gates are shared)."""
    v2, v3 = BACKBONES["ghostnetv2_100"].build(), BACKBONES["ghostnetv3_100"].build()
    assert round(count_params(v3) / 1e6, 2) == 6.15 and count_macs(v3) == count_macs(v2)
    assert round(count_macs(v2) / 1e6, 1) == 167.0
    fpn = DETECTION_BACKBONES["ghostnetv3_100_fpn"].build()
    assert not any("_rpr_" in n for n, _ in fpn.named_parameters())
