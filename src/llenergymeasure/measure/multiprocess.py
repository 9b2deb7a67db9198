"""Multi-process runs: launch N ranks (torch.distributed), then aggregate their files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from llenergymeasure.config.models import ExperimentConfig
from llenergymeasure.devices.base import DeviceSample
from llenergymeasure.measure.aggregate import aggregate
from llenergymeasure.measure.failure import RankFailed, classify, one_line
from llenergymeasure.measure.gpu_processes import RUN_PID_ENV
from llenergymeasure.measure.progress import Progress
from llenergymeasure.measure.protocol import OWN_GPUS_ENV
from llenergymeasure.results.io import write_model_atomic, write_text_atomic
from llenergymeasure.results.models import RunResult
from llenergymeasure.results.timeseries import read_power
from llenergymeasure.results.validity import with_verdict

KILL_AFTER_S = 5.0  # after SIGTERM, a rank that still runs is killed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_env(config: ExperimentConfig, rank: int, world: int, port: int) -> dict[str, str]:
    """Environment of one rank: torch.distributed rendezvous and, on CUDA, its own GPU."""
    env = {
        **os.environ,
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        RUN_PID_ENV: os.environ.get(RUN_PID_ENV, str(os.getpid())),  # siblings are the run's
    }
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if config.measurement.device == "cuda":
        gpus = visible.split(",") if visible else [str(i) for i in range(world)]
        env["CUDA_VISIBLE_DEVICES"] = gpus[rank]  # the rank meters (and uses) its GPU only
        env[OWN_GPUS_ENV] = "1"
    elif config.measurement.meter == "nvml" and visible and len(visible.split(",")) >= world:
        # A CPU run metering GPUs: each GPU is metered (and idle-baselined) by one rank.
        env["CUDA_VISIBLE_DEVICES"] = ",".join(visible.split(",")[rank::world])
        env[OWN_GPUS_ENV] = "1"
    return env


def run_ranks(
    config_path: Path, config: ExperimentConfig, out_dir: Path, extra_args: list[str]
) -> RunResult:
    """Start every rank of the run, wait for all, aggregate, write result.json."""
    world = config.settings.processes
    port = _free_port()
    out_dir.mkdir(parents=True, exist_ok=True)
    stale_files = ("process_*.json", "process_*.error", "process_*.timeseries.parquet")
    for stale in [p for pattern in stale_files for p in out_dir.glob(pattern)]:
        stale.unlink()  # a previous attempt's ranks must not be aggregated
    ranks = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llenergymeasure",
                "run-rank",
                str(config_path),
                "--out",
                str(out_dir),
                "--rank",
                str(rank),
                *extra_args,
            ],
            env=rank_env(config, rank, world, port),
        )
        for rank in range(world)
    ]
    try:
        _wait_all(ranks, out_dir, config.measurement.rank_grace_s)
    except BaseException:  # our own failure or a time bound: no rank outlives the run
        _stop([p for p in ranks if p.poll() is None])
        raise
    files = [f"process_{rank}.json" for rank in range(world)]
    results = [RunResult.model_validate_json((out_dir / f).read_bytes()) for f in files]
    result = with_verdict(aggregate(results, files, rank_samples(out_dir, results)))
    write_model_atomic(out_dir / "result.json", result)
    return result


def rank_samples(out_dir: Path, results: list[RunResult]) -> list[DeviceSample]:
    """Every rank's power samples, from the timeline file its result names (if it wrote one)."""
    samples = []
    for r in results:
        name = r.timeseries.path if r.timeseries is not None else None
        if name is None or not (out_dir / name).is_file():
            continue
        samples += [
            DeviceSample(device=device, t_s=t_s, power_w=power_w)
            for device, t_s, power_w in read_power(out_dir / name)
        ]
    return samples


def _wait_all(ranks: list[subprocess.Popen[bytes]], out_dir: Path, grace_s: float) -> None:
    """Wait for every rank; when one fails, stop the others within `grace_s` and raise.

    Raises:
        RankFailed: With the first failed rank's own error, class and phase.
    """
    failed: list[int] = []
    deadline_s: float | None = None
    while True:
        codes = [p.poll() for p in ranks]
        failed += [i for i, c in enumerate(codes) if c not in (None, 0) and i not in failed]
        running = [p for p in ranks if p.poll() is None]
        if not running:
            break
        if failed and deadline_s is None:
            deadline_s = time.monotonic() + grace_s
        if deadline_s is not None and time.monotonic() > deadline_s:
            _stop(running)
            break
        time.sleep(0.1)
    if failed:
        rank = failed[0]
        others = ", ".join(str(i) for i in range(len(ranks)) if i != rank)
        error = _rank_error(out_dir, rank, ranks[rank].returncode)
        raise RankFailed(
            error["failure_class"],
            f"{error['message']}; the other ranks ({others}) were stopped",
            error["phase"],
        )


def _stop(running: list[subprocess.Popen[bytes]]) -> None:
    for p in running:
        p.terminate()
    end_s = time.monotonic() + KILL_AFTER_S
    for p in running:
        try:
            p.wait(timeout=max(0.0, end_s - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _rank_error(out_dir: Path, rank: int, code: int | None) -> dict[str, Any]:
    """The rank's own error record, or what its exit status says."""
    path = out_dir / f"process_{rank}.error"
    if path.exists():
        error = json.loads(path.read_text())
        return {**error, "message": f"rank {rank} failed: {error['message']}"}
    if code is not None and code < 0:
        message = f"rank {rank} was killed by {signal.Signals(-code).name}"
        return {"failure_class": "killed", "message": message, "phase": "ranks"}
    message = f"rank {rank} exited with status {code}"
    return {"failure_class": "internal", "message": message, "phase": "ranks"}


def run_rank(
    config: ExperimentConfig,
    out_dir: Path,
    baseline_cache: Path | None,
    calflops_profile: Path | None,
) -> RunResult:
    """One rank: join the process group, measure its share, write process_<rank>.json."""
    import torch.distributed as dist

    from llenergymeasure.measure.session import measure

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("nccl" if config.measurement.device == "cuda" else "gloo")
    progress = Progress()
    try:
        result = measure(
            config,
            out_dir=out_dir,
            baseline_cache=baseline_cache,
            calflops_profile=calflops_profile,
            rank=rank,
            world=world,
            sync=dist.barrier,
            progress=progress,
        )
        write_model_atomic(out_dir / f"process_{rank}.json", result)
    except Exception as e:
        # The launcher reports the first failed rank's own error, not only its exit status.
        error = {"failure_class": classify(e), "message": one_line(e), "phase": progress.phase}
        write_text_atomic(out_dir / f"process_{rank}.error", json.dumps(error) + "\n")
        traceback.print_exc()
        raise
    finally:
        dist.destroy_process_group()
    return result
