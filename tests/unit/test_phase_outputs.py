"""The latency target (analysis.slo), the phase columns and sections, and their figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llenergymeasure.config import plan_campaign
from llenergymeasure.config.loader import figure_names
from llenergymeasure.config.models import AnalysisConfig, SloConfig
from llenergymeasure.errors import ConfigError
from llenergymeasure.results.figures import build_figures
from llenergymeasure.results.models import RequestResult, RunResult
from llenergymeasure.results.phase_models import PhaseSplit, SteadyState
from llenergymeasure.results.phase_report import phase_lines
from llenergymeasure.results.phase_tables import (
    PHASES_SCHEMA,
    phase_rows,
    phase_run_columns,
    request_energy_columns,
)
from llenergymeasure.results.slo import cheapest, energy_latency_front, slo_columns
from llenergymeasure.results.summary import build_summary
from llenergymeasure.results.summary_md import summary_markdown
from llenergymeasure.results.tables import LATENCY_SCHEMA, RUNS_SCHEMA
from llenergymeasure.results.timeseries import TIMESERIES_SCHEMA

SLO = SloConfig(ttft_p95_s=1.0, itl_p95_s=0.05)
# backend, batch -> (ttft p95, itl p95, energy per token) of two repeats
POINTS = {
    ("transformers", 1): (0.5, 0.03, 0.50),  # meets, but costly
    ("transformers", 4): (0.9, 0.045, 0.30),  # meets: the cheapest transformers
    ("transformers", 16): (2.5, 0.06, 0.12),  # cheapest of all, misses both targets
    ("vllm", 4): (0.3, None, 0.10),  # ITL unknown: not judged
    ("vllm", 8): (1.4, 0.02, 0.08),  # misses TTFT
}


def run_rows(codecarbon: bool = False) -> list[dict]:
    rows = []
    for (backend, batch), (ttft, itl, energy) in POINTS.items():
        for repeat in range(2):
            rows.append(
                {
                    "run_id": f"{backend}{batch}_{repeat}",
                    "configuration_id": f"{backend}{batch}",
                    "campaign": "c",
                    "model": "m",
                    "backend": backend,
                    "status": "succeeded",
                    "batch_size": batch,
                    "dtype": "bfloat16",
                    "quantization": "none",
                    "repeat": repeat,
                    "ttft_p95_s": ttft * (1 + 0.01 * repeat),
                    "itl_p95_s": itl,
                    "energy_per_output_token_j": energy,
                    "output_tokens_per_s": 100.0 / energy,
                    "energy_method": "codecarbon" if codecarbon else "nvml",
                    "energy_confidence": "estimated" if codecarbon else "measured",
                    "window_passes": 1,
                    "window_s": 10.0,
                    "output_tokens": 200,
                    "prefill_s": 2.0,
                    "decode_s": 7.5,
                    "idle_gap_s": 0.5,
                    "prefill_energy_j": None if codecarbon else 30.0,
                    "decode_energy_j": None if codecarbon else 60.0,
                    "idle_gap_energy_j": None if codecarbon else 2.0,
                    "phase_conservation_error_j": None if codecarbon else 1e-9,
                    "phase_null_reason": "meter 'codecarbon' has no power timeline"
                    if codecarbon
                    else None,
                    "steady_state_s": 6.0 if backend == "vllm" else None,
                    "steady_state_mean_running": 3.9 if backend == "vllm" else None,
                    "steady_state_saturation": 3.9 / batch if backend == "vllm" else None,
                    "steady_state_short": backend == "vllm" or None,
                    "steady_state_unsaturated": (backend == "vllm" and batch == 8) or None,
                    "steady_state_null_reason": None
                    if backend == "vllm"
                    else "transformers runs static batches",
                }
            )
    return rows


def write_tables(tmp_path, analysis: AnalysisConfig, codecarbon: bool = False) -> pd.DataFrame:
    rows = run_rows(codecarbon)
    table = pa.Table.from_pylist(
        [{n: r.get(n) for n in RUNS_SCHEMA.names} for r in rows], schema=RUNS_SCHEMA
    )
    pq.write_table(table, tmp_path / "runs.parquet")
    pq.write_table(LATENCY_SCHEMA.empty_table(), tmp_path / "latency.parquet")
    times = np.arange(0.0, 3.0, 0.1)
    timeline = [
        {"run_id": "vllm4_0", "device": "gpu:0", "phase": "window", "t_unix_s": 1e9 + t}
        | {"t_window_s": t, "power_w": 200 + 50 * np.sin(t)}
        for t in times
    ]
    pq.write_table(
        pa.Table.from_pylist(
            [{n: r.get(n) for n in TIMESERIES_SCHEMA.names} for r in timeline],
            schema=TIMESERIES_SCHEMA,
        ),
        tmp_path / "timeseries.parquet",
    )
    phases = [
        {"run_id": "vllm4_0", "phase": p, "start_t_window_s": a, "end_t_window_s": b}
        | {"energy_j": 10.0, "output_tokens": 4}
        for p, a, b in [("prefill", 0.0, 0.2), ("decode", 0.2, 1.5), ("idle", 1.5, 1.6)]
    ]
    pq.write_table(pa.Table.from_pylist(phases, schema=PHASES_SCHEMA), tmp_path / "phases.parquet")
    return build_summary(tmp_path / "runs.parquet", analysis, tmp_path / "summary.parquet")


def provenance(tmp_path):
    path = tmp_path / "provenance.json"
    path.write_text(
        json.dumps(
            {
                "energy_methods": ["nvml (measured)"],
                "hosts": ["h"],
                "devices": ["gpu"],
                "llenergymeasure": "0",
                "git": {"commit": None, "dirty": False},
                "campaign_sha256": "0" * 64,
                "result_schema_versions": ["1.7.0"],
            }
        )
    )
    return path


def test_slo_needs_a_positive_target_and_is_a_campaign_key(campaign):
    with pytest.raises(ValueError, match="at least one latency target"):
        SloConfig()
    with pytest.raises(ConfigError, match=r"analysis.slo.ttft_p95_s"):
        plan_campaign({**campaign, "analysis": {"slo": {"ttft_p95_s": -1}}}, "c.yaml")
    plan = plan_campaign({**campaign, "analysis": {"slo": {"itl_p95_s": 0.1}}}, "c.yaml")
    assert plan.campaign.analysis.slo == SloConfig(itl_p95_s=0.1)
    assert {"phase_energy", "phase_timeline", "energy_vs_latency"} <= set(figure_names(plan))


def test_slo_columns_meet_miss_or_cannot_judge():
    assert slo_columns({"ttft_p95_s_mean": 0.9, "itl_p95_s_mean": 0.05}, SLO)["meets_slo"]
    missed = slo_columns({"ttft_p95_s_mean": 1.2, "itl_p95_s_mean": None}, SLO)
    assert missed["meets_slo"] is False and missed["slo_missed"] == ["ttft_p95_s"]
    unknown = slo_columns({"ttft_p95_s_mean": 0.2, "itl_p95_s_mean": None}, SLO)
    assert unknown["meets_slo"] is None and unknown["slo_unknown"] == ["itl_p95_s"]
    none = slo_columns({"ttft_p95_s_mean": 0.2}, None)
    assert none["meets_slo"] is None and none["slo_ttft_p95_s"] is None


def test_summary_marks_the_configurations_meeting_the_target(tmp_path):
    summary = write_tables(tmp_path, AnalysisConfig(slo=SLO))
    verdict = dict(zip(summary["configuration_id"], summary["meets_slo"], strict=True))
    assert verdict["transformers1"] and verdict["transformers4"]
    assert verdict["transformers16"] is False and verdict["vllm8"] is False
    assert pd.isna(verdict["vllm4"])
    assert (summary["slo_ttft_p95_s"] == 1.0).all() and (summary["slo_itl_p95_s"] == 0.05).all()
    choices = {(c.backend): c for c in cheapest(summary)}
    assert choices["transformers"].best is not None
    assert choices["transformers"].best["configuration_id"] == "transformers4"
    assert (choices["transformers"].meeting, choices["transformers"].compared) == (2, 3)
    assert choices["vllm"].best is None
    assert choices["vllm"].reason == (
        "none of 2 configurations meets the target (1 not judged: a targeted latency is null)"
    )


def test_summary_md_names_the_cheapest_configuration_at_the_target(tmp_path):
    summary = write_tables(tmp_path, AnalysisConfig(slo=SLO))
    runs = pq.read_table(tmp_path / "runs.parquet").to_pandas()
    text = summary_markdown(summary, runs, provenance(tmp_path))
    section = text.split("## Cheapest configuration at the latency target")[1].split("##")[0]
    assert "ttft_p95_s ≤ 1 s, itl_p95_s ≤ 0.05 s" in section
    line = next(row for row in section.splitlines() if row.startswith("| m | transformers"))
    assert line.startswith("| m | transformers | 4 | bfloat16 | none | 0.3 | 0.9")
    assert "| 2 / 3 | nvml (measured) |" in line
    assert "none of 2 configurations meets the target" in section


def test_without_a_target_there_is_no_selection(tmp_path):
    summary = write_tables(tmp_path, AnalysisConfig())
    assert summary["meets_slo"].isna().all()
    runs = pq.read_table(tmp_path / "runs.parquet").to_pandas()
    assert "## Cheapest configuration" not in summary_markdown(summary, runs, provenance(tmp_path))


def test_where_the_energy_goes_says_why_energies_are_null_on_a_codecarbon_host(tmp_path):
    write_tables(tmp_path, AnalysisConfig(slo=SLO), codecarbon=True)
    runs = pq.read_table(tmp_path / "runs.parquet").to_pandas()
    text = "\n".join(phase_lines(runs))
    assert "## Where the energy goes" in text
    row = next(r for r in text.splitlines() if r.startswith("| m | vllm | 8 |"))
    assert "| 2 | 7.5 | 0.5 | null | null | 6 s, batch 3.9 (49 % full) ! short, unsaturated" in row
    assert "Null phase, steady-state and per-request energies: meter 'codecarbon' has no " in text
    assert "Nothing is estimated in their place; in 10 of these runs" in text
    assert "No steady state where: transformers runs static batches." in text


def test_where_the_energy_goes_with_a_timeline_reports_conservation(tmp_path):
    write_tables(tmp_path, AnalysisConfig())
    runs = pq.read_table(tmp_path / "runs.parquet").to_pandas()
    text = "\n".join(phase_lines(runs))
    assert "| m | transformers | 4 | bfloat16 | 2 | 7.5 | 0.5 |" in text
    assert "Phase and per-request energies are measured in 10 of 10 runs" in text


def test_phase_figures_are_drawn(tmp_path):
    write_tables(tmp_path, AnalysisConfig(slo=SLO))
    paths = build_figures(tmp_path, tmp_path / "figures")
    for name in ("phase_energy", "phase_timeline", "energy_vs_latency"):
        figure = tmp_path / "figures" / f"{name}.png"
        assert figure in paths and figure.stat().st_size > 20_000, name


def test_pareto_front_keeps_points_no_other_beats_on_both():
    points = pd.DataFrame({"lat": [1.0, 2.0, 0.5, 3.0], "e": [0.3, 0.2, 0.5, 0.25]})
    assert list(energy_latency_front(points, "lat", "e").index) == [2, 0, 1]


RESULT = RunResult.model_construct(  # only the fields the phase columns read
    run_id="r",
    schema_version="1.7.0",
    phases=PhaseSplit.model_validate(
        {
            "method": "token_events",
            "energy_method": "nvml_counter: ...",
            "energy_null_reason": None,
            "prefill": {
                "duration_s": 1.0,
                "stretches": 1,
                "energy_j": 10.0,
                "energy_per_token_j": 0.1,
            },
            "decode": {
                "duration_s": 3.0,
                "stretches": 1,
                "energy_j": 20.0,
                "energy_per_token_j": 0.2,
            },
            "idle": {"duration_s": 0.5, "stretches": 1, "energy_j": 1.0},
            "conservation_error_j": 0.0,
            "mixed_prefill_steps": 3,
            "step_merge_s": 0.001,
            "request_energy_method": "each interval",
            "intervals": [
                {"phase": "prefill", "start_t_window_s": 0.0, "end_t_window_s": 1.0}
                | {"energy_j": 10.0, "output_tokens": 2}
            ],
        }
    ),
    steady_state=SteadyState(null_reason=None, duration_s=2.0, short=True),
)


def test_phase_columns_of_a_result_and_of_an_older_one():
    columns = phase_run_columns(RESULT)
    assert columns["prefill_energy_j"] == 10.0 and columns["decode_s"] == 3.0
    assert columns["mixed_prefill_steps"] == 3 and columns["steady_state_short"] is True
    assert columns["phase_null_reason"] is None
    assert list(phase_rows(RESULT))[0]["run_id"] == "r"
    request = request_energy_columns(
        RESULT,
        RequestResult.model_construct(
            energy_j=1.5, energy_null_reason=None, energy_uncertainty_j=0.25
        ),
    )
    assert request == {
        "energy_j": 1.5,
        "energy_uncertainty_j": 0.25,
        "energy_method": "each interval",
        "energy_null_reason": None,
    }
    old = RunResult.model_construct(run_id="o", schema_version="1.5.0")  # no phases key
    reason = phase_run_columns(old)["phase_null_reason"]
    assert "schema 1.5.0" in reason and "predates the phase split" in reason
    no_energy = RequestResult.model_construct()  # no energy_j key, as before schema 1.7
    assert request_energy_columns(old, no_energy)["energy_null_reason"] == reason
    assert list(phase_rows(old)) == []
