"""ghostdet.deploy.fuse: same outputs as the eval-mode model, training untouched, clear errors."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from helpers import randomise_bn
from torch import nn

from ghostdet.deploy import (
    DeployBottleneck,
    DeployGhostNet,
    DeployGhostNetFeatures,
    FusedConv2d,
    fold_bn,
    fuse,
)
from ghostdet.deploy.conversions import family_converter
from ghostdet.deploy.plan import BAND_PATHS, BlockPath
from ghostdet.models import (
    GHOSTNET_CFG,
    BackboneFamily,
    GhostNet,
    fasterrcnn_ghostnet_320_fpn,
    get_model,
    ghostnet,
    ghostnet_fpn_backbone,
    retinanet_ghostnet_fpn,
)
from ghostdet.models import family as family_module


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()


def test_fold_bn_matches_batchnorm():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, 3, padding=1, bias=True)
    bn = randomise_bn(nn.Sequential(nn.BatchNorm2d(8)))[0].eval()
    w, b = fold_bn(conv, bn)
    x = torch.randn(2, 6, 9, 9)
    ref = bn(conv(x))
    got = torch.nn.functional.conv2d(x, w, b, padding=1)
    assert _rel_err(ref, got) < 1e-5


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_other", [False, True])
@pytest.mark.parametrize("groups", [1, 4])
def test_fused_conv_matches_reference(relu, with_other, groups):
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=groups, bias=False)
    bn = randomise_bn(nn.Sequential(nn.BatchNorm2d(8)))[0].eval()
    fused = FusedConv2d.from_conv(conv, bn, relu=relu)
    for shape in [(1, 8, 16, 16), (2, 8, 11, 7)]:  # a second size reuses the prepacked weight
        x = torch.randn(shape)
        other = torch.randn(shape[0], 8, (shape[2] + 1) // 2, (shape[3] + 1) // 2) if with_other else None
        ref = bn(conv(x))
        if other is not None:
            ref = ref + other
        if relu:
            ref = ref.relu()
        with torch.inference_mode():
            got = fused(x, other)
        assert got.shape == ref.shape
        assert _rel_err(ref, got) < 1e-5


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_other", [False, True])
@pytest.mark.parametrize("gemm_max_pixels", [0, 10**9])
def test_pointwise_gemm_and_onednn_paths_match_reference(relu, with_other, gemm_max_pixels):
    torch.manual_seed(2)
    conv = nn.Conv2d(12, 20, 1, bias=False)
    bn = randomise_bn(nn.Sequential(nn.BatchNorm2d(20)))[0].eval()
    fused = FusedConv2d.from_conv(conv, bn, relu=relu)
    assert fused.gemm_max_pixels > 0  # 1x1, stride 1, no padding: GEMM-eligible by default
    fused.gemm_max_pixels = gemm_max_pixels
    for shape in [(1, 12, 7, 7), (3, 12, 5, 9)]:
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        other = torch.randn(shape[0], 20, *shape[2:]) if with_other else None
        ref = bn(conv(x)) + (other if other is not None else 0)
        ref = ref.relu() if relu else ref
        with torch.inference_mode():
            got = fused(x, other)
        assert got.shape == ref.shape and got.is_contiguous(memory_format=torch.channels_last)
        assert _rel_err(ref, got) < 1e-5
    with torch.no_grad():  # an in-place weight update is picked up (cached transposed weight)
        fused.weight.mul_(2)
        fused.bias.mul_(2)
        x = torch.randn(1, 12, 4, 4).contiguous(memory_format=torch.channels_last)
        ref = nn.functional.conv2d(x, fused.weight, fused.bias)
        ref = ref + other[:1, :, :4, :4] if with_other else ref
        ref = ref.relu() if relu else ref
        got = fused(x, other[:1, :, :4, :4].contiguous() if with_other else None)
    assert _rel_err(ref, got) < 1e-5
    assert FusedConv2d.from_conv(nn.Conv2d(12, 20, 1, stride=2)).gemm_max_pixels == 0
    assert FusedConv2d.from_conv(nn.Conv2d(12, 20, 3, padding=1)).gemm_max_pixels == 0


def _trained_bn_classifier() -> nn.Module:
    torch.manual_seed(0)
    model = ghostnet(1.0, num_classes=10)
    # A few train-mode passes give the BatchNorms real running statistics.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 64, 64) * 2 + 0.5)
    randomise_bn(model, seed=3)  # and non-trivial affine parameters
    return model.eval()


def test_classifier_equivalence_and_no_bn_left():
    model = _trained_bn_classifier()
    fused = fuse(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert all(not p.requires_grad for p in fused.parameters())
    for size in (224, 97):
        x = torch.randn(2, 3, size, size)
        with torch.inference_mode():
            ref = model(x)
            got = fused(x)
        assert _rel_err(ref, got) < 1e-4
        assert torch.equal(ref.argmax(1), got.argmax(1))
    # also without oneDNN (the fallback used for export / other devices)
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        got = fused(x)
    assert _rel_err(ref, got) < 1e-4


@pytest.mark.parametrize("split_min_numel", [0, 10**12])
def test_split_and_concat_paths_both_match(split_min_numel):
    """The no-concat (split) path and the concat path of DeployBottleneck give the same output."""
    from ghostdet.deploy import DeployBottleneck

    model = _trained_bn_classifier()
    fused = fuse(model)
    blocks = [m for m in fused.modules() if isinstance(m, DeployBottleneck)]
    assert blocks and all(BlockPath.SPLIT in b.plan.fits for b in blocks)
    for b in blocks:
        b.plan = dataclasses.replace(b.plan, split_min_numel=split_min_numel)
    x = torch.randn(1, 3, 128, 96)
    with torch.inference_mode():
        assert _rel_err(model(x), fused(x)) < 1e-4


@pytest.mark.parametrize("oup,ratio,relu", [(16, 2, True), (15, 2, False), (24, 3, True)])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("scaled", [False, True])
def test_concat_parts_matches_module_on_scaled_concat(oup, ratio, relu, batch, scaled):
    """concat_parts(parts, scales) == GhostModule(cat(parts) * gate), with the gate per image."""
    from ghostdet.deploy import DeployGhostModule
    from ghostdet.models.ghostnet import GhostModule

    torch.manual_seed(4)
    module = randomise_bn(GhostModule(20, oup, ratio=ratio, relu=relu), seed=5).eval()
    fused = DeployGhostModule(module)
    a = torch.randn(batch, 12, 9, 7).contiguous(memory_format=torch.channels_last)
    b = torch.randn(batch, 8, 9, 7).contiguous(memory_format=torch.channels_last)
    gate = torch.rand(batch, 20) if scaled else None
    scales = list(gate.split([12, 8], dim=1)) if scaled else None
    x = torch.cat([a, b], dim=1)
    with torch.inference_mode():
        ref = module(x * gate[:, :, None, None] if scaled else x)
        got = fused.concat_parts([a, b], scales, fast=True)
        single = fused.concat_parts([x], None if gate is None else [gate], fast=True)
        plain = fused(x)  # forward -> concat (in place on this small map), sliced to oup
    assert got.shape == ref.shape == (batch, oup, 9, 7)
    assert _rel_err(ref, got) < 1e-5
    assert _rel_err(ref, single) < 1e-5
    with torch.inference_mode():
        assert _rel_err(module(x), plain) < 1e-5
    with pytest.raises(ValueError, match="parts have 12 channels, the primary conv takes 20"):
        fused.concat_parts([a], None, fast=True)


def test_se_gate_scales_weights_not_maps():
    """With one image, no SE block on the per-op path (here: without the native kernels, whose
    SE blocks fold the gate inside their kernels) multiplies a feature map by its gate: the gate
    goes into the next 1x1 conv's weight (a few thousand numbers), and the result still matches."""
    model = _trained_bn_classifier()
    fused = fuse(model, native_kernels=False)
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode(), torch.profiler.profile(record_shapes=True) as prof:
        got = fused(x)
    with torch.inference_mode():
        assert _rel_err(model(x), got) < 1e-4
    muls = [e.input_shapes for e in prof.events() if e.name == "aten::mul"]
    assert muls  # the gates do scale weights
    assert all(len(shapes[0]) == 2 for shapes in muls)  # (in, out) weights, never a 4-d map


