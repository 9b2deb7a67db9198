"""Multi-process runs: launch N ranks (torch.distributed), then aggregate their files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from llenergymeasure.config.models import ExperimentConfig
from llenergymeasure.errors import LlemError
from llenergymeasure.results.aggregate import aggregate
from llenergymeasure.results.io import write_model_atomic
from llenergymeasure.results.models import RunResult


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
    }
    if config.measurement.device == "cuda":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(world)]
        env["CUDA_VISIBLE_DEVICES"] = gpus[rank]  # the rank meters (and uses) its GPU only
    return env


def run_ranks(
    config_path: Path, config: ExperimentConfig, out_dir: Path, extra_args: list[str]
) -> RunResult:
    """Start every rank of the run, wait for all, aggregate, write result.json."""
    world = config.settings.processes
    port = _free_port()
    out_dir.mkdir(parents=True, exist_ok=True)
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
    codes = [p.wait() for p in ranks]
    if any(codes):
        raise LlemError(f"ranks exited with {codes}: see this run's log")
    files = [f"process_{rank}.json" for rank in range(world)]
    results = [RunResult.model_validate_json((out_dir / f).read_bytes()) for f in files]
    result = aggregate(results, files)
    write_model_atomic(out_dir / "result.json", result)
    return result


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
    try:
        result = measure(
            config,
            out_dir=out_dir,
            baseline_cache=baseline_cache,
            calflops_profile=calflops_profile,
            rank=rank,
            world=world,
            sync=dist.barrier,
        )
        write_model_atomic(out_dir / f"process_{rank}.json", result)
    finally:
        dist.destroy_process_group()
    return result
