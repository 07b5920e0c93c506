"""GhostNetV3 against timm's ``ghostnetv3_*`` (the oracle): both forms, size, loading."""

import functools
from pathlib import Path

import pytest
import torch
from helpers import randomise_bn
from test_ghostnetv2 import check_stage_features, go_offline
from torch import nn

from ghostdet.analysis import count_macs, count_params
from ghostdet.models import WeightsMismatchError
from ghostdet.models.ghostnetv3 import (
    GHOSTNETV3_URLS,
    ConvBn,
    GhostBottleneckV3,
    GhostModuleV3,
    fuse_branches,
    ghostnetv3,
)

timm = pytest.importorskip("timm")
from timm.models import reparameterize_model  # noqa: E402

TIMM_NAMES = {0.5: "ghostnetv3_050", 1.0: "ghostnetv3_100", 1.3: "ghostnetv3_130", 1.6: "ghostnetv3_160"}


@functools.cache
def timm_model(width: float) -> nn.Module:
    """timm's training-form model for ``width`` with randomised BatchNorms, built once."""
    torch.manual_seed(0)
    return randomise_bn(timm.create_model(TIMM_NAMES[width]), seed=int(width * 10))


@functools.cache
def timm_deployed(width: float) -> nn.Module:
    return reparameterize_model(timm_model(width))  # a re-parameterised copy


