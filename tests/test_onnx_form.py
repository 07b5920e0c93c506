"""The portable (onnxruntime-friendly) GhostNet form: equal outputs, zero padding, graph shape."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from helpers import randomise_bn
from torch import nn

from ghostdet.deploy.portable import (
    Part,
    PortableFeatures,
    PortableGhostNet,
    _Ghost,
    ghost_layout,
    nchwc_block,
    portable_ghostnet,
    portable_model,
)
from ghostdet.models import ghostnet, ghostnet_fpn_backbone, ghostnetv2, ghostnetv3
from ghostdet.models.ghostnet import GhostModule


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize(("width", "align"), [(1.0, 8), (1.0, 16), (0.5, 8), (1.3, 1), (1.1, 8)])
def test_equals_the_model(width: float, align: int) -> None:
    torch.manual_seed(0)
    model = randomise_bn(ghostnet(width))
    port = portable_ghostnet(model, align)
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        assert _rel(port.forward_features(x), model.forward_features(x)) < 1e-5
        assert _rel(port(x), model(x)) < 1e-5
    assert not any(p.requires_grad for p in port.parameters())


@pytest.mark.parametrize("align", [8, 16])
def test_padding_channels_stay_zero_and_layouts_are_aligned(align: int) -> None:
    torch.manual_seed(0)
    model = randomise_bn(ghostnet(1.0))
    port = portable_ghostnet(model, align)
    seen = []
    with torch.no_grad():
        parts = port.trunk.stem([torch.randn(1, 3, 64, 64)])
        for stage in port.trunk.stages:
            for block in stage:
                parts = block(parts)
                seen.append(block.layout)
                for x, part in zip(parts, block.layout):
                    assert x.shape[1] == part.padded and part.padded % align == 0
                    assert torch.count_nonzero(x[:, part.real :]) == 0
    # e.g. the 24-channel blocks travel as two parts of 12 real channels padded to 16; with 16
    # per block, the 16-channel first block's halves (8 + 8) fit in one part
    assert (Part(12, 16), Part(12, 16)) in seen
    assert seen[0] == ((Part(16, 16),) if align == 16 else (Part(8, 8), Part(8, 8)))


@pytest.mark.parametrize(
    ("flags", "block"), [({"avx2", "fma", "avx512f"}, 16), ({"avx2", "fma"}, 8), (set(), 8)]
)
def test_default_align_is_this_cpus_nchwc_block(monkeypatch, flags: set[str], block: int) -> None:
    """onnxruntime's NCHWc block is 16 floats with AVX-512F, else 8; the portable form pads to it
    unless told otherwise, and an explicit align wins."""
    import ghostdet.deploy.portable as onnx_form

    monkeypatch.setattr(onnx_form, "_cpu_flags", lambda: flags)
    assert nchwc_block() == block
    model = ghostnet(0.5).eval()
    for port, want in ((portable_ghostnet(model), block), (portable_ghostnet(model, 4), 4)):
        assert port.align == want
        paddeds = [p.padded for layout in port.trunk.layouts for p in layout]
        assert all(p % want == 0 for p in paddeds)
        assert any(p % 8 for p in paddeds) == (want == 4)  # 4 really pads less than 8 does
    backbone = portable_model(ghostnet_fpn_backbone(width=0.5).eval())
    assert {m.align for m in backbone.modules() if isinstance(m, PortableFeatures)} == {block}


@pytest.mark.parametrize("bad", [0, -8, 8.0, True, "16"])
def test_bad_align_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="align must be an int >= 1"):
        portable_ghostnet(ghostnet(0.5).eval(), bad)


def test_ghost_layout_of_odd_channels() -> None:
    assert ghost_layout(13, 8) == (Part(7, 8), Part(6, 8))
    assert ghost_layout(16, 8) == (Part(8, 8), Part(8, 8))


def test_ghost_layout_joins_halves_that_fit_in_the_primary_padding() -> None:
    assert ghost_layout(16, 16) == (Part(16, 16),)
    assert ghost_layout(15, 16) == (Part(15, 16),)
    assert ghost_layout(6, 8) == (Part(6, 8),)
    assert ghost_layout(24, 16) == (Part(12, 16), Part(12, 16))  # joined would need 32 > 16
    assert ghost_layout(48, 16) == (Part(24, 32), Part(24, 32))


@pytest.mark.parametrize("relu", [True, False])
def test_joined_ghost_module_equals_the_module(relu: bool) -> None:
    """One part: the primary conv's copy passes the depthwise conv unchanged and the cheap half is
    the module's (odd widths keep only the cheap channels the module's slice keeps)."""
    torch.manual_seed(0)
    for inp, oup in ((16, 16), (16, 15), (8, 5)):
        module = randomise_bn(GhostModule(inp, oup, relu=relu))
        ghost = _Ghost(module, (Part(inp, 16),), 16)
        assert ghost.layout == (Part(oup, 16),)
        x = torch.randn(2, inp, 9, 11)
        with torch.no_grad():
            (got,) = ghost([torch.cat([x, x.new_zeros(2, 16 - inp, 9, 11)], 1)])
            assert _rel(got[:, :oup], module(x)) < 1e-6
            assert torch.count_nonzero(got[:, oup:]) == 0


def test_odd_ghost_module_keeps_the_sliced_channels() -> None:
    torch.manual_seed(0)
    module = randomise_bn(nn.Sequential(GhostModule(10, 13, relu=True)))[0]
    layout_in = (Part(10, 16),)
    ghost = _Ghost(module, layout_in, 8)
    x = torch.randn(2, 10, 9, 9)
    padded = torch.cat([x, torch.zeros(2, 6, 9, 9)], 1)
    with torch.no_grad():
        p, c = ghost([padded])
        got = torch.cat([p[:, :7], c[:, :6]], 1)
        assert _rel(got, module(x)) < 1e-5


@pytest.mark.parametrize(("width", "align"), [(1.0, 16), (1.0, 8), (1.3, 16)])
def test_ghostnetv2_equals_the_model(width: float, align: int) -> None:
    torch.manual_seed(0)
    model = randomise_bn(ghostnetv2(width))
    port = portable_ghostnet(model, align)
    gates = [m for m in port.modules() if type(m).__name__ == "_DFCGate"]
    assert len(gates) == sum(type(m).__name__ == "GhostModuleV2" for m in model.modules()) > 0
    # odd map sizes: the gate's pooled map is upsampled to the output's size, not doubled
    for shape in ((2, 3, 96, 80), (1, 3, 100, 76)):
        x = torch.randn(shape)
        with torch.no_grad():
            assert _rel(port(x), model(x)) < 1e-5


@pytest.mark.parametrize("returned_layers", [(3, 4, 5), (2, 3, 4, 5), (5,)])
def test_features_and_detectors_equal_the_model(returned_layers) -> None:
    from ghostdet.models import retinanet_ghostnet_320_fpn

    torch.manual_seed(0)
    backbone = randomise_bn(ghostnet_fpn_backbone(width=1.0, returned_layers=returned_layers))
    port = portable_model(backbone)
    assert isinstance(port.body, PortableFeatures) and port.fpn is not backbone.fpn
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        ref, got = backbone(x), port(x)
        assert list(got) == list(ref)
        for k in ref:
            assert _rel(got[k], ref[k]) < 1e-5
    detector = retinanet_ghostnet_320_fpn(num_classes=3, width=0.5).eval()
    port = portable_model(detector)
    assert isinstance(port.backbone.body, PortableFeatures)
    assert not isinstance(detector.backbone.body, PortableFeatures)  # the model is not modified
    with torch.no_grad():
        feats = detector.backbone.body(x)
        for k, v in port.backbone.body(x).items():
            assert _rel(v, feats[k]) < 1e-5


def test_refuses_what_it_cannot_represent() -> None:
    with pytest.raises(ValueError, match="no GhostNet"):
        portable_model(ghostnetv3(1.0).eval())
    with pytest.raises(ValueError, match="GhostNetV3"):
        portable_ghostnet(ghostnetv3(1.0).eval())
    with pytest.raises(ValueError, match="eval-mode"):
        portable_ghostnet(ghostnet(1.0))
    with pytest.raises(ValueError, match="ratio 2"):
        _Ghost(GhostModule(8, 12, ratio=3).eval(), (Part(8, 8),), 8)
    with pytest.raises(ValueError, match="align"):
        PortableGhostNet(ghostnet(0.5).eval(), align=0)


def test_exported_graph_has_no_concat_slice_or_reduce(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from ghostdet.deploy.onnx import export_onnx

    torch.manual_seed(0)
    model = randomise_bn(ghostnet(0.5))
    image = torch.rand(3, 224, 224)
    for static, align in ((False, None), (True, 16)):
        path = tmp_path / f"cls_{static}.onnx"
        report = export_onnx(model, path, image=image, static_shape=static, align=align)
        assert len(report["checks"]) == (1 if static else 2)
        assert report["align"] == (nchwc_block() if align is None else align)
        graph = onnx.load(str(path)).graph
        shapes = {t.name: t.dims for t in graph.initializer}
        convs = [shapes[n.input[1]] for n in graph.node if n.op_type == "Conv"]
        assert all(w[0] % report["align"] == 0 for w in convs), convs
        # 0.5x: the first block's 4 + 4 channel halves fit in one block, so the stem is one conv
        assert sum(w[1] == 3 for w in convs) == 1
        ops = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
        assert not {"Concat", "Slice", "ReduceMean"} & set(ops), ops
        assert ops["HardSigmoid"] > 0 and ops["GlobalAveragePool"] > 0
        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_value for d in dims] == ([1, 3, 224, 224] if static else [0, 3, 0, 0])
        assert report["form"] == "portable"
    # the fused form (portable=False) is the concatenating one
    report = export_onnx(model, tmp_path / "fused.onnx", image=image, portable=False, verify=False)
    assert report["form"] == "fused"
    assert "Concat" in {n.op_type for n in onnx.load(str(tmp_path / "fused.onnx")).graph.node}
    # V3 has no portable form: fused, and still verified
    v3 = ghostnetv3(0.5).eval().reparameterize()
    report = export_onnx(v3, tmp_path / "v3.onnx", image=image, static_shape=True)
    assert report["form"] == "fused"


def test_backbone_export_is_portable_and_verified(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from ghostdet.deploy.onnx import export_onnx

    torch.manual_seed(0)
    backbone = randomise_bn(ghostnet_fpn_backbone(width=0.5))
    report = export_onnx(backbone, tmp_path / "b.onnx", image=torch.rand(3, 224, 224))
    assert report["form"] == "portable" and len(report["checks"]) == 2
    export_onnx(backbone, tmp_path / "f.onnx", image=torch.rand(3, 224, 224), portable=False, verify=False)
    ops, fused = (
        Counter(n.op_type for n in onnx.load(str(tmp_path / f)).graph.node) for f in ("b.onnx", "f.onnx")
    )
    # only the three taps join their parts (and the FPN's upsampling computes its sizes)
    assert ops["Concat"] + ops["Slice"] < (fused["Concat"] + fused["Slice"]) / 2


def test_static_shape_is_refused_for_detectors(tmp_path) -> None:
    pytest.importorskip("onnx")
    from ghostdet.deploy.onnx import ExportError, export_onnx
    from ghostdet.models import fasterrcnn_ghostnet_320_fpn

    model = fasterrcnn_ghostnet_320_fpn(num_classes=3, width=0.5).eval()
    with pytest.raises(ExportError, match="static_shape"):
        export_onnx(model, tmp_path / "d.onnx", static_shape=True)
