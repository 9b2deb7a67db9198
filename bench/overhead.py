"""Throughput of llem's measured run vs the bare engine on the same prompts, per backend.

transformers: `measure()` (meter, per-step timestamping streamer, token counting,
statistics; model loaded outside the window) vs a bare `model.generate` loop over the same
batches. vllm: llem's streaming `VllmBackend.run` (AsyncLLM, delta outputs, every token
timestamped) inside a CodeCarbon meter window vs a bare `vllm.LLM.generate` over the same
token-id prompts. Interleaved in one process, medians, ratio printed (target >= 0.97).

Usage: python bench/overhead.py [transformers|vllm|all] [rounds]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("LLEM_MODELS_DIR", str(Path(__file__).parents[1] / "resources/models"))

SETTINGS = {
    "batch_size": 4,
    "dtype": "bfloat16",
    "max_new_tokens": 32,
    "min_new_tokens": 32,
    "num_prompts": 8,
    "max_input_tokens": 128,
    "threads": 1,
}
CAMPAIGN = {
    "name": "bench",
    "models": ["smollm2-135m"],
    "settings": SETTINGS,
    "measurement": {"meter": "codecarbon", "warmup_batches": 1, "baseline_s": 0},
}


def bare_tokens_per_s(backend, batches: list) -> float:
    import torch

    kwargs = backend.generation_kwargs()
    tokens = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            inputs = backend.encode_batch(batch)
            out = backend.model.generate(**inputs, **kwargs)
            tokens += out.shape[0] * (out.shape[1] - inputs["input_ids"].shape[1])
    return tokens / (time.perf_counter() - start)


def report(name: str, measured: list[float], plain: list[float]) -> None:
    m, b = statistics.median(measured), statistics.median(plain)
    print(f"[{name}] rounds={len(measured)} {SETTINGS}")
    print(
        f"[{name}] measured llem run : {m:8.2f} tok/s  ({', '.join(f'{x:.1f}' for x in measured)})"
    )
    print(f"[{name}] bare engine       : {b:8.2f} tok/s  ({', '.join(f'{x:.1f}' for x in plain)})")
    print(f"[{name}] ratio measured/bare: {m / b:.3f}  (target >= 0.97)")


def transformers_bench(
    rounds: int, measurement: dict | None = None, name: str = "transformers"
) -> None:
    """Measured `measure()` runs vs bare `generate` loops (`measurement` overrides the meter)."""
    from llenergymeasure.backends.transformers import TransformersBackend
    from llenergymeasure.config import plan_campaign
    from llenergymeasure.measure.session import measure

    campaign = {**CAMPAIGN, "measurement": measurement or CAMPAIGN["measurement"]}
    (config,) = plan_campaign(campaign, "bench").runs.values()
    bare = TransformersBackend(config)
    bare.load()
    prompts = bare.prepare_prompts()
    size = config.settings.batch_size
    batches = [prompts[i : i + size] for i in range(0, len(prompts), size)]
    bare_tokens_per_s(bare, batches[:1])  # warm up like the measured run does
    measured, plain = [], []
    for _ in range(rounds):
        measured.append(measure(config).throughput.output_tokens_per_s)
        plain.append(bare_tokens_per_s(bare, batches))
    report(name, measured, plain)


def vllm_bench(rounds: int) -> None:
    from vllm import LLM, SamplingParams

    from llenergymeasure.backends.vllm import VllmBackend
    from llenergymeasure.config import plan_campaign
    from llenergymeasure.devices.codecarbon import CodeCarbonMeter

    campaign = {
        **CAMPAIGN,
        "backends": ["vllm"],
        "settings": {**SETTINGS, "vllm": {"enforce_eager": True}},
    }
    (config,) = plan_campaign(campaign, "bench").runs.values()
    ours = VllmBackend(config)
    ours.load()
    prompts = ours.prepare_prompts()
    bare = LLM(  # like ours: no prefix caching (llem's default), so no round is served from cache
        model=config.model.path,
        dtype=SETTINGS["dtype"],
        max_num_seqs=4,
        enforce_eager=True,
        enable_prefix_caching=False,
        seed=0,
    )
    params = SamplingParams(temperature=0.0, max_tokens=32, min_tokens=32)
    inputs = [{"prompt_token_ids": list(p.token_ids)} for p in prompts]

    def measured_run() -> float:
        meter = CodeCarbonMeter(1.0, "USA")
        meter.begin_window()
        start = time.perf_counter()
        timings = ours.run(prompts)
        elapsed = time.perf_counter() - start
        meter.end_window()
        return sum(len(t.output_ids) for t in timings) / elapsed

    def bare_run() -> float:
        start = time.perf_counter()
        outputs = bare.generate(inputs, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        return sum(len(o.outputs[0].token_ids) for o in outputs) / elapsed

    measured_run(), bare_run()  # warm up both engines
    measured, plain = [], []
    for _ in range(rounds):
        measured.append(measured_run())
        plain.append(bare_run())
    ours.close()
    report("vllm", measured, plain)


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if which in ("transformers", "all"):
        transformers_bench(rounds)
    if which in ("vllm", "all"):
        vllm_bench(rounds)


if __name__ == "__main__":
    main()