@pytest.mark.parametrize("native", [True, False])
def test_native_and_onednn_depthwise_paths_both_match(native):
    from ghostdet.deploy import native as _native

    model = _trained_bn_classifier()
    fused = fuse(model, native_kernels=native)
    dw = [m for m in fused.modules() if isinstance(m, FusedConv2d) and m.is_native_dw]
    assert dw and all(m.use_native is native for m in dw)
    assert fused.stem.is_native_stem and fused.stem.use_native is native
    # all-small maps, and maps above THRESHOLDS.gemm_max_pixels
    for size in [(1, 3, 32, 32), (2, 3, 128, 96)]:
        x = torch.randn(size)
        with torch.inference_mode():
            assert _rel_err(model(x), fused(x)) < 1e-4
    if not native or _native.load() is None:
        return
    # On small maps every Ghost module writes its two halves in place: no concatenation and no
    # oneDNN depthwise convolution is left (the cheap ops ran on the native kernel).
    with torch.inference_mode(), torch.profiler.profile(record_shapes=True) as prof:
        fused(torch.randn(1, 3, 32, 32))
    names = [e.name for e in prof.events()]
    assert "aten::cat" not in names
    convs = [e for e in prof.events() if e.name.startswith("mkldnn::_convolution_pointwise")]
    assert all(e.input_shapes[1][1] != 1 for e in convs)  # weight (out, in/groups=1, k, k) = depthwise
    assert all(e.input_shapes[0][1] != 3 for e in convs)  # and the stem ran natively too


