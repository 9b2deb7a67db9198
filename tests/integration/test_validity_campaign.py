"""The verdict of real runs: recorded at measurement time, re-judged by `llem validate`.

Real transformers inference on the embedded model, metered by the fake NVML (a scripted
sinusoid of power). Two repeats of one configuration; `llem validate` then sets
`min_window_s` between their two measured windows, so exactly the shorter one breaks it, and
the summary must fold the other alone. Every other rule is waived for that step: what the
test decides comes from the windows the runs recorded, not from this machine's speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import typing

import pandas as pd
import pytest
import yaml

from llenergymeasure.backends.vllm import is_vllm_available
from llenergymeasure.config import plan_campaign
from llenergymeasure.config.validity import ReasonCode
from tests.integration.test_phase_energy import sinusoid_gpu

pytest_plugins = ["tests.fakes.nvml.fixtures"]
pytestmark = pytest.mark.slow

MEASUREMENT = {
    "meter": "nvml",
    "baseline_s": 0,
    "cooldown_max_s": 0,
    "warmup_batches": 1,
    "warmup_max_batches": 1,
    "min_window_s": 1.0,
}


def measure(campaign: dict, tmp_path, env) -> tuple[dict[str, dict], object]:
    """Measure every run of `campaign` into tmp_path/c/runs/<id>; returns results by id."""
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(campaign))
    plan = plan_campaign(campaign, str(path))
    results = {}
    for rid, config in plan.runs.items():
        config_path = tmp_path / f"{rid}.json"
        config_path.write_text(config.model_dump_json())
        out = tmp_path / "c" / "runs" / rid
        done = subprocess.run(
            [sys.executable, "-m", "llenergymeasure", "run", str(config_path), "--out", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results[rid] = json.loads((out / "result.json").read_text())
    return results, path


def llem(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llenergymeasure", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_window_under_its_minimum_is_invalid_and_left_out_of_the_summary(
    tmp_path, embedded_model, fake_nvml_env
):
    campaign = {
        "name": "validity",
        "models": ["smollm2-135m"],
        "settings": {"max_new_tokens": 8, "num_prompts": 2, "batch_size": 2},
        "repeats": 2,
        "measurement": MEASUREMENT,
        "analysis": {"validity": {"min_window_s": 0.5, "waive": ["energy_estimated"]}},
    }
    results, campaign_file = measure(campaign, tmp_path, fake_nvml_env(sinusoid_gpu()))
    for result in results.values():  # judged when written, under the campaign's own rules
        verdict = result["validity"]
        assert verdict["rules"]["min_window_s"] == 0.5
        assert verdict["rules"]["waive"] == ["energy_estimated"]
        assert verdict["valid"] is (not verdict["invalid_reasons"])
        assert "window_short" not in [r["code"] for r in verdict["invalid_reasons"]]
    windows = {rid: r["timing"]["window_s"] for rid, r in results.items()}
    short, long = sorted(windows, key=windows.__getitem__)
    assert windows[short] < windows[long]
    others = [c for c in typing.get_args(ReasonCode) if c != "window_short"]
    result_files = sorted(str(p) for p in (tmp_path / "c" / "runs").glob("*/result.json"))
    prov = llem(
        "provenance",
        str(campaign_file),
        *result_files,
        "--out",
        str(tmp_path / "c/provenance.json"),
    )
    assert prov.returncode == 0, prov.stderr
    done = llem(
        "validate",
        str(tmp_path / "c"),
        "--campaign",
        str(campaign_file),
        "--set",
        f"min_window_s={(windows[short] + windows[long]) / 2}",
        "--set",
        f"waive=[{','.join(others)}]",
    )
    assert done.returncode == 0, done.stderr
    assert "1 valid, 1 invalid, 0 failed" in done.stdout
    assert "summary.md" in done.stdout
    report = (tmp_path / "c" / "summary.md").read_text()
    invalid_section = report.split("## Invalid runs", 1)[1]
    assert "min_window_s" in invalid_section and "(+1 invalid)" in report
    runs = pd.read_parquet(tmp_path / "c" / "tables" / "runs.parquet").set_index("run_id")
    assert list(runs.loc[short, "invalid_reasons"]) == ["window_short"]
    assert not runs.loc[short, "valid"] and runs.loc[long, "valid"]
    assert "min_window_s" in runs.loc[short, "invalid_detail"]
    summary = pd.read_parquet(tmp_path / "c" / "tables" / "summary.parquet")
    (row,) = summary.itertuples()
    assert (row.repeats, row.invalid_runs, list(row.run_ids)) == (1, 1, [long])
    assert row.energy_per_output_token_j_mean == pytest.approx(
        results[long]["energy_per_output_token_j"]
    )
    # Bad thresholds: one line naming the key, no traceback.
    bad = llem(
        "validate",
        str(tmp_path / "c"),
        "--campaign",
        str(campaign_file),
        "--set",
        "min_saturation=2",
    )
    assert bad.returncode == 2 and "analysis.validity.min_saturation" in bad.stderr
    assert "Traceback" not in bad.stderr


def held_mean(points: list[tuple[float, float]], start_s: float, end_s: float) -> float:
    """Each step's value held until the next step; the mean over [start_s, end_s]."""
    points = sorted(points)
    area = 0.0
    for (t, value), (t_next, _) in zip(points, [*points[1:], (end_s, 0.0)], strict=True):
        lo, hi = max(t, start_s), min(t_next, end_s)
        area += value * max(0.0, hi - lo)
    return area / (end_s - max(start_s, points[0][0]))


