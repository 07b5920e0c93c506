"""The native DFC-gate kernels (GhostNetV2/V3) against torch: the gate itself (``dfc_gate``),
its upsample-and-multiply (``gate_mul``), and the two-pass fused bottlenecks with a gated ghost1
(``ghost_front`` with a gate), each checked against the eval-mode model's own modules."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from helpers import randomise_bn

from ghostdet.deploy import DeployBottleneck, fuse, native
from ghostdet.deploy.ghost import DeployDFCGate
from ghostdet.deploy.plan import BAND_PATHS, BlockPath
from ghostdet.models import ghostnetv2, ghostnetv3
from ghostdet.models.dfc import dfc_branch

pytestmark = pytest.mark.skipif(native.load() is None, reason="no C compiler to build the native kernels")


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _gate_weights(gate: DeployDFCGate) -> list[torch.Tensor]:
    return [t for m in (gate.proj, gate.horizontal, gate.vertical) for t in (m.flat_weight(), m.bias)]


@pytest.fixture
def threads(request):
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize(
    ("n", "cin", "c", "h", "w"), [(1, 24, 72, 56, 56), (2, 16, 20, 15, 9), (1, 160, 480, 7, 7)]
)
def test_dfc_gate_kernel_matches_the_branch(threads, n, cin, c, h, w):
    """sigmoid(dfc(avg_pool(x))) in one call equals the eval-mode branch, odd sizes included."""
    branch = randomise_bn(dfc_branch(cin, c), seed=c).eval()
    torch.manual_seed(h)
    for conv in branch[::2]:
        conv.weight.data.normal_(0, 0.3)
    gate = DeployDFCGate(branch)
    assert gate.fits_native
    x = _nhwc(torch.randn(n, cin, h, w))
    with torch.no_grad():
        ref = torch.sigmoid(branch(F.avg_pool2d(x, 2, 2)))
        got = native.dfc_gate(x, _gate_weights(gate))
        g, gy, gx = gate.values(x, (h, w))
    assert got is not None and got.shape == ref.shape == (n, c, h // 2, w // 2)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert (got - ref).abs().max() < 1e-5  # sigmoid values: absolute
    torch.testing.assert_close(g, got, rtol=0, atol=0)
    upsampled = F.interpolate(ref, size=(h, w), mode="nearest")
    torch.testing.assert_close(g[:, :, gy][:, :, :, gx], upsampled, rtol=0, atol=1e-5)


def test_dfc_gate_kernel_checks_its_inputs():
    gate = DeployDFCGate(dfc_branch(8, 12).eval())
    w = _gate_weights(gate)
    x = _nhwc(torch.randn(1, 8, 6, 6))
    with pytest.raises(ValueError, match="do not fit"):
        native.dfc_gate(x, [w[0][:4].contiguous(), *w[1:]])
    assert native.dfc_gate(_nhwc(torch.randn(1, 8, 1, 6)), w) is None  # no 2x2 window
    assert native.dfc_gate(torch.randn(1, 8, 6, 6)[:, :, :, :5], w) is None  # not dense NHWC
    odd = DeployDFCGate(dfc_branch(8, 10).eval())  # 10 channels: not a multiple of 4
    assert not odd.fits_native and native.dfc_gate(x, _gate_weights(odd)) is None


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize(("n", "h", "w"), [(1, 7, 7), (2, 15, 9), (1, 56, 56)])
def test_gate_mul_is_nearest_upsampling_times_the_map(threads, n, h, w):
    """In place, on a channel slice of a wider map too: the other channels stay as they were."""
    g = _nhwc(torch.rand(n, 12, h // 2, w // 2))
    wide = _nhwc(torch.randn(n, 20, h, w))
    before = wide.clone()
    view = wide[:, :12]
    gy, gx = (torch.arange(o) * i // o for o, i in zip((h, w), g.shape[-2:]))
    assert native.gate_mul(view, g, gy.int(), gx.int())
    ref = before[:, :12] * F.interpolate(g, size=(h, w), mode="nearest")
    torch.testing.assert_close(wide[:, :12], ref, rtol=0, atol=0)
    torch.testing.assert_close(wide[:, 12:], before[:, 12:], rtol=0, atol=0)
    assert not native.gate_mul(view, g, gy, gx.int())  # int64 indices: declined, nothing written
    assert not native.gate_mul(view, g, gy.int()[:-1], gx.int())
    torch.testing.assert_close(wide[:, :12], ref, rtol=0, atol=0)


def _gated_blocks(builder) -> list[tuple[DeployBottleneck, torch.nn.Module]]:
    """(deploy block, eval-mode block) for every bottleneck whose gated ghost1 runs on the front kernel."""
    model = randomise_bn(builder().eval(), seed=3)
    deployed = fuse(model)
    ours = [b for stage in deployed.blocks for b in stage if isinstance(b, DeployBottleneck)]
    theirs = [b for stage in model.blocks for b in stage if hasattr(b, "ghost1")]
    assert len(ours) == len(theirs)
    return [(d, m) for d, m in zip(ours, theirs) if d.ghost1.dfc is not None and BlockPath.SE in d.plan.fits]


@pytest.mark.parametrize("builder", [ghostnetv2, ghostnetv3])
@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("band", [1, 3, 8])
def test_gated_blocks_on_the_front_kernel_match_the_model(builder, threads, band):
    """Gated ghost1 (the DFC gate applied as the front kernel computes it, before the strided
    conv), with and without SE, stride 1 and 2, any band height and thread split."""
    pairs = _gated_blocks(builder)
    kinds = {(d.conv_dw is None, d.se is None) for d, _ in pairs}
    assert {True, False} <= {s1 for s1, _ in kinds} and {True, False} <= {no_se for _, no_se in kinds}
    g = torch.Generator().manual_seed(band)
    for d, m in pairs:
        cin = d.ghost1.primary_conv.weight.shape[1]
        for shape in [(2, 13, 9), (1, 24, 20)]:
            x = _nhwc(torch.randn((shape[0], cin, *shape[1:]), generator=g))
            with torch.no_grad():
                ref = m.eval()(x)
                got = [d._run_fused_se(x, True, band=band)]
                gate = d.ghost1.dfc.values(x, x.shape[-2:])
                if BlockPath.S1 in d.plan.fits:  # no SE: also the one-pass kernels
                    got.append(native.ghost_block_s1(x, d._fused_weights(), band=band, gate=gate))
                if BlockPath.S2 in d.plan.fits:
                    res = d.shortcut_pw.run(d.shortcut_dw.run(x, True), True)
                    k = d.conv_dw.weight.shape[-1]
                    got.append(native.ghost_block_s2(x, res, d._fused_weights(), k, band=band, gate=gate))
            for y in got:
                assert y is not None and y.shape == ref.shape
                assert _rel_err(ref, y) < 1e-5, (shape, type(m).__name__)
    assert any(BlockPath.S1 in d.plan.fits for d, _ in pairs)
    assert any(BlockPath.S2 in d.plan.fits for d, _ in pairs)


@pytest.mark.parametrize("builder", [ghostnetv2, ghostnetv3])
def test_deployed_v2_v3_use_the_gate_kernels(builder, monkeypatch):
    """Every DFC gate runs natively (one dfc_gate call each); each gated block goes through the
    gated kernel its map size picks (whole-block, one-pass stride 1 or 2, or front), and a wide
    block kept off the fused kernels multiplies by gate_mul; the output equals the model's."""
    model = randomise_bn(builder().eval(), seed=5)
    deployed = fuse(model)
    calls: dict[str, int] = {}
    for name in (
        "dfc_gate",
        "gate_mul",
        "ghost_front",
        "ghost_block_s1",
        "ghost_block_s2",
        "ghost_block_small",
    ):
        real = getattr(native, name)

        def counted(*a, _real=real, _name=name, **k):
            out = _real(*a, **k)
            gated = (
                _name in ("dfc_gate", "gate_mul")
                or k.get("gate") is not None
                or (_name == "ghost_front" and len(a) > 5 and a[5] is not None)
            )
            calls[_name] = calls.get(_name, 0) + int(gated and out is not None and out is not False)
            return out

        monkeypatch.setattr(native, name, counted)
    gates = [m for m in deployed.modules() if isinstance(m, DeployDFCGate)]
    front = [b for b in deployed.modules() if isinstance(b, DeployBottleneck) and b.ghost1.dfc is not None]
    pixels: dict[int, int] = {}  # each gated block's input map
    for b in front:
        monkeypatch.setattr(
            b,
            "run",
            lambda x, fast, _b=b, _run=b.run: (
                pixels.__setitem__(id(_b), x.shape[2] * x.shape[3]) or _run(x, fast)
            ),
        )
    x = torch.randn(1, 3, 320, 288)
    with torch.no_grad():
        ref, got = model(x), deployed(x)
    assert _rel_err(ref, got) < 1e-4
    small = [b for b in front if BlockPath.SMALL in b.plan.fits and pixels[id(b)] <= b.plan.small_max_pixels]
    banded = [b for b in front if b not in small and pixels[id(b)] >= b.plan.band_min_pixels]
    n_s1 = sum(b.plan.band is BlockPath.S1 for b in banded)  # no SE: the one-pass kernels
    n_s2 = sum(b.plan.band is BlockPath.S2 for b in banded)
    n_two = sum(b.plan.band is BlockPath.SE for b in banded)
    assert calls == {
        "dfc_gate": len(gates),
        "ghost_block_small": len(small),
        "ghost_block_s1": n_s1,
        "ghost_block_s2": n_s2,
        "ghost_front": n_two,
    }  # and no gate_mul
    assert min(len(small), n_s1, n_s2, n_two) > 0 and len(small) + n_s1 + n_s2 + n_two == len(front)
    # the wide blocks kept off every fused kernel: ghost1 on the per-op path, gated by gate_mul
    wide = [b for b in front if b.plan.band_min_pixels > 0]
    for b in wide:
        b.plan = b.plan.without(BlockPath.SMALL, *BAND_PATHS)
    calls.clear()
    with torch.no_grad():
        assert _rel_err(ref, deployed(x)) < 1e-4
    ops = len(wide)  # one gate_mul each, two on the split path
    assert wide and ops <= calls.pop("gate_mul") <= 2 * ops
    assert calls["ghost_block_small"] == len(small) - sum(b in small for b in wide)


