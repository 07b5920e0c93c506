import http.server
import threading
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from ghostdet.errors import ArgumentError, InputError
from ghostdet.models import IMAGENET_URLS, WeightsMismatchError, ghostnet
from ghostdet.models.weights import cached_weights_path, clean_state_dict, load_state_dict_file
from ghostdet.utils.checkpoint_io import CheckpointReadError


@pytest.fixture(scope="module")
def reference() -> OrderedDict:
    torch.manual_seed(0)
    return ghostnet(width=0.5).state_dict()


@pytest.fixture(autouse=True)
def _torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _assert_same(model: torch.nn.Module, ref: dict) -> None:
    got = model.state_dict()
    assert set(got) == set(ref)
    for k, v in ref.items():
        assert torch.equal(got[k], v), k


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"state_dict_ema": sd, "state_dict": {}},
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {}},
    ],
    ids=["bare", "state_dict", "ema", "model+module"],
)
def test_load_wrapped_checkpoints(tmp_path: Path, reference: dict, wrap) -> None:
    path = tmp_path / "w.pth"
    torch.save(wrap(reference), path)
    _assert_same(ghostnet(width=0.5, weights=path), reference)


def test_thop_entries_are_dropped(tmp_path: Path, reference: dict) -> None:
    sd = dict(reference)
    sd["total_ops"] = torch.zeros(1)
    sd["blocks.0.0.total_params"] = torch.zeros(1)
    torch.save(sd, tmp_path / "w.pt")
    _assert_same(ghostnet(width=0.5, weights=tmp_path / "w.pt"), reference)


def test_safetensors(tmp_path: Path, reference: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in reference.items()}, str(tmp_path / "w.safetensors"))
    _assert_same(ghostnet(width=0.5, weights=str(tmp_path / "w.safetensors")), reference)


def test_mismatch_lists_everything(tmp_path: Path, reference: dict) -> None:
    sd = dict(reference)
    sd.pop("conv_head.bias")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(WeightsMismatchError) as e:
        ghostnet(width=1.0, weights=tmp_path / "w.pth")  # 0.5x weights into a 1.0x model
    msg = str(e.value)
    assert "missing (1): conv_head.bias" in msg
    assert "unexpected (1): extra.weight" in msg
    assert "shape mismatch" in msg
    assert "conv_stem.weight: checkpoint (8, 3, 3, 3) vs model (16, 3, 3, 3)" in msg


def test_no_partial_load_on_error(tmp_path: Path, reference: dict) -> None:
    sd = dict(reference)
    sd.pop("classifier.bias")
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(WeightsMismatchError):
        ghostnet(width=0.5, weights=tmp_path / "w.pth")


def test_different_num_classes_skips_classifier(tmp_path: Path, reference: dict) -> None:
    torch.save(reference, tmp_path / "w.pth")
    model = ghostnet(width=0.5, num_classes=7, weights=tmp_path / "w.pth")
    assert model.classifier.out_features == 7
    assert torch.equal(model.state_dict()["conv_head.weight"], reference["conv_head.weight"])


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    torch.save({"model": ghostnet}, tmp_path / "evil.pth")  # a pickled function, not tensors
    with pytest.raises(CheckpointReadError, match=r"evil\.pth.*weights-only loading refuses"):
        load_state_dict_file(tmp_path / "evil.pth")


def test_clean_state_dict_rejects_non_dicts() -> None:
    with pytest.raises(TypeError, match="expected a dict"):
        clean_state_dict([torch.zeros(1)])


def test_missing_file_and_unpublished_width(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.pth") as e:
        ghostnet(weights=tmp_path / "nope.pth")
    assert e.value.argument == "weights"
    with pytest.raises(ArgumentError, match=r"no published ImageNet weights for GhostNet width 1\.3"):
        ghostnet(width=1.3, weights="imagenet")


def test_offline_download_error_names_url_and_fix() -> None:
    url = "http://127.0.0.1:9/ghostnet_missing.pth"  # discard port: connection refused
    with pytest.raises(RuntimeError) as e:
        ghostnet(weights=url, progress=False)
    msg = str(e.value)
    assert url in msg and "local path" in msg


def test_imagenet_uses_hub_cache(_torch_home: Path, reference: dict) -> None:
    """'imagenet' resolves to the authors' URL and is read from the torch hub cache when present."""
    full = ghostnet(width=1.0).state_dict()
    filename = IMAGENET_URLS[1.0].rsplit("/", 1)[1]
    (_torch_home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(full, _torch_home / "hub" / "checkpoints" / filename)
    _assert_same(ghostnet(width=1.0, weights="imagenet"), full)


def test_http_download(tmp_path: Path, _torch_home: Path, reference: dict) -> None:
    served = tmp_path / "srv"
    served.mkdir()
    torch.save(reference, served / "ghost_half.pth")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *a) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/ghost_half.pth"
        _assert_same(ghostnet(width=0.5, weights=url, progress=False), reference)
    finally:
        server.shutdown()
    assert cached_weights_path(url).is_file()  # keyed by URL (tests/test_download.py)
