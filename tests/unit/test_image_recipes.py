"""The image recipes in envs/: one per backend, pinned bases, the backend's extra only.

The GPU images cannot be built or run here (no registry, no GPU): these checks and the plan
below are what can be verified of them on this machine.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from llenergymeasure.config.loader import container_lines, default_image, plan_campaign
from llenergymeasure.containers.build import EXTRAS, recipe

REPO = Path(__file__).parents[2]
EXTRAS_DECLARED = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]
RECIPES = [("transformers", "cpu"), ("transformers", "gpu"), ("vllm", "gpu"), ("tensorrt", "gpu")]


@pytest.mark.parametrize(("backend", "variant"), RECIPES)
def test_recipe_pins_its_base_and_installs_only_its_backends_extra(backend, variant):
    text = recipe(REPO, backend, variant).read_text()
    base = re.search(r"^ARG BASE=(\S+)$", text, re.MULTILINE)
    assert base, "the base image is an ARG (a local base replaces it where no registry is)"
    name, _, tag = base[1].rpartition(":")
    assert name and tag and tag != "latest" and re.search(r"\d", tag), f"pinned: {base[1]}"
    assert re.search(r"^FROM \$\{BASE\}$", text, re.MULTILINE)
    installs = set(re.findall(r'llenergymeasure[^\s"]*"?\[(\w+)\]', text))
    assert installs == {EXTRAS[backend]}, installs
    assert EXTRAS[backend] in EXTRAS_DECLARED
    others = {EXTRAS[b] for b in EXTRAS if b != backend}
    assert not others & installs
    assert "wheels/" in text, "this checkout's wheel, not whatever PyPI has"


def test_a_gpu_campaign_in_containers_names_each_backends_image(campaign):
    data = {
        **campaign,
        "backends": ["transformers", "vllm"],
        "measurement": {**campaign["measurement"], "device": "cuda"},
        "containers": {"runtime": "docker"},
    }
    lines = container_lines(plan_campaign(data, "gpu.yaml"))
    for backend in ("transformers", "vllm"):
        image = default_image(backend, "cuda", "docker")
        assert f"container (docker): {backend} runs (2) in {image}" in lines
        assert not image.endswith("-cpu")
        assert recipe(REPO, backend, "gpu").is_file()
