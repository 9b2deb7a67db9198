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

STATE_FILE_NAME = "fake_nvml_state.txt"


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
def fake_nvml_state(tmp_path: Path) -> Path:
    """The test's GPU state file (``FAKE_NVML_STATE``); it exists once a setter has run.

    Read it with :func:`tests.fakes.nvml.read_state`; pre-seed it (a GPU a killed run left
    changed) with :func:`tests.fakes.nvml.write_state` before the first child starts.
    """
    return tmp_path / STATE_FILE_NAME


@pytest.fixture
def fake_nvml_env(
    fake_nvml_lib: Path, tmp_path: Path, fake_nvml_state: Path
) -> Callable[..., dict[str, str]]:
    """``env = fake_nvml_env(scenario, state=True)``: writes the scenario, returns a
    subprocess env.

    With ``state=True`` (the default) the env names the test's state file
    (:func:`fake_nvml_state`), so GPU settings persist from one child process to the next
    as on a real machine; ``state=False`` keeps them per process.
    """

    def make(scenario: FakeScenario, *, state: bool = True) -> dict[str, str]:
        path = write_scenario(tmp_path / "scenario.txt", scenario)
        return subprocess_env(fake_nvml_lib, path, state_path=fake_nvml_state if state else None)

    return make
