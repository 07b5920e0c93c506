"""The optional native kernels used by :mod:`ghostdet.deploy`: building, loading and calling them.

``csrc/dwconv.c`` (depthwise convolution), ``csrc/ghostblock.c`` (whole Ghost bottlenecks fused:
stride 1 or 2 without SE in one call, with SE or a DFC gate as a front and a back call; and the
DFC gate alone, upsampled and multiplied in one pass) and
``csrc/stemconv.c`` (the dense stem conv on an RGB image) are compiled on first use into one
library, ``ghostdet-kernels-<key>.so``, with the system C compiler (``$CC``, else ``cc``, ``gcc``
or ``clang``) for this CPU (``-O3 -march=native``, with OpenMP when the compiler has it) and
loaded with cffi (:class:`Kernels`). The library is cached in ``$GHOSTDET_CACHE_DIR`` (default
``~/.cache/ghostdet``), keyed by the sources, the compiler and the CPU, so later processes load it
in milliseconds. Nothing here is needed for correctness: when no compiler is found, the build
fails, or ``GHOSTDET_NATIVE=0`` is set, :func:`load` returns ``None`` (with one warning saying
why, except when disabled on purpose) and deploy models use oneDNN for every convolution.

The kernels take their vector width from the instruction set they are compiled for
(``GHOSTDET_VW`` in ``csrc/kernels.h``: 16 floats with AVX-512, 8 with AVX2, 4 otherwise), so
their register tiles fit the machine's registers. Which kinds of kernel (stem, depthwise, fused
blocks) the deploy models use is decided per kind and per CPU from measurements
(:func:`kernel_choice`); a kind that loses to oneDNN on this CPU stays on oneDNN.

The library's exported functions are declared once, in ``csrc/ghostdet.h``: the C sources
include it (the compiler checks each definition against it) and :class:`Kernels` hands the same
text to cffi's ``cdef`` (each call is checked against it), with its ABI version
(``GHOSTDET_ABI``) compared with the library's before first use. This file is over 500 lines
because it is one concept: each kernel's Python wrapper sits with the loader, so the two are read
and changed together.

On Linux, torch ships ``libgomp.so.1``; the library built with ``-fopenmp`` binds to that same
OpenMP runtime, so it shares PyTorch's threads and follows ``torch.set_num_threads``.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ghostdet.deploy.plan import THRESHOLDS

__all__ = [
    "API_HEADER",
    "Kernels",
    "AVX2_KERNELS",
    "KINDS",
    "cache_dir",
    "conv_out_size",
    "dfc_gate",
    "dwconv2d",
    "ghost_back",
    "ghost_block_s1",
    "ghost_block_s2",
    "ghost_block_small",
    "ghost_front",
    "gate_mul",
    "kernel_choice",
    "kernel_pays_off",
    "pays_off",
    "stem_conv",
    "library_path",
    "load",
    "supports",
    "supports_stem",
]

_CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = tuple(_CSRC / f for f in ("dwconv.c", "ghostblock.c", "stemconv.c", "dfcgate.c", "smallblock.c"))
#: the library's interface: its exported functions, declared once (see :class:`Kernels`)
API_HEADER = _CSRC / "ghostdet.h"
HEADERS = tuple(_CSRC / f for f in ("ghostdet.h", "kernels.h", "pointwise.h", "gate.h"))  # in the cache key
KERNEL_SIZES = (3, 5, 7)

_lock = threading.Lock()
# "lib": CDLL | None once loading was attempted; "choice": (GHOSTDET_NATIVE, *_decide())
_state: dict[str, object] = {}


def cache_dir() -> Path:
    """Where the built library is kept: ``$GHOSTDET_CACHE_DIR``, else ``$XDG_CACHE_HOME/ghostdet``,
    else ``~/.cache/ghostdet``."""
    if os.environ.get("GHOSTDET_CACHE_DIR"):
        return Path(os.environ["GHOSTDET_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ghostdet"


def _compiler() -> list[str] | None:
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def _cpu_fingerprint() -> str:
    """Identifies the instruction set: a ``-march=native`` build must not run on another CPU."""
    parts = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features", "model name")):
                    parts.append(line.strip())
                if len(parts) > 4:
                    break
    except OSError:
        pass
    return "|".join(parts)


def _flag_sets() -> list[list[str]]:
    base = ["-O3", "-shared", "-fPIC", "-std=gnu11"]
    arch = ["-march=native"]
    omp = ["-fopenmp"]
    return [base + arch + omp, base + arch, base]


def _build(cc: list[str], target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe, probe_path = tempfile.mkstemp(dir=target.parent)
        os.close(probe)
        os.unlink(probe_path)
    except OSError as e:
        raise RuntimeError(f"cache directory not writable ({e}); set GHOSTDET_CACHE_DIR") from e
    errors = []
    for flags in _flag_sets():
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        cmd = [*cc, *flags, *map(str, SOURCES), "-o", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as e:
            errors.append(f"{shlex.join(cmd)}: {e}")
            Path(tmp).unlink(missing_ok=True)
            continue
        if proc.returncode == 0:
            os.replace(tmp, target)  # atomic: concurrent builders cannot leave a half-written file
            return
        Path(tmp).unlink(missing_ok=True)
        errors.append(f"{shlex.join(cmd)}: {proc.stderr.strip()[-400:]}")
    raise RuntimeError("could not compile the native kernels:\n" + "\n".join(errors))


class Kernels:
    """The built library's exported functions, declared once: by ``csrc/ghostdet.h``, which the C
    sources include (so the compiler checks every definition against it) and which cffi's
    ``cdef`` reads here (so every call is checked against it: argument count and types).

    Each function is an attribute of the same name (``kernels.ghostdet_dwconv2d(...)``) that takes
    plain ints for its pointer arguments (``tensor.data_ptr()``, ``0`` for NULL) and casts them to
    the declared pointer types; the other arguments go to cffi as they are.

    Args:
        path: the built shared library.

    Raises:
        RuntimeError: when the library reports another ABI version than the header's
            ``GHOSTDET_ABI`` (a library built from other sources).
    """

    def __init__(self, path: Path) -> None:
        import cffi  # a dependency of ghostdet; imported here, on first use of the kernels

        self.ffi = ffi = cffi.FFI()
        ffi.cdef(API_HEADER.read_text())
        self._lib = lib = ffi.dlopen(str(path))
        self.abi = int(lib.GHOSTDET_ABI)
        if lib.ghostdet_abi() != self.abi:
            raise RuntimeError(f"{path} has ABI {lib.ghostdet_abi()}, the header {self.abi}")
        self.functions = tuple(sorted(n for n in dir(lib) if n.startswith("ghostdet_")))
        for name in self.functions:
            setattr(self, name, _bind(ffi, name, getattr(lib, name)))


def _bind(ffi: Any, name: str, fn: Any) -> Callable[..., int]:
    """``fn`` (a cffi function) taking ints for its pointer arguments."""
    ctype = ffi.typeof(fn)
    if ctype.kind == "pointer":  # ABI mode gives function pointers
        ctype = ctype.item
    pointers = tuple((i, arg.cname) for i, arg in enumerate(ctype.args) if arg.kind == "pointer")
    count, cast = len(ctype.args), ffi.cast

    def call(*args: Any) -> int:
        if len(args) != count:
            raise TypeError(f"{name}() takes {count} arguments ({len(args)} given)")
        args = list(args)  # type: ignore[assignment]
        for i, cname in pointers:
            args[i] = cast(cname, args[i])  # type: ignore[index]
        return fn(*args)

    call.__name__ = call.__qualname__ = name
    return call


def library_path() -> Path | None:
    """The cached library's path for this source, compiler and CPU (``None`` without a compiler)."""
    cc = _compiler()
    if cc is None:
        return None
    key = hashlib.sha256()
    for source in (*SOURCES, *HEADERS):
        key.update(source.read_bytes())
    key.update(repr((cc, _flag_sets(), _cpu_fingerprint(), sys.platform)).encode())
    return cache_dir() / "native" / f"ghostdet-kernels-{key.hexdigest()[:16]}.so"


