"""Helper of bench/gpu_acceptance.sh: probe a backend, resolve its run, judge the results.

python bench/gpu_acceptance.py probe BACKEND            # exit 0 if it can run here
python bench/gpu_acceptance.py resolve CAMPAIGN BACKEND CONFIG_JSON
python bench/gpu_acceptance.py verdict OUT_DIR          # prints one line per backend
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BACKENDS = ("transformers", "vllm", "tensorrt")


def probe(backend: str) -> str | None:
    """Why `backend` cannot run on this host (None: it can)."""
    try:
        if backend == "transformers":
            import torch
            import transformers  # noqa: F401

            if not torch.cuda.is_available():
                return f"torch {torch.__version__} sees no CUDA GPU"
        elif backend == "vllm":
            import vllm  # noqa: F401
        elif backend == "tensorrt":
            import tensorrt_llm  # noqa: F401
        else:
            return f"unknown backend {backend!r}"
    except Exception as e:  # ImportError, or a broken install (missing CUDA libraries)
        first = (str(e).strip().splitlines() or [""])[0]
        return f"not importable: {type(e).__name__}: {first}"[:300]
    return None


def resolve(campaign: str, backend: str, out: str) -> None:
    """Write the resolved config.json of the campaign's one run of `backend`."""
    from llenergymeasure.config import load_campaign
    from llenergymeasure.results.io import write_model_atomic

    runs = [r for r in load_campaign(campaign).runs.values() if r.backend == backend]
    if len(runs) != 1:
        sys.exit(f"{campaign}: expected one {backend} run, found {len(runs)}")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_model_atomic(Path(out), runs[0])


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def judge(backend_dir: Path) -> dict[str, Any]:
    """The verdict on one backend's directory: PASS, FAIL or SKIP, with its numbers."""
    backend = backend_dir.name
    skipped = backend_dir / "skipped.txt"
    if skipped.exists():
        return {"backend": backend, "verdict": "SKIP", "reason": skipped.read_text().strip()}
    result_path = backend_dir / "result.json"
    if not result_path.exists():
        code = (
            (backend_dir / "exit_code.txt").read_text().strip()
            if (backend_dir / "exit_code.txt").exists()
            else "?"
        )
        return {
            "backend": backend,
            "verdict": "FAIL",
            "reason": f"no result.json (llem run exited {code}; see {backend_dir / 'run.log'})",
        }
    result = json.loads(result_path.read_text())
    if result.get("status") == "failed":
        reason = f"{result['failure_class']} in {result['phase']}: {result['message']}"
        return {"backend": backend, "verdict": "FAIL", "reason": reason}
    energy = result["energy"]
    row = {
        "backend": backend,
        "energy_source": f"{energy['method']}/{energy['confidence']}",
        "device_methods": sorted({d["method"] for d in energy.get("per_device", [])}),
        "energy_j": energy.get("energy_j"),
        "output_tokens": result["tokens"]["output_tokens"],
        "ttft_median_s": _get(result, "latency", "ttft_s", "median"),
        "output_tokens_per_s": result["throughput"]["output_tokens_per_s"],
        "model_load_s": result["timing"]["model_load_s"],
        "window_s": result["timing"]["window_s"],
        "tokens_per_request": {  # first pass over the prompts, by prompt
            str(r["index"]): r["output_tokens"]
            for r in result["requests"]
            if r.get("pass_index", 0) == 0
        },
    }
    problems = []
    if energy["method"] != "nvml" or energy["confidence"] != "measured":
        problems.append(f"energy from {row['energy_source']}, not nvml/measured")
    if row["energy_j"] is None:
        problems.append(f"energy_j null: {energy.get('null_reason')}")
    if not row["output_tokens"]:
        problems.append("no output tokens")
    if row["ttft_median_s"] is None:
        problems.append("no TTFT")
    row["verdict"] = "FAIL" if problems else "PASS"
    row["reason"] = "; ".join(problems)
    return row


def line(row: dict[str, Any]) -> str:
    """One compact line of the verdict."""
    head = f"{row['backend']:<12} {row['verdict']:<4}"
    if "energy_source" not in row:
        return f"{head} {row['reason']}"
    energy = "null" if row["energy_j"] is None else f"{row['energy_j']:.2f}"
    ttft = "null" if row["ttft_median_s"] is None else f"{row['ttft_median_s'] * 1000:.1f} ms"
    text = (
        f"{head} energy {row['energy_source']} ({', '.join(row['device_methods'])}) "
        f"energy_j={energy} tokens={row['output_tokens']} ttft_p50={ttft} "
        f"tok/s={row['output_tokens_per_s']:.0f} load={row['model_load_s']:.0f}s"
    )
    return f"{text}  [{row['reason']}]" if row["reason"] else text


def verdict(out_dir: Path) -> int:
    """Print and write (verdict.txt, verdict.json) the verdict of every backend."""
    rows = [judge(out_dir / b) for b in BACKENDS if (out_dir / b).is_dir()]
    reference = next(
        (r for r in rows if r["backend"] == "transformers" and "energy_source" in r), None
    )
    lines = [line(r) for r in rows]
    for row in rows:
        if reference is None or row is reference or "tokens_per_request" not in row:
            continue
        theirs, ours = reference["tokens_per_request"], row["tokens_per_request"]
        same = sum(ours.get(index) == count for index, count in theirs.items())
        lines.append(
            f"  {row['backend']}: output tokens equal to transformers' in {same} of "
            f"{len(theirs)} prompts (bf16 kernels may diverge)"
        )
    text = "\n".join(lines)
    print(text)
    (out_dir / "verdict.txt").write_text(text + "\n")
    (out_dir / "verdict.json").write_text(json.dumps(rows, indent=2) + "\n")
    verdicts = {r["verdict"] for r in rows}
    return 0 if "PASS" in verdicts and "FAIL" not in verdicts else 1


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "probe":
        reason = probe(argv[1])
        if reason:
            print(reason)
            return 1
        return 0
    if len(argv) == 4 and argv[0] == "resolve":
        resolve(argv[1], argv[2], argv[3])
        return 0
    if len(argv) == 2 and argv[0] == "verdict":
        return verdict(Path(argv[1]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
