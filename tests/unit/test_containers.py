"""Containers in the plan and in the runtime command: ids, images, mounts, GPUs, outcomes."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from llenergymeasure.config.loader import container_lines, plan_campaign
from llenergymeasure.containers.launch import classify_exit, container_command, host_gpus
from llenergymeasure.containers.runtime import Image, check_source, source_sha256
from llenergymeasure.errors import ConfigError, ContainerError

IMAGE = Image(reference="llenergymeasure-transformers:0.1.0", image_id="sha256:abc", digest=None)


@pytest.fixture
def fake_runtime(tmp_path, monkeypatch):
    """An executable named podman and docker on PATH: the command builder only looks it up."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("podman", "docker"):
        path = bin_dir / name
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("LLEM_RESTORE_DIR", str(tmp_path / "restore"))
    return bin_dir


def plan(campaign: dict, **containers):
    return plan_campaign({**campaign, "containers": containers}, "c.yaml")


def test_containers_do_not_change_run_ids(campaign):
    host = plan_campaign(campaign, "c.yaml")
    podman = plan(campaign, runtime="podman")
    assert list(host.runs) == list(podman.runs)
    assert all(run.container is None for run in host.runs.values())
    specs = {run.container for run in podman.runs.values()}
    assert {(s.runtime, s.image) for s in specs} == {
        ("podman", "llenergymeasure-transformers:0.1.0-cpu")
    }


def test_images_per_backend_and_the_plan_names_them(campaign):
    chosen = plan(
        {**campaign, "backends": ["transformers", "vllm"]},
        runtime="docker",
        images={"vllm": "registry.example/llem-vllm:1"},
    )
    lines = container_lines(chosen)
    cpu_image = "llenergymeasure-transformers:0.1.0-cpu"
    assert f"container (docker): transformers runs (2) in {cpu_image}" in lines
    assert "container (docker): vllm runs (2) in registry.example/llem-vllm:1" in lines


def test_apptainer_needs_a_sif_or_a_uri(campaign):
    with pytest.raises(ConfigError, match=r"c.yaml: containers: .*images.transformers.*\.sif"):
        plan(campaign, runtime="apptainer", images={"transformers": "llem:1"})
    sif = plan(campaign, runtime="apptainer")
    assert {run.container.image for run in sif.runs.values()} == {
        "images/llenergymeasure-transformers_0.1.0-cpu.sif"
    }


def test_unknown_runtime_is_one_line(campaign):
    with pytest.raises(ConfigError, match=r"containers.runtime: 'singularity' is not allowed"):
        plan(campaign, runtime="singularity")


def test_command_mounts_workdir_restore_dir_and_passes_only_run_env(
    campaign, fake_runtime, tmp_path, monkeypatch
):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("SLURM_JOB_ID", "")  # present but empty: no squeue asked
    monkeypatch.setenv("LLEM_MODELS_DIR", "/models")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    run = next(iter(plan(campaign, runtime="podman", run_args=["--shm-size=1g"]).runs.values()))
    outside = tmp_path / "elsewhere-log" / "run.log"
    command = container_command(
        run, run.container, IMAGE, inner=["llem", "run", "x"], paths=[outside], name="n"
    )
    text = " ".join(command)
    assert command[:2] == [str(fake_runtime / "podman"), "run"]
    assert "--pull never" in text, "never pulls: the image must be built or loaded"
    assert f"{work}:{work}:rw" in text
    assert f"{outside.parent}:{outside.parent}:rw" in text, "a path outside the workdir"
    assert f"{tmp_path / 'restore'}:{tmp_path / 'restore'}:rw" in text
    assert f"--workdir {work}" in text
    assert "LLEM_MODELS_DIR=/models" in text
    assert "LLEM_CONTAINER_IMAGE_ID=sha256:abc" in text
    assert "CUDA_VISIBLE_DEVICES" not in text, "a CPU run gets no GPU and no GPU list"
    assert "PATH=" not in text.replace("LLEM_", ""), "the image's own PATH"
    assert command[-5:] == ["--shm-size=1g", IMAGE.reference, "llem", "run", "x"]