#: The kinds of native kernel, each used or not on its own (:func:`kernel_choice`): the stem
#: conv (``csrc/stemconv.c``), depthwise convs (``csrc/dwconv.c``) and fused bottlenecks
#: (``csrc/ghostblock.c``).
KINDS = ("stem", "dwconv", "block")

#: Which kinds beat oneDNN on an x86 CPU with AVX2 and FMA but no AVX-512, where the kernels use
#: 8-float vectors (``GHOSTDET_VW`` in ``csrc/kernels.h``). Measured 2026-12-02 on a 2-core AMD EPYC
#: VM with ``benchmarks/bench_cpu.py --sections kernels`` (each call vs the same module on oneDNN,
#: GhostNet-1.0 at 224 and 640, 1 thread; the shared machine's 2-thread figures were too noisy):
#: the fused blocks took 0.35-0.8x oneDNN's time; the stem 1.03-1.2x (oneDNN has a good AVX2
#: kernel for it), so it stays on oneDNN; the depthwise convs see
#: ``THRESHOLDS.avx2_dwconv_max_macs`` (:mod:`ghostdet.deploy.plan`).
#: Re-measured 2026-12-04 after the row-streamed band kernels (same VM kind, 1 and 2 threads):
#: blocks 0.40-0.71x, stem 0.98-1.64x, the 640x640 depthwise shortcuts 1.18-1.34x: the same choice.
AVX2_KERNELS = {"stem": False, "dwconv": True, "block": True}


def _decide() -> tuple[dict[str, bool], dict[str, float]]:
    """:func:`kernel_choice` and, per kind, the most multiply-adds per call that go native."""
    env = os.environ.get("GHOSTDET_NATIVE", "").strip().lower()
    every, unlimited = dict.fromkeys(KINDS, True), dict.fromkeys(KINDS, math.inf)
    none = dict.fromkeys(KINDS, False)
    if env in ("0", "false", "no", "off"):
        return none, unlimited
    if env in ("1", "true", "yes", "on", "force"):
        return every, unlimited
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
        return every, unlimited
    flags = _cpu_flags()
    if "avx512f" in flags:
        return every, unlimited
    if {"avx2", "fma"} <= flags:
        return dict(AVX2_KERNELS), {**unlimited, "dwconv": THRESHOLDS.avx2_dwconv_max_macs}
    return none, unlimited


