"""Figures a paper needs (matplotlib, Agg, PNG at print resolution, readable in greyscale)."""

from __future__ import annotations

from itertools import cycle
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from llenergymeasure.config.loader import FIGURES  # noqa: E402
from llenergymeasure.results.phase_figures import (  # noqa: E402
    energy_vs_latency,
    phase_energy,
    phase_timeline,
)
from llenergymeasure.results.phase_tables import PHASES_SCHEMA  # noqa: E402
from llenergymeasure.results.summary import ci_label  # noqa: E402

DPI = 300
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")
GREYS = ("0.0", "0.35", "0.55", "0.7")


def _styles():
    return cycle(
        {"marker": m, "linestyle": ls, "color": c}
        for m, ls, c in zip(MARKERS, cycle(LINESTYLES), cycle(GREYS), strict=False)
    )


def _series_label(row: pd.Series) -> str:
    label = f"{row['backend']} {row['dtype']}"
    if row.get("quantization") not in (None, "none"):
        label += f" {row['quantization']}"
    return label


def _energy_label(summary: pd.DataFrame) -> str:
    kinds = sorted({str(c) for c in summary["energy_confidence"].dropna()})
    methods = sorted({str(m) for m in summary["energy_method"].dropna()})
    return f"{', '.join(kinds) or 'null'}; {', '.join(methods) or 'no meter'}"


