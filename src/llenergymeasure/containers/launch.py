"""`llem run` inside the run's image: the runtime command, the mounts, the GPUs, the outcome.

The host's `llem run` checks the runtime and the image (never pulling), starts the same
`llem run` command inside the image with the working directory mounted at the same path, and
records a failure itself only when the container could not start or died without writing a
result. Everything measured is measured inside.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from llenergymeasure.config.loader import gpus_needed
from llenergymeasure.config.models import ContainerSpec, ExperimentConfig
from llenergymeasure.containers.runtime import Image, check_source, find_runtime, inspect_image
from llenergymeasure.devices.gpu_control import restore_dir
from llenergymeasure.environment import DIGEST_ENV, IMAGE_ENV, IMAGE_ID_ENV, RUNTIME_ENV
from llenergymeasure.errors import ContainerError
from llenergymeasure.measure.failure import RunInterrupted, failure_record, write_failure
from llenergymeasure.measure.progress import Progress
from llenergymeasure.measure.slurm_time import SLURM_END_TIME_ENV, slurm_end_time_s
from llenergymeasure.results.models import FailureClass

# Passed into the container: the run's own knobs, SLURM's job, the hub and thread settings.
ENV_PREFIXES = ("LLEM_", "SLURM_", "HF_", "TRANSFORMERS_", "VLLM_", "CODECARBON_", "NCCL_")
ENV_NAMES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TZ", "PYTHONHASHSEED")
CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
# podman/docker: 125 the runtime failed, 126 the command cannot run, 127 it is not there.
START_FAILURES = {125, 126, 127}


def host_gpus(run: ExperimentConfig) -> list[str]:
    """The host GPUs (indices or UUIDs) that are this run's: CUDA_VISIBLE_DEVICES, else 0..n-1."""
    needed = gpus_needed(run)
    if needed == 0:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else []
    ids = ids or [str(i) for i in range(needed)]
    if len(ids) < needed:
        raise ContainerError(
            f"the run needs {needed} GPUs, CUDA_VISIBLE_DEVICES lists {len(ids)} ({visible})"
        )
    return ids[:needed]


def gpu_args(runtime: str, gpus: Sequence[str]) -> list[str]:
    """Arguments that pass exactly these GPUs into the container (CDI for podman)."""
    if not gpus:
        return []
    if runtime == "docker":
        return ["--gpus", f'"device={",".join(gpus)}"']
    if not any((d / name).exists() for d in CDI_DIRS for name in ("nvidia.yaml", "nvidia.json")):
        raise ContainerError(
            "no CDI specification of the NVIDIA GPUs for podman (generate it: nvidia-ctk cdi "
            "generate --output=/etc/cdi/nvidia.yaml)"
        )
    return [arg for gpu in gpus for arg in ("--device", f"nvidia.com/gpu={gpu}")]


def mounts(run: ExperimentConfig, paths: Sequence[Path]) -> list[tuple[Path, Path, str]]:
    """(Host directory, path inside, mode) of every mount the run needs.

    The working directory (results, prepared models, baseline cache, logs under it), every
    path argument outside it, the run's model and prompt files, the hub cache, the GPU
    restore directory, and the RAPL counters read-only. Each is mounted at the path the run
    names it by, and also at its real path where a symlink leads elsewhere, so links inside
    a mounted directory resolve too.
    """
    wanted: list[tuple[Path, str]] = [(Path.cwd(), "rw")]
    for path in paths:
        wanted.append((path if path.is_dir() else path.parent, "rw"))
    if run.model.source != "hub":
        wanted.append((Path(run.model.path), "ro"))
    else:
        hub = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
        if hub.is_dir():
            wanted.append((hub, "rw"))
    if run.prompts.path:
        wanted.append((Path(run.prompts.path).parent, "ro"))
    restore = restore_dir()
    restore.mkdir(parents=True, exist_ok=True)
    wanted.append((restore, "rw"))
    powercap = Path("/sys/class/powercap")
    if powercap.is_dir():
        wanted.append((powercap, "ro"))
    chosen: list[tuple[Path, Path, str]] = []
    for path, mode in wanted:
        given, real = Path(os.path.abspath(path)), path.resolve()
        for target in dict.fromkeys((given, real)):
            covered = any(  # inside a mount, and not by a link out of it
                target.is_relative_to(inside)
                and (host / target.relative_to(inside)).resolve().is_relative_to(host)
                for host, inside, _ in chosen
            )
            if not covered:
                chosen.append((real, target, mode))
    return chosen


