"""A power-limit sweep's outputs: summary.md names the energy-optimal setting; the figure."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from llenergymeasure.config.models import AnalysisConfig
from llenergymeasure.results.figures import build_figures
from llenergymeasure.results.summary import build_summary
from llenergymeasure.results.summary_md import summary_markdown
from llenergymeasure.results.tables import LATENCY_SCHEMA, RUNS_SCHEMA
from llenergymeasure.results.timeseries import TIMESERIES_SCHEMA

# (power limit W, batch) -> energy per token (J) of two repeats; 300 W is the optimum at
# batch 8, 200 W at batch 32
POINTS = {
    (200, 8): [0.52, 0.50],
    (300, 8): [0.41, 0.43],
    (400, 8): [0.47, 0.45],
    (200, 32): [0.20, 0.21],
    (300, 32): [0.23, 0.22],
}


def write_tables(tmp_path):
    rows = []
    for (limit, batch), values in POINTS.items():
        gpu = json.dumps({"power_limit_w": limit, "sm_clocks_mhz": None})
        for repeat, value in enumerate(values):
            rows.append(
                {
                    "run_id": f"r{limit}_{batch}_{repeat}",
                    "configuration_id": f"c{limit}_{batch}",
                    "campaign": "p",
                    "model": "m",
                    "backend": "vllm",
                    "status": "succeeded",
                    "batch_size": batch,
                    "dtype": "bfloat16",
                    "quantization": "none",
                    "repeat": repeat,
                    "gpu_settings": gpu,
                    "power_limit_w": float(limit),
                    "energy_per_output_token_j": value,
                    "output_tokens_per_s": limit / 10 + batch,
                    "energy_method": "nvml",
                    "energy_confidence": "measured",
                    "window_passes": 1,
                }
            )
    table = pa.Table.from_pylist(
        [{n: r.get(n) for n in RUNS_SCHEMA.names} for r in rows], schema=RUNS_SCHEMA
    )
    pq.write_table(table, tmp_path / "runs.parquet")
    pq.write_table(LATENCY_SCHEMA.empty_table(), tmp_path / "latency.parquet")
    pq.write_table(TIMESERIES_SCHEMA.empty_table(), tmp_path / "timeseries.parquet")
    return build_summary(tmp_path / "runs.parquet", AnalysisConfig(), tmp_path / "summary.parquet")


def test_summary_md_names_the_energy_optimal_setting_per_configuration(tmp_path):
    summary = write_tables(tmp_path)
    provenance = tmp_path / "provenance.json"
    provenance.write_text(
        json.dumps(
            {
                "energy_methods": ["nvml (measured)"],
                "hosts": ["h"],
                "devices": ["gpu"],
                "llenergymeasure": "0",
                "git": {"commit": None, "dirty": False},
                "campaign_sha256": "0" * 64,
                "result_schema_versions": ["1.5.0"],
            }
        )
    )
    text = summary_markdown(
        summary, pq.read_table(tmp_path / "runs.parquet").to_pandas(), provenance
    )
    section = text.split("## Energy-optimal GPU setting")[1].split("##")[0]
    batch8 = next(line for line in section.splitlines() if line.startswith("| m | vllm | 8 |"))
    batch32 = next(line for line in section.splitlines() if line.startswith("| m | vllm | 32 |"))
    assert '"power_limit_w": 300' in batch8 and batch8.endswith("| 3 |")
    assert '"power_limit_w": 200' in batch32 and batch32.endswith("| 2 |")


def test_the_power_limit_figure_is_drawn_for_a_sweep(tmp_path):
    write_tables(tmp_path)
    paths = build_figures(tmp_path, tmp_path / "figures")
    figure = tmp_path / "figures" / "energy_vs_power_limit.png"
    assert figure in paths and figure.read_bytes()[:4] == b"\x89PNG"
