"""Every GPU example plans on this CPU-only machine; environments are declared and parse."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llenergymeasure.config import load_campaign
from tests.workflow.test_snakemake import planned_jobs, snakemake

REPO = Path(__file__).parents[2]
EXAMPLES = sorted((REPO / "config" / "examples").glob("*.yaml"))


def test_there_are_the_four_example_campaigns():
    assert {p.stem for p in EXAMPLES} >= {
        "backend_comparison",
        "precision_sweep",
        "tensor_parallel",
        "serving_load",
    }


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_plans_with_snakemake_dry_run(tmp_path, example):
    plan = load_campaign(example)
    result = snakemake(tmp_path, example, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned_jobs(result.stdout)
    assert jobs["measure"] == len(plan.runs)
    assert jobs["resolve"] == len(plan.runs)
    # Nothing of the demo campaign leaks in through --configfile merging.
    assert "smollm2" not in result.stdout and "results/demo" not in result.stdout
    assert f"results/{plan.campaign.name}/" in result.stdout
    assert all(r.measurement.device == "cuda" for r in plan.runs.values())


def test_planning_imports_neither_torch_nor_vllm():
    code = (
        "import sys\n"
        "from llenergymeasure.config import load_campaign\n"
        "from llenergymeasure.config.order import run_priorities\n"
        f"for path in {[str(p) for p in EXAMPLES]!r}:\n"
        "    run_priorities(load_campaign(path))\n"
        "heavy = ('torch', 'vllm', 'tensorrt_llm', 'transformers', 'pynvml')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def conda_paths() -> list[Path]:
    rules = REPO / "workflow" / "rules"
    text = "\n".join(p.read_text() for p in rules.glob("*.smk"))
    found = re.findall(r'"(\.\./\.\./envs/[\w.]+\.yaml)"', text)
    return sorted({(rules / f).resolve() for f in found})


def test_every_declared_environment_exists_parses_and_is_pinned():
    paths = conda_paths()
    assert {p.name for p in paths} == {
        "transformers.yaml",
        "vllm.yaml",
        "tensorrt.yaml",
        "analysis.yaml",
    }
    for path in paths:
        env = yaml.safe_load(path.read_text())
        assert env["name"].startswith("llem-")
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        packages = [p for p in pip if not p.startswith(("-", "--"))]
        assert packages and all("==" in p for p in packages), path.name
        assert any(p.startswith("-e ../") for p in pip), "installs this project"


@pytest.mark.parametrize("campaign", [REPO / "config" / "config.yaml", *EXAMPLES[:1]])
def test_snakemake_lint_is_clean(tmp_path, campaign):
    # the demo's python_envs path is relative to the working directory, here tmp_path
    (tmp_path / ".venv-vllm").symlink_to(REPO / ".venv-vllm")
    result = snakemake(tmp_path, campaign, "--lint")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr
    assert "Lints for rule" not in result.stdout + result.stderr