def kernel_choice() -> dict[str, bool]:
    """Which kinds of native kernel (:data:`KINDS`) the deploy models use on this CPU.

    On an x86 CPU with AVX-512 all of them (README, *Benchmark*: there they beat oneDNN); with
    AVX2 and FMA but no AVX-512 those in :data:`AVX2_KERNELS` (the depthwise kernel only for calls
    up to ``THRESHOLDS.avx2_dwconv_max_macs``, :mod:`ghostdet.deploy.plan`); on older x86 CPUs
    none (not measured, and their vectors are narrower still). On other machines all of them.
    ``GHOSTDET_NATIVE=1`` forces all on (whatever the call's size), ``GHOSTDET_NATIVE=0`` all off.
    A deploy module whose ``use_native`` is off (``fuse(..., native_kernels=False)``) uses none
    whatever this says.
    """
    return _decide()[0]


def pays_off() -> bool:
    """Whether :func:`ghostdet.deploy.fuse` turns the native kernels on by default on this CPU:
    when at least one kind of them is used here (:func:`kernel_choice`). Each call then still
    goes to oneDNN for a kind that :func:`kernel_pays_off` says loses here."""
    return any(kernel_choice().values())


def kernel_pays_off(kind: str, macs: int = 0) -> bool:
    """Whether a call of this kind with ``macs`` multiply-adds runs natively on this CPU
    (:func:`kernel_choice`, and the size limit on AVX2), cached for the current
    ``GHOSTDET_NATIVE`` value: it is asked on every native call, so it does not read
    ``/proc/cpuinfo`` each time.

    Raises:
        ValueError: for a kind not in :data:`KINDS`.
    """
    env = os.environ.get("GHOSTDET_NATIVE", "")
    cached = _state.get("choice")
    if cached is None or cached[0] != env:  # type: ignore[index]
        cached = (env, *_decide())
        _state["choice"] = cached
    _, choice, limits = cached  # type: ignore[misc]
    if kind not in choice:
        raise ValueError(f"unknown native kernel kind {kind!r}; expected one of {KINDS}")
    return choice[kind] and macs <= limits[kind]


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def load() -> Kernels | None:
    """The native kernel library, built on first use; ``None`` when it cannot be had (see module doc)."""
    if "lib" in _state:
        return _state["lib"]  # type: ignore[return-value]
    with _lock:
        if "lib" in _state:
            return _state["lib"]  # type: ignore[return-value]
        lib = None
        if os.environ.get("GHOSTDET_NATIVE", "1") not in ("0", "false", "no", "off"):
            try:
                if sys.platform == "win32":
                    raise RuntimeError("not built on Windows")
                path = library_path()
                if path is None:
                    raise RuntimeError("no C compiler found (set CC)")
                if not path.exists():
                    _build(_compiler(), path)  # type: ignore[arg-type]
                lib = Kernels(path)
            except Exception as e:  # any failure only means "use oneDNN instead"
                warnings.warn(
                    f"ghostdet: native kernels unavailable, using oneDNN instead ({e})",
                    RuntimeWarning,
                    stacklevel=3,
                )
        _state["lib"] = lib
        return lib


def supports(weight: Tensor, stride: list[int], padding: list[int], dilation: list[int], groups: int) -> bool:
    """Whether a convolution with these parameters is a depthwise conv the native kernel computes."""
    c, per_group, kh, kw = weight.shape
    return (
        groups == c
        and per_group == 1
        and c % 4 == 0
        and kh == kw
        and kh in KERNEL_SIZES
        and stride[0] == stride[1] >= 1
        and padding[0] == padding[1]
        and 0 <= padding[0] < kh
        and list(dilation) == [1, 1]
        and weight.dtype == torch.float32
    )


