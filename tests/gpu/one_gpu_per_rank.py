"""The one-GPU-per-rank run and its checks: on real GPUs (test_gpu.py) and, in CI, on the
fake NVML's two GPUs (tests/integration/test_one_gpu_per_rank.py), so the body cannot rot
until a machine with two GPUs runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def campaign(device: str) -> dict[str, Any]:
    """Two ranks, NVML-metered: on `cuda` each uses its GPU, on `cpu` each meters one."""
    return {
        "name": "g",
        "models": ["smollm2-135m"],
        "settings": {"processes": 2, "num_prompts": 8, "batch_size": 4, "max_new_tokens": 8},
        "measurement": {"device": device, "meter": "nvml", "baseline_s": 1, "cooldown_max_s": 1},
    }


def check(result: dict[str, Any], run_dir: Path) -> list[str]:
    """Each rank metered its own GPU, named by UUID; the run's energy is theirs summed.

    Returns the two UUIDs, rank 0's first.
    """
    assert result["status"] == "succeeded", result.get("message")
    energy = result["energy"]
    per_device = energy["per_device"]
    uuids = [d["device"] for d in per_device]
    assert len(uuids) == len(set(uuids)) == 2, "each rank metered its own GPU"
    assert all(u.startswith("GPU-") for u in uuids), "GPUs are named by UUID"
    assert all(d["method"] == "nvml_counter" for d in per_device)
    assert energy["energy_j"] == pytest.approx(sum(d["energy_j"] for d in per_device))
    ranks = [json.loads((run_dir / f"process_{r}.json").read_text()) for r in (0, 1)]
    mine = []
    for rank in ranks:
        (device,) = rank["energy"]["per_device"]
        assert device["cuda_index"] == 0, "a rank sees its one GPU as CUDA index 0"
        assert list(rank["energy"]["baseline"]["per_device_w"]) == [device["device"]]
        mine.append(device["device"])
    assert sorted(mine) == sorted(uuids)
    return mine