@pytest.fixture(autouse=True)
def _torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _close(got: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    scale = expected.abs().max()
    assert scale > 0.01
    assert (got - expected).abs().max() <= rel * scale


@pytest.mark.parametrize(
    "width", [0.5, 1.0, pytest.param(1.3, marks=pytest.mark.slow), pytest.param(1.6, marks=pytest.mark.slow)]
)
def test_timm_state_dict_loads_strictly_and_both_forms_match(width: float, tmp_path: Path) -> None:
    ref = timm_model(width)
    path = tmp_path / "v3.pth"
    torch.save(ref.state_dict(), path)
    model = ghostnetv3(width=width, weights=path).eval()
    x = torch.randn(2, 3, 99, 127)
    with torch.no_grad():
        expected = ref(x)
        _close(model(x), expected, 1e-5)
        deployed = timm_deployed(width)
        model.reparameterize()
        got, want = model(x), deployed(x)
    # Deploy form equals timm's re-parameterised model, and timm's deploy state dict loads.
    _close(got, want, 1e-4)
    _close(got, expected, 1e-4)
    assert set(model.state_dict()) == set(deployed.state_dict())
    model.load_state_dict(deployed.state_dict(), strict=True)


@pytest.mark.parametrize(("width", "params_m", "macs_m"), [(1.0, 6.15, 167.0), (0.5, 2.85, 49.6)])
def test_deploy_params_and_macs_match_timm_and_issue(width: float, params_m: float, macs_m: float) -> None:
    model = ghostnetv3(width=width).eval()
    assert count_params(model) == count_params(timm_model(width))
    if width == 1.0:
        assert round(count_params(model) / 1e6, 2) == 8.13  # training form
    model.reparameterize()
    deployed = timm_deployed(width)
    assert count_params(model) == count_params(deployed)
    assert count_macs(model) == count_macs(deployed)
    assert round(count_params(model) / 1e6, 2) == params_m
    assert round(count_macs(model) / 1e6, 1) == macs_m


@pytest.mark.parametrize(("groups", "stride", "skip"), [(1, 1, False), (8, 1, True), (8, 2, False)])
def test_fuse_branches_equals_the_branch_sum(groups: int, stride: int, skip: bool) -> None:
    torch.manual_seed(0)
    convs = nn.ModuleList(ConvBn(8, 8, 5, stride, groups=groups) for _ in range(3))
    scale = ConvBn(8, 8, 1, stride, groups=groups)
    identity = nn.BatchNorm2d(8) if skip else None
    for m in (convs, scale, identity):
        if m is not None:
            randomise_bn(m, seed=len(list(m.modules())))
    x = torch.randn(2, 8, 11, 14)
    with torch.no_grad():
        expected = sum(c(x) for c in convs) + scale(x) + (identity(x) if skip else 0)
        fused = fuse_branches(convs, scale, identity)
        got = fused(x)
    assert fused.kernel_size == (5, 5) and fused.stride == (stride, stride) and fused.groups == groups
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_identity_branch_needs_matching_geometry() -> None:
    with pytest.raises(ValueError, match="identity branch"):
        fuse_branches([ConvBn(8, 8, 3, 2, groups=8)], skip=nn.BatchNorm2d(8))


def test_module_and_bottleneck_forms() -> None:
    torch.manual_seed(0)
    gm = randomise_bn(GhostModuleV3(6, 10, attention=True))
    block = randomise_bn(GhostBottleneckV3(6, 12, 8, 5, stride=2, se_ratio=0.25))
    x = torch.randn(2, 6, 10, 14)
    with torch.no_grad():
        before = gm(x), block(x)
        gm.reparameterize()
        block.reparameterize()
        after = gm(x), block(x)
    assert before[0].shape == (2, 10, 10, 14) and before[1].shape == (2, 8, 5, 7)
    for b, a in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert {n for n, _ in gm.named_children()} == {"short_conv", "primary_conv", "cheap_operation"}
    assert block.conv_dw.kernel_size == (5, 5) and block.conv_dw.bias is not None
    assert not any("rpr" in k for k in block.state_dict())


def test_training_form_trains_every_parameter() -> None:
    torch.manual_seed(0)
    model = ghostnetv3(width=0.5, num_classes=10).train()
    # 128 px: the last stage's DFC branch then sees 2x2 maps (on 1x1 maps a train-mode BN cancels
    # the bias before it, whose gradient is then exactly zero).
    model(torch.randn(2, 3, 128, 128)).logsumexp(1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_release_names_are_mapped(tmp_path: Path) -> None:
    """The authors' release names the branch BatchNorms ``bn``; it loads after renaming."""
    ref = timm_model(1.0)
    sd = {k.replace(".bn1.", ".bn.") if "_rpr_" in k else k: v for k, v in ref.state_dict().items()}
    assert "blocks.3.0.dw_rpr_conv.0.bn.running_var" in sd and "blocks.9.0.bn1.weight" in sd
    torch.save({"state_dict": sd}, tmp_path / "ghostnetv3-1.0.pth.tar")
    got = ghostnetv3(width=1.0, weights=tmp_path / "ghostnetv3-1.0.pth.tar").state_dict()
    for k, v in ref.state_dict().items():
        assert torch.equal(got[k], v), k


def test_safetensors_file_loads(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    ref = timm_model(0.5).state_dict()
    save_file({k: v.contiguous() for k, v in ref.items()}, str(tmp_path / "v3.safetensors"))
    got = ghostnetv3(width=0.5, weights=tmp_path / "v3.safetensors").state_dict()
    for k, v in ref.items():
        assert torch.equal(got[k], v), k


def test_wrong_width_is_refused_with_key_list(tmp_path: Path) -> None:
    path = tmp_path / "v3_050.pth"
    torch.save(timm_model(0.5).state_dict(), path)
    with pytest.raises(WeightsMismatchError) as e:
        ghostnetv3(width=1.0, weights=path)
    msg = str(e.value)
    assert "shape mismatch" in msg and "blocks.0.0.ghost1.primary_rpr_conv.0.conv.weight" in msg


def test_deploy_state_dict_into_training_form_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v3_deploy.pth"
    torch.save(timm_deployed(0.5).state_dict(), path)
    with pytest.raises(
        WeightsMismatchError, match=r"(?s)missing.*cheap_rpr_skip.*unexpected.*primary_conv\.0"
    ):
        ghostnetv3(width=0.5, weights=path)


def test_imagenet_unpublished_width_and_offline_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        ValueError, match=r"no published ImageNet weights for GhostNetV3 width 1\.3 \(published: 1\)"
    ):
        ghostnetv3(width=1.3, weights="imagenet")

    go_offline(monkeypatch)
    with pytest.raises(RuntimeError) as e:
        ghostnetv3(width=1.0, weights="imagenet", progress=False)
    msg = str(e.value)
    assert GHOSTNETV3_URLS[1.0] in msg and "local path" in msg


@pytest.mark.parametrize("deploy", [False, True])
def test_feature_extractor_runs_v3(deploy: bool) -> None:
    net = ghostnetv3(width=1.0).eval()
    if deploy:
        net.reparameterize()
    check_stage_features(net)


@pytest.mark.parametrize("train", [False, True])
def test_reparameterize_keeps_the_mode(train: bool) -> None:
    # the folded convs are new modules: they must not come out in training mode from an eval model
    net = ghostnetv3(width=0.5).train(train).reparameterize()
    assert {m.training for m in net.modules()} == {train}