def test_gates_follow_the_block_kernel_choice(monkeypatch):
    """With the "block" kind off (a CPU where the fused kernels lose), the gates run as torch
    ops and no gate kernel is called; with use_native off (``fuse(native_kernels=False)``) too."""
    import math
    import os

    model = randomise_bn(ghostnetv2(0.5).eval(), seed=7)
    x = torch.randn(1, 3, 64, 48)
    calls: list[str] = []
    for name in ("dfc_gate", "gate_mul", "ghost_front"):
        real = getattr(native, name)
        monkeypatch.setattr(
            native, name, lambda *a, _real=real, _n=name, **k: calls.append(_n) or _real(*a, **k)
        )
    with torch.no_grad():
        ref = model(x)
        choice = {**dict.fromkeys(native.KINDS, True), "block": False}
        state = (os.environ.get("GHOSTDET_NATIVE", ""), choice, dict.fromkeys(native.KINDS, math.inf))
        monkeypatch.setitem(native._state, "choice", state)
        got = fuse(model, native_kernels=True)(x)
        assert calls == [] and _rel_err(ref, got) < 1e-4
        monkeypatch.delitem(native._state, "choice")
        got = fuse(model, native_kernels=False)(x)
        assert calls == [] and _rel_err(ref, got) < 1e-4
        fuse(model, native_kernels=True)(x)  # on these maps the gated blocks run whole
        assert "dfc_gate" in calls


