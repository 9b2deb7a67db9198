"""Throughput of llem's measured transformers run vs a bare `model.generate` loop.

Both paths load the embedded model, run the same batches with the same generation
settings, and are interleaved in one process, so machine noise hits both alike.
The measured path is `llenergymeasure.measure.session.measure` (meter, per-token streamer,
token counting, statistics); the bare path is `model.generate` over the same inputs.
Prints tokens/s of each and their ratio (target >= 0.97).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("LLEM_MODELS_DIR", str(Path(__file__).parents[1] / "resources/models"))

import torch  # noqa: E402

from llenergymeasure.backends.transformers import TransformersBackend  # noqa: E402
from llenergymeasure.config import plan_campaign  # noqa: E402
from llenergymeasure.measure.session import measure  # noqa: E402

CAMPAIGN = {
    "name": "bench",
    "models": ["smollm2-135m"],
    "settings": {
        "batch_size": 4,
        "dtype": "bfloat16",
        "max_new_tokens": 32,
        "min_new_tokens": 32,
        "num_prompts": 8,
        "max_input_tokens": 128,
        "threads": 1,
    },
    "measurement": {"meter": "codecarbon", "warmup_batches": 1},
}


def bare_tokens_per_s(backend: TransformersBackend, batches: list) -> float:
    kwargs = backend.generation_kwargs()
    tokens = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            inputs = backend.encode_batch(batch)
            out = backend.model.generate(**inputs, **kwargs)
            tokens += out.shape[0] * (out.shape[1] - inputs["input_ids"].shape[1])
    return tokens / (time.perf_counter() - start)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    (config,) = plan_campaign(CAMPAIGN, "bench").runs.values()
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
    m, b = statistics.median(measured), statistics.median(plain)
    print(f"rounds={rounds} batch={size} tokens/batch-row={config.settings.max_new_tokens}")
    print(f"measured llem run : {m:8.2f} tok/s  (each: {', '.join(f'{x:.1f}' for x in measured)})")
    print(f"bare generate loop: {b:8.2f} tok/s  (each: {', '.join(f'{x:.1f}' for x in plain)})")
    print(f"ratio measured/bare: {m / b:.3f}  (target >= 0.97)")


if __name__ == "__main__":
    main()
