"""hubconf.py (torch.hub entry points) and the published weights' metadata.

``torch.hub.load(REPO, name, source="local")`` must build what ``ghostdet.get_model`` builds, and
offline ``weights="imagenet"`` must be one clear error (the download seam is replaced, as in
tests/test_download.py; ``TORCH_HOME`` is in ``tmp_path``). The weights tables' parameter and MAC
counts are recomputed here, and docs/models.md's table is checked against the code.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import urllib.error
from pathlib import Path

import pytest
import torch

import ghostdet.models.weights as weights_module
from ghostdet.errors import InputError
from ghostdet.models import get_model, list_models
from ghostdet.models.family import PretrainedWeights, get_family, list_families
from ghostdet.models.registry import model_entry
from ghostdet.models.weights import WeightsDownloadError, cached_weights_path
from ghostdet.utils.counting import count_macs, count_params

REPO = Path(__file__).resolve().parents[1]


def _hub_load(name: str, **kwargs):
    return torch.hub.load(str(REPO), name, source="local", **kwargs)


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No network: every download attempt is recorded and fails as an unreachable host does."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    tried: list[str] = []

    def unreachable(url: str, dst, progress: bool = True) -> None:
        tried.append(url)
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(weights_module, "_download_to_file", unreachable)
    return tried


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]), k


def test_hub_classifier_is_get_model(offline: list[str]) -> None:
    torch.manual_seed(0)
    hub = _hub_load("ghostnet", pretrained=False)
    torch.manual_seed(0)
    ref = get_model("ghostnet")
    _same_state(hub, ref)
    hub.eval()
    with torch.no_grad():
        assert hub(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    torch.manual_seed(0)
    narrow = _hub_load("ghostnetv2_130", num_classes=7)  # bound width, extra kwargs pass through
    torch.manual_seed(0)
    _same_state(narrow, get_model("ghostnetv2", width=1.3, num_classes=7))
    assert offline == []  # nothing was downloaded


def test_hub_detector_is_get_model(offline: list[str]) -> None:
    torch.manual_seed(0)
    hub = _hub_load("retinanet_ghostnet_320_fpn", num_classes=3)
    torch.manual_seed(0)
    ref = get_model("retinanet_ghostnet_320_fpn", num_classes=3)
    _same_state(hub, ref)
    hub.eval()
    with torch.no_grad():
        out = hub([torch.rand(3, 96, 128)])
    assert set(out[0]) == {"boxes", "scores", "labels"}
    assert offline == []


def test_hub_offline_imagenet_is_one_clear_error(offline: list[str], tmp_path: Path) -> None:
    url = get_family("ghostnet").url(1.0)
    for kwargs in ({"weights": "imagenet"}, {"pretrained": True}):
        with pytest.raises(WeightsDownloadError) as e:
            _hub_load("ghostnet_100", **kwargs)
        message = str(e.value)
        assert "\n" not in message, message
        assert f"could not download weights from {url}" in message
        assert "Network is unreachable" in message
        assert f"place the file at {cached_weights_path(url)}" in message
    assert offline == [url, url]
    home = tmp_path / "torch_home"
    assert not home.exists() or not [p for p in home.rglob("*") if p.is_file()]  # nothing cached


def test_hub_pretrained_detector_and_double_weights_are_refused(offline: list[str]) -> None:
    with pytest.raises(InputError, match="no detector weights are published") as e:
        _hub_load("retinanet_ghostnet_fpn", pretrained=True)
    assert e.value.argument == "pretrained" and "weights_backbone='imagenet'" in str(e.value)
    with pytest.raises(InputError, match="either pretrained=True or weights") as e:
        _hub_load("ghostnet_100", pretrained=True, weights="/some/file.pth")
    assert e.value.argument == "pretrained"
    assert offline == []


def test_hub_entry_points_are_the_registry_with_docstrings() -> None:
    spec = importlib.util.spec_from_file_location("ghostdet_hubconf_test", REPO / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    assert hub.dependencies == ["torch", "torchvision"]
    # what torch.hub.list shows: the public callables of hubconf
    listed = sorted(n for n in dir(hub) if callable(getattr(hub, n)) and not n.startswith("_"))
    assert listed == list_models()
    for name in listed:
        doc = getattr(hub, name).__doc__
        builder_doc = inspect.cleandoc(model_entry(name).builder.__doc__)
        assert f'get_model("{name}"' in doc and builder_doc.splitlines()[0] in doc, name
    assert "ck_ghostnetv2_13.pth.tar (top-1 76.9%, 8.96M params, 269M MACs)" in hub.ghostnetv2_130.__doc__
    assert "No published ImageNet weights for GhostNet" in hub.ghostnet_050.__doc__
    assert 'weights_backbone="imagenet"' in hub.fasterrcnn_ghostnet_fpn.__doc__


def _published() -> list[tuple[str, float, PretrainedWeights]]:
    return [(f, w, p) for f in list_families() for w, p in get_family(f).weights.items()]


def test_every_published_checkpoint_has_its_metadata() -> None:
    published = _published()
    assert {(f, w) for f, w, _ in published} == {
        ("ghostnet", 1.0),
        ("ghostnetv2", 1.0),
        ("ghostnetv2", 1.3),
        ("ghostnetv2", 1.6),
        ("ghostnetv3", 1.0),
    }
    for family, width, p in published:
        assert p.url.startswith("https://github.com/huawei-noah/") and p.source.startswith("https://")
        assert p.top1 is not None and 60 < p.top1 < 90, (family, width)
        assert p.params is not None and p.macs is not None, (family, width)
        assert p.license in ("Apache-2.0", None)
        assert p.sha256 is None  # no public source gives one (docs/models.md says so)
        assert p.meta == {
            "url": p.url,
            "top1": p.top1,
            "sha256": p.sha256,
            "params": p.params,
            "macs": p.macs,
            "source": p.source,
            "license": p.license,
        }


@pytest.mark.parametrize(("family", "width"), [(f, w) for f, w, _ in _published()])
def test_published_params_and_macs_are_recomputed(family: str, width: float) -> None:
    fam = get_family(family)
    published = fam.pretrained(width)
    model = get_model(family, width=width).eval()
    assert count_params(model) == published.params
    inference = model if fam.inference_form is None else fam.inference_form(model)
    assert count_macs(inference, (1, 3, 224, 224)) == published.macs


def _docs_rows() -> dict[str, list[str]]:
    text = (REPO / "docs" / "models.md").read_text(encoding="utf-8")
    section = text[text.index("### The published weights") :]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| (GhostNet(?:V\d)? \d\.\dx) \|(.*)\|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def test_docs_weights_table_is_the_code() -> None:
    rows = _docs_rows()
    expected = {}
    for family, width, p in _published():
        label = f"{get_family(family).title} {width:.1f}x"
        expected[label] = [
            f"{p.top1:g}",
            f"{p.params:,}",
            f"{p.macs:,}",
            p.license or "not stated",
            p.sha256 or "none published",
            f"[{p.url.rsplit('/', 1)[1]}]({p.url})",
        ]
    assert rows == expected
