"""Run `llem run` for real in a child process, as the workflow's measure rule does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from llenergymeasure.config import ExperimentConfig


def llem_run(
    config: ExperimentConfig,
    work: Path,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Write `config` to `work/config.json`, measure it into `work/run`, return result.json."""
    path = work / "config.json"
    path.write_text(config.model_dump_json())
    out = work / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "run", str(path), "--out", str(out), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())
