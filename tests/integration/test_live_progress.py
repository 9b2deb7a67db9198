"""`llem run` on a terminal shows its phase live; in a log file (the workflow's runs) not."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from llenergymeasure.config import plan_campaign

pytestmark = pytest.mark.slow


def write_config(tmp_path, campaign) -> list[str]:
    # Every change of phase and detail is drawn (however fast this machine runs them):
    # 3 warmup batches, then the window's passes.
    data = {
        **campaign,
        "settings": {**campaign["settings"], "max_new_tokens": 16, "min_new_tokens": 16},
        "grid": {},
        "measurement": {
            "meter": "none",
            "warmup_batches": 3,
            "warmup_max_batches": 3,
            "min_window_s": 2,
        },
    }
    (run,) = plan_campaign(data, "c.yaml").runs.values()
    path = tmp_path / "config.json"
    path.write_text(run.model_dump_json())
    return [sys.executable, "-m", "llenergymeasure", "run", str(path), "--out", str(tmp_path)]


def on_terminal(command: list[str]) -> str:
    """Run `command` with a pseudo-terminal as stdout and stderr; everything it drew."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    child = subprocess.Popen(command, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert child.wait(timeout=600) == 0
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_terminal_shows_phase_and_progress_log_does_not(tmp_path, campaign, embedded_model):
    command = write_config(tmp_path, campaign)
    drawn = on_terminal(command)
    assert "warmup batch" in drawn and "of at most 3" in drawn
    assert "window pass" in drawn and ": 2 prompts" in drawn
    assert "tokens in" in drawn, "the headline figures still end the output"

    (tmp_path / "result.json").unlink()
    logged = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    assert "warmup batch" not in logged.stderr
    assert "tokens in" in logged.stderr
