"""The weights download cache: keyed by URL, complete files only, sha256-checked, one-line errors.

A local HTTP server on 127.0.0.1 (port 0, in a thread) serves small real state dicts, and can
drop the connection part-way, stall, or send a chunked body cut short. ``TORCH_HOME`` points
into ``tmp_path``, so the real cache is never touched; every socket wait is bounded.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import ghostdet.models.weights as weights_module
from ghostdet.cli import run_tool
from ghostdet.models import ghostnet
from ghostdet.models.family import BackboneFamily, PretrainedWeights, get_family
from ghostdet.models.ghostnet import GHOSTNET_CFG, GhostNet
from ghostdet.models.weights import (
    WeightsDownloadError,
    cached_weights_path,
    download_weights,
    load_state_dict_file,
    resolve_weights,
)


def _state_bytes(seed: int) -> tuple[dict[str, torch.Tensor], bytes]:
    torch.manual_seed(seed)
    sd = nn.Linear(16, 8).state_dict()
    buf = io.BytesIO()
    torch.save(sd, buf)
    return sd, buf.getvalue()


SD_A, BYTES_A = _state_bytes(0)
SD_B, BYTES_B = _state_bytes(1)
assert BYTES_A != BYTES_B


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Server:
    """Routes: ``/a/...`` -> BYTES_A, ``/b/...`` -> BYTES_B, ``/ghost/...`` -> a GhostNet 0.5x state
    dict; a path in ``drops`` gets its Content-Length and half the body, then the connection closes,
    as many times as ``drops`` says; ``/nolength/...`` gets half of BYTES_A without a
    Content-Length; ``/chunked/...`` one chunk of a chunked body, then a close; ``/stall/...``
    headers, then nothing until the test ends."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.drops: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path
                server.hits[path] = server.hits.get(path, 0) + 1
                top = path.split("/")[1]
                if top == "stall":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(BYTES_A)))
                    self.end_headers()
                    self.wfile.flush()
                    server.release.wait(10)
                    return
                if top == "chunked":
                    self.protocol_version = "HTTP/1.1"
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    half = BYTES_A[: len(BYTES_A) // 2]
                    self.wfile.write(f"{len(half):x}\r\n".encode() + half + b"\r\n")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                body = server.files.get(top)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                if top != "nolength":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if top == "nolength" or server.drops.get(path, 0) > 0:
                    server.drops[path] = server.drops.get(path, 0) - 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True  # HTTP/1.0: the socket closes after this handler
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def ghost_half() -> tuple[dict[str, torch.Tensor], bytes]:
    torch.manual_seed(0)
    sd = ghostnet(width=0.5).state_dict()
    buf = io.BytesIO()
    torch.save(sd, buf)
    return sd, buf.getvalue()


@pytest.fixture
def server(ghost_half) -> Iterator[_Server]:
    srv = _Server({"a": BYTES_A, "b": BYTES_B, "nolength": BYTES_A, "ghost": ghost_half[1]})
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(weights_module, "DOWNLOAD_TIMEOUT_S", 5.0)
    return home


def _cache_files(home: Path) -> list[Path]:
    root = home / "hub" / "checkpoints"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _cache_entries(home: Path) -> list[Path]:
    root = home / "hub" / "checkpoints"
    return sorted(root.rglob("*")) if root.exists() else []


def _assert_sd(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(ref)
    for k, v in ref.items():
        assert torch.equal(got[k], v), k


def _one_line(text: str, *expected: str) -> None:
    assert "\n" not in text.strip() and "Traceback" not in text, text
    assert all(s in text for s in expected), text


def test_complete_download_is_cached_under_a_url_keyed_name_and_loaded(
    server: _Server, _torch_home: Path, ghost_half
) -> None:
    url = server.url("/ghost/ghost_half.pth")
    model = ghostnet(width=0.5, weights=url, progress=False)
    _assert_sd(model.state_dict(), ghost_half[0])
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    expected = _torch_home / "hub" / "checkpoints" / key / "ghost_half.pth"
    assert cached_weights_path(url) == expected
    assert _cache_files(_torch_home) == [expected]  # no temporary file left behind
    assert expected.read_bytes() == ghost_half[1]
    # the second load reads the cache: no second request
    _assert_sd(ghostnet(width=0.5, weights=url, progress=False).state_dict(), ghost_half[0])
    assert server.hits == {"/ghost/ghost_half.pth": 1}


def test_same_file_name_at_two_urls_gives_two_files(server: _Server, _torch_home: Path) -> None:
    url_a, url_b = server.url("/a/best.pth"), server.url("/b/best.pth")
    path_a = download_weights(url_a, progress=False)
    path_b = download_weights(url_b, progress=False)
    assert path_a != path_b and path_a.name == path_b.name == "best.pth"
    assert path_a.read_bytes() == BYTES_A and path_b.read_bytes() == BYTES_B
    _assert_sd(load_state_dict_file(resolve_weights(url_b, width=1.0, progress=False)), SD_B)
    _assert_sd(load_state_dict_file(resolve_weights(url_a, width=1.0, progress=False)), SD_A)
    assert server.hits == {"/a/best.pth": 1, "/b/best.pth": 1}


def test_a_file_under_the_bare_name_is_not_used_for_an_arbitrary_url(
    server: _Server, _torch_home: Path
) -> None:
    """What an older version cached for https://host/a/best.pth is not https://host/b/best.pth."""
    plain = _torch_home / "hub" / "checkpoints" / "best.pth"
    plain.parent.mkdir(parents=True)
    plain.write_bytes(BYTES_A)
    path = download_weights(server.url("/b/best.pth"), progress=False)
    assert path != plain and path.read_bytes() == BYTES_B and plain.read_bytes() == BYTES_A


def test_connection_dropped_part_way_caches_nothing_and_the_next_download_works(
    server: _Server, _torch_home: Path
) -> None:
    url = server.url("/a/best.pth")
    server.drops["/a/best.pth"] = 1
    with pytest.raises(WeightsDownloadError) as e:
        download_weights(url, progress=False)
    _one_line(
        str(e.value),
        f"could not download weights from {url}",
        f"after {len(BYTES_A) // 2} of {len(BYTES_A)} bytes",
        "local path",
        str(cached_weights_path(url)),
    )
    assert _cache_files(_torch_home) == []
    assert server.hits == {"/a/best.pth": 1}
    path = download_weights(url, progress=False)
    assert path.read_bytes() == BYTES_A and _cache_files(_torch_home) == [path]
    _assert_sd(load_state_dict_file(path), SD_A)


def test_chunked_body_cut_short_caches_nothing(server: _Server, _torch_home: Path) -> None:
    url = server.url("/chunked/best.pth")
    with pytest.raises(WeightsDownloadError) as e:
        download_weights(url, progress=False)
    _one_line(str(e.value), f"could not download weights from {url}", "IncompleteRead")
    assert _cache_files(_torch_home) == []


def test_stalled_server_times_out(server: _Server, _torch_home: Path, monkeypatch) -> None:
    monkeypatch.setattr(weights_module, "DOWNLOAD_TIMEOUT_S", 0.5)
    url = server.url("/stall/best.pth")
    with pytest.raises(WeightsDownloadError) as e:
        download_weights(url, progress=False)
    _one_line(str(e.value), f"could not download weights from {url}", "timed out")
    assert _cache_files(_torch_home) == []


def test_http_error_names_the_url(server: _Server, _torch_home: Path) -> None:
    url = server.url("/missing/best.pth")
    with pytest.raises(WeightsDownloadError) as e:
        download_weights(url, progress=False)
    _one_line(str(e.value), f"could not download weights from {url}", "404")
    assert _cache_files(_torch_home) == []


def test_sha256_is_checked_on_download(server: _Server, _torch_home: Path) -> None:
    url = server.url("/a/best.pth")
    with pytest.raises(WeightsDownloadError) as e:
        download_weights(url, progress=False, sha256=_sha(BYTES_B))
    _one_line(
        str(e.value), url, f"expected {_sha(BYTES_B)[:16]}", f"got {_sha(BYTES_A)[:16]}", "nothing was cached"
    )
    assert _cache_files(_torch_home) == []
    path = download_weights(url, progress=False, sha256=_sha(BYTES_A).upper())
    assert path.read_bytes() == BYTES_A


def test_a_body_without_content_length_cut_short_is_caught_by_its_sha256(
    server: _Server, _torch_home: Path
) -> None:
    url = server.url("/nolength/best.pth")
    with pytest.raises(WeightsDownloadError) as e:
        download_weights(url, progress=False, sha256=_sha(BYTES_A))
    _one_line(str(e.value), url, f"got {_sha(BYTES_A[: len(BYTES_A) // 2])[:16]}")
    assert _cache_files(_torch_home) == []


def test_cached_file_with_another_sha256_names_the_file_to_delete(server: _Server, _torch_home: Path) -> None:
    url = server.url("/a/best.pth")
    cached = cached_weights_path(url)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(BYTES_B)
    with pytest.raises(WeightsDownloadError) as e:
        download_weights(url, progress=False, sha256=_sha(BYTES_A))
    _one_line(str(e.value), f"cached download {cached} ", "delete it", f"got {_sha(BYTES_B)[:16]}")
    assert cached.read_bytes() == BYTES_B  # left for the user to delete
    assert server.hits == {}
    cached.unlink()
    assert download_weights(url, progress=False, sha256=_sha(BYTES_A)).read_bytes() == BYTES_A


def test_malformed_sha256_is_refused(server: _Server) -> None:
    with pytest.raises(ValueError, match="sha256 must be 64 hex digits"):
        download_weights(server.url("/a/best.pth"), progress=False, sha256="abc")
    with pytest.raises(ValueError, match="sha256 must be 64 lower-case hex digits"):
        PretrainedWeights("https://example.invalid/w.pth", sha256="0" * 63)
    assert server.hits == {}


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_a_state_dict"])
def test_corrupt_cached_file_is_one_line_naming_the_file_to_delete(
    server: _Server, _torch_home: Path, ghost_half, damage: str
) -> None:
    url = server.url("/ghost/ghost_half.pth")
    cached = cached_weights_path(url)
    cached.parent.mkdir(parents=True)
    if damage == "truncated":  # what an older version left after an interrupted download
        cached.write_bytes(ghost_half[1][: len(ghost_half[1]) // 3])
    elif damage == "empty":
        cached.write_bytes(b"")
    else:
        torch.save([torch.zeros(2)], cached)
    before = _sha(cached.read_bytes())
    with pytest.raises(WeightsDownloadError) as e:
        ghostnet(width=0.5, weights=url, progress=False)
    _one_line(str(e.value), f"cached download {cached} cannot be read as weights", "delete it")
    assert server.hits == {}
    assert _sha(cached.read_bytes()) == before

    # through a tool: one line, exit status 2
    def body() -> None:
        ghostnet(width=0.5, weights=url, progress=False)

    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stderr", err)
        assert run_tool(body, "tool.py") == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tool.py: error: ") and str(cached) in lines[0], lines

    cached.unlink()  # what the message says to do
    _assert_sd(ghostnet(width=0.5, weights=url, progress=False).state_dict(), ghost_half[0])


def test_corrupt_file_outside_the_cache_keeps_its_checkpoint_error(tmp_path: Path) -> None:
    from ghostdet.utils.checkpoint_io import CheckpointReadError

    path = tmp_path / "w.pth"
    path.write_bytes(BYTES_A[:40])
    with pytest.raises(CheckpointReadError, match=f"could not read checkpoint {path}"):
        load_state_dict_file(path)


def test_offline_is_one_clear_line(_torch_home: Path) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a/ghost_weights.pth"
    with pytest.raises(WeightsDownloadError) as e:
        download_weights(url, progress=False)
    assert isinstance(e.value, OSError)
    _one_line(
        str(e.value),
        f"could not download weights from {url}",
        "refused",
        "local path",
        f"place the file at {cached_weights_path(url)}",
    )
    assert _cache_entries(_torch_home) == []  # not even an empty folder


@pytest.fixture
def test_family(monkeypatch: pytest.MonkeyPatch, server: _Server) -> str:
    """A family whose published 1.0x weights are served by ``server``, with a sha256 in its table."""
    import ghostdet.models.family as family_module

    name = "ghostnet_download_test"
    fam = BackboneFamily(
        name=name,
        title="DownloadTest",
        cfg=GHOSTNET_CFG,
        build_trunk=GhostNet,
        weights={
            1.0: PretrainedWeights(server.url("/a/published_a.pth"), sha256=_sha(BYTES_A)),
            2.0: PretrainedWeights(server.url("/b/published_b.pth"), sha256=_sha(BYTES_A)),  # wrong
            3.0: PretrainedWeights(server.url("/b/published_b.pth")),
        },
    )
    monkeypatch.setitem(family_module._FAMILIES, name, fam)
    return name


def test_family_table_sha256_reaches_the_download(
    test_family: str, server: _Server, _torch_home: Path
) -> None:
    assert get_family(test_family).pretrained(1.0).sha256 == _sha(BYTES_A)
    path = resolve_weights("imagenet", width=1.0, progress=False, family=test_family)
    assert path == cached_weights_path(server.url("/a/published_a.pth")) and path.read_bytes() == BYTES_A
    with pytest.raises(WeightsDownloadError) as e:
        resolve_weights("imagenet", width=2.0, progress=False, family=test_family)
    _one_line(str(e.value), server.url("/b/published_b.pth"), "nothing was cached")
    assert _cache_files(_torch_home) == [path]
    # no sha256 in the table: the file is taken as served
    assert resolve_weights("imagenet", width=3.0, progress=False, family=test_family).read_bytes() == BYTES_B


def test_published_file_placed_by_hand_under_its_own_name(test_family: str, _torch_home: Path) -> None:
    """The README's offline route: the release file dropped into the hub cache under its name."""
    plain = _torch_home / "hub" / "checkpoints" / "published_a.pth"
    plain.parent.mkdir(parents=True)
    plain.write_bytes(BYTES_A)
    assert resolve_weights("imagenet", width=1.0, progress=False, family=test_family) == plain
    plain.write_bytes(BYTES_B)  # not the published file: its sha256 says so
    with pytest.raises(WeightsDownloadError) as e:
        resolve_weights("imagenet", width=1.0, progress=False, family=test_family)
    _one_line(str(e.value), f"cached download {plain} ", "delete it")


def test_truncated_published_file_in_the_cache_names_the_file_to_delete(_torch_home: Path) -> None:
    """An interrupted download of an older version, under the published name (no sha256 known)."""
    url = get_family("ghostnet").url(1.0)
    plain = _torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    plain.parent.mkdir(parents=True)
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(ghostnet(width=1.0).state_dict(), buf)
    plain.write_bytes(buf.getvalue()[:1000])
    with pytest.raises(WeightsDownloadError) as e:
        ghostnet(width=1.0, weights="imagenet", progress=False)
    _one_line(str(e.value), f"cached download {plain} cannot be read as weights", "delete it")
