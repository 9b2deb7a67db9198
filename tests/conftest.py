"""Shared fixtures: the repository root and the embedded model, prepared once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO / "resources" / "models"


def pytest_configure(config: pytest.Config) -> None:
    # Every test (and every snakemake/llem subprocess) finds the embedded model here.
    os.environ["LLEM_MODELS_DIR"] = str(MODELS_DIR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    """The embedded SmolLM2-135M, prepared into resources/models once (shared with the demo)."""
    from llenergymeasure.embedded import prepare

    path = MODELS_DIR / "smollm2-135m"
    if not (path / "config.json").exists():
        prepare("smollm2-135m", path)
    return path


@pytest.fixture
def campaign() -> dict:
    """A small valid campaign mapping on the embedded model."""
    return {
        "name": "t",
        "models": ["smollm2-135m"],
        "settings": {"max_new_tokens": 4, "num_prompts": 2},
        "grid": {"batch_size": [1, 2]},
        "measurement": {"meter": "none", "warmup_batches": 0},
    }