def test_fpn_backbone_equivalence():
    torch.manual_seed(0)
    bb = randomise_bn(ghostnet_fpn_backbone(1.0, returned_layers=[2, 3, 4, 5])).eval()
    fused = fuse(bb)
    x = torch.randn(1, 3, 160, 224)
    with torch.inference_mode():
        ref = bb(x)
        got = fused(x)
    assert list(ref) == list(got)
    for k in ref:
        assert ref[k].shape == got[k].shape
        assert _rel_err(ref[k], got[k]) < 1e-4


def test_fuse_rejects_training_mode_and_double_fuse():
    model = ghostnet(1.0, num_classes=5)
    with pytest.raises(RuntimeError, match=r"eval-mode model.*model\.eval\(\)"):
        fuse(model)
    model.eval()
    model.blocks[3].train()  # one submodule still training is also an error
    with pytest.raises(RuntimeError, match=r"blocks\.3"):
        fuse(model)
    model.eval()
    with pytest.raises(RuntimeError, match="already fused"):
        fuse(fuse(model))


def test_original_model_still_trains_identically():
    torch.manual_seed(0)
    model = ghostnet(0.5, num_classes=4)
    twin = copy.deepcopy(model)
    model.eval()
    fuse(model)  # default: a copy is fused, model is untouched
    model.train()
    x = torch.randn(4, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 3])
    losses = []
    for m in (model, twin):
        torch.manual_seed(1)
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        for _ in range(2):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
        losses.append(loss.item())
    assert losses[0] == losses[1]
    for (n, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), n


def test_inplace_fuse_converts_the_object():
    model = ghostnet(1.0, num_classes=3).eval()
    backbone_ref = model.blocks
    out = fuse(model, inplace=False)
    assert model.blocks is backbone_ref
    det = fasterrcnn_ghostnet_320_fpn(num_classes=3).eval()
    out = fuse(det, inplace=True)
    assert out is det
    assert not any(isinstance(m, nn.BatchNorm2d) for m in det.backbone.modules())


def _check_detections(ref: list[dict], got: list[dict], limit: int | None = None) -> None:
    """Same detections up to the order of (near-)tied scores: every reference detection has a
    partner with the same label, a score within 1e-4 and a box within 1e-4 (relative).

    The one exception is the cut-off: a detector keeps its top ``limit`` (``detections_per_img``)
    detections, and which of several candidates (near-)tied with the lowest kept score make the
    cut may differ. So when ``limit`` detections were kept, a detection whose score is within
    1e-4 of the lowest kept score on both sides may lack a partner, as many on each side.
    """
    for r, g in zip(ref, got):
        assert r["boxes"].shape[0] > 0, "the test needs some detections to compare"
        assert r["boxes"].shape == g["boxes"].shape
        scale = r["boxes"].abs().max()
        tol = 1e-4 * r["scores"].max()
        box_close = (r["boxes"][:, None] - g["boxes"][None]).abs().amax(-1) <= 1e-4 * scale
        score_close = (r["scores"][:, None] - g["scores"][None]).abs() <= tol
        same_label = r["labels"][:, None] == g["labels"][None]
        match = box_close & score_close & same_label
        lone_r, lone_g = r["scores"][~match.any(1)], g["scores"][~match.any(0)]
        if limit is None or r["boxes"].shape[0] < limit:
            assert lone_r.numel() == 0 and lone_g.numel() == 0
        else:
            assert lone_r.numel() == lone_g.numel()
            lowest = torch.stack([r["scores"].min(), g["scores"].min()])
            for lone in (lone_r, lone_g):
                assert ((lone[:, None] - lowest[None]).abs() <= tol).all(), (lone, lowest)
        # and the ranking agrees wherever scores are not (near-)tied
        assert torch.equal(r["labels"][:5], g["labels"][:5]) or (r["scores"][:6].diff().abs() < 1e-4).any()


