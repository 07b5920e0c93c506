import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ghostdet.models import (
    GhostBottleneck,
    GhostModule,
    GhostNet,
    SqueezeExcite,
    get_model,
    ghost_cat,
    ghostnet,
    list_models,
    make_divisible,
)


def _hook_macs(model: nn.Module, size: int = 224) -> int:
    """Conv + linear multiply-adds counted from the shapes seen in a forward pass."""
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inp, out) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize(
    ("width", "params_m", "macs_m"),
    [(0.5, 2.6, 42), (1.0, 5.2, 141), (1.3, 7.3, 226)],
)
def test_paper_params_and_macs(width: float, params_m: float, macs_m: float) -> None:
    model = ghostnet(width=width)
    params = sum(p.numel() for p in model.parameters())
    macs = _hook_macs(model)
    assert params / 1e6 == pytest.approx(params_m, rel=0.02)
    assert macs / 1e6 == pytest.approx(macs_m, rel=0.02)


@pytest.mark.parametrize(
    ("oup", "ratio", "dw_size"), [(16, 2, 3), (15, 2, 3), (24, 3, 5), (10, 4, 1), (7, 5, 7)]
)
def test_ghost_module_is_primary_plus_cheap(oup: int, ratio: int, dw_size: int) -> None:
    torch.manual_seed(0)
    gm = GhostModule(6, oup, kernel_size=3, ratio=ratio, dw_size=dw_size, relu=False).eval()
    init = math.ceil(oup / ratio)
    conv1 = gm.primary_conv[0]
    cheap = gm.cheap_operation[0]
    assert conv1.out_channels == init
    assert cheap.groups == init and cheap.out_channels == init * (ratio - 1)
    assert cheap.kernel_size == (dw_size, dw_size)
    # Give the BNs non-trivial statistics, then recompute the module by hand.
    for bn in (gm.primary_conv[1], gm.cheap_operation[1]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)

    def bn(x: torch.Tensor, m: nn.BatchNorm2d) -> torch.Tensor:
        shape = (1, -1, 1, 1)
        scale = m.weight.view(shape) / torch.sqrt(m.running_var.view(shape) + m.eps)
        return (x - m.running_mean.view(shape)) * scale + m.bias.view(shape)

    x = torch.randn(2, 6, 9, 11)
    x1 = bn(F.conv2d(x, conv1.weight, padding=1), gm.primary_conv[1])
    x2 = bn(F.conv2d(x1, cheap.weight, padding=dw_size // 2, groups=init), gm.cheap_operation[1])
    expected = torch.cat([x1, x2], 1)[:, :oup]
    out = gm(x)
    assert out.shape == (2, oup, 9, 11)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_ghost_module_relu_and_stride() -> None:
    gm = GhostModule(4, 8, kernel_size=1, stride=2, relu=True)
    out = gm(torch.randn(1, 4, 10, 10))
    assert out.shape == (1, 8, 5, 5)
    assert (out >= 0).all()
    assert isinstance(gm.primary_conv[2], nn.ReLU) and isinstance(gm.cheap_operation[2], nn.ReLU)
    gm_lin = GhostModule(4, 8, relu=False)
    assert (gm_lin(torch.randn(1, 4, 10, 10)) < 0).any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio": 1}, "ratio"),
        ({"ratio": 2.5}, "ratio"),
        ({"ratio": True}, "ratio"),
        ({"dw_size": 2}, "dw_size"),
        ({"dw_size": 0}, "dw_size"),
    ],
)
def test_ghost_module_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GhostModule(4, 8, **kwargs)


def test_make_divisible_properties() -> None:
    for v in [3.0, 8.0, 8.8, 17.6, 20.8, 52.8, 123.4, 1000.0]:
        for d in (4, 8):
            r = make_divisible(v, d)
            assert r % d == 0
            assert r >= 0.9 * v
            assert r >= d
    assert make_divisible(16 * 0.5, 4) == 8
    assert make_divisible(18, 4) == 20  # 18 + 2 rounds up to 20


def test_squeeze_excite_matches_formula() -> None:
    torch.manual_seed(0)
    se = SqueezeExcite(72, se_ratio=0.25)
    assert se.conv_reduce.out_channels == make_divisible(72 * 0.25, 4)
    x = torch.randn(2, 72, 5, 5)
    s = x.mean((2, 3), keepdim=True)
    s = F.conv2d(
        F.relu(F.conv2d(s, se.conv_reduce.weight, se.conv_reduce.bias)),
        se.conv_expand.weight,
        se.conv_expand.bias,
    )
    gate = torch.clamp(s + 3, 0, 6) / 6
    torch.testing.assert_close(se(x), x * gate)


