"""Choosing the device a tool runs on."""

from __future__ import annotations

import torch

from ghostdet.errors import InputError

__all__ = ["resolve_device"]


def resolve_device(device: str | None) -> torch.device:
    """``None``/``"auto"`` -> cuda if available else cpu; otherwise a checked ``torch.device(device)``.

    Only ``cpu``, ``cuda`` and ``cuda:N`` of a GPU that exists are accepted: the tools run on
    nothing else (``mps``, ``xpu``, ... and ``meta``, which holds no data, are refused).

    Raises:
        InputError: an unknown or unsupported device, CUDA asked for but not available, or a
            GPU index beyond the GPUs there are.
    """
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"bad device {device!r}: use auto, cpu, cuda or cuda:N", argument="device") from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N", argument="device")
    if dev.type == "cpu" and dev.index not in (None, 0):
        raise InputError(f"bad device {device!r}: use cpu (there is one CPU device)", argument="device")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device} requested but CUDA is not available", argument="device")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise InputError(
                f"device {device}: there are {count} CUDA device(s), cuda:0 to cuda:{count - 1}",
                argument="device",
            )
    return dev
