"""Where a demo run's wall time goes: fixed per-run overhead vs the measurement itself.

Measures one run of each backend of the default campaign (config/config.yaml: transformers
batch 4 bfloat16, and vLLM) with `llem run` in a child process, as the workflow does, with a
baseline cache filled beforehand (baseline excluded), and splits the wall time into: start
(interpreter, imports, meter start), model load, warmup, window, finish (engine shutdown,
FLOPs, phases, the atomic write). The fixed overhead is everything but the window; printed as
a share of the run's wall time, drawn in bench/run_overhead.png.
"start" is what precedes the backend's load (vLLM imports itself inside its load).

Usage: python bench/run_overhead.py [repeats]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).parents[1]
os.environ.setdefault("LLEM_MODELS_DIR", str(REPO / "resources/models"))
os.environ.setdefault("OMP_NUM_THREADS", "1")
SEGMENTS = ("start", "model load", "warmup", "window", "finish")


def demo_runs() -> dict[str, object]:
    """Repeat 0 of the demo's transformers batch-4 bfloat16 run and of its vLLM run."""
    from llenergymeasure.config import load_campaign

    chosen = {}
    for run in load_campaign(REPO / "config/config.yaml").runs.values():
        s = run.settings
        if run.repeat == 0 and s.batch_size == 4 and s.dtype == "bfloat16":
            chosen.setdefault(run.backend, run)
    return chosen


def measure_once(run, work: Path, cache: Path) -> dict[str, float]:
    """One `llem run` (its backend's environment's, as the workflow's), split into SEGMENTS (s)."""
    from llenergymeasure.config.loader import llem_command

    work.mkdir(parents=True)
    config = work / "config.json"
    config.write_text(run.model_dump_json())
    out = work / "run"
    command = [llem_command(run), "run", str(config), "--out", str(out)]
    started = time.time()
    subprocess.run([*command, "--campaign-cache", str(cache)], capture_output=True, check=True)
    ended = time.time()
    result = json.loads((out / "result.json").read_text())
    t = result["timing"]
    before_window = t["window_start_unix_s"] - started
    return {
        "start": before_window - t["model_load_s"] - t["warmup_s"],
        "model load": t["model_load_s"],
        "warmup": t["warmup_s"],
        "window": t["window_s"],
        "finish": ended - t["window_end_unix_s"],
        "wall": ended - started,
    }


def main(repeats: int) -> None:
    runs = demo_runs()
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for backend, run in runs.items():
            measure_once(run, Path(tmp) / f"{backend}-fill", cache)  # fills the cache
            samples = [
                measure_once(run, Path(tmp) / f"{backend}-{i}", cache) for i in range(repeats)
            ]
            table[backend] = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    print(f"per-run wall time, median of {repeats} (s); fixed overhead = all but the window")
    print(f"{'backend':<14}" + "".join(f"{k:>12}" for k in (*SEGMENTS, "wall")) + "  overhead")
    for backend, row in table.items():
        share = 1 - row["window"] / row["wall"]
        cells = "".join(f"{row[k]:>12.1f}" for k in (*SEGMENTS, "wall"))
        print(f"{backend:<14}{cells}  {share:.0%}")
    draw(table, REPO / "bench" / "run_overhead.png")


def draw(table: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=150)
    shades = ("0.85", "0.65", "0.45", "0.1", "0.75")
    hatches = ("", "//", "..", "", "xx")
    for y, row in enumerate(table.values()):
        left = 0.0
        for segment, shade, hatch in zip(SEGMENTS, shades, hatches, strict=True):
            ax.barh(y, row[segment], left=left, color=shade, hatch=hatch, edgecolor="black")
            left += row[segment]
        share = 1 - row["window"] / row["wall"]
        ax.text(left + 0.5, y, f"{row['wall']:.0f} s, {share:.0%} fixed overhead", va="center")
    ax.set_yticks(range(len(table)), list(table))
    ax.set_xlabel("seconds of one demo run (process start to exit)")
    ax.set_xlim(0, max(r["wall"] for r in table.values()) * 1.45)
    handles = [
        plt.Rectangle((0, 0), 1, 1, facecolor=s, hatch=h, edgecolor="black")
        for s, h in zip(shades, hatches, strict=True)
    ]
    ax.legend(handles, SEGMENTS, ncol=5, loc="upper center", bbox_to_anchor=(0.5, 1.3))
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
