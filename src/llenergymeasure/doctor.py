"""What each energy source can measure on this host (for `llem doctor`)."""

from __future__ import annotations

from llenergymeasure.errors import MeterError


def probe_all() -> list[tuple[str, bool, str]]:
    """(source, available, devices or the reason it is not) for NVML, RAPL and CodeCarbon."""
    rows: list[tuple[str, bool, str]] = []
    try:
        from llenergymeasure.devices.nvml import NvmlSource

        nvml = NvmlSource()
        details = []
        for d in nvml.devices():
            how = "energy counter" if d.has_counter else "power polling only"
            power = f"; power polled: {d.power_field}" if d.power_field else "; no power reading"
            details.append(
                f"{d.device} {d.name}: {how}{power}" + "".join(f"; {n}" for n in d.notes)
            )
        nvml.close()
        rows.append(("nvml (GPU, measured)", True, "\n".join(details)))
    except MeterError as e:
        rows.append(("nvml (GPU, measured)", False, str(e)))
    try:
        from llenergymeasure.devices.rapl import RaplSource

        rapl = RaplSource()
        rows.append(
            ("rapl (CPU/DRAM, measured)", True, ", ".join(d.device for d in rapl.devices()))
        )
    except MeterError as e:
        rows.append(("rapl (CPU/DRAM, measured)", False, str(e)))
    try:
        import codecarbon

        rows.append(
            ("codecarbon (estimate)", True, f"codecarbon {codecarbon.__version__}, offline mode")
        )
    except ImportError as e:
        rows.append(("codecarbon (estimate)", False, str(e)))
    try:
        from vllm.platforms import current_platform

        from llenergymeasure.backends.vllm import vllm_version

        rows.append(
            ("vllm backend", True, f"vllm {vllm_version()} on {current_platform.device_type}")
        )
    except ImportError as e:
        rows.append(
            (
                "vllm backend",
                False,
                f"vllm is not importable here ({e}); a campaign's python_envs can name the "
                "environment that has it (CPU hosts: make setup builds .venv-vllm)",
            )
        )
    rows.append(_tensorrt_row())
    rows.append(_container_row())
    try:
        import torch

        cuda = torch.cuda.is_available()
        rows.append(("torch CUDA", cuda, torch.cuda.get_device_name(0) if cuda else "no CUDA GPU"))
    except ImportError:
        rows.append(("torch CUDA", False, "torch is not installed"))
    return rows


def _tensorrt_row() -> tuple[str, bool, str]:
    """Whether TensorRT-LLM is installed (found, not imported: its import takes seconds)."""
    from llenergymeasure.backends.tensorrt import is_tensorrt_available, tensorrt_version

    if not is_tensorrt_available():
        return (
            "tensorrt backend",
            False,
            "tensorrt_llm is not installed (NVIDIA's index or its release container)",
        )
    try:
        found = f"tensorrt_llm {tensorrt_version()}"
    except Exception as e:  # a broken install fails on import
        return ("tensorrt backend", False, f"tensorrt_llm is not importable: {e}")
    return (
        "tensorrt backend",
        True,
        f"{found}; this backend has not been run on a GPU yet (tested with a stand-in only)",
    )


def _container_row() -> tuple[str, bool, str]:
    """Where this process runs (host or a campaign's image), and the runtimes found here."""
    import shutil

    from llenergymeasure.environment import container_record

    record = container_record()
    if record["runtime"] != "none":
        return ("container", True, f"inside {record['image']} ({record['runtime']})")
    found = [name for name in ("podman", "docker", "apptainer") if shutil.which(name)]
    where = "on the host"
    if record["marker"]:
        where += f" (itself a {record['marker']} container)"
    runtimes = ", ".join(found) if found else "none found (containers.runtime: none only)"
    return ("container", bool(found), f"{where}; runtimes: {runtimes}")