def forwarded_env(image: Image, spec: ContainerSpec) -> dict[str, str]:
    """The environment the run inside sees of the host's, plus what it records of its image."""
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES) or k in ENV_NAMES}
    env.update(
        {
            RUNTIME_ENV: spec.runtime,
            IMAGE_ENV: spec.image,
            IMAGE_ID_ENV: image.image_id,
            DIGEST_ENV: image.digest or "",
            "LLEM_RESTORE_DIR": str(restore_dir().resolve()),
        }
    )
    end_s = slurm_end_time_s(time.time())  # squeue is the host's: the run inside gets the answer
    if end_s is not None:
        env[SLURM_END_TIME_ENV] = f"{end_s:.0f}"
    return env


def container_command(
    run: ExperimentConfig,
    spec: ContainerSpec,
    image: Image,
    *,
    inner: Sequence[str],
    paths: Sequence[Path],
    name: str,
) -> list[str]:
    """The full `podman run`/`docker run` command line of one run."""
    command = [find_runtime(spec.runtime), "run", "--rm", "--pull", "never", "--name", name]
    for host, inside, mode in mounts(run, paths):
        command += ["--volume", f"{host}:{inside}:{mode}"]
    command += ["--workdir", str(Path.cwd().resolve())]
    for key, value in sorted(forwarded_env(image, spec).items()):
        command += ["--env", f"{key}={value}"]
    gpus = host_gpus(run)
    command += gpu_args(spec.runtime, gpus)
    if gpus:
        command.append("--ipc=host")  # NCCL and the engines' worker processes share memory
    if spec.runtime == "docker":  # rootful docker: the results stay the invoking user's
        command += ["--user", f"{os.getuid()}:{os.getgid()}", "--env", "HOME=/tmp"]
    command += [*spec.run_args, image.reference, *inner]
    return command


def _forward_signals(child: subprocess.Popen[str]) -> None:
    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)  # the runtime proxies it to the run inside

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)


def start(
    run: ExperimentConfig, inner: Sequence[str], paths: Sequence[Path], name: str
) -> tuple[int, str]:
    """Run `inner` in the run's image, echoing its output; (exit code, last stderr lines).

    Raises:
        ContainerError: Runtime or image missing, or the GPUs cannot be passed through.
    """
    spec = run.container
    if spec is None or spec.runtime == "apptainer":
        raise ContainerError("start() is for podman/docker runs; apptainer is Snakemake's")
    image = inspect_image(spec.runtime, spec.image)
    check_source(image)
    command = container_command(run, spec, image, inner=inner, paths=paths, name=name)
    print(f"container: {spec.runtime} {spec.image} ({image.image_id[:12]})", file=sys.stderr)
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    _forward_signals(child)
    tail: collections.deque[str] = collections.deque(maxlen=5)
    assert child.stderr is not None
    for line in child.stderr:
        sys.stderr.write(line)
        if line.strip():
            tail.append(line.strip())
    return child.wait(), " / ".join(tail)


def classify_exit(code: int, tail: str) -> tuple[FailureClass, str]:
    """(failure class, message) of a container that ended without writing a result."""
    if code in START_FAILURES:
        return "container", f"the container did not start (exit {code}): {tail}"[:500]
    if code in (137, -9):
        return "killed", f"the container was killed (SIGKILL, exit {code}: out of memory?)"
    return "internal", f"the run inside the container exited {code} without a result: {tail}"[:500]


def run_in_container(
    run: ExperimentConfig, inner: Sequence[str], paths: Sequence[Path], out: Path, log: Path | None
) -> int:
    """`llem run` of a podman/docker run: the same command inside its image.

    Returns the exit code for the host's `llem run`: 0 once a result or a failure record is
    written (by the run inside, or here when the container never started or died without
    one); 143 when the run inside was interrupted and recorded nothing (outside SLURM, or a
    cancelled SLURM job: redone).
    """
    from llenergymeasure.config.loader import run_id

    progress = Progress()
    progress.phase = "container"
    out.mkdir(parents=True, exist_ok=True)
    result = out / "result.json"
    started_s = time.time()
    try:
        code, tail = start(run, inner, paths, f"llem-{run_id(run)}-{os.getpid()}")
    except ContainerError as e:
        return record_failure(run, e, out, log, progress)
    if result.exists() and result.stat().st_mtime >= started_s - 1:  # written by this run
        return 0
    if code == 143:  # SIGTERM, and the run inside recorded nothing: not a timeout, redone
        return 143
    failure_class, message = classify_exit(code, tail)
    return record_failure(run, RunInterrupted(failure_class, message), out, log, progress)


def record_failure(
    run: ExperimentConfig,
    error: Exception,
    out: Path,
    log: Path | None,
    progress: Progress | None = None,
) -> int:
    """Write the failure record of a run whose container did not run it; exit code 0."""
    if progress is None:
        progress = Progress()
        progress.phase = "container"
    record = failure_record(run, progress, error, log)
    write_failure(out, record)
    print(
        f"{record.run_id}: failed ({record.failure_class}) in {record.phase}: "
        f"{record.message}; recorded in {out / 'result.json'}",
        file=sys.stderr,
    )
    return 0