def test_check_detections_allows_ties_only_at_the_cut_off():
    """The comparison above fails on a real difference; only a tie at the cut-off may swap."""
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    boxes = torch.arange(32.0).reshape(8, 4) * 10
    ref = {"boxes": boxes, "scores": scores, "labels": torch.arange(8)}
    # the last kept detection swapped for another candidate with the same score
    swapped = {k: v.clone() for k, v in ref.items()}
    swapped["boxes"][-1] += 50.0
    swapped["labels"][-1] = 9
    _check_detections([ref], [swapped], limit=8)
    with pytest.raises(AssertionError):  # fewer than the limit kept: no cut-off, a real difference
        _check_detections([ref], [swapped], limit=9)
    lower = {k: v.clone() for k, v in swapped.items()}
    lower["scores"][-1] = 0.1  # the replacement does not tie with the lowest kept score
    with pytest.raises(AssertionError):
        _check_detections([ref], [lower], limit=8)
    moved = {k: v.clone() for k, v in ref.items()}
    moved["boxes"][3] += 1.0  # a box away from the cut-off moved
    with pytest.raises(AssertionError):
        _check_detections([ref], [moved], limit=8)


def _low_thresh_detector(builder, **kw) -> nn.Module:
    torch.manual_seed(0)
    model = builder(num_classes=5, **kw)
    randomise_bn(model, seed=1)
    return model.eval()


def test_fasterrcnn_320_equivalence():
    model = _low_thresh_detector(fasterrcnn_ghostnet_320_fpn, box_score_thresh=0.0)
    fused = fuse(model)
    imgs = [torch.rand(3, 240, 320), torch.rand(3, 100, 90)]
    with torch.inference_mode():
        ref = model(imgs)
        got = fused(imgs)
    _check_detections(ref, got, model.roi_heads.detections_per_img)


def test_retinanet_equivalence():
    model = _low_thresh_detector(retinanet_ghostnet_fpn, score_thresh=0.0, min_size=256, max_size=320)
    fused = fuse(model)
    imgs = [torch.rand(3, 240, 320)]
    with torch.inference_mode():
        ref = model(imgs)
        got = fused(imgs)
    _check_detections(ref, got, model.detections_per_img)


