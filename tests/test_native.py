"""The native kernels (ghostdet/deploy/csrc/dwconv.c, stemconv.c): exact against F.conv2d, slices,
fallbacks; the library's build, cache and ABI."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

from ghostdet.deploy import native

needs_kernel = pytest.mark.skipif(native.load() is None, reason="no C compiler to build the kernel")


def _ref(x, w, b, k, s, p, relu):
    y = F.conv2d(x, w, b, s, p, 1, w.shape[0])
    return F.relu(y) if relu else y


def test_the_interface_is_declared_once():
    """csrc/ghostdet.h is the one declaration: every source includes it (through kernels.h), no
    source declares an exported function or an ABI of its own, and the loaded library exposes
    exactly the header's functions, checked by cffi on every call."""
    header = native.API_HEADER.read_text()
    declared = sorted(set(re.findall(r"\b(ghostdet_\w+)\(", header)))
    assert len(re.findall(r"#define GHOSTDET_ABI (\d+)", header)) == 1
    assert '#include "ghostdet.h"' in (native._CSRC / "kernels.h").read_text()
    for source in native.SOURCES:
        text = source.read_text()
        assert '#include "kernels.h"' in text and not re.search(r"_ABI \d", text)
        # a prototype (a declaration ending in ';') outside the header would be a second declaration
        assert not re.search(r"^(int|int64_t) ghostdet_\w+\([^{]*?\);", text, re.M), source.name
        for name in re.findall(r"^(?:int|int64_t) (ghostdet_\w+)\(", text, re.M):
            assert name in declared, f"{source.name} exports {name}, which ghostdet.h does not declare"
    lib = native.load()
    if lib is None:
        pytest.skip("native kernels unavailable here (no C compiler or GHOSTDET_NATIVE=0)")
    assert list(lib.functions) == declared
    assert lib.ghostdet_abi() == lib.abi == int(re.search(r"GHOSTDET_ABI (\d+)", header).group(1))
    with pytest.raises(TypeError, match=r"ghostdet_ghost_back_scratch\(\) takes 3 arguments \(2 given\)"):
        lib.ghostdet_ghost_back_scratch(4, 8)
    assert lib.ghostdet_ghost_back_scratch(4, 8, 2) == (2 + 2) * (4 + 2) * 8  # the C formula


@pytest.mark.parametrize(
    "size,k,s,p", [(1, 3, 1, 1), (7, 3, 2, 1), (8, 5, 2, 2), (13, 7, 2, 3), (9, 3, 3, 0)]
)
def test_conv_out_size_matches_torch(size, k, s, p):
    y = F.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, k, k), stride=s, padding=p)
    assert native.conv_out_size(size, k, s, p) == y.shape[-1]


