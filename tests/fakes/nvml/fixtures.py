"""Pytest fixtures for the fake NVML library.

Use them from a test module (or a conftest) with::

    pytest_plugins = ["tests.fakes.nvml.fixtures"]

or call :func:`build_or_skip` from a fixture of your own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.nvml import (
    FakeScenario,
    build_fake_nvml,
    subprocess_env,
    write_scenario,
)


def build_or_skip(out_dir: Path) -> Path:
    """Build the fake library into ``out_dir``; skip the test if there is no C compiler."""
    try:
        return build_fake_nvml(out_dir)
    except FileNotFoundError as e:
        pytest.skip(f"fake NVML unavailable: {e}")


@pytest.fixture(scope="session")
def fake_nvml_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the fake ``libnvidia-ml.so.1``, built once per session (skips without gcc)."""
    return build_or_skip(tmp_path_factory.mktemp("fake_nvml"))


@pytest.fixture
def fake_nvml_env(fake_nvml_lib: Path, tmp_path: Path) -> Callable[[FakeScenario], dict[str, str]]:
    """``env = fake_nvml_env(scenario)``: writes the scenario, returns a subprocess env."""

    def make(scenario: FakeScenario) -> dict[str, str]:
        path = write_scenario(tmp_path / "scenario.txt", scenario)
        return subprocess_env(fake_nvml_lib, path)

    return make