def cuda_run(campaign, runtime, **settings):
    data = {**campaign, "measurement": {**campaign["measurement"], "device": "cuda"}}
    data["settings"] = {**data["settings"], **settings}
    return next(iter(plan(data, runtime=runtime).runs.values()))


def test_podman_gets_the_runs_own_gpus_by_cdi(campaign, fake_runtime, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaa,GPU-bbb,GPU-ccc")
    run = cuda_run(campaign, "podman", processes=2)
    assert host_gpus(run) == ["GPU-aaa", "GPU-bbb"]
    if not any(Path(d, "nvidia.yaml").exists() for d in ("/etc/cdi", "/var/run/cdi")):
        with pytest.raises(ContainerError, match="no CDI specification .* nvidia-ctk cdi"):
            container_command(run, run.container, IMAGE, inner=["llem"], paths=[], name="n")


def test_docker_gets_the_runs_own_gpus(campaign, fake_runtime, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    run = cuda_run(campaign, "docker")
    command = container_command(run, run.container, IMAGE, inner=["llem"], paths=[], name="n")
    assert command[command.index("--gpus") + 1] == '"device=0"'
    assert "--ipc=host" in command
    assert "--user" in command, "rootful docker writes results as the invoking user"


def test_too_few_visible_gpus_is_a_container_error(campaign, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    run = cuda_run(campaign, "docker", processes=2)
    with pytest.raises(ContainerError, match="needs 2 GPUs, CUDA_VISIBLE_DEVICES lists 1"):
        host_gpus(run)


def test_exit_codes_say_what_happened():
    assert classify_exit(125, "Error: unresolvable CDI devices")[0] == "container"
    assert "unresolvable CDI" in classify_exit(125, "Error: unresolvable CDI devices")[1]
    assert classify_exit(137, "")[0] == "killed"
    assert classify_exit(1, "boom")[0] == "internal"


def test_image_from_other_source_is_refused(tmp_path):
    package = tmp_path / "data" / "pkg"  # under a folder named data, as on many clusters
    (package / "data").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "data" / "p.jsonl").write_text("{}\n")
    before = source_sha256(package)
    # By path, in path order: each file's path and bytes, NUL-terminated.
    expected = hashlib.sha256(b"a.py\0x = 1\n\0data/p.jsonl\0{}\n\0").hexdigest()
    assert before == expected
    (package / "a.py").write_text("x = 2\n")
    changed = source_sha256(package)
    assert changed != before
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "a.pyc").write_bytes(b"\0")
    (package / "notes.txt").write_text("not shipped\n")
    assert source_sha256(package) == changed, "caches and files a wheel leaves out do not count"
    (package / "a.py").write_text("x = 1\n")
    assert source_sha256(package) == before, "the same source, the same hash"
    current = Image(reference="i", image_id="x", digest=None, source_sha256=source_sha256())
    check_source(current)
    with pytest.raises(ContainerError, match="other llenergymeasure source .* rebuild it"):
        check_source(Image(reference="i", image_id="x", digest=None, source_sha256=before))
    with pytest.raises(ContainerError, match="no label"):
        check_source(Image(reference="i", image_id="x", digest=None))


def test_a_path_reached_through_a_symlink_is_mounted_where_the_run_looks(
    campaign, fake_runtime, tmp_path, monkeypatch
):
    real = tmp_path / "real-models"
    real.mkdir()
    link = tmp_path / "work" / "models"
    link.parent.mkdir()
    link.symlink_to(real)
    monkeypatch.chdir(tmp_path / "work")
    run = next(iter(plan(campaign, runtime="podman").runs.values()))
    command = container_command(
        run, run.container, IMAGE, inner=["llem"], paths=[link / "cfg.json"], name="n"
    )
    volumes = {command[i + 1] for i, arg in enumerate(command) if arg == "--volume"}
    assert f"{real}:{link}:rw" in volumes, "the link's own path, inside the workdir mount"
    assert f"{real}:{real}:rw" in volumes, "and the real path the link points to"
