"""Measured runs inside the CPU transformers image, through real snakemake and real podman.

The image is built by `make images` (CI does so before the tests, with LLEM_CONTAINER_TESTS=1,
which turns a missing podman or image into a failure instead of a skip).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from llenergymeasure.config.loader import default_image
from tests.workflow.test_snakemake import snakemake

REPO = Path(__file__).parents[2]
IMAGE = default_image("transformers", "cpu", "podman")
REQUIRED = os.environ.get("LLEM_CONTAINER_TESTS") == "1"
pytestmark = pytest.mark.slow


def need(condition: bool, reason: str) -> None:
    if not condition:
        if REQUIRED:
            pytest.fail(f"LLEM_CONTAINER_TESTS=1 but {reason}")
        pytest.skip(reason)


def need_image() -> None:
    need(shutil.which("podman") is not None, "podman is not installed")
    found = subprocess.run(["podman", "image", "exists", IMAGE], check=False)
    need(found.returncode == 0, f"image {IMAGE} is not built (make images)")


def write_campaign(path: Path, name: str, **containers) -> Path:
    data = {
        "name": name,
        "models": ["smollm2-135m"],
        "settings": {"max_new_tokens": 4, "num_prompts": 2, "threads": 1},
        "grid": {"batch_size": [1, 2]},
        "measurement": {"meter": "codecarbon", "warmup_batches": 0, "baseline_s": 2},
    }
    if containers:
        data["containers"] = containers
    path.write_text(yaml.safe_dump(data))
    return path


def results(workdir: Path, name: str) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text())
        for p in sorted((workdir / "results" / name / "runs").glob("*/result.json"))
    }


def key_paths(value, prefix: str = "") -> set[str]:
    """Every key path of a result (list items folded), to compare schemas."""
    if isinstance(value, dict):
        found = set()
        for k, v in value.items():
            found |= {f"{prefix}.{k}"} | key_paths(v, f"{prefix}.{k}")
        return found
    if isinstance(value, list):
        return set().union(*(key_paths(v, f"{prefix}[]") for v in value)) if value else set()
    return set()


def path_without(*names: str, tmp: Path) -> str:
    """PATH of this test's Python plus the system's tools, except `names`."""
    shadow = tmp / "bin"
    shadow.mkdir()
    for directory in os.environ["PATH"].split(":"):
        if not Path(directory).is_dir():
            continue
        for tool in Path(directory).iterdir():
            target = shadow / tool.name
            if tool.name not in names and not target.exists() and os.access(tool, os.X_OK):
                target.symlink_to(tool)
    return f"{Path(sys.executable).parent}:{shadow}"


def test_missing_runtime_fails_each_run_in_one_line_and_the_campaign_gets_tables(tmp_path):
    campaign = write_campaign(tmp_path / "c.yaml", "nort", runtime="podman")
    path = path_without("podman", tmp=tmp_path)
    done = snakemake(tmp_path, campaign, path=path)
    assert done.returncode == 0, done.stderr[-3000:]
    records = results(tmp_path, "nort")
    assert len(records) == 2
    for record in records.values():
        assert record["status"] == "failed"
        assert record["failure_class"] == "container"
        assert record["phase"] == "container"
        assert "\n" not in record["message"]
        assert "container runtime 'podman' not found on PATH" in record["message"]
    runs = pd.read_parquet(tmp_path / "results/nort/tables/runs.parquet")
    assert (runs["failure_class"] == "container").all()
    assert "0 of 2 runs succeeded" in (tmp_path / "results/nort/summary.md").read_text()


def test_apptainer_campaign_outside_apptainer_is_recorded(tmp_path, embedded_model):
    campaign = write_campaign(tmp_path / "c.yaml", "appt", runtime="apptainer")
    done = snakemake(tmp_path, campaign, "--until", "measure")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "container (apptainer): transformers runs (2) in images/" in done.stderr
    for record in results(tmp_path, "appt").values():
        assert record["failure_class"] == "container"
        assert "--software-deployment-method apptainer" in record["message"]


def test_missing_image_is_one_line(tmp_path, embedded_model):
    need(shutil.which("podman") is not None, "podman is not installed")
    campaign = write_campaign(
        tmp_path / "c.yaml",
        "noimg",
        runtime="podman",
        images={"transformers": "llenergymeasure-transformers:no-such-tag"},
    )
    done = snakemake(tmp_path, campaign, "--until", "measure")
    assert done.returncode == 0, done.stderr[-3000:]
    for record in results(tmp_path, "noimg").values():
        assert record["failure_class"] == "container"
        assert record["message"].startswith(
            "ContainerError: image 'llenergymeasure-transformers:no-such-tag' not found by podman"
        )


def test_campaign_runs_inside_the_image_like_on_the_host(tmp_path, embedded_model):
    need_image()
    host_dir, box_dir = tmp_path / "host", tmp_path / "box"
    host_dir.mkdir()
    box_dir.mkdir()
    host_campaign = write_campaign(host_dir / "c.yaml", "same")
    box_campaign = write_campaign(box_dir / "c.yaml", "same", runtime="podman")

    plan = snakemake(box_dir, box_campaign, "-n")
    assert plan.returncode == 0, plan.stderr
    assert f"container (podman): transformers runs (2) in {IMAGE}" in plan.stderr

    for workdir, campaign in ((host_dir, host_campaign), (box_dir, box_campaign)):
        done = snakemake(workdir, campaign)
        assert done.returncode == 0, done.stderr[-3000:]
    host, box = results(host_dir, "same"), results(box_dir, "same")
    assert list(host) == list(box), "where a run executes is not part of its id"

    inspected = json.loads(
        subprocess.run(
            ["podman", "image", "inspect", IMAGE], capture_output=True, text=True, check=True
        ).stdout
    )[0]
    for run_id, result in box.items():
        assert result["status"] == "succeeded", result.get("message")
        assert result["tokens"]["output_tokens"] > 0
        container = result["environment"]["container"]
        assert container["runtime"] == "podman"
        assert container["image"] == IMAGE
        assert container["image_id"] == inspected["Id"]
        assert container["digest"] == inspected["Digest"]
        assert host[run_id]["environment"]["container"]["runtime"] == "none"
        inside = {k for k in key_paths(result) if not k.startswith(".config.container.")}
        assert inside == key_paths(host[run_id]), "the same schema as a host run"
        assert result["config"]["container"]["image"] == IMAGE
        assert result["environment"]["python"].startswith("3.11")

    runs = pd.read_parquet(box_dir / "results/same/tables/runs.parquet")
    assert set(runs["container_digest"]) == {inspected["Digest"]}
    provenance = json.loads((box_dir / "results/same/provenance.json").read_text())
    assert provenance["container_images"][IMAGE]["digest"] == inspected["Digest"]
    summary_md = (box_dir / "results/same/summary.md").read_text()
    assert f"`{IMAGE}` (podman, {inspected['Digest']})" in summary_md

    again = snakemake(box_dir, box_campaign, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr, "an incremental rerun does nothing"


def test_doctor_inside_the_image_sees_the_hosts_energy_sources(tmp_path):
    need_image()

    def sources(command: list[str]) -> dict[str, bool]:
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
        rows = json.loads(done.stdout)
        return {r["source"]: r["available"] for r in rows if "measured" in r["source"]}

    host = sources([str(Path(sys.executable).parent / "llem"), "doctor", "--json"])
    inside = sources(
        ["podman", "run", "--rm", "--pull", "never", IMAGE, "llem", "doctor", "--json"]
    )
    assert inside == host
    assert set(host) == {"nvml (GPU, measured)", "rapl (CPU/DRAM, measured)"}
