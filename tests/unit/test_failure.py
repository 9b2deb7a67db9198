"""Failure classes from the errors engines really raise, and SLURM's time left."""

from __future__ import annotations

import pytest
import torch

from llenergymeasure.errors import BackendError, ConfigError, MeterError
from llenergymeasure.measure.failure import RunInterrupted, classify, one_line


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out_of_memory"),
        (
            RuntimeError(
                "[enforce fail at alloc_cpu.cpp:119] DefaultCPUAllocator: can't allocate "
                "memory: you tried to allocate 4294967296 bytes"
            ),
            "out_of_memory",
        ),
        (MemoryError(), "out_of_memory"),
        (
            ValueError(
                "No available memory for the cache blocks. Try increasing `gpu_memory_utilization`"
            ),
            "out_of_memory",
        ),
        (BackendError("cannot load model 'm' from /x: CUDA out of memory"), "out_of_memory"),
        (
            BackendError("vllm rejected the engine settings: quantization fp8 is not supported"),
            "unsupported_config",
        ),
        (ConfigError("c.yaml", "settings.dtype", "bad"), "unsupported_config"),
        (
            BackendError("cannot load model 'm' from /x: Error while deserializing header"),
            "engine_error",
        ),
        (MeterError("NVML: nvmlDeviceGetPowerUsage: GPU is lost"), "engine_error"),
        (RunInterrupted("timeout", "stopped after 5 s"), "timeout"),
        (KeyError("energy"), "internal"),
    ],
)
def test_failures_are_classified_from_what_engines_raise(error, expected):
    assert classify(error) == expected


def test_one_line_keeps_the_type_and_first_line():
    assert one_line(RuntimeError("first\nsecond")) == "RuntimeError: first"
    assert one_line(KeyError()) == "KeyError"