def _case(n, c, h, w, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(c, 1, k, k, generator=g)
    bias = torch.randn(c, generator=g)
    return x, weight, bias, weight.flatten(1).t().contiguous()


@needs_kernel
@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(
    "n,c,h,w",
    [(1, 4, 1, 1), (1, 12, 2, 3), (2, 20, 7, 7), (1, 28, 13, 9), (1, 36, 14, 14), (1, 92, 28, 17)],
)
def test_matches_conv2d(n, c, h, w, k, stride, relu):
    x, weight, bias, wt = _case(n, c, h, w, k)
    pad = k // 2
    got = native.dwconv2d(x, wt, bias, k, stride, pad, relu)
    ref = _ref(x, weight, bias, k, stride, pad, relu)
    assert got is not None and got.shape == ref.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@needs_kernel
@pytest.mark.parametrize("pad", [0, 1, 4])
def test_other_paddings(pad):
    x, weight, bias, wt = _case(1, 16, 11, 10, 5, seed=3)
    torch.testing.assert_close(
        native.dwconv2d(x, wt, bias, 5, 2, pad, False), _ref(x, weight, bias, 5, 2, pad, False)
    )


@needs_kernel
def test_reads_and_writes_channel_slices_only():
    """Input and output may be channel slices of wider NHWC tensors; other channels stay intact."""
    x, weight, bias, wt = _case(2, 24, 9, 11, 3, seed=1)
    wide_in = torch.randn(2, 40, 9, 11).contiguous(memory_format=torch.channels_last)
    wide_in[:, 8:32] = x
    wide_out = torch.full((2, 56, 9, 11), 7.0).contiguous(memory_format=torch.channels_last)
    got = native.dwconv2d(wide_in[:, 8:32], wt, bias, 3, 1, 1, True, out=wide_out[:, 24:48])
    assert got is not None and got.data_ptr() == wide_out[:, 24:48].data_ptr()
    torch.testing.assert_close(wide_out[:, 24:48], _ref(x, weight, bias, 3, 1, 1, True))
    assert torch.all(wide_out[:, :24] == 7.0) and torch.all(wide_out[:, 48:] == 7.0)


@needs_kernel
def test_relu_keeps_nan_and_clamps_infinities_like_torch():
    x, weight, bias, wt = _case(1, 8, 9, 9, 3, seed=4)
    x[0, 2, 2, 2] = float("nan")
    x[0, 3, 6, 6] = float("inf")
    weight[3] = weight[3].abs()  # channel 3: +inf in, +inf out around (6, 6)
    weight[3, 0, 1, 1] = 1.0
    bias[5] = -float("inf")  # channel 5: -inf everywhere before the ReLU
    wt = weight.flatten(1).t().contiguous()
    got = native.dwconv2d(x, wt, bias, 3, 1, 1, True)
    ref = _ref(x, weight, bias, 3, 1, 1, True)
    assert torch.equal(got.isnan(), ref.isnan()) and got.isnan().sum() == 9  # the 3x3 neighbourhood
    assert torch.equal(got.isinf(), ref.isinf()) and got.isinf().sum() == 9
    assert torch.all(got[0, 5] == 0)
    torch.testing.assert_close(got.nan_to_num(posinf=0.0), ref.nan_to_num(posinf=0.0))


@pytest.mark.skipif(native._compiler() is None, reason="no C compiler")
def test_unwritable_cache_directory_is_reported(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("GHOSTDET_CACHE_DIR", str(blocker))
    monkeypatch.setattr(native, "_state", {})
    with pytest.warns(RuntimeWarning, match="cache directory not writable.*GHOSTDET_CACHE_DIR"):
        assert native.load() is None


@needs_kernel
def test_thread_count_does_not_change_results():
    x, _, bias, wt = _case(1, 48, 64, 64, 3, seed=2)  # big enough to be split among threads
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native.dwconv2d(x, wt, bias, 3, 1, 1, True)
        torch.set_num_threads(2)
        two = native.dwconv2d(x, wt, bias, 3, 1, 1, True)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two)


@needs_kernel
def test_layouts_it_cannot_take_are_declined_and_bad_weights_rejected():
    x, _, bias, wt = _case(1, 8, 6, 6, 3)
    assert native.dwconv2d(x.contiguous(), wt, bias, 3, 1, 1, False) is None  # NCHW input
    assert native.dwconv2d(x.double(), wt, bias, 3, 1, 1, False) is None
    with pytest.raises(ValueError, match=r"contiguous \(9, 8\) weight"):
        native.dwconv2d(x, wt.t(), bias, 3, 1, 1, False)
    with pytest.raises(ValueError, match="out has shape"):
        native.dwconv2d(x, wt, bias, 3, 1, 1, False, out=torch.empty(1, 8, 5, 5))


def test_supports_only_depthwise_square_kernels_with_channels_multiple_of_4():
    def sup(c, k=3, groups=None, stride=(1, 1), pad=(1, 1), dil=(1, 1), cin=1):
        w = torch.zeros(c, cin, k, k)
        return native.supports(w, list(stride), list(pad), list(dil), c if groups is None else groups)

    assert sup(8) and sup(12, k=5, pad=(2, 2), stride=(2, 2)) and sup(4, k=7, pad=(3, 3))
    assert not sup(6)  # channels not a multiple of 4
    assert not sup(8, groups=1, cin=8)  # dense conv
    assert not sup(8, k=1, pad=(0, 0))
    assert not sup(8, stride=(1, 2))
    assert not sup(8, dil=(2, 2))


@needs_kernel
@pytest.mark.parametrize(
    "n,cin,h,w,cout,k,stride,pad",
    [
        (1, 3, 64, 48, 16, 3, 2, 1),  # the GhostNet / MobileNet stem
        (2, 3, 37, 29, 16, 3, 2, 1),  # odd sizes, a batch
        (1, 3, 5, 4, 16, 3, 2, 1),  # narrower than one interior run
        (1, 3, 1, 1, 16, 3, 2, 1),
        (1, 1, 9, 9, 8, 5, 1, 2),
        (1, 4, 13, 11, 20, 7, 2, 3),  # 20 outputs: 16- and 4-wide vectors
        (1, 3, 3, 4, 12, 3, 1, 0),
    ],
)
@pytest.mark.parametrize("relu", [False, True])
def test_stem_conv_matches_conv2d(n, cin, h, w, cout, k, stride, pad, relu):
    g = torch.Generator().manual_seed(cin * k + h)
    x = torch.randn(n, cin, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(cout, cin, k, k, generator=g), torch.randn(cout, generator=g)
    assert native.supports_stem(weight, [stride] * 2, [pad] * 2, [1, 1], 1)
    got = native.stem_conv(x, weight.flatten(1).t().contiguous(), bias, k, stride, pad, relu)
    ref = F.conv2d(x, weight, bias, stride, pad)
    ref = F.relu(ref) if relu else ref
    assert got is not None and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    # NCHW input is declined, not misread (a single channel or pixel is the same in both layouts)
    wt = weight.flatten(1).t().contiguous()
    assert cin == 1 or h * w == 1 or native.stem_conv(x.contiguous(), wt, bias, k, stride, pad, relu) is None


def test_supports_stem_only_few_input_channels():
    w = torch.zeros(16, 3, 3, 3)
    assert native.supports_stem(w, [2, 2], [1, 1], [1, 1], 1)
    assert not native.supports_stem(torch.zeros(16, 8, 3, 3), [2, 2], [1, 1], [1, 1], 1)  # too many in
    assert not native.supports_stem(torch.zeros(18, 3, 3, 3), [2, 2], [1, 1], [1, 1], 1)  # 18 out
    assert not native.supports_stem(w, [2, 1], [1, 1], [1, 1], 1)
    assert not native.supports_stem(w, [2, 2], [1, 1], [2, 2], 1)
    assert not native.supports_stem(torch.zeros(16, 3, 3, 3, dtype=torch.float64), [2, 2], [1, 1], [1, 1], 1)


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    cmd = [sys.executable, "-c", code]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)


_PROBE = (
    "import warnings, torch\n"
    "from ghostdet.deploy import native\n"
    "with warnings.catch_warnings(record=True) as w:\n"
    "    warnings.simplefilter('always')\n"
    "    lib = native.load()\n"
    "print('LIB', lib is not None)\n"
    "print('WARN', [str(x.message) for x in w])\n"
    "print('PATH', native.library_path())\n"
)


def test_disabled_by_environment_variable_without_warning(tmp_path):
    out = _run_python(_PROBE, GHOSTDET_NATIVE="0", GHOSTDET_CACHE_DIR=str(tmp_path)).stdout
    assert "LIB False" in out and "WARN []" in out
    assert not any(tmp_path.iterdir())  # nothing was built


def test_broken_compiler_warns_once_and_deploy_falls_back(tmp_path):
    code = _PROBE + (
        "from ghostdet.deploy import fuse\n"
        "from ghostdet.models import ghostnet\n"
        "net = ghostnet(0.5).eval()\n"
        "x = torch.randn(1, 3, 64, 64)\n"
        "with torch.no_grad():\n"
        "    err = (fuse(net)(x) - net(x)).abs().max().item()\n"
        "print('ERR', err < 1e-4)\n"
    )
    res = _run_python(code, CC="false", GHOSTDET_CACHE_DIR=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "LIB False" in res.stdout and "ERR True" in res.stdout
    assert "native kernels unavailable, using oneDNN instead" in res.stdout
    assert "could not compile the native kernels" in res.stdout


@needs_kernel
def test_built_once_then_loaded_from_the_cache(tmp_path):
    env = {"GHOSTDET_CACHE_DIR": str(tmp_path)}
    first = _run_python(_PROBE, **env)
    assert "LIB True" in first.stdout, first.stdout + first.stderr
    path = first.stdout.split("PATH ")[1].strip()
    assert path.startswith(str(tmp_path)) and os.path.exists(path)
    assert os.path.basename(path).startswith("ghostdet-kernels-")
    mtime = os.stat(path).st_mtime_ns
    second = _run_python(_PROBE, **env)
    assert "LIB True" in second.stdout and "WARN []" in second.stdout
    assert os.stat(path).st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / "native").iterdir()] == [os.path.basename(path)]  # no temp left