def test_tune_malloc_stops_page_faults_on_large_maps():
    """At 448x448 GhostNet's biggest activations sit just above glibc's adaptive mmap threshold;
    after tune_malloc() the freed blocks are reused, so steady-state calls touch no new pages."""
    import subprocess
    import sys

    code = (
        "import resource, sys, torch\n"
        "from ghostdet.deploy import fuse, tune_malloc\n"
        "from ghostdet.models import ghostnet\n"
        "if not tune_malloc(): print('UNSUPPORTED'); sys.exit(0)\n"
        "net = fuse(ghostnet(1.0).eval())\n"
        "x = torch.randn(1, 3, 448, 448)\n"
        "with torch.inference_mode():\n"
        "    for _ in range(5): net.forward_features(x)\n"
        "    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    for _ in range(5): net.forward_features(x)\n"
        "print('FAULTS', (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    if "UNSUPPORTED" in res.stdout:
        pytest.skip("not glibc")
    faults = float(res.stdout.split("FAULTS")[1])
    # Without it: ~3000 per call here (one per 4 KiB of the big maps); with it a few dozen from
    # elsewhere (up to ~130 seen), so an order of magnitude below is the bar.
    assert faults < 500, res.stdout


def test_fused_model_survives_copy_pickle_and_weight_reload(tmp_path):
    """Backend weight caches (oneDNN-packed, GEMM, native depthwise) are rebuilt after a deepcopy,
    a torch.save/torch.load round trip, and an in-place load_state_dict with new weights."""
    model = _trained_bn_classifier()
    fused = fuse(model)
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        ref = fused(x)  # fills the caches
        torch.save(fused, tmp_path / "fused.pt")
        loaded = torch.load(tmp_path / "fused.pt", weights_only=False)
        assert torch.equal(copy.deepcopy(fused)(x), ref)
        assert torch.equal(loaded(x), ref)
        state = {k: v * 1.5 if v.dim() == 4 and v.shape[1] == 1 else v for k, v in fused.state_dict().items()}
        loaded.load_state_dict(state)  # depthwise weights scaled in place
        fresh = copy.deepcopy(fused)
        fresh.load_state_dict(state)
        for m in fresh.modules():
            if isinstance(m, FusedConv2d):
                m.use_native = False  # reference through oneDNN, no native cache involved
        changed = loaded(x)
        assert not torch.allclose(changed, ref)
        assert _rel_err(fresh(x), changed) < 1e-4


def test_block_kernels_read_replaced_weight_parameters():
    """Weights and biases replaced by new Parameters after fusing (not changed in place) are what
    the native block kernels use next: the blocks keep references to their convs, not to the
    convs' tensors, and every kind of block kernel (whole-block, band, two-pass SE) runs here."""
    torch.manual_seed(0)
    fused = fuse(ghostnet(1.0).eval())
    x = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        before = fused.forward_features(x)  # fills the derived-weight caches
    with torch.no_grad():
        for m in fused.modules():
            if isinstance(m, FusedConv2d):
                m.weight = nn.Parameter(m.weight * 1.1, requires_grad=False)
                m.bias = nn.Parameter(m.bias + 0.01, requires_grad=False)
    reference = copy.deepcopy(fused)
    for m in reference.modules():
        if isinstance(m, FusedConv2d):
            m.use_native = False  # every conv through oneDNN / GEMM: no native block kernel
    with torch.inference_mode():
        got = fused.forward_features(x)
        assert _rel_err(before, got) > 1e-2
        assert _rel_err(reference.forward_features(x), got) < 1e-4


def test_unpickled_blocks_plan_their_paths_again():
    """A DeployBottleneck pickled without its plan (an older ghostdet) plans its paths again."""
    import pickle

    from ghostdet.deploy import DeployBottleneck

    fused = fuse(_trained_bn_classifier())
    blocks = [m for m in fused.modules() if isinstance(m, DeployBottleneck)]
    flags = ("plan", "ghost2_by_parts")
    expected = [[getattr(b, f) for f in flags] for b in blocks]
    for b in blocks:
        for f in flags:
            delattr(b, f)
    loaded = pickle.loads(pickle.dumps(fused))
    got = [[getattr(b, f) for f in flags] for b in loaded.modules() if isinstance(b, DeployBottleneck)]
    assert got == expected
    assert {row[0].band for row in got} >= {BlockPath.S1, BlockPath.S2, BlockPath.SE}


def test_fuse_inside_inference_mode_and_inference_tensor_weights():
    """fuse() called under torch.inference_mode builds normal tensors; a model whose parameters are
    inference tensors (e.g. loaded under inference mode) still runs."""
    model = _trained_bn_classifier()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        fused = fuse(model)
        assert not any(p.is_inference() for p in fused.parameters())
        assert _rel_err(ref, fused(x)) < 1e-4
        frozen = copy.deepcopy(fused)  # deep copy made in inference mode: inference tensors
        assert all(p.is_inference() for p in frozen.parameters())
        assert _rel_err(ref, frozen(x)) < 1e-4


def test_fused_block_matches_separate_ops_and_only_takes_eligible_blocks():
    """The native fused stride-1 bottleneck (ghostdet/deploy/csrc/ghostblock.c) gives the same output as
    the block's separate deploy ops, on odd sizes, tiny maps and a batch of two."""
    from ghostdet.deploy import THRESHOLDS, DeployBottleneck
    from ghostdet.deploy import native as _native

    model = _trained_bn_classifier()
    fused = fuse(model)
    blocks = [m for m in fused.modules() if isinstance(m, DeployBottleneck)]
    eligible = [b for b in blocks if BlockPath.S1 in b.plan.fits]
    # GhostNet's first stride-1 blocks (16 and 24 channels) and the 160-channel ones without SE
    widths = {2 * b.ghost2.primary_conv.weight.shape[0] for b in eligible}
    assert min(widths) <= THRESHOLDS.fused_block_max_channels < max(widths)
    for b in blocks:  # stride 2, SE or conv shortcut: never the one-pass stride-1 kernel
        if b.conv_dw is not None or b.se is not None or b.shortcut_pw is not None:
            assert BlockPath.S1 not in b.plan.fits
    if _native.load() is None:
        pytest.skip("no C compiler to build the native kernels")
    g = torch.Generator().manual_seed(0)
    for b in eligible:
        c = b.ghost1.primary_conv.weight.shape[1]
        for shape in [(1, c, 37, 29), (2, c, 5, 3), (1, c, 1, 1), (1, c, 64, 64)]:
            x = torch.randn(shape, generator=g).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                got = _native.ghost_block_s1(x, b._fused_weights())
                plan, b.plan = b.plan, b.plan.without(BlockPath.S1)
                ref = b.run(x, True)
                b.plan = plan
            assert got is not None and got.shape == ref.shape
            assert _rel_err(ref, got) < 1e-5
        # an NCHW input is declined (the block then takes the separate-ops path)
        assert _native.ghost_block_s1(torch.randn(1, c, 8, 8), b._fused_weights()) is None
        with pytest.raises(ValueError, match="do not fit"):
            _native.ghost_block_s1(
                x[:, :, :4, :4].contiguous(memory_format=torch.channels_last), b._fused_weights()[::-1]
            )


def test_fused_stride2_block_matches_separate_ops():
    """The fused stride-2 bottleneck (GhostNet's second block) equals its separate deploy ops on
    odd sizes (odd/even edges of the stride-2 grid), tiny maps and a batch of two."""
    from ghostdet.deploy import DeployBottleneck
    from ghostdet.deploy import native as _native

    model = _trained_bn_classifier()
    fused = fuse(model)
    blocks = [m for m in fused.modules() if isinstance(m, DeployBottleneck)]
    eligible = [b for b in blocks if BlockPath.S2 in b.plan.fits]
    assert eligible and all(b.conv_dw is not None and b.se is None for b in eligible)
    assert not any(BlockPath.S2 in b.plan.fits for b in blocks if b.se is not None or b.conv_dw is None)
    if _native.load() is None:
        pytest.skip("no C compiler to build the native kernels")
    g = torch.Generator().manual_seed(1)
    for b in eligible:
        c = b.ghost1.primary_conv.weight.shape[1]
        for shape in [(1, c, 37, 29), (2, c, 5, 3), (1, c, 1, 1), (1, c, 2, 2), (1, c, 3, 7), (1, c, 64, 64)]:
            x = torch.randn(shape, generator=g).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                got = b.run(x, True)
                plan, b.plan = b.plan, b.plan.without(BlockPath.S2)
                ref = b.run(x, True)
                b.plan = plan
            assert got.shape == ref.shape
            assert _rel_err(ref, got) < 1e-5
        res = torch.zeros(1, 2 * b.ghost2.primary_conv.weight.shape[0], 4, 4)
        res = res.contiguous(memory_format=torch.channels_last)
        x = torch.randn(1, c, 8, 8).contiguous(memory_format=torch.channels_last)
        weights = list(b._fused_weights())
        weights[0] = weights[0].t().contiguous()  # (out, in) instead of (in, out)
        with pytest.raises(ValueError, match="do not fit"):
            _native.ghost_block_s2(x, res, weights, b.conv_dw.weight.shape[-1])


@pytest.mark.parametrize("band", [1, 2, 3, 5, 16])
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_blocks_any_band_and_thread_count(band, threads):
    """The fused kernels stream rows in bands and move the rows two neighbouring bands share
    instead of computing them twice; every band height and thread split gives the same output."""
    from ghostdet.deploy import DeployBottleneck
    from ghostdet.deploy import native as _native

    if _native.load() is None:
        pytest.skip("no C compiler to build the native kernels")
    fused = fuse(_trained_bn_classifier())
    blocks = [m for m in fused.modules() if isinstance(m, DeployBottleneck)]
    s1 = next(b for b in blocks if BlockPath.S1 in b.plan.fits)
    s2 = next(b for b in blocks if BlockPath.S2 in b.plan.fits)
    se1 = next(b for b in blocks if BlockPath.SE in b.plan.fits and b.conv_dw is None)
    se2 = next(b for b in blocks if BlockPath.SE in b.plan.fits and b.conv_dw is not None)
    g = torch.Generator().manual_seed(band)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for shape in [(2, 37, 29), (1, 64, 48), (3, 9, 5)]:
            for b in (s1, s2, se1, se2):
                c = b.ghost1.primary_conv.weight.shape[1]
                x = torch.randn((shape[0], c, *shape[1:]), generator=g)
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode():
                    plan, b.plan = b.plan, b.plan.without(*BAND_PATHS)
                    ref = b.run(x, True)
                    b.plan = plan
                    if b is s1:
                        got = _native.ghost_block_s1(x, b._fused_weights(), band=band)
                    elif b is s2:
                        res = b.shortcut_pw.run(b.shortcut_dw.run(x, True), True)
                        k = b.conv_dw.weight.shape[-1]
                        got = _native.ghost_block_s2(x, res, b._fused_weights(), k, band=band)
                    else:
                        got = b._run_fused_se(x, True, band=band)
                assert got is not None and got.shape == ref.shape
                assert _rel_err(ref, got) < 1e-5, (shape, blocks.index(b))
    finally:
        torch.set_num_threads(old_threads)


def test_fused_se_blocks_take_every_se_block_and_check_inputs():
    """The two-pass SE kernels take GhostNet's SE blocks (stride 1, and stride 2 with a 5x5
    depthwise conv): the narrow ones on every map, the wide ones from
    ``THRESHOLDS.fused_wide_min_pixels`` on; bad arguments are clear errors."""
    from ghostdet.deploy import THRESHOLDS as T
    from ghostdet.deploy import DeployBottleneck
    from ghostdet.deploy import native as _native

    fused = fuse(_trained_bn_classifier())
    blocks = [m for m in fused.modules() if isinstance(m, DeployBottleneck)]
    se = [b for b in blocks if BlockPath.SE in b.plan.fits]
    assert {b.conv_dw is None for b in se} == {True, False}
    assert se == [b for b in blocks if b.se is not None]
    assert all(b.plan.band is BlockPath.SE for b in se)
    for b in blocks:
        wide = 2 * b.ghost2.primary_conv.weight.shape[0] > T.fused_block_max_channels
        want = (T.fused_wide_min_pixels, T.wide_block_band) if wide else (0, T.narrow_block_band)
        assert (b.plan.band_min_pixels, b.plan.band_rows) == want
    assert {b.plan.band_min_pixels for b in se} == {0, T.fused_wide_min_pixels}
    if _native.load() is None:
        pytest.skip("no C compiler to build the native kernels")
    b = next(b for b in se if b.conv_dw is not None)
    w = b._fused_weights()
    x = torch.randn(1, w[0].shape[0], 8, 8).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="stride 1, or stride 2 with kernel 3 or 5"):
        _native.ghost_front(x, w[:6], 2, 7)
    with pytest.raises(ValueError, match="do not fit"):
        _native.ghost_front(x, w[:4], 2, 5)  # the strided conv's weights are missing
    z, sums = _native.ghost_front(x, w[:6], 2, 5)
    assert z.shape == (1, 2 * b.m, 4, 4)
    torch.testing.assert_close(sums, z.sum((2, 3)), rtol=1e-5, atol=1e-5)
    res = torch.zeros(1, 2 * w[7].numel(), 4, 4).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="do not fit"):
        _native.ghost_back(z, res, [w[6][:, :4].contiguous(), *w[7:]])
    assert _native.ghost_back(z, res[:, :, :2], w[6:]) is None  # shortcut of the wrong size: declined