def test_gated_split_path_gates_both_halves(monkeypatch):
    """On large maps a gated ghost1's halves are never concatenated: each is gated in place by
    its channel slice of the gate (gate_mul on a sliced gate), and the output stays the model's."""
    model = randomise_bn(ghostnetv2(0.5).eval(), seed=11)
    deployed = fuse(model)
    blocks = [b for b in deployed.modules() if isinstance(b, DeployBottleneck)]
    split = [b for b in blocks if BlockPath.SPLIT in b.plan.fits and b.ghost1.dfc]
    assert split
    for b in split:
        # the op path (not a fused kernel), split at any size
        b.plan = dataclasses.replace(b.plan.without(BlockPath.SMALL, *BAND_PATHS), split_min_numel=0)
    sliced: list[int] = []
    real = native.gate_mul
    monkeypatch.setattr(native, "gate_mul", lambda t, g, *a: sliced.append(g.shape[1]) or real(t, g, *a))
    x = torch.randn(2, 3, 72, 56)
    with torch.no_grad():
        assert _rel_err(model(x), deployed(x)) < 1e-4
    assert len(sliced) >= 2 * len(split)  # each block's two halves, gated one by one


def test_gate_weights_follow_a_state_dict_load():
    """The gate kernel's cached weights are rebuilt when the deployed model's weights change."""
    a = fuse(randomise_bn(ghostnetv2(0.5).eval(), seed=1))
    b = fuse(randomise_bn(ghostnetv2(0.5).eval(), seed=2))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before, want = a(x), b(x)
        a.load_state_dict(b.state_dict())
        got = a(x)
    assert _rel_err(want, before) > 1e-2 and _rel_err(want, got) < 1e-5


def test_projection_chunk_agrees_with_the_kernel():
    """The wrapper's thread choice assumes the kernel's projection task size."""
    import re
    from pathlib import Path

    src = (Path(native.__file__).parent / "csrc" / "dfcgate.c").read_text()
    assert [int(v) for v in re.findall(r"#define PROJ_CHUNK (\d+)", src)] == [native.DFC_PROJ_CHUNK]