def test_load_failure_in_process_warns_and_returns_none(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("GHOSTDET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_state", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert native.load() is None
        assert native.load() is None  # decided once: no second build attempt, no second warning
    assert len(caught) == 1 and "unavailable" in str(caught[0].message)


@pytest.mark.parametrize(
    ("env", "machine", "flags", "expected"),
    [
        ("", "x86_64", {"avx2", "avx512f"}, True),
        ("", "x86_64", {"avx2", "fma"}, True),  # AVX2: the depthwise and block kernels pay
        ("", "x86_64", {"avx", "sse4_2"}, False),  # older x86: none (not measured)
        ("", "aarch64", set(), True),
        ("1", "x86_64", {"avx2"}, True),
        ("force", "x86_64", set(), True),
        ("0", "x86_64", {"avx512f"}, False),
        ("off", "aarch64", set(), False),
    ],
)
def test_pays_off_follows_the_cpu_and_the_environment(monkeypatch, env, machine, flags, expected):
    monkeypatch.setenv("GHOSTDET_NATIVE", env)
    monkeypatch.setattr(native.platform, "machine", lambda: machine)
    monkeypatch.setattr(native, "_cpu_flags", lambda: set(flags))
    assert native.pays_off() is expected


@pytest.mark.parametrize(
    ("env", "machine", "flags", "expected"),
    [
        ("", "x86_64", {"avx2", "fma", "avx512f"}, {"stem": True, "dwconv": True, "block": True}),
        ("", "x86_64", {"avx2", "fma"}, native.AVX2_KERNELS),
        ("", "x86_64", {"avx2"}, {"stem": False, "dwconv": False, "block": False}),
        ("", "aarch64", set(), {"stem": True, "dwconv": True, "block": True}),
        ("1", "x86_64", {"avx2", "fma"}, {"stem": True, "dwconv": True, "block": True}),
        ("0", "x86_64", {"avx512f"}, {"stem": False, "dwconv": False, "block": False}),
    ],
)
def test_kernel_choice_per_kind(monkeypatch, env, machine, flags, expected):
    monkeypatch.setenv("GHOSTDET_NATIVE", env)
    monkeypatch.setattr(native.platform, "machine", lambda: machine)
    monkeypatch.setattr(native, "_cpu_flags", lambda: set(flags))
    assert native.kernel_choice() == expected and set(expected) == set(native.KINDS)
    assert native.pays_off() is any(expected.values())
    monkeypatch.setitem(native._state, "choice", None)
    assert {k: native.kernel_pays_off(k) for k in native.KINDS} == expected


def test_kernel_pays_off_follows_a_changed_environment_and_rejects_unknown_kinds(monkeypatch):
    monkeypatch.setattr(native.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(native, "_cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.setitem(native._state, "choice", None)
    monkeypatch.setenv("GHOSTDET_NATIVE", "")
    assert native.kernel_pays_off("stem") is native.AVX2_KERNELS["stem"]
    monkeypatch.setenv("GHOSTDET_NATIVE", "1")
    assert native.kernel_pays_off("stem") is True
    monkeypatch.setenv("GHOSTDET_NATIVE", "0")
    assert native.kernel_pays_off("block") is False
    with pytest.raises(ValueError, match="unknown native kernel kind 'gemm'"):
        native.kernel_pays_off("gemm")


def test_avx2_runs_only_small_depthwise_calls_natively(monkeypatch):
    """On AVX2 a depthwise conv above ``THRESHOLDS.avx2_dwconv_max_macs`` goes to oneDNN (same result), a
    smaller one to the native kernel; GHOSTDET_NATIVE=1 sends both to the native kernel."""
    from ghostdet.deploy import FusedConv2d

    if native.load() is None:
        pytest.skip("no C compiler to build the native kernels")
    monkeypatch.setattr(native.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(native, "_cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.setitem(native._state, "choice", None)
    limit = native.THRESHOLDS.avx2_dwconv_max_macs
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=True).eval()
    fused = FusedConv2d.from_conv(conv)
    calls: list[int] = []
    real = native.dwconv2d
    monkeypatch.setattr(native, "dwconv2d", lambda x, *a, **k: calls.append(x.shape[-1]) or real(x, *a, **k))
    small = torch.randn(1, 64, 8, 8).contiguous(memory_format=torch.channels_last)  # 36,864 MACs
    large = torch.randn(1, 64, 48, 48).contiguous(memory_format=torch.channels_last)  # 1,327,104 MACs
    assert 64 * 8 * 8 * 9 <= limit < 64 * 48 * 48 * 9
    for env, expected in [("", [8]), ("1", [8, 48])]:
        monkeypatch.setenv("GHOSTDET_NATIVE", env)
        calls.clear()
        with torch.inference_mode():
            for x in (small, large):
                assert torch.allclose(fused(x), conv(x), atol=1e-5)
        assert calls == expected
    monkeypatch.setenv("GHOSTDET_NATIVE", "")
    assert native.kernel_pays_off("dwconv", limit) and not native.kernel_pays_off("dwconv", limit + 1)
    assert native.kernel_pays_off("block", 10**12) and not native.kernel_pays_off("stem", 1)


def test_kinds_that_do_not_pay_run_on_onednn_with_the_same_result(monkeypatch):
    """With the native kernels on (``use_native``) but a kind switched off for this CPU, its calls
    go to oneDNN and the others stay native; the output does not change."""
    from ghostdet.deploy import fuse
    from ghostdet.models import ghostnet

    if native.load() is None:
        pytest.skip("no C compiler to build the native kernels")
    torch.manual_seed(0)
    net = ghostnet(1.0).eval()
    fused = fuse(net, native_kernels=True)
    x = torch.randn(1, 3, 160, 160)  # maps above THRESHOLDS.small_block_max_pixels (band kernels) and below
    calls: list[str] = []
    kernels = (
        "stem_conv",
        "dwconv2d",
        "ghost_block_s1",
        "ghost_block_s2",
        "ghost_front",
        "ghost_block_small",
    )
    for name in kernels:
        real = getattr(native, name)
        monkeypatch.setattr(
            native, name, lambda *a, _real=real, _n=name, **k: calls.append(_n) or _real(*a, **k)
        )
    with torch.inference_mode():
        ref = net(x)
        all_native = fused(x)
        assert set(kernels) <= set(calls)
        for kind, names in [
            ("stem", {"stem_conv"}),
            ("block", {"ghost_block_s1", "ghost_block_s2", "ghost_front", "ghost_block_small"}),
        ]:
            choice = {**dict.fromkeys(native.KINDS, True), kind: False}
            limits = dict.fromkeys(native.KINDS, math.inf)
            monkeypatch.setitem(
                native._state, "choice", (os.environ.get("GHOSTDET_NATIVE", ""), choice, limits)
            )
            calls.clear()
            y = fused(x)
            assert not names & set(calls) and "dwconv2d" in calls
            assert (y - ref).abs().max() < 1e-4 * ref.abs().max()
            assert (y - all_native).abs().max() < 1e-4 * ref.abs().max()


def test_cpu_flags_are_read_from_proc_cpuinfo():
    flags = native._cpu_flags()
    if not os.path.exists("/proc/cpuinfo"):
        assert flags == set()
    else:
        with open("/proc/cpuinfo") as f:
            line = next((ln for ln in f if ln.startswith("flags")), None)
        assert (line is None and flags == set()) or flags == set(line.split(":", 1)[1].split())


@pytest.mark.parametrize("pays", [True, False])
def test_fuse_default_uses_the_native_kernels_only_where_they_pay(monkeypatch, pays):
    from ghostdet.deploy import FusedConv2d, fuse
    from ghostdet.models import ghostnet

    monkeypatch.setattr(native, "pays_off", lambda: pays)
    net = ghostnet(0.5).eval()
    fused = fuse(net)
    uses = {m.use_native for m in fused.modules() if isinstance(m, FusedConv2d)}
    assert uses == {pays}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (fused(x) - net(x)).abs().max() < 1e-4 * net(x).abs().max()
    assert {
        m.use_native for m in fuse(net, native_kernels=not pays).modules() if isinstance(m, FusedConv2d)
    } == {not pays}
