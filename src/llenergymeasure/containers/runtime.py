"""The container runtime on this host and the images it holds (never pulled)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llenergymeasure.errors import ContainerError


@dataclass(frozen=True)
class Image:
    """A local image as the runtime reports it.

    Attributes:
        reference: The name the campaign gave.
        image_id: The runtime's id of the image (sha256 of its config).
        digest: The manifest digest (sha256:…), None where the runtime has none (docker
            gives one only for images pushed to or pulled from a registry).
    """

    reference: str
    image_id: str
    digest: str | None
    source_sha256: str | None = None


SOURCE_LABEL = "io.llenergymeasure.source-sha256"


def source_sha256(package_dir: Path | None = None) -> str:
    """SHA-256 over this package's files as a wheel ships them (*.py, data/), by path."""
    package_dir = package_dir or Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in package_dir.rglob("*")
        if p.is_file() and _shipped(p.relative_to(package_dir).parts, p.suffix)
    )
    for path in files:
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _shipped(parts: tuple[str, ...], suffix: str) -> bool:
    """Whether a wheel ships the file at `parts` (inside the package): *.py and data/."""
    return "__pycache__" not in parts and (suffix == ".py" or parts[0] == "data")


def find_runtime(runtime: str) -> str:
    """The runtime's executable.

    Raises:
        ContainerError: It is not on PATH.
    """
    path = shutil.which(runtime)
    if path is None:
        raise ContainerError(
            f"container runtime {runtime!r} not found on PATH (install it, or set "
            "containers.runtime: none to run on the host)"
        )
    return path


def inspect_image(runtime: str, reference: str) -> Image:
    """Id and digest of a local image; never pulls.

    Raises:
        ContainerError: The runtime does not have the image.
    """
    executable = find_runtime(runtime)
    done = subprocess.run(
        [executable, "image", "inspect", reference],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise ContainerError(
            f"image {reference!r} not found by {runtime} (build it: llem image build, or "
            "make images)"
        )
    data: dict[str, Any] = json.loads(done.stdout)[0]
    digest = data.get("Digest") or next(iter(data.get("RepoDigests") or []), None)
    if isinstance(digest, str) and "@" in digest:
        digest = digest.split("@", 1)[1]
    labels = data.get("Labels") or (data.get("Config") or {}).get("Labels") or {}
    return Image(
        reference=reference,
        image_id=str(data["Id"]),
        digest=digest or None,
        source_sha256=labels.get(SOURCE_LABEL),
    )


def check_source(image: Image) -> None:
    """Refuse an image built from other llenergymeasure source than the host's.

    Raises:
        ContainerError: Its source label differs (the host's run config might not even
            parse inside), or it has none (not built by `llem image-build`).
    """
    host = source_sha256()
    if image.source_sha256 != host:
        built = image.source_sha256[:12] if image.source_sha256 else "no label"
        raise ContainerError(
            f"image {image.reference!r} holds other llenergymeasure source than this host "
            f"({built} vs {host[:12]}): rebuild it (make images)"
        )