@pytest.mark.vllm
@pytest.mark.skipif(
    not is_vllm_available(), reason="vllm is not in this environment (.venv-vllm has it)"
)
def test_an_unsaturated_vllm_run_is_invalid_by_the_engines_own_count(
    tmp_path, embedded_model, fake_nvml_env
):
    """10 requests, one a second, for 8 slots: each is served long before the next arrives
    (8 tokens of a 135M model), so the engine's running batch stays far below 80 % of 8.
    """
    campaign = {
        "name": "unsaturated",
        "models": ["smollm2-135m"],
        "backends": ["vllm"],
        "settings": {
            "batch_size": 8,
            "num_prompts": 10,
            "max_new_tokens": 8,
            "dtype": "float32",
            "vllm": {"enforce_eager": True, "arrival": "constant", "request_rate": 1.0},
        },
        "measurement": MEASUREMENT,
    }
    ((rid, result),) = measure(campaign, tmp_path, fake_nvml_env(sinusoid_gpu()))[0].items()
    # The engine's scheduler, step by step, in the timeline beside the power samples.
    view = result["engine_view"]
    assert view["source"].startswith("vllm_stat_logger") and view["samples"] > 0
    timeline = pd.read_parquet(tmp_path / "c" / "runs" / rid / "timeseries.parquet")
    engine = timeline[timeline["device"] == "engine:vllm"]
    window = engine[engine["phase"] == "window"]
    assert len(window) == view["samples"]
    assert window["t_window_s"].between(0, result["timing"]["window_s"] + 0.05).all()
    assert window["power_w"].isna().all() and window["running_reqs"].notna().all()
    assert view["peak_running"] == window["running_reqs"].max() <= 8
    assert view["preemptions"] == window["preempted_reqs"].sum()
    # Saturation from the engine's own count over the steady window, recomputed here.
    steady = result["steady_state"]
    assert steady["saturation_source"] == "engine_scheduler"
    assert steady["windows"] == 1  # one pass (10 s > min_window_s)
    points = list(zip(engine["t_window_s"], engine["running_reqs"].astype(float), strict=True))
    expected = held_mean(points, steady["start_t_window_s"], steady["end_t_window_s"])
    assert steady["mean_running"] == pytest.approx(expected, rel=1e-6)
    assert steady["saturation"] == pytest.approx(expected / 8, rel=1e-6)
    assert steady["saturation"] < 0.8
    verdict = result["validity"]
    assert verdict["valid"] is False
    reasons = {r["code"]: r["message"] for r in verdict["invalid_reasons"]}
    assert "max_num_seqs 8" in reasons["steady_state_unsaturated"]
    assert "(engine_scheduler)" in reasons["steady_state_unsaturated"]
