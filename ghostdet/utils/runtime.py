"""Process-wide runtime settings for inference processes."""

from __future__ import annotations

import ctypes
import sys

__all__ = ["tune_malloc"]


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed memory in the process heap (glibc only), so big activations are not re-faulted.

    glibc returns large freed blocks to the OS (``mmap`` threshold, heap trimming), and each
    new activation of the next image then costs a page fault per 4 KiB. GhostNet's large
    early maps (e.g. 24 x 320 x 320 floats at 640x640 input) fall just above glibc's adaptive
    thresholds: measured here, ~5700 page faults per 640x640 image and ~25% of the backbone's
    time, while MobileNetV3, whose biggest map is larger, settles at zero. This is the in-process
    equivalent of the allocator advice in PyTorch's CPU performance guide (jemalloc/tcmalloc).
    It is process-wide and opt-in: call it once in an inference process.

    Args:
        mmap_threshold: blocks at least this large are still served by ``mmap`` (glibc's cap is
            32 MiB on 64-bit).
        trim_threshold: free memory kept at the top of the heap before returning it to the OS.

    Returns:
        True when the settings were applied (Linux with glibc), False otherwise.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    return bool(
        mallopt(m_mmap_threshold, int(mmap_threshold)) and mallopt(m_trim_threshold, int(trim_threshold))
    )
