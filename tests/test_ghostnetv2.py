"""GhostNetV2 against timm's ``ghostnetv2_*`` (the oracle): names, outputs, size, loading."""

import functools
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import randomise_bn
from torch import nn

from ghostdet.analysis import count_macs, count_params
from ghostdet.models import GhostModule, GhostNetFeatures, WeightsMismatchError, ghostnet
from ghostdet.models.ghostnet import GHOSTNET_CFG, STAGE_BLOCKS, STAGE_STRIDES
from ghostdet.models.ghostnetv2 import (
    ATTENTION_FROM,
    GHOSTNETV2_CFG,
    GHOSTNETV2_URLS,
    GhostModuleV2,
    GhostNetV2,
    ghostnetv2,
)

timm = pytest.importorskip("timm")

TIMM_NAMES = {1.0: "ghostnetv2_100", 1.3: "ghostnetv2_130", 1.6: "ghostnetv2_160"}


@pytest.fixture(autouse=True)
def _torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@functools.cache
def timm_model(width: float) -> nn.Module:
    """timm's model for ``width`` with randomised BatchNorms, built once per session."""
    torch.manual_seed(0)
    return randomise_bn(timm.create_model(TIMM_NAMES[width]), seed=int(width * 10))


@pytest.fixture(scope="module")
def timm_100() -> nn.Module:
    return timm_model(1.0)


@pytest.mark.parametrize("width", [1.0, 1.3, 1.6])
def test_timm_state_dict_loads_strictly_and_outputs_match(width: float, tmp_path: Path) -> None:
    ref = timm_model(width)
    path = tmp_path / "v2.pth"
    torch.save(ref.state_dict(), path)
    model = ghostnetv2(width=width, weights=path).eval()
    x = torch.randn(2, 3, 99, 127)  # odd sizes: the gate is upsampled to a non-multiple of 2
    with torch.no_grad():
        expected, got = ref(x), model(x)
    scale = expected.abs().max()
    assert scale > 0.01
    assert (got - expected).abs().max() <= 1e-5 * scale


@pytest.mark.parametrize(
    ("width", "params_m", "macs_m"), [(1.0, 6.16, 167.0), (1.3, 8.96, 269.3), (1.6, 12.39, 398.6)]
)
def test_params_and_macs_match_timm_and_issue(width: float, params_m: float, macs_m: float) -> None:
    model = ghostnetv2(width=width)
    ref = timm_model(width)
    assert count_params(model) == count_params(ref)
    assert count_macs(model) == count_macs(ref)
    assert round(count_params(model) / 1e6, 2) == params_m
    assert round(count_macs(model) / 1e6, 1) == macs_m


def test_dfc_attention_from_third_bottleneck() -> None:
    model = ghostnetv2(width=1.0)
    ghost1 = [b.ghost1 for stage in model.blocks[:-1] for b in stage]
    assert len(ghost1) == sum(len(rows) for rows in GHOSTNETV2_CFG) == 16
    kinds = [isinstance(g, GhostModuleV2) for g in ghost1]
    assert kinds == [False] * ATTENTION_FROM + [True] * (16 - ATTENTION_FROM)
    assert all(type(g) is GhostModule for g in ghost1[:ATTENTION_FROM])
    ghost2 = [b.ghost2 for stage in model.blocks[:-1] for b in stage]
    assert all(type(g) is GhostModule for g in ghost2)