def _save(fig: plt.Figure, path: Path, footnote: str = "") -> None:
    if footnote:
        fig.text(0.01, 0.005, footnote, fontsize=7, ha="left", va="bottom", style="italic")
    fig.tight_layout(rect=(0, 0.03 if footnote else 0, 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def energy_vs_batch(summary: pd.DataFrame, path: Path, footnote: str = "") -> None:
    """Energy per output token vs batch size, a line per backend x dtype with CI bands."""
    fig, ax = plt.subplots(figsize=(6, 4))
    data = summary.dropna(subset=["energy_per_output_token_j_mean"])
    data = data.assign(series=data.apply(_series_label, axis=1))
    # A t-interval of few repeats can reach below 0; on the log axis its band is cut at a
    # floor under every positive value (the title says so), not dropped.
    lows = data["energy_per_output_token_j_ci_low"].to_numpy(float)
    positive = [v for v in (*data["energy_per_output_token_j_mean"], *lows) if v > 0]
    floor = 0.5 * min(positive) if positive else None
    cut = bool(np.nan_to_num(lows, nan=1.0).min(initial=1.0) <= 0)
    for (name, group), style in zip(data.groupby("series", sort=True), _styles(), strict=False):
        ordered = group.sort_values("batch_size")
        x = ordered["batch_size"].to_numpy(float)
        y = ordered["energy_per_output_token_j_mean"].to_numpy(float)
        ax.plot(x, y, label=name, markersize=6, **style)
        low = ordered["energy_per_output_token_j_ci_low"].to_numpy(float)
        high = ordered["energy_per_output_token_j_ci_high"].to_numpy(float)
        if not np.isnan(low).all():
            low = np.where(low > 0, low, floor if floor is not None else np.nan)
            ax.fill_between(x, low, high, color=style["color"], alpha=0.15, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    if cut and floor is not None:
        ax.set_ylim(bottom=floor)
    ax.set_xlabel("batch size (max_num_seqs for vLLM, max_batch_size for TensorRT-LLM)")
    ax.set_ylabel("energy per output token (J)")
    ax.set_title(
        f"Energy per token ({_energy_label(summary)})\n"
        f"bands: {ci_label(summary, ['energy_per_output_token_j'])}, run-to-run"
        " (sensor budget: summary.parquet)"
        f"{'; bounds ≤ 0 cut at the axis' if cut else ''}",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path, footnote)


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Points no other point beats on both lower `x` and higher `y`."""
    ordered = points.sort_values([x, y], ascending=[True, False])
    front, best_y = [], -np.inf
    for index, row in ordered.iterrows():
        if row[y] > best_y:
            front.append(index)
            best_y = row[y]
    return points.loc[front]


def throughput_vs_energy(summary: pd.DataFrame, path: Path, footnote: str = "") -> None:
    """Throughput against energy per token, every configuration, Pareto front marked."""
    x, y = "energy_per_output_token_j_mean", "output_tokens_per_s_mean"
    data = summary.dropna(subset=[x, y])
    data = data.assign(series=data.apply(_series_label, axis=1))
    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, group), style in zip(data.groupby("series", sort=True), _styles(), strict=False):
        ax.scatter(
            group[x],
            group[y],
            marker=style["marker"],
            color=style["color"],
            label=name,
            s=40,
            zorder=3,
        )
        for _, row in group.iterrows():
            ax.annotate(
                f"b{row['batch_size']}",
                (row[x], row[y]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
    if len(data):
        front = pareto_front(data, x, y).sort_values(x)
        ax.plot(
            front[x],
            front[y],
            color="0.0",
            linestyle="--",
            linewidth=1,
            marker="o",
            markersize=13,
            markerfacecolor="none",
            markeredgewidth=1.2,
            label=f"Pareto front ({len(front)} configuration{'s' * (len(front) > 1)})",
            zorder=2,
        )
    ax.set_xscale("log")
    ax.set_xlabel("energy per output token (J)")
    ax.set_ylabel("throughput (output tokens/s)")
    ax.set_title(f"Throughput vs energy ({_energy_label(summary)})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path, footnote)


OTHER_AXES = ("model", "backend", "batch_size", "dtype", "quantization", "sm_clocks_mhz")


def energy_vs_power_limit(summary: pd.DataFrame, path: Path, footnote: str = "") -> None:
    """Energy per token and throughput against the GPU power limit, a line per configuration."""
    data = summary.dropna(subset=["power_limit_w", "energy_per_output_token_j_mean"])
    fig, (energy_ax, speed_ax) = plt.subplots(1, 2, figsize=(9, 4))
    for (key, group), style in zip(
        data.groupby(list(OTHER_AXES), dropna=False, sort=True), _styles(), strict=False
    ):
        ordered = group.sort_values("power_limit_w")
        label = f"{key[1]} batch {key[2]} {key[3]}"
        x = ordered["power_limit_w"].to_numpy(float)
        energy_ax.plot(x, ordered["energy_per_output_token_j_mean"], label=label, **style)
        speed_ax.plot(x, ordered["output_tokens_per_s_mean"], label=label, **style)
        best = ordered.loc[ordered["energy_per_output_token_j_mean"].idxmin()]
        energy_ax.scatter(
            [best["power_limit_w"]],
            [best["energy_per_output_token_j_mean"]],
            s=120,
            facecolors="none",
            edgecolors="black",
        )
    energy_ax.set_ylabel("energy per output token (J)")
    speed_ax.set_ylabel("throughput (output tokens/s)")
    for ax in (energy_ax, speed_ax):
        ax.set_xlabel("GPU power limit (W)")
        ax.grid(True, alpha=0.3)
    energy_ax.legend(fontsize=7)
    fig.suptitle(
        f"Energy and throughput vs power limit ({_energy_label(summary)}); ringed: lowest "
        "energy per token",
        fontsize=9,
    )
    _save(fig, path, footnote)


def latency_distributions(
    latency: pd.DataFrame, runs: pd.DataFrame, path: Path, footnote: str = ""
) -> None:
    """TTFT and inter-token latency per backend, every request of every run pooled."""
    data = latency.merge(runs[["run_id", "backend"]], on="run_id")
    backends = sorted(data["backend"].unique())
    if not backends:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no request was measured in this campaign", ha="center", va="center")
        _save(fig, path, footnote)
        return
    ttft = [data.loc[data.backend == b, "ttft_s"].dropna().to_numpy(float) for b in backends]
    itl = [
        np.concatenate(
            [np.asarray(v, float) for v in data.loc[data.backend == b, "itl_s"]] or [np.empty(0)]
        )
        for b in backends
    ]
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.5))
    for ax, values, title in (
        (axes[0], ttft, "TTFT (s)"),
        (axes[1], itl, "inter-token latency (s)"),
    ):
        ax.boxplot(
            values,
            tick_labels=backends,
            showfliers=True,
            flierprops={"marker": ".", "markersize": 3, "color": "0.4"},
            medianprops={"color": "0.0"},
        )
        ax.set_yscale("log")
        ax.set_ylabel(title)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        counts = ", ".join(f"{b}: n={len(v)}" for b, v in zip(backends, values, strict=True))
        ax.set_title(counts, fontsize=8)
    fig.suptitle("Latency per backend (all requests, all runs)", fontsize=9)
    _save(fig, path, footnote)


def request_timeline(
    latency: pd.DataFrame, runs: pd.DataFrame, path: Path, footnote: str = ""
) -> None:
    """Without power samples: one run's requests over its first pass (queue, TTFT, tokens)."""
    methods = ", ".join(sorted({str(m) for m in runs["energy_method"].dropna()})) or "none"
    fig, ax = plt.subplots(figsize=(7, 3.5))
    measured = latency.dropna(subset=["latency_s"])
    measured = measured[measured["pass_index"].fillna(0) == 0]
    if measured.empty:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "No power timeline and no request measured.", ha="center")
        _save(fig, path, footnote)
        return
    run_id = measured["run_id"].iloc[0]
    one = measured[measured.run_id == run_id].sort_values("request_index")
    for y, (_, r) in enumerate(one.iterrows()):
        submit = float(r["queue_s"])
        ax.plot([0, submit], [y, y], color="0.75", linewidth=2)  # waiting for its batch
        ax.plot([submit, float(r["ttft_s"])], [y, y], color="0.45", linewidth=4)  # prefill
        ax.plot([float(r["ttft_s"]), float(r["latency_s"])], [y, y], color="0.0", linewidth=4)
    ax.plot([], [], color="0.75", linewidth=2, label="queued (arrival to hand-over)")
    ax.plot([], [], color="0.45", linewidth=4, label="to first token")
    ax.plot([], [], color="0.0", linewidth=4, label="generating (first to last token)")
    ax.set_xlabel("time since the requests arrived (s)")
    ax.set_ylabel("request")
    ax.set_title(
        f"{run_id}: requests of its first pass. No power timeline here: the energy source "
        f"({methods}) has no power samples (meter nvml or rapl on hardware gives one)",
        fontsize=8,
        wrap=True,
    )
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path, footnote)


def power_timeline(
    timeseries: pd.DataFrame,
    runs: pd.DataFrame,
    latency: pd.DataFrame,
    path: Path,
    footnote: str = "",
) -> None:
    """One run's power per device over time, with baseline and window marked.

    Where no run has power samples, the requests of one run instead (`request_timeline`).
    """
    fig, ax = plt.subplots(figsize=(7, 3.5))
    with_power = timeseries.dropna(subset=["power_w"])
    if with_power.empty:
        plt.close(fig)
        request_timeline(latency, runs, path, footnote)
        return
    run_id = with_power["run_id"].iloc[0]
    one = with_power[with_power.run_id == run_id]
    for (device, group), style in zip(one.groupby("device"), _styles(), strict=False):
        ax.plot(
            group["t_window_s"],
            group["power_w"],
            label=device,
            linewidth=1,
            color=style["color"],
            linestyle=style["linestyle"],
        )
    for phase, hatch in (("baseline", "//"), ("window", None)):
        span = one[one.phase == phase]["t_window_s"]
        if len(span):
            ax.axvspan(
                span.min(),
                span.max(),
                alpha=0.12,
                color="0.3",
                hatch=hatch,
                label=f"{phase} ({span.max() - span.min():.1f} s)",
            )
    idle = runs.loc[runs.run_id == run_id, "idle_power_w"]
    if len(idle) and pd.notna(idle.iloc[0]):
        ax.axhline(
            float(idle.iloc[0]),
            color="0.0",
            linestyle=":",
            linewidth=1,
            label=f"idle baseline, all devices ({float(idle.iloc[0]):.0f} W)",
        )
    ax.set_xlabel("time since window start (s)")
    ax.set_ylabel("power (W)")
    ax.set_title(f"Power timeline of {run_id}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path, footnote)


def _left_out(failed: int, summary: pd.DataFrame) -> str:
    """The footnote counting the runs a figure does not show, or ''."""
    parts = [f"{failed} failed run{'s' if failed != 1 else ''} left out"] if failed else []
    if "invalid_runs" in summary and not summary["invalid_included"].any():
        invalid = int(summary["invalid_runs"].sum())
        if invalid:
            parts.append(
                f"{invalid} invalid run{'s' if invalid != 1 else ''} left out of the "
                "folded points (drawn in the per-run figures)"
            )
    return "; ".join(parts) + " (see summary.md)" if parts else ""


def build_figures(tables_dir: Path, out_dir: Path) -> list[Path]:
    """Every figure from the campaign's tables."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = pd.read_parquet(tables_dir / "summary.parquet")
    runs = pd.read_parquet(tables_dir / "runs.parquet")
    failed = int((runs["status"] == "failed").sum())
    runs = runs[runs["status"] != "failed"]
    footnote = _left_out(failed, summary)
    latency = pd.read_parquet(tables_dir / "latency.parquet")
    timeseries = pd.read_parquet(tables_dir / "timeseries.parquet")
    paths = {name: out_dir / f"{name}.png" for name in FIGURES}
    energy_vs_batch(summary, paths["energy_vs_batch"], footnote)
    throughput_vs_energy(summary, paths["throughput_vs_energy"], footnote)
    latency_distributions(latency, runs, paths["latency_distributions"], footnote)
    power_timeline(timeseries, runs, latency, paths["power_timeline"], footnote)
    phases_path = tables_dir / "phases.parquet"  # absent in tables built before schema 1.7
    phases = (
        pd.read_parquet(phases_path)
        if phases_path.exists()
        else PHASES_SCHEMA.empty_table().to_pandas()
    )
    phase_energy(runs, paths["phase_energy"], footnote)
    phase_timeline(timeseries, phases, runs, paths["phase_timeline"], footnote)
    energy_vs_latency(summary, paths["energy_vs_latency"], footnote)
    if summary["power_limit_w"].notna().any():
        paths["energy_vs_power_limit"] = out_dir / "energy_vs_power_limit.png"
        energy_vs_power_limit(summary, paths["energy_vs_power_limit"], footnote)
    return list(paths.values())