@pytest.mark.parametrize("threads", [1, 2])
def test_map_size_picks_each_blocks_kernel(monkeypatch, threads):
    """In a model, each bottleneck runs whole (csrc/smallblock.c) on maps up to its
    plan's ``small_max_pixels`` (``THRESHOLDS.small_block_max_pixels``, or
    ``wide_small_block_max_pixels`` when wider than ``fused_block_max_channels``), on the band
    kernels above that (a wide one from ``fused_wide_min_pixels`` on); whatever ran, the output
    equals the eval model's."""
    from ghostdet.deploy import THRESHOLDS as T
    from ghostdet.deploy import DeployBottleneck
    from ghostdet.deploy import native as _native

    if _native.load() is None:
        pytest.skip("no C compiler to build the native kernels")
    model = _trained_bn_classifier()
    fused = fuse(model)
    blocks = [b for b in fused.modules() if isinstance(b, DeployBottleneck)]
    # a block is known by its ghost1 weight as the kernels get it (cached: same storage each call)
    wide_by_weight = {
        b.ghost1.primary_conv.flat_weight().data_ptr(): 2 * b.ghost2.primary_conv.weight.shape[0]
        > T.fused_block_max_channels
        for b in blocks
    }
    assert set(wide_by_weight.values()) == {True, False}
    calls: list[tuple[str, bool, int]] = []  # (kernel, wide, input pixels) of each block call
    for name, w_arg in (
        ("ghost_block_s1", 1),
        ("ghost_block_s2", 2),
        ("ghost_front", 1),
        ("ghost_block_small", 1),
    ):
        real = getattr(_native, name)

        def spy(*args, _real=real, _name=name, _w=w_arg, **kwargs):
            x = args[0]
            calls.append((_name, wide_by_weight[args[_w][0].data_ptr()], x.shape[2] * x.shape[3]))
            return _real(*args, **kwargs)

        monkeypatch.setattr(_native, name, spy)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # stride 16 / 32 maps: 22x22 and 11x11 (all whole-block); 66x66 = 4356 (wide: band
        # kernels) and 33x33 = 1089 (wide: whole-block); the narrow ones at stride 2-8 are larger
        for side in (352, 1056):
            calls.clear()
            x = torch.randn(1, 3, side, side)
            with torch.no_grad():
                assert _rel_err(model(x), fused(x)) < 1e-4
            for kernel, wide, px in calls:
                limit = T.wide_small_block_max_pixels if wide else T.small_block_max_pixels
                assert (kernel == "ghost_block_small") == (px <= limit), (side, kernel, wide, px)
                if wide and kernel != "ghost_block_small":
                    assert px >= T.fused_wide_min_pixels
            kinds = {(k == "ghost_block_small", wide) for k, wide, _ in calls}
            # (whole-block, wide): the narrow 22x22 blocks run whole, the narrow 66x66 ones do not
            want = {(True, True), (False, False), (True, False) if side == 352 else (False, True)}
            assert kinds == want
    finally:
        torch.set_num_threads(old)


