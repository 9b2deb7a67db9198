"""Real snakemake on small campaigns of the embedded model, in a temporary directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from llenergymeasure.config import load_campaign

REPO = Path(__file__).parents[2]
pytestmark = pytest.mark.slow


def snakemake(
    workdir: Path, campaign: Path, *args: str, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Real snakemake on `campaign` in `workdir`; `path`: its PATH (default: this venv first)."""
    env = {**os.environ, "PATH": path or f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "workflow" / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(campaign),
            "--cores",
            "2",
            "--resources",
            "device_slot=1",
            "--keep-going",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def write_campaign(path: Path, **overrides) -> Path:
    data = {
        "name": "wf",
        "models": ["smollm2-135m"],
        "settings": {"max_new_tokens": 4, "num_prompts": 2, "threads": 1},
        "grid": {"batch_size": [1, 2]},
        "measurement": {"meter": "codecarbon", "warmup_batches": 0, "baseline_s": 2},
        # CodeCarbon's estimate and sub-second windows: recorded, not counted (see the test)
        "analysis": {"validity": {"waive": ["energy_estimated", "window_short"]}},
        **overrides,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def planned_jobs(output: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", output, re.MULTILINE)}


def check_verdicts(runs) -> None:
    """Judged: an estimate is a reason of its own, waived here, so the rest decides validity;
    every estimate carries CodeCarbon's stated budget."""
    assert runs["valid"].all(), runs["invalid_detail"].tolist()
    assert all("energy_estimated" in list(w) for w in runs["waived_reasons"])
    assert (runs["energy_uncertainty_j"] == 0.5 * runs["energy_j"]).all()
    assert runs["energy_uncertainty_parts"].str.startswith("estimate_error=").all()


def test_campaign_runs_then_reruns_incrementally(tmp_path, embedded_model):
    campaign = write_campaign(tmp_path / "campaign.yaml")
    plan = snakemake(tmp_path, campaign, "-n")
    assert plan.returncode == 0, plan.stderr
    assert planned_jobs(plan.stdout)["measure"] == 2

    done = snakemake(tmp_path, campaign)
    assert done.returncode == 0, done.stderr
    runs = pd.read_parquet(tmp_path / "results/wf/tables/runs.parquet")
    assert sorted(runs["batch_size"]) == [1, 2]
    assert (runs["output_tokens"] > 0).all()
    assert (runs["energy_method"] == "codecarbon").all()
    assert (runs["energy_confidence"] == "estimated").all(), "no counter here: an estimate"
    assert (runs["energy_per_output_token_j"] > 0).all()
    check_verdicts(runs)
    # A cooldown record in every result: null with its reason, since CodeCarbon has no telemetry
    assert runs["cooldown_s"].isna().all()
    assert runs["cooldown_null_reason"].str.contains("gives no device telemetry").all()
    for path in (tmp_path / "results/wf/runs").glob("*/result.json"):
        cooldown = json.loads(path.read_text())["timing"]["cooldown"]
        assert cooldown["cooldown_s"] is None and cooldown["null_reason"]
    latency = pd.read_parquet(tmp_path / "results/wf/tables/latency.parquet")
    assert len(latency) == 4 and latency["ttft_s"].notna().all()

    out = tmp_path / "results/wf"
    summary = pd.read_parquet(out / "tables/summary.parquet")
    assert sorted(summary["batch_size"]) == [1, 2] and (summary["repeats"] == 1).all()
    assert pd.read_parquet(out / "tables/timeseries.parquet").empty  # codecarbon: no samples
    for name in (
        "energy_vs_batch",
        "throughput_vs_energy",
        "latency_distributions",
        "power_timeline",
        "phase_energy",
        "phase_timeline",
        "energy_vs_latency",
    ):
        assert (out / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    summary_md = (out / "summary.md").read_text()
    assert "| smollm2-135m | transformers | 1 |" in summary_md
    assert "Protocol: cooldown not observable (meter 'codecarbon' gives no device" in summary_md
    # CodeCarbon has no timeline: phase times are measured, their energies null with the reason
    assert (runs["prefill_s"] > 0).all() and runs["prefill_energy_j"].isna().all()
    assert runs["phase_null_reason"].str.contains("'codecarbon' has no power timeline").all()
    assert latency["energy_j"].isna().all() and latency["energy_null_reason"].notna().all()
    assert len(pd.read_parquet(out / "tables/phases.parquet")) > 0
    assert "## Where the energy goes" in summary_md
    assert "Null phase, steady-state and per-request energies: meter 'codecarbon'" in summary_md
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["runs"] == 2 and provenance["energy_methods"] == ["codecarbon (estimated)"]
    report = snakemake(tmp_path, campaign, "--report", str(out / "report.html"))
    assert report.returncode == 0, report.stderr[-2000:]
    html = (out / "report.html").read_text()
    assert "energy_vs_batch.png" in html and "summary.md" in html

    again = snakemake(tmp_path, campaign, "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr

    results = sorted((tmp_path / "results/wf/runs").glob("*/result.json"))
    mtimes = {p: p.stat().st_mtime_ns for p in results}
    write_campaign(campaign, grid={"batch_size": [1, 2, 3]})
    grown = snakemake(tmp_path, campaign, "-n")
    assert planned_jobs(grown.stdout)["measure"] == 1
    assert snakemake(tmp_path, campaign).returncode == 0
    assert len(pd.read_parquet(tmp_path / "results/wf/tables/runs.parquet")) == 3
    assert {p: p.stat().st_mtime_ns for p in results} == mtimes


def test_every_run_comes_after_its_model_is_prepared(tmp_path, monkeypatch):
    monkeypatch.setenv("LLEM_MODELS_DIR", str(tmp_path / "models"))  # nothing prepared yet
    campaign = write_campaign(tmp_path / "campaign.yaml")
    dag = snakemake(tmp_path, campaign, "--dag")
    assert dag.returncode == 0, dag.stderr
    rule_of = {m[1]: m[2] for m in re.finditer(r'^\s*(\d+)\[label = "(\w+)', dag.stdout, re.M)}
    needs: dict[str, set[str]] = {}
    for m in re.finditer(r"^\s*(\d+) -> (\d+)$", dag.stdout, re.M):
        needs.setdefault(m[2], set()).add(m[1])

    def upstream_rules(node: str) -> set[str]:
        found = set()
        for parent in needs.get(node, ()):
            found |= {rule_of[parent]} | upstream_rules(parent)
        return found

    measures = [node for node, rule in rule_of.items() if rule == "measure"]
    assert len(measures) == 2
    for node in measures:
        assert {"resolve", "flops_profile", "prepare_model"} <= upstream_rules(node)


def corrupt_copy(model: Path, to: Path) -> Path:
    """The embedded model with its weights replaced by garbage: loading really fails."""
    to.mkdir()
    for item in model.iterdir():
        if item.suffix != ".safetensors":
            (to / item.name).write_bytes(item.read_bytes())
    (to / "model.safetensors").write_bytes(b"\x00" * 64)
    return to


def test_a_failed_run_is_a_row_and_the_campaign_still_gets_its_tables(tmp_path, embedded_model):
    broken = corrupt_copy(embedded_model, tmp_path / "broken-model")
    campaign = write_campaign(
        tmp_path / "campaign.yaml",
        models=["smollm2-135m", str(broken)],
        grid={},
        settings={"max_new_tokens": 2, "num_prompts": 1},
        measurement={"meter": "none", "warmup_batches": 0},
    )
    done = snakemake(tmp_path, campaign)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "results/wf"
    runs = pd.read_parquet(out / "tables/runs.parquet").set_index("model")
    good, bad = runs.loc["smollm2-135m"], runs.loc[str(broken)]
    assert good["status"] == "succeeded" and good["output_tokens"] > 0
    assert bad["status"] == "failed" and bad["failure_class"] == "engine_error"
    assert bad["failure_phase"] == "load"
    assert "cannot load model" in bad["failure_message"]
    assert pd.isna(bad["output_tokens"]) and pd.isna(bad["output_tokens_per_s"]), "null, not 0"
    assert bad["log"].endswith(f"logs/measure/{bad['run_id']}.log")
    assert "cannot load model" in (tmp_path / bad["log"]).read_text()  # relative to the workdir
    summary = pd.read_parquet(out / "tables/summary.parquet")
    assert list(summary["model"]) == ["smollm2-135m"]
    text = (out / "summary.md").read_text()
    assert "**1 of 2 runs succeeded**; 1 failed (listed below)." in text
    assert "| engine_error | load | BackendError: cannot load model" in text
    assert json.loads((out / "provenance.json").read_text())["failed_by_class"] == {
        "engine_error": 1
    }
    assert (out / "figures/energy_vs_batch.png").read_bytes()[:4] == b"\x89PNG"
    report = snakemake(tmp_path, campaign, "--report", str(out / "report.html"))
    assert report.returncode == 0, report.stderr[-2000:]

    shown = subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "show", str(out / "tables/runs.parquet")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "engine_error" in shown

    assert planned_jobs(snakemake(tmp_path, campaign, "-n").stdout).get("measure", 0) == 0
    retry = subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "retry", str(out), "--class", "engine_error"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1 failed runs will run again" in retry.stdout
    plan = snakemake(tmp_path, campaign, "-n")
    assert planned_jobs(plan.stdout).get("measure") == 1, plan.stdout + plan.stderr
    assert bad["run_id"] in plan.stdout
    good_result = out / f"runs/{good['run_id']}/result.json"
    kept = good_result.stat().st_mtime_ns
    assert snakemake(tmp_path, campaign).returncode == 0
    assert good_result.stat().st_mtime_ns == kept, "only the failed point ran again"
    again = json.loads((out / f"runs/{bad['run_id']}/result.json").read_text())
    assert again["status"] == "failed" and again["failure_class"] == "engine_error"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"grid": {"batch_size": [0]}}, "grid.batch_size.0: Input should be greater"),
        ({"surprise": 1}, "surprise: unknown key"),
        ({"models": ["./missing-model"]}, "models.0: model path './missing-model' does not exist"),
        (
            {"backends": ["tensorrt"]},
            "measurement.device: backend tensorrt needs measurement.device cuda, not 'cpu'",
        ),
        (
            {"backends": ["vllm"], "python_envs": {"vllm": "./no-such-venv"}},
            "python_envs.vllm: './no-such-venv' has no bin/llem",
        ),
    ],
)
def test_bad_campaign_fails_at_dry_run_with_one_line(tmp_path, change, expected):
    campaign = write_campaign(tmp_path / "bad.yaml", **change)
    result = snakemake(tmp_path, campaign, "-n")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {campaign}: {expected}"] or expected in errors[0]
    assert str(campaign) in errors[0]
    assert "Traceback" not in result.stderr


def test_a_killed_workflow_resumes_after_unlock_and_keeps_what_finished(tmp_path, embedded_model):
    campaign = write_campaign(
        tmp_path / "campaign.yaml",
        grid={"batch_size": [1, 2]},
        order="grouped",
        measurement={"meter": "none", "warmup_batches": 0, "baseline_s": 0, "min_window_s": 6},
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
        "--directory", str(tmp_path), "--configfile", str(campaign), "--cores", "2",
        "--resources", "device_slot=1",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    runs = tmp_path / "results/wf/runs"
    logs = tmp_path / "results/wf/logs/measure"
    deadline = time.monotonic() + 300
    first = None
    while time.monotonic() < deadline and proc.poll() is None:
        done = list(runs.glob("*/result.json"))
        running = [p for p in logs.glob("*.log") if "window:" in p.read_text()] if done else []
        if done and any(p.stem != done[0].parent.name for p in running):
            first = done[0]
            break
        time.sleep(0.2)
    assert first is not None, "the second run never reached its window"
    os.killpg(proc.pid, signal.SIGKILL)  # the workflow and its running job, as a lost node
    proc.wait()
    kept = first.stat().st_mtime_ns

    refused = snakemake(tmp_path, campaign, "--rerun-incomplete")
    assert refused.returncode != 0 and "lock" in (refused.stdout + refused.stderr).lower()
    assert snakemake(tmp_path, campaign, "--unlock").returncode == 0
    resumed = snakemake(tmp_path, campaign, "--rerun-incomplete")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert first.stat().st_mtime_ns == kept, "the finished run was not redone"
    results = sorted(runs.glob("*/result.json"))
    assert len(results) == 2
    assert all(json.loads(p.read_text())["status"] == "succeeded" for p in results)
    assert not [p for p in (tmp_path / "results").rglob("*") if p.name.startswith(".")], (
        "no half-written (temporary) file remains"
    )
    assert len(pd.read_parquet(tmp_path / "results/wf/tables/runs.parquet")) == 2


VLLM_ENV = REPO / ".venv-vllm"


@pytest.mark.skipif(
    not (VLLM_ENV / "bin" / "llem").is_file(), reason="no .venv-vllm (make setup builds it)"
)
def test_a_backend_measured_in_its_own_python_environment(tmp_path, embedded_model):
    """vLLM's runs use .venv-vllm's llem (python_envs); the rest and the tables, the workflow's."""
    vllm_run = {"backend": "vllm", "batch_size": 2, "vllm": {"enforce_eager": True}}
    base = write_campaign(tmp_path / "base.yaml", grid={"batch_size": [1]}, experiments=[vllm_run])
    campaign = write_campaign(
        tmp_path / "campaign.yaml",
        grid={"batch_size": [1]},
        experiments=[vllm_run],
        python_envs={"vllm": str(VLLM_ENV)},
    )
    planned = snakemake(tmp_path, campaign, "-n", "-p")
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert f"{VLLM_ENV}/bin/llem run" in planned.stdout

    result = snakemake(tmp_path, campaign)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {}
    for path in (tmp_path / "results/wf/runs").glob("*/result.json"):
        data = json.loads(path.read_text())
        assert data["status"] == "succeeded", data.get("failure_message")
        runs[data["config"]["backend"]] = data
    vllm, transformers = runs["vllm"], runs["transformers"]
    assert Path(vllm["environment"]["python_prefix"]) == VLLM_ENV
    assert vllm["environment"]["backend"]["vllm"]  # the version that ran, from that env
    assert Path(transformers["environment"]["python_prefix"]) == Path(sys.prefix)
    table = pd.read_parquet(tmp_path / "results/wf/tables/runs.parquet")
    assert sorted(table["backend"]) == ["transformers", "vllm"]

    # where a run is measured is not part of its id: without the key, the same run ids
    ids = {p.parent.name for p in (tmp_path / "results/wf/runs").glob("*/result.json")}
    assert set(load_campaign(base).runs) == ids
