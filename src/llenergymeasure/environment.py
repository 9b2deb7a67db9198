"""Provenance of a run: software versions, host, devices, git state."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

# Set by `llem run` for the run inside the container it starts (podman, docker).
RUNTIME_ENV = "LLEM_CONTAINER_RUNTIME"
IMAGE_ENV = "LLEM_CONTAINER_IMAGE"
IMAGE_ID_ENV = "LLEM_CONTAINER_IMAGE_ID"
DIGEST_ENV = "LLEM_CONTAINER_DIGEST"

PACKAGES = ("llenergymeasure", "torch", "transformers", "codecarbon", "pydantic", "numpy")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of `names` (None where not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else `platform.processor()`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_state(cwd: str | Path = ".") -> dict[str, Any]:
    """Commit and dirty flag of the git work tree at `cwd` (nulls outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def container_marker() -> str | None:
    """The runtime whose marker file this process sees (/run/.containerenv, /.dockerenv)."""
    if Path("/run/.containerenv").exists():
        return "podman"
    if Path("/.dockerenv").exists():
        return "docker"
    return None


def inside_container() -> str | None:
    """The runtime that runs this process in a campaign's image, or None on the host.

    Apptainer says so in its environment; a podman/docker run is recognised by the variables
    the host's `llem run` sets, not by marker files (a host may itself be a container).
    """
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER"):
        return "apptainer"
    if os.environ.get(RUNTIME_ENV) and container_marker():
        return os.environ[RUNTIME_ENV]
    return None


def _file_sha256(path: Path) -> str | None:
    try:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return f"sha256:{digest.hexdigest()}"


def container_record() -> dict[str, Any]:
    """Where this run executes, for its provenance: runtime, image, id, digest.

    On the host `runtime` is "none" and the image fields null. Under podman/docker the values
    come from the `llem run` that started the container (it inspected the image); under
    apptainer the image is the SIF file, its digest the file's sha256.
    """
    runtime = inside_container()
    if runtime == "apptainer":
        sif = os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER")
        name = os.environ.get("APPTAINER_NAME") or os.environ.get("SINGULARITY_NAME") or sif
        path = Path(sif or "")
        image = {
            "image": name,
            "image_id": None,
            "digest": _file_sha256(path) if path.is_file() else None,
        }
    elif runtime:  # the values of the `llem run` that started this container
        image = {
            "image": os.environ.get(IMAGE_ENV),
            "image_id": os.environ.get(IMAGE_ID_ENV),
            "digest": os.environ.get(DIGEST_ENV) or None,
        }
    else:
        image = {"image": None, "image_id": None, "digest": None}
    # `marker`: the runtime marker this process sees; on the host, where the host itself is
    # a container (a CI job, a dev container), "none" beside a marker says so
    return {"runtime": runtime or "none", **image, "marker": container_marker()}


def collect(device: str) -> dict[str, Any]:
    """Everything a reader needs to know about where a run was measured."""
    env: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_prefix": sys.prefix,  # the environment (venv) that ran it
        "cpu_model": cpu_model(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "ram_total_gb": round(psutil.virtual_memory().total / 2**30, 2),
        "packages": package_versions(),
        "git": git_state(),
        "device": device,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "container": container_record(),
    }
    if device == "cuda":
        import torch

        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        env["cuda"] = torch.version.cuda
    return env