class _Doubler(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def test_fuse_takes_the_conversion_a_family_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    """fuse() replaces the module types a registered family declares by the converter it names."""
    fam = BackboneFamily(
        "doubling", "Doubling", GHOSTNET_CFG, GhostNet, deploy={_Doubler: "torch.nn:Identity"}
    )
    monkeypatch.setitem(family_module._FAMILIES, "doubling", fam)
    model = nn.Sequential(_Doubler(), nn.Sequential(_Doubler())).eval()
    fused = fuse(model, fuse_other_convs=False, native_kernels=False)
    assert [type(m) for m in fused] == [nn.Identity, nn.Sequential] and type(fused[1][0]) is nn.Identity
    assert type(model[0]) is _Doubler  # the copy was converted
    bad = BackboneFamily("broken", "Broken", GHOSTNET_CFG, GhostNet, deploy={_Doubler: "torch.nn:Nope"})
    monkeypatch.setitem(family_module._FAMILIES, "doubling", bad)
    with pytest.raises(ImportError, match=r"'torch\.nn:Nope' declared by a backbone family does not exist"):
        fuse(model, native_kernels=False)
    with pytest.raises(TypeError, match=r"must be named 'package\.module:attribute', got 'DeployGhostNet'"):
        BackboneFamily("b", "B", GHOSTNET_CFG, GhostNet, deploy={_Doubler: "DeployGhostNet"})
    with pytest.raises(TypeError, match=r"deploy keys must be nn\.Module subclasses"):
        BackboneFamily("b", "B", GHOSTNET_CFG, GhostNet, deploy={int: "torch.nn:Identity"})


def test_families_declare_the_ghost_deploy_modules() -> None:
    """Every shipped family's classifier, FPN body and bottlenecks have a declared deploy module."""
    for family in ("ghostnet", "ghostnetv2", "ghostnetv3"):
        net = get_model(family, width=0.5)
        assert family_converter(net) is DeployGhostNet
        assert family_converter(net.blocks[1][0]) is DeployBottleneck
        body = get_model(f"{family}_fpn", width=0.5).body
        assert family_converter(body) is DeployGhostNetFeatures
    assert family_converter(nn.Conv2d(3, 3, 1)) is None
