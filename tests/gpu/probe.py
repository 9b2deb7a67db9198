"""Whether this host has an NVIDIA GPU that NVML and torch both see (exit 1 with the reason)."""

from __future__ import annotations

import sys


def gpu_reason() -> str | None:
    """Why no GPU acceptance can run here (None: it can)."""
    from llenergymeasure.devices.nvml import NvmlSource
    from llenergymeasure.errors import MeterError

    try:
        source = NvmlSource()
        devices = source.devices()
        source.close()
    except MeterError as e:
        return f"no NVIDIA GPU: {e}"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"NVML sees {len(devices)} GPU(s) but torch {torch.__version__} sees no CUDA"
    return None


if __name__ == "__main__":
    reason = gpu_reason()
    if reason:
        sys.exit(reason)
    import torch

    print(", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