def conv_out_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Output size of a convolution along one axis (zero padding, no dilation); the C kernels'
    ``conv_out_size`` in ``csrc/kernels.h`` is the same formula."""
    return (size + 2 * padding - kernel_size) // stride + 1


def _lib_for(x: Tensor) -> Kernels | None:
    """The native library when ``x`` is a 4-d float32 CPU tensor, else (or without it) ``None``."""
    if x.dtype != torch.float32 or x.device.type != "cpu" or x.dim() != 4:
        return None
    return load()


def _threads(macs: int, min_macs: int | None = None) -> int:
    """torch's thread count for a call of ``macs`` multiply-adds, one thread below ``min_macs``
    (default ``THRESHOLDS.parallel_min_macs``)."""
    limit = THRESHOLDS.parallel_min_macs if min_macs is None else min_macs
    return torch.get_num_threads() if macs >= limit else 1


def _check_weights(weights: list[Tensor], shapes: list[tuple[int, ...]]) -> None:
    if [tuple(t.shape) for t in weights] != shapes:
        raise ValueError(f"weights {[tuple(t.shape) for t in weights]} do not fit: expected {shapes}")
    if not all(t.dtype == torch.float32 and t.is_contiguous() and t.device.type == "cpu" for t in weights):
        raise ValueError("weights must be contiguous float32 CPU tensors")


# Dense convolutions with at most this many input channels (a stem on an RGB image) run on
# csrc/stemconv.c: oneDNN's direct convolution handles 3 input channels poorly.
STEM_MAX_IN_CHANNELS = 4


def supports_stem(
    weight: Tensor, stride: list[int], padding: list[int], dilation: list[int], groups: int
) -> bool:
    """Whether a convolution with these parameters is a dense few-input-channel conv the stem
    kernel computes (square kernel up to 7x7, output channels a multiple of 4)."""
    c_out, c_in, kh, kw = weight.shape
    return (
        groups == 1
        and c_in <= STEM_MAX_IN_CHANNELS
        and c_out % 4 == 0
        and kh == kw
        and kh in KERNEL_SIZES
        and stride[0] == stride[1] >= 1
        and padding[0] == padding[1]
        and 0 <= padding[0] < kh
        and list(dilation) == [1, 1]
        and weight.dtype == torch.float32
    )


def stem_conv(
    x: Tensor, weight_t: Tensor, bias: Tensor, kernel_size: int, stride: int, padding: int, relu: bool
) -> Tensor | None:
    """Dense convolution of a channels_last float32 CPU tensor with few channels (a stem).

    Args:
        x: input ``(N, Cin, H, W)``, dense channels_last, ``Cin <= STEM_MAX_IN_CHANNELS``.
        weight_t: the weight ``(Cout, Cin, k, k)`` as a contiguous ``(Cin*k*k, Cout)``
            (``w.flatten(1).t()``), built by the caller (not checked).
        bias: ``(Cout,)``, contiguous.
        kernel_size, stride, padding: square kernel, stride and zero padding.
        relu: apply ReLU.

    Returns:
        The output (channels_last), or ``None`` when the native library is unavailable or the input does
        not fit it; the caller then computes the convolution another way.
    """
    lib = _lib_for(x)
    if lib is None:
        return None
    n, c, h, w = x.shape
    cout = bias.numel()
    oh, ow = conv_out_size(h, kernel_size, stride, padding), conv_out_size(w, kernel_size, stride, padding)
    if _pixel_pitch(x) != c or oh < 1 or ow < 1 or weight_t.shape != (c * kernel_size**2, cout):
        return None
    y = torch.empty((n, cout, oh, ow), dtype=x.dtype, memory_format=torch.channels_last)
    macs = n * oh * ow * cout * c * kernel_size**2
    threads = _threads(macs)
    rc = lib.ghostdet_stem_conv(
        x.data_ptr(), n, h, w, c, weight_t.data_ptr(), bias.data_ptr(), cout, kernel_size, stride, padding,
        y.data_ptr(), oh, ow, int(relu), threads,
    )  # fmt: skip
    return y if rc == 0 else None


def _pixel_pitch(t: Tensor) -> int | None:
    """Floats between neighbouring pixels when ``t`` is NHWC-dense up to a channel slice, else None."""
    n, c, h, w = t.shape
    s = t.stride()
    # strides of size-1 dims carry no meaning (torch may give a 1x1 map NCHW-like strides)
    pitch = s[3] if w > 1 else s[2] if h > 1 else s[0] if n > 1 else c
    if (c > 1 and s[1] != 1) or pitch < c:
        return None
    if (h > 1 and s[2] != pitch * w) or (n > 1 and s[0] != pitch * w * h):
        return None
    return pitch


def dwconv2d(
    x: Tensor,
    weight_t: Tensor,
    bias: Tensor,
    kernel_size: int,
    stride: int,
    padding: int,
    relu: bool,
    out: Tensor | None = None,
    trusted_weights: bool = False,
) -> Tensor | None:
    """Depthwise convolution of a channels_last float32 CPU tensor with the native kernel.

    Args:
        x: input ``(N, C, H, W)``, channels_last (or a channel slice of a channels_last tensor).
        weight_t: the weight as a contiguous ``(k*k, C)`` tensor (``w.reshape(C, k*k).t()``).
        bias: ``(C,)``, contiguous.
        kernel_size, stride, padding: square kernel, stride and zero padding.
        relu: apply ReLU.
        out: optional ``(N, C, OH, OW)`` destination, channels_last or a channel slice of one.
        trusted_weights: skip the weight/bias checks (for callers that built them, as
            ``ghostdet.deploy.FusedConv2d`` does; saves a few microseconds per call).

    Returns:
        The output (``out`` when given), or ``None`` when the native library is unavailable or the
        layouts do not fit it; the caller then computes the convolution another way.
    """
    lib = _lib_for(x)
    if lib is None:
        return None
    n, c, h, w = x.shape
    k2 = kernel_size * kernel_size
    if not trusted_weights and not (
        weight_t.shape == (k2, c)
        and bias.shape == (c,)
        and weight_t.dtype == bias.dtype == torch.float32
        and weight_t.is_contiguous()
        and bias.is_contiguous()
    ):
        raise ValueError(f"expected a contiguous ({k2}, {c}) weight and ({c},) bias for this input")
    oh, ow = conv_out_size(h, kernel_size, stride, padding), conv_out_size(w, kernel_size, stride, padding)
    ipitch = _pixel_pitch(x)
    if ipitch is None or oh < 1 or ow < 1:
        return None
    if out is None:
        out = torch.empty((n, c, oh, ow), dtype=x.dtype, memory_format=torch.channels_last)
    elif tuple(out.shape) != (n, c, oh, ow) or out.dtype != x.dtype:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {(n, c, oh, ow)}")
    opitch = _pixel_pitch(out)
    if opitch is None:
        return None
    macs = n * oh * ow * c * k2
    threads = _threads(macs)
    rc = lib.ghostdet_dwconv2d(
        x.data_ptr(), ipitch, n, h, w, c, weight_t.data_ptr(), bias.data_ptr(),
        kernel_size, stride, padding, out.data_ptr(), opitch, oh, ow, int(relu), threads,
    )  # fmt: skip
    return out if rc == 0 else None


def ghost_block_s1(
    x: Tensor,
    weights: list[Tensor],
    band: int = 8,
    gate: tuple[Tensor, Tensor, Tensor] | None = None,
    trusted_weights: bool = False,
) -> Tensor | None:
    """A stride-1 Ghost bottleneck without SE and with an identity shortcut, in one native call.

    Args:
        x: ``(N, C, H, W)`` float32, dense channels_last; ``C = 2 * M2``.
        weights: ``[w1t (C, M1), b1 (M1), d1 (9, M1), bd1 (M1), w2t (2*M1, M2), b2 (M2),
            d2 (9, M2), bd2 (M2)]``, contiguous float32: ghost1's 1x1 (ReLU) and 3x3 depthwise
            (ReLU), ghost2's 1x1 and 3x3 depthwise (no ReLU), BatchNorms folded, 1x1 weights as
            (in, out) and depthwise weights taps-major (see ``csrc/ghostblock.c``).
        band: output rows per task (its intermediate rows stay in cache).
        gate: optional DFC gate ``(g, gy, gx)`` of ghost1's ``(N, 2*M1, H, W)`` output, as
            :func:`gate_mul` takes it (dense ``g``); ghost2 then takes the gated output.
        trusted_weights: skip the weight checks (for callers that built the weights, as
            :class:`ghostdet.deploy.DeployBottleneck` does: they cost ~10 us a call).

    Returns:
        The block's output (a new channels_last tensor), or ``None`` when the kernel is
        unavailable or the input does not fit it.
    """
    lib = _lib_for(x)
    if lib is None:
        return None
    n, c, h, w = x.shape
    if _pixel_pitch(x) != c:
        return None
    m1, m2 = weights[1].numel(), weights[5].numel()
    if not trusted_weights:
        _check_weights(weights, [(c, m1), (m1,), (9, m1), (m1,), (2 * m1, m2), (m2,), (9, m2), (m2,)])
    if c != 2 * m2:
        raise ValueError(f"weights do not fit {c} channels: ghost2 gives {2 * m2}")
    gate_args = _gate_args(gate, n, 2 * m1, h, w)
    if gate_args is None:
        return None
    macs = n * h * w * (c * m1 + 9 * m1 + 2 * m1 * m2 + 9 * m2)
    threads = _threads(macs, 4 * THRESHOLDS.parallel_min_macs)
    y = torch.empty_like(x, memory_format=torch.channels_last)
    # per-thread scratch from torch's allocator (no malloc inside the kernel)
    per_thread = lib.ghostdet_ghost_block_scratch(w, m1, m2, band, int(gate is not None))
    scratch = torch.empty(threads * per_thread, dtype=torch.float32)
    ptrs = [t.data_ptr() for t in weights]
    rc = lib.ghostdet_ghost_block_s1(
        x.data_ptr(), y.data_ptr(), n, h, w, c, m1, m2, *ptrs, *gate_args, band, scratch.data_ptr(), threads
    )
    return y if rc == 0 else None


def ghost_block_s2(
    x: Tensor,
    res: Tensor,
    weights: list[Tensor],
    kernel_size: int,
    band: int = 8,
    gate: tuple[Tensor, Tensor, Tensor] | None = None,
    trusted_weights: bool = False,
) -> Tensor | None:
    """A stride-2 Ghost bottleneck without SE in one native call; its shortcut ``res`` is given.

    Args:
        x: ``(N, Cin, H, W)`` float32, dense channels_last.
        res: the shortcut's output ``(N, 2*M2, OH, OW)``, dense channels_last.
        weights: ``[w1t (Cin, M1), b1, d1 (9, M1), bd1, dzt (k*k, 2*M1), dz (2*M1), w2t (2*M1, M2),
            b2, d2 (9, M2), bd2]``: ghost1's 1x1 (ReLU) and 3x3 depthwise (ReLU), the stride-2
            depthwise conv (no ReLU), ghost2's 1x1 and 3x3 depthwise (no ReLU).
        kernel_size: the stride-2 depthwise kernel (3 or 5, padding ``k // 2``).
        band: output rows per task.
        gate: optional DFC gate ``(g, gy, gx)`` of ghost1's ``(N, 2*M1, H, W)`` output, as
            :func:`gate_mul` takes it (dense ``g``), applied before the strided conv.
        trusted_weights: skip the weight checks (for callers that built the weights, as
            :class:`ghostdet.deploy.DeployBottleneck` does: they cost ~10 us a call).

    Returns:
        The block's output, or ``None`` when the native library is unavailable or the inputs do not fit.
    """
    lib = _lib_for(x)
    if lib is None:
        return None
    n, cin, h, w = x.shape
    k, pad = kernel_size, kernel_size // 2
    oh, ow = conv_out_size(h, k, 2, pad), conv_out_size(w, k, 2, pad)
    m1, m2 = weights[1].numel(), weights[7].numel()
    if _pixel_pitch(x) != cin or res.shape != (n, 2 * m2, oh, ow) or _pixel_pitch(res) != 2 * m2:
        return None
    if k not in (3, 5):
        raise ValueError(f"weights do not fit kernel_size {k}: 3 or 5 expected")
    front = [(cin, m1), (m1,), (9, m1), (m1,), (k * k, 2 * m1), (2 * m1,)]
    if not trusted_weights:
        _check_weights(weights, [*front, (2 * m1, m2), (m2,), (9, m2), (m2,)])
    gate_args = _gate_args(gate, n, 2 * m1, h, w)
    if gate_args is None:
        return None
    macs = n * h * w * (cin * m1 + 9 * m1) + n * oh * ow * (2 * m1 * k * k + 2 * m1 * m2 + 9 * m2)
    threads = _threads(macs, 4 * THRESHOLDS.parallel_min_macs)
    y = torch.empty((n, 2 * m2, oh, ow), dtype=x.dtype, memory_format=torch.channels_last)
    per_thread = lib.ghostdet_ghost_block_s2_scratch(w, ow, m1, m2, k, band, int(gate is not None))
    scratch = torch.empty(threads * per_thread, dtype=torch.float32)
    ptrs = [t.data_ptr() for t in weights]
    rc = lib.ghostdet_ghost_block_s2(
        x.data_ptr(),
        res.data_ptr(),
        y.data_ptr(),
        n,
        h,
        w,
        cin,
        m1,
        m2,
        k,
        *ptrs,
        *gate_args,
        band,
        scratch.data_ptr(),
        threads,
    )
    return y if rc == 0 else None


def _gate_args(
    gate: tuple[Tensor, Tensor, Tensor] | None, n: int, c: int, h: int, w: int, sliced: bool = False
) -> list | None:
    """The C arguments ``g, Hg, Wg, gy, gx`` of a DFC gate (see :func:`gate_mul`; ``g`` may be a
    channel slice when ``sliced``, and its pixel pitch is then prepended), ``None`` when the gate
    does not fit a ``(n, c, h, w)`` map, ``[0, 0, 0, 0, 0]`` without a gate."""
    if gate is None:
        return [0, 0, 0, 0, 0]
    g, gy, gx = gate
    pitch = _pixel_pitch(g) if g.dim() == 4 else None
    if g.dtype != torch.float32 or pitch is None or g.shape[:2] != (n, c) or (pitch != c and not sliced):
        return None
    if gy.shape != (h,) or gx.shape != (w,) or gy.dtype != torch.int32 or gx.dtype != torch.int32:
        return None
    if not (gy.is_contiguous() and gx.is_contiguous()):
        return None
    args = [g.data_ptr(), g.shape[2], g.shape[3], gy.data_ptr(), gx.data_ptr()]
    return [pitch, *args] if sliced else args


#: Pooled pixels per projection task of the DFC gate kernel (``PROJ_CHUNK`` in ``csrc/dfcgate.c``).
DFC_PROJ_CHUNK = 48


def dfc_gate(x: Tensor, weights: list[Tensor], trusted_weights: bool = False) -> Tensor | None:
    """The DFC attention gate of GhostNetV2/V3 in one native call: ``sigmoid(dw_5x1(dw_1x5(
    avg_pool_2x2(x) @ Wp + bp) + bh) + bv)`` (``csrc/dfcgate.c``).

    Args:
        x: the gated Ghost module's input ``(N, Cin, H, W)``, float32, dense channels_last.
        weights: ``[wpt (Cin, C), bp (C), wh (5, C), bh (C), wv (5, C), bv (C)]``, contiguous
            float32: the 1x1 projection as (in, out), the 1x5 and 5x1 depthwise convs taps-major,
            BatchNorms folded into them; ``C`` a multiple of 4.
        trusted_weights: skip the weight checks (for callers that built them, as
            ``ghostdet.deploy.DeployDFCGate`` does).

    Returns:
        The gate ``(N, C, H // 2, W // 2)``, dense channels_last; or ``None`` when the native
        library is unavailable or the input does not fit it (a map under 2x2, a strided layout).
    """
    lib = _lib_for(x)
    if lib is None:
        return None
    n, cin, h, w = x.shape
    c = weights[1].numel()
    if not trusted_weights:
        _check_weights(weights, [(cin, c), (c,), (5, c), (c,), (5, c), (c,)])
    elif weights[0].shape[0] != cin:
        raise ValueError(f"the gate's projection takes {weights[0].shape[0]} channels, the input has {cin}")
    if _pixel_pitch(x) != cin or h < 2 or w < 2 or c % 4:
        return None
    hg, wg = h // 2, w // 2
    g = torch.empty((n, c, hg, wg), dtype=x.dtype, memory_format=torch.channels_last)
    scratch = torch.empty(lib.ghostdet_dfc_gate_scratch(n, h, w, cin, c), dtype=x.dtype)
    # the projection's tasks are chunks of DFC_PROJ_CHUNK pooled pixels: fewer than two chunks
    # would leave a second thread only the cheap stages
    pixels = n * hg * wg
    threads = _threads(pixels * (cin * c + 10 * c)) if pixels >= 2 * DFC_PROJ_CHUNK else 1
    ptrs = [t.data_ptr() for t in weights]
    args = [x.data_ptr(), n, h, w, cin, c, *ptrs, g.data_ptr(), scratch.data_ptr(), threads]
    rc = lib.ghostdet_dfc_gate(*args)
    return g if rc == 0 else None


def gate_mul(x: Tensor, g: Tensor, gy: Tensor, gx: Tensor) -> bool:
    """``x *= g[:, :, gy][:, :, :, gx]`` in place: a DFC gate (GhostNetV2/V3) computed at a lower
    resolution, upsampled by index, multiplied into a channels_last map in one pass.

    Args:
        x: ``(N, C, H, W)`` float32, channels_last or a channel slice of a channels_last tensor.
        g: the gate values ``(N, C, Hg, Wg)``, float32, channels_last or a channel slice of it.
        gy, gx: int32 ``(H,)`` and ``(W,)``: the gate row of each row of ``x`` and the gate
            column of each column (for nearest upsampling, torch's indices).

    Returns:
        Whether the kernel ran (``False``: the library is unavailable or the tensors do not fit
        it, and ``x`` is unchanged).
    """
    lib = _lib_for(x)
    if lib is None:
        return False
    n, c, h, w = x.shape
    pitch = _pixel_pitch(x)
    args = _gate_args((g, gy, gx), n, c, h, w, sliced=True)
    if pitch is None or args is None:
        return False
    threads = _threads(n * h * w * c)
    return lib.ghostdet_gate_mul(x.data_ptr(), pitch, n, h, w, c, args[1], args[0], *args[2:], threads) == 0


def ghost_block_small(
    x: Tensor,
    weights: list[Tensor],
    stride: int,
    kernel_size: int = 3,
    se: list[Tensor] | None = None,
    shortcut: list[Tensor] | None = None,
    shortcut_kernel: int = 3,
    gate: tuple[Tensor, Tensor, Tensor] | None = None,
    trusted_weights: bool = False,
) -> Tensor | None:
    """A whole Ghost bottleneck on a small map in one native call (``csrc/smallblock.c``): any
    width, with or without SE, stride 1 or 2, identity or conv shortcut, optional DFC gate.

    Args:
        x: ``(N, Cin, H, W)`` float32, dense channels_last.
        weights: as for :func:`ghost_block_s1` (stride 1) or :func:`ghost_block_s2` (stride 2).
        stride: 1 or 2.
        kernel_size: the stride-2 depthwise kernel (3, 5 or 7, padding ``k // 2``).
        se: ``[reduce_weight (R, 2*M1), reduce_bias, expand_weight (2*M1, R), expand_bias]`` with
            the hard-sigmoid folded (:class:`ghostdet.deploy.DeploySqueezeExcite`), or ``None``.
        shortcut: ``[dw (k*k, Cin), dw bias, pw (Cin, 2*M2), pw bias]``, or ``None`` for an identity.
        shortcut_kernel: the shortcut's depthwise kernel (padding ``k // 2``, the block's stride).
        gate: optional DFC gate ``(g, gy, gx)`` of ghost1's ``(N, 2*M1, H, W)`` output (dense ``g``).
        trusted_weights: skip the weight checks (for callers that built the weights, as
            :class:`ghostdet.deploy.DeployBottleneck` does: they cost ~10 us a call).

    Returns:
        The block's output ``(N, 2*M2, OH, OW)`` channels_last, or ``None`` when the native library
        is unavailable or the inputs do not fit it.
    """
    lib = _lib_for(x)
    if lib is None:
        return None
    n, cin, h, w = x.shape
    k, m1 = kernel_size, weights[1].numel()
    s2 = [(k * k, 2 * m1), (2 * m1,)] if stride == 2 else []
    m2 = weights[len(s2) + 5].numel()
    r = 0 if se is None else se[1].numel()
    if not trusted_weights:
        _check_weights(weights, [(cin, m1), (m1,), (9, m1), (m1,), *s2, (2 * m1, m2), (m2,), (9, m2), (m2,)])
        if se is not None:
            _check_weights(se, [(r, 2 * m1), (r,), (2 * m1, r), (2 * m1,)])
        if shortcut is not None:
            _check_weights(shortcut, [(shortcut_kernel**2, cin), (cin,), (cin, 2 * m2), (2 * m2,)])
    gate_args = _gate_args(gate, n, 2 * m1, h, w)
    if _pixel_pitch(x) != cin or gate_args is None or stride not in (1, 2):
        return None
    oh, ow = (conv_out_size(h, k, 2, k // 2), conv_out_size(w, k, 2, k // 2)) if stride == 2 else (h, w)
    if oh < 1 or ow < 1:
        return None
    macs = n * h * w * cin * m1 + n * oh * ow * 2 * m1 * m2
    threads = _threads(macs, 4 * THRESHOLDS.parallel_min_macs)
    y = torch.empty((n, 2 * m2, oh, ow), dtype=x.dtype, memory_format=torch.channels_last)
    size = lib.ghostdet_ghost_block_small_scratch(
        n, h, w, cin, m1, m2, stride, k, r, int(shortcut is not None)
    )
    scratch = torch.empty(size, dtype=x.dtype)
    ptrs = [t.data_ptr() for t in weights]
    front, back = ptrs[:4] + (ptrs[4:6] if stride == 2 else [0, 0]), ptrs[len(s2) + 4 :]
    se_ptrs = [0, 0, 0, 0] if se is None else [t.data_ptr() for t in se]
    sc_ptrs = [0, 0, 0, 0] if shortcut is None else [t.data_ptr() for t in shortcut]
    rc = lib.ghostdet_ghost_block_small(
        x.data_ptr(), y.data_ptr(), n, h, w, cin, m1, m2, stride, k, *front, r, *se_ptrs, *back,
        shortcut_kernel, *sc_ptrs, *gate_args, scratch.data_ptr(), threads,
    )  # fmt: skip
    return y if rc == 0 else None


def ghost_front(
    x: Tensor,
    weights: list[Tensor],
    stride: int,
    kernel_size: int = 3,
    band: int = 8,
    gate: tuple[Tensor, Tensor, Tensor] | None = None,
    trusted_weights: bool = False,
) -> tuple[Tensor, Tensor] | None:
    """The first half of a Ghost bottleneck with SE or a DFC gate, in one native call: ghost1
    (times the DFC gate, and the stride-2 depthwise conv), and the channel sums an SE gate needs.

    Args:
        x: ``(N, Cin, H, W)`` float32, dense channels_last.
        weights: ``[w1t (Cin, M1), b1, d1 (9, M1), bd1]``, and for stride 2 also
            ``[dzt (k*k, 2*M1), dz (2*M1)]`` (layouts as in :func:`ghost_block_s2`).
        stride: 1 (``z = [a, b]``, ghost1's output) or 2 (``z`` = the strided depthwise conv
            of it, no ReLU).
        kernel_size: the stride-2 depthwise kernel (3 or 5, padding ``k // 2``).
        band: rows per task.
        gate: optional DFC gate ``(g, gy, gx)`` of ghost1's ``(N, 2*M1, H, W)`` output, as
            :func:`gate_mul` takes it; ghost1's output is multiplied by it before the strided conv.
        trusted_weights: skip the weight checks (for callers that built the weights, as
            :class:`ghostdet.deploy.DeployBottleneck` does: they cost ~10 us a call).

    Returns:
        ``(z, sums)``: ``z`` ``(N, 2*M1, OH, OW)`` channels_last and its per-image channel sums
        ``(N, 2*M1)``; or ``None`` when the native library is unavailable or the input does not fit.
    """
    lib = _lib_for(x)
    if lib is None:
        return None
    n, cin, h, w = x.shape
    m1, k = weights[1].numel(), kernel_size
    if stride not in (1, 2) or (stride == 2 and k not in (3, 5)):
        raise ValueError(f"stride 1, or stride 2 with kernel 3 or 5, expected; got {stride}, {k}")
    shapes = [(cin, m1), (m1,), (9, m1), (m1,)] + ([(k * k, 2 * m1), (2 * m1,)] if stride == 2 else [])
    if not trusted_weights:
        _check_weights(weights, shapes)
    gate_args = _gate_args(gate, n, 2 * m1, h, w)
    if _pixel_pitch(x) != cin or gate_args is None:
        return None
    oh, ow = (conv_out_size(h, k, 2, k // 2), conv_out_size(w, k, 2, k // 2)) if stride == 2 else (h, w)
    macs = n * h * w * (cin * m1 + 9 * m1) + (n * oh * ow * 2 * m1 * k * k if stride == 2 else 0)
    threads = _threads(macs, 4 * THRESHOLDS.parallel_min_macs)
    z = torch.empty((n, 2 * m1, oh, ow), dtype=x.dtype, memory_format=torch.channels_last)
    sums = torch.empty((n, 2 * m1), dtype=x.dtype)
    per_thread = lib.ghostdet_ghost_front_scratch(n, w, m1, k, stride, band, int(gate is not None))
    scratch = torch.empty(threads * per_thread, dtype=x.dtype)
    ptrs = [t.data_ptr() for t in weights] + ([0, 0] if stride == 1 else [])
    rc = lib.ghostdet_ghost_front(
        x.data_ptr(), z.data_ptr(), sums.data_ptr(), n, h, w, cin, m1, k, stride, *ptrs, *gate_args, band,
        scratch.data_ptr(), threads,
    )  # fmt: skip
    return (z, sums) if rc == 0 else None


def ghost_back(
    z: Tensor, res: Tensor, weights: list[Tensor], band: int = 8, trusted_weights: bool = False
) -> Tensor | None:
    """The second half of a Ghost bottleneck (after :func:`ghost_front` and the SE gate) in one
    native call: ``y = [p, dw3(p) + bd2] + res`` with ``p = z @ w2t[n] + b2``.

    Args:
        z: ``(N, C2, OH, OW)`` float32, dense channels_last.
        res: the shortcut ``(N, 2*M2, OH, OW)``, dense channels_last (``x`` for an identity).
        weights: ``[w2t (N, C2, M2) or (C2, M2), b2 (M2), d2 (9, M2), bd2 (M2)]``: ghost2's 1x1
            weight per image (the SE gate folded into its rows) or shared, and its 3x3 depthwise.
        band: output rows per task.
        trusted_weights: skip the weight checks (for callers that built the weights, as
            :class:`ghostdet.deploy.DeployBottleneck` does: they cost ~10 us a call).

    Returns:
        The block's output, or ``None`` when the native library is unavailable or the inputs do not fit.
    """
    lib = _lib_for(z)
    if lib is None:
        return None
    n, c2, oh, ow = z.shape
    m2 = weights[1].numel()
    w2 = weights[0]
    per_image = w2.dim() == 3
    if not trusted_weights:
        _check_weights(weights, [(n, c2, m2) if per_image else (c2, m2), (m2,), (9, m2), (m2,)])
    if _pixel_pitch(z) != c2 or res.shape != (n, 2 * m2, oh, ow) or _pixel_pitch(res) != 2 * m2:
        return None
    macs = n * oh * ow * (c2 * m2 + 9 * m2)
    threads = _threads(macs, 4 * THRESHOLDS.parallel_min_macs)
    y = torch.empty((n, 2 * m2, oh, ow), dtype=z.dtype, memory_format=torch.channels_last)
    scratch = torch.empty(threads * lib.ghostdet_ghost_back_scratch(ow, m2, band), dtype=z.dtype)
    rc = lib.ghostdet_ghost_back(
        z.data_ptr(), res.data_ptr(), y.data_ptr(), n, oh, ow, c2, m2, w2.data_ptr(),
        c2 * m2 if per_image else 0, *[t.data_ptr() for t in weights[1:]], band, scratch.data_ptr(), threads,
    )  # fmt: skip
    return y if rc == 0 else None
