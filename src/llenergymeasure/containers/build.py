"""Build a backend's image from its recipe in envs/, with no image registry needed for CPU.

The build context gets this project's wheel and, for the CPU variant, every dependency as a
wheel (pip on the host, which reaches the package registry), so the build installs offline.
`local_base` makes the Debian base image from Debian's archive (mmdebstrap) instead of
pulling one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from llenergymeasure import __version__
from llenergymeasure.config.loader import default_image
from llenergymeasure.containers.runtime import (
    SOURCE_LABEL,
    Image,
    find_runtime,
    inspect_image,
    source_sha256,
)
from llenergymeasure.errors import ContainerError

LOCAL_BASE = "localhost/llenergymeasure-base:bookworm"
BASE_PACKAGES = "python3,python3-venv,git,ca-certificates"
EXTRAS = {"transformers": "pytorch", "vllm": "vllm", "tensorrt": "tensorrt"}


def recipe(root: Path, backend: str, variant: str) -> Path:
    """The Containerfile of a backend's variant (`cpu` or `gpu`).

    Raises:
        ContainerError: There is no such recipe.
    """
    path = root / "envs" / f"{backend}{'-cpu' if variant == 'cpu' else ''}.Containerfile"
    if not path.is_file():
        raise ContainerError(f"{path}: no image recipe for {backend} ({variant})")
    return path


def _run(command: list[str], what: str) -> None:
    print(f"image build: {what}", file=sys.stderr)
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise ContainerError(f"{what} failed (exit {done.returncode}): {' '.join(command)}")


def fill_wheels(root: Path, context: Path, backend: str, variant: str) -> None:
    """wheels/: this project's wheel; deps/ (CPU): every dependency, at constraints.txt's pins.

    deps/ is kept between builds (pip reuses what it holds), so a rebuild after a source
    change only replaces this project's wheel, and the image only its last layer.
    """
    wheels, deps = context / "wheels", context / "deps"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    deps.mkdir(exist_ok=True)
    pip = [sys.executable, "-m", "pip", "-q"]
    _run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(root)], "this project's wheel")
    shutil.copy(root / "constraints.txt", wheels / "constraints.txt")
    if variant != "cpu":
        return
    own = next(wheels.glob("llenergymeasure-*.whl"))
    _run(
        [
            *pip,
            "wheel",
            "-w",
            str(deps),
            "--find-links",
            str(deps),
            "-c",
            str(root / "constraints.txt"),
            f"{own}[{EXTRAS[backend]}]",
        ],
        "dependency wheels (from the package registry)",
    )
    for stale in deps.glob("llenergymeasure-*.whl"):
        stale.unlink()


def local_base(runtime: str) -> str:
    """A Debian 12 base image with Python 3.11, made with mmdebstrap, unless it exists."""
    executable = find_runtime(runtime)
    try:
        inspect_image(runtime, LOCAL_BASE)
        return LOCAL_BASE
    except ContainerError:
        pass  # made below
    if shutil.which("mmdebstrap") is None:
        raise ContainerError("--local-base needs mmdebstrap (apt install mmdebstrap)")
    debstrap = subprocess.Popen(
        ["mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "bookworm", "-"],
        stdout=subprocess.PIPE,
    )
    imported = subprocess.run(
        [executable, "import", "--change", 'CMD ["/bin/bash"]', "-", LOCAL_BASE],
        stdin=debstrap.stdout,
        capture_output=True,
        check=False,
    )
    if debstrap.wait() != 0 or imported.returncode != 0:
        raise ContainerError(f"the local base image failed: {imported.stderr.decode()[-300:]}")
    return LOCAL_BASE


def build_image(
    backend: str,
    *,
    variant: str,
    runtime: str = "podman",
    use_local_base: bool = False,
    root: Path | None = None,
) -> Image:
    """Build `llenergymeasure-<backend>:<version>[-cpu]` and return its id and digest.

    Raises:
        ContainerError: A step failed (named, with its command).
    """
    root = (root or Path.cwd()).resolve()
    if not (root / "pyproject.toml").is_file():
        raise ContainerError(f"{root}: not the project root (no pyproject.toml)")
    containerfile = recipe(root, backend, variant)
    tag = default_image(backend, "cpu" if variant == "cpu" else "cuda", runtime)
    context = root / "build" / "images" / f"{backend}-{variant}"
    fill_wheels(root, context, backend, variant)
    command = [find_runtime(runtime), "build", "-f", str(containerfile), "-t", tag]
    if use_local_base:
        command += ["--build-arg", f"BASE={local_base(runtime)}"]
    command += ["--label", f"org.opencontainers.image.version={__version__}"]
    package = root / "src" / "llenergymeasure"
    command += ["--label", f"{SOURCE_LABEL}={source_sha256(package)}", str(context)]
    _run(command, f"{runtime} build {tag}")
    return inspect_image(runtime, tag)