def test_bottleneck_structure() -> None:
    b1 = GhostBottleneck(16, 48, 16, 3, stride=1)
    assert not hasattr(b1, "conv_dw") and len(b1.shortcut) == 0 and b1.se is None
    b2 = GhostBottleneck(16, 48, 24, 5, stride=2, se_ratio=0.25)
    assert b2.conv_dw.stride == (2, 2) and b2.conv_dw.groups == 48 and b2.conv_dw.kernel_size == (5, 5)
    assert isinstance(b2.se, SqueezeExcite) and len(b2.shortcut) == 4
    assert b2(torch.randn(1, 16, 16, 16)).shape == (1, 24, 8, 8)
    # ghost2 has no ReLU: the residual branch can be negative.
    assert isinstance(b2.ghost2.primary_conv[2], nn.Sequential)
    with pytest.raises(ValueError, match="stride"):
        GhostBottleneck(16, 48, 16, stride=3)


def test_state_dict_names_match_official_checkpoint() -> None:
    keys = set(ghostnet().state_dict())
    expected = {
        "conv_stem.weight",
        "bn1.running_var",
        "blocks.0.0.ghost1.primary_conv.0.weight",
        "blocks.0.0.ghost1.cheap_operation.1.running_var",
        "blocks.1.0.conv_dw.weight",
        "blocks.1.0.bn_dw.running_mean",
        "blocks.3.0.se.conv_reduce.weight",
        "blocks.3.0.se.conv_expand.bias",
        "blocks.1.0.shortcut.0.weight",
        "blocks.1.0.shortcut.3.running_var",
        "blocks.6.4.ghost2.cheap_operation.0.weight",
        "blocks.9.0.conv.weight",
        "blocks.9.0.bn1.running_mean",
        "conv_head.weight",
        "conv_head.bias",
        "classifier.weight",
        "classifier.bias",
    }
    assert expected <= keys
    # Only the official module kinds appear: no extra wrappers, no activation parameters.
    assert not any(".act" in k for k in keys)


def test_timm_ghostnet_100_same_weights_same_outputs() -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    theirs = timm.create_model("ghostnet_100", pretrained=False).eval()
    # Non-trivial BN statistics so that a wrongly-mapped BN would show.
    for m in theirs.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ours = ghostnet(width=1.0).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("width", [0.5, 1.1, 0.75])
def test_any_width_runs(width: float) -> None:
    model = ghostnet(width=width, num_classes=10).eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    assert model.conv_stem.out_channels == make_divisible(16 * width, 4)


def test_bad_width_and_classes() -> None:
    with pytest.raises(ValueError, match="width"):
        GhostNet(width=0)
    with pytest.raises(ValueError, match="num_classes"):
        GhostNet(num_classes=0)


def test_get_model_and_list_models() -> None:
    names = list_models()
    assert {"ghostnet_100", "fasterrcnn_ghostnet_fpn", "retinanet_ghostnet_fpn"} <= set(names)
    m = get_model("ghostnet_050", num_classes=3)
    assert m.width == 0.5 and m.classifier.out_features == 3
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        get_model("resnet")


@pytest.mark.parametrize("fmt", [torch.channels_last])
@pytest.mark.parametrize("oup", [16, 15])
def test_ghost_cat_hands_the_ghost_maps_a_dense_gradient(fmt: torch.memory_format, oup: int) -> None:
    # autograd gives x2 a channel slice of the output's gradient; BatchNorm's backward is slow on it
    torch.manual_seed(0)
    a = torch.randn(2, 8, 6, 5).to(memory_format=fmt).requires_grad_()
    b = torch.randn(2, 8, 6, 5).to(memory_format=fmt).requires_grad_()
    w = torch.randn(2, oup, 6, 5)  # in NCHW: the gradient keeps the layout of x2 all the same
    x1, x2 = a * 1.0, b * 1.0
    out = ghost_cat(x1, x2, oup)
    seen = []
    x2.register_hook(lambda g: seen.append(g))  # runs after ghost_cat's own hook
    (out * w).sum().backward()
    assert torch.equal(out, torch.cat([a, b], 1)[:, :oup])
    assert seen[0].is_contiguous(memory_format=fmt)
    torch.testing.assert_close(b.grad, F.pad(w[:, 8:], (0, 0, 0, 0, 0, 16 - oup)))
    torch.testing.assert_close(a.grad, w[:, :8])


def test_ghost_module_still_traces_with_fx() -> None:
    m = GhostModule(8, 16)
    traced = torch.fx.symbolic_trace(m)  # a Proxy cannot take a hook
    x = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(traced(x), m(x))
    traced.train()
    traced(x).sum().backward()  # still trains
    assert m.primary_conv[0].weight.grad is not None


def test_channels_last_training_gives_the_contiguous_gradients() -> None:
    torch.manual_seed(0)
    ref = ghostnet(width=0.5, num_classes=10).train()
    cl = copy.deepcopy(ref).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64)
    target = torch.tensor([1, 7])
    for model, inp in ((ref, x), (cl, x.to(memory_format=torch.channels_last))):
        torch.manual_seed(1)  # the same dropout mask
        F.cross_entropy(model(inp), target).backward()
    grads = dict(cl.named_parameters())
    scale = max(float(p.grad.abs().max()) for p in ref.parameters())  # summation order differs
    for name, p in ref.named_parameters():
        err = float((grads[name].grad - p.grad).abs().max())
        assert err <= 1e-3 * float(p.grad.abs().max()) + 1e-5 * scale, (name, err)
        assert grads[name].grad.stride() == grads[name].stride(), name