@pytest.mark.parametrize("stride", [1, 2])
def test_ghost_module_v2_is_ghost_module_times_dfc_gate(stride: int) -> None:
    torch.manual_seed(0)
    gm = randomise_bn(GhostModuleV2(6, 10, stride=stride))
    br = gm.short_conv
    assert [tuple(br[i].kernel_size) for i in (0, 2, 4)] == [(1, 1), (1, 5), (5, 1)]
    assert br[2].groups == br[4].groups == 10
    x = torch.randn(2, 6, 12, 16)

    def bn(t: torch.Tensor, m: nn.BatchNorm2d) -> torch.Tensor:
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, eps=m.eps)

    # The gate by hand: 2x2 mean, projection, 1x5 then 5x1 depthwise, sigmoid, 2x nearest upsampling.
    s = x.reshape(2, 6, 6, 2, 8, 2).mean((3, 5))
    s = bn(F.conv2d(s, br[0].weight, stride=stride), br[1])
    s = bn(F.conv2d(s, br[2].weight, padding=(0, 2), groups=10), br[3])
    s = bn(F.conv2d(s, br[4].weight, padding=(2, 0), groups=10), br[5])
    gate = torch.sigmoid(s).repeat_interleave(2, 2).repeat_interleave(2, 3)
    with torch.no_grad():
        plain = GhostModule.forward(gm, x)
        got = gm(x)
    assert plain.shape == (2, 10, 12 // stride, 16 // stride)
    torch.testing.assert_close(got, plain * gate[..., : plain.shape[2], : plain.shape[3]])


def test_wrong_width_is_refused_with_key_list(timm_100: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "v2_100.pth"
    torch.save(timm_100.state_dict(), path)
    with pytest.raises(WeightsMismatchError) as e:
        ghostnetv2(width=1.3, weights=path)
    msg = str(e.value)
    assert (
        "shape mismatch" in msg
        and "conv_stem.weight" in msg
        and "blocks.3.0.ghost1.short_conv.0.weight" in msg
    )


def test_v1_checkpoint_is_refused_listing_the_attention_keys(tmp_path: Path) -> None:
    path = tmp_path / "v1.pth"
    torch.save(ghostnet(width=1.0).state_dict(), path)
    with pytest.raises(WeightsMismatchError, match=r"missing \(\d+\): blocks\.2\.0\.ghost1\.short_conv"):
        ghostnetv2(width=1.0, weights=path)


def test_other_num_classes_keeps_fresh_classifier(timm_100: nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "v2.pth"
    torch.save(timm_100.state_dict(), path)
    model = ghostnetv2(width=1.0, num_classes=10, weights=path)
    assert model.classifier.out_features == 10
    torch.testing.assert_close(
        model.blocks[6][4].ghost1.short_conv[5].running_var,
        timm_100.blocks[6][4].ghost1.short_conv[5].running_var,
    )


def test_imagenet_unpublished_width_is_a_value_error() -> None:
    with pytest.raises(
        ValueError,
        match=r"no published ImageNet weights for GhostNetV2 width 0\.5 \(published: 1, 1\.3, 1\.6\)",
    ):
        ghostnetv2(width=0.5, weights="imagenet")


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every download fail as it does without a network."""

    def offline(url: str, dst: str, progress: bool = True) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("ghostdet.models.weights._download_to_file", offline)


def test_imagenet_offline_error_names_url_and_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    go_offline(monkeypatch)
    with pytest.raises(RuntimeError) as e:
        ghostnetv2(width=1.6, weights="imagenet", progress=False)
    msg = str(e.value)
    assert GHOSTNETV2_URLS[1.6] in msg and "local path" in msg and "ck_ghostnetv2_16.pth.tar" in msg


def test_imagenet_reads_the_hub_cache(timm_100: nn.Module, _torch_home: Path) -> None:
    """The authors' release file is a bare state dict with thop counters; it is read from the cache."""
    sd = dict(timm_100.state_dict())
    sd["total_ops"] = torch.zeros(1)
    sd["blocks.0.0.ghost1.total_params"] = torch.zeros(1)
    cache = _torch_home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(sd, cache / GHOSTNETV2_URLS[1.0].rsplit("/", 1)[1])
    got = ghostnetv2(width=1.0, weights="imagenet").state_dict()
    for k, v in timm_100.state_dict().items():
        assert torch.equal(got[k], v), k


def test_stage_taps_follow_the_stride_column() -> None:
    """Stage ends derived from the cfg's stride column are V1's, and GhostNetFeatures runs V2."""
    stages: list[list[int]] = []
    for i, rows in enumerate(GHOSTNETV2_CFG):
        if i == 0 or rows[0][4] == 2:
            stages.append([])
        stages[-1].append(i)
    assert GHOSTNETV2_CFG is GHOSTNET_CFG
    assert {s + 1: tuple(b) for s, b in enumerate(stages)} == STAGE_BLOCKS
    check_stage_features(GhostNetV2(width=1.0).eval())


def check_stage_features(net: nn.Module) -> None:
    """GhostNetFeatures takes V1's stage taps from ``net``: strides 8/16/32, 40/112/160 channels."""
    assert net.stage_channels == [16, 24, 24, 40, 40, 80, 112, 160, 160]
    body = GhostNetFeatures(net, (3, 4, 5))
    with torch.no_grad():
        feats = body(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats.values()] == [(40, 8, 12), (112, 4, 6), (160, 2, 3)]
    assert body.strides == [STAGE_STRIDES[s] for s in (3, 4, 5)] == [8, 16, 32]


def test_deploy_fuse_keeps_the_dfc_gate() -> None:
    from ghostdet.deploy import fuse

    torch.manual_seed(0)
    model = randomise_bn(ghostnetv2(width=1.0))
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        expected = model(x)
        got = fuse(model, native_kernels=False)(x)
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
