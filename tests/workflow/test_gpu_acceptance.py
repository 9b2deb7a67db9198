"""The prepared GPU acceptance run (bench/gpu_acceptance.sh): it parses, its campaign plans,
and its verdict reads result records as `llem run` writes them. It cannot run here (no GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llenergymeasure.config import load_campaign
from llenergymeasure.config.loader import gpus_needed
from tests.fakes.nvml import FakeDevice, FakeScenario
from tests.workflow.test_snakemake import planned_jobs, snakemake

pytest_plugins = ["tests.fakes.nvml.fixtures"]

REPO = Path(__file__).parents[2]
SCRIPT = REPO / "bench" / "gpu_acceptance.sh"
CAMPAIGN = REPO / "bench" / "gpu_acceptance.yaml"
sys.path.insert(0, str(REPO / "bench"))
import gpu_acceptance  # noqa: E402


def test_the_script_parses():
    result = subprocess.run(
        ["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_campaign_has_one_short_nvml_run_per_backend():
    runs = list(load_campaign(CAMPAIGN).runs.values())
    assert sorted(r.backend for r in runs) == ["tensorrt", "transformers", "vllm"]
    for run in runs:
        assert run.measurement.device == "cuda" and run.measurement.meter == "nvml"
        assert run.model.source == "embedded", "the GPU machine reaches no model hub"
        assert run.measurement.max_run_s is not None and run.measurement.max_run_s <= 180
        assert gpus_needed(run) == 1


@pytest.mark.slow
def test_the_campaign_plans_with_snakemake(tmp_path):
    result = snakemake(tmp_path, CAMPAIGN, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_jobs(result.stdout)["measure"] == 3


def test_probe_says_why_a_backend_cannot_run_here():
    assert "not importable" in gpu_acceptance.probe("tensorrt")
    assert gpu_acceptance.probe("nothing") == "unknown backend 'nothing'"


def succeeded(backend: str, tokens: list[int]) -> dict:
    return {
        "status": "succeeded",
        "energy": {
            "method": "nvml",
            "confidence": "measured",
            "energy_j": 12.5,
            "per_device": [{"method": "nvml_counter"}],
        },
        "tokens": {"output_tokens": sum(tokens)},
        "latency": {"ttft_s": {"median": 0.0123}},
        "throughput": {"output_tokens_per_s": 800.0},
        "timing": {"model_load_s": 31.0, "window_s": 5.2},
        "requests": [
            {"index": i, "pass_index": 0, "output_tokens": n} for i, n in enumerate(tokens)
        ],
    }


def test_verdict_per_backend(tmp_path, capsys):
    (tmp_path / "transformers").mkdir()
    (tmp_path / "transformers" / "result.json").write_text(
        json.dumps(succeeded("transformers", [32, 7, 32]))
    )
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "result.json").write_text(json.dumps(succeeded("vllm", [32, 9, 32])))
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "skipped.txt").write_text("not importable")
    assert gpu_acceptance.verdict(tmp_path) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("transformers PASS energy nvml/measured (nvml_counter)")
    assert "energy_j=12.50 tokens=71 ttft_p50=12.3 ms" in out[0]
    assert out[2] == "tensorrt     SKIP not importable"
    assert "output tokens equal to transformers' in 2 of 3 prompts" in out[3]
    rows = json.loads((tmp_path / "verdict.json").read_text())
    assert [r["verdict"] for r in rows] == ["PASS", "PASS", "SKIP"]

    (tmp_path / "vllm" / "result.json").write_text(
        json.dumps(
            {
                "status": "failed",
                "failure_class": "out_of_memory",
                "phase": "load",
                "message": "CUDA out of memory",
            }
        )
    )
    estimated = succeeded("transformers", [4])
    estimated["energy"].update(method="codecarbon", confidence="estimated")
    (tmp_path / "transformers" / "result.json").write_text(json.dumps(estimated))
    assert gpu_acceptance.verdict(tmp_path) == 1
    out = capsys.readouterr().out
    assert "vllm         FAIL out_of_memory in load: CUDA out of memory" in out
    assert "[energy from codecarbon/estimated, not nvml/measured]" in out


@pytest.mark.slow
def test_the_script_end_to_end_on_a_fake_gpu(tmp_path, embedded_model, fake_nvml_env):
    """The whole script, with the fake NVML library and the stand-in tensorrt_llm: doctor,
    probe (transformers skipped: CPU torch), resolve, `llem run`, tables, verdict."""
    env = fake_nvml_env(FakeScenario(devices=[FakeDevice(name="NVIDIA H200")]))
    env["PYTHONPATH"] = str(REPO / "tests" / "fakes")
    env["PYTHON"] = sys.executable
    env["LLEM_ACCEPT_BACKENDS"] = "transformers tensorrt"
    out = tmp_path / "acceptance"
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    verdict = (out / "verdict.txt").read_text().splitlines()
    assert verdict[0].startswith("transformers SKIP torch") and "no CUDA GPU" in verdict[0]
    assert verdict[1].startswith("tensorrt     PASS energy nvml/measured (nvml_counter)")
    assert "tensorrt backend" in (out / "doctor.txt").read_text()
    assert (out / "tensorrt" / "result.json").exists() and (
        out / "tables" / "runs.parquet"
    ).exists()
    assert "== verdict" in (out / "acceptance.log").read_text()


def test_make_gpu_check_skips_here_in_seconds_with_the_reason(tmp_path):
    from tests.gpu.probe import gpu_reason

    reason = gpu_reason()
    if reason is None:
        pytest.skip("this host has a GPU: make gpu-check runs for real here")
    out = tmp_path / "check"
    done = subprocess.run(
        ["bash", str(REPO / "tests/gpu/check.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**__import__("os").environ, "PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (out / "summary.txt").read_text()
    assert f"skipped: {reason}" in summary
    assert "no NVIDIA GPU" in summary
