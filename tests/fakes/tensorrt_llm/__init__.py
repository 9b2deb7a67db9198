"""A stand-in for `tensorrt_llm` (TensorRT-LLM 1.2.1's LLM API), for tests only.

The real package cannot be installed on these machines (no CUDA). This one is importable
only where a test puts `tests/fakes` on `sys.path`/`PYTHONPATH`. It accepts exactly the
keyword names of the real `LLM(...)` (`TorchLlmArgs` fields), `SamplingParams`,
`KvCacheConfig` and `SchedulerConfig` that llem uses or tests (read from TensorRT-LLM's
source), so a misspelt argument fails as it would for real, and streams scripted outputs:
multi-token updates (as speculative decoding yields them), both finish reasons, and
per-request perf metrics on the engine's steady clock (CLOCK_MONOTONIC). Where llem's numbers
depend on it, it behaves as TensorRT-LLM 1.2 does (see `_engine`).

The script is set with `FAKE_TRTLLM_SCENARIO` (JSON, see `_engine.Scenario`); every
constructed engine appends its arguments to `FAKE_TRTLLM_TRACE` (a JSONL file) if set.
"""

from __future__ import annotations

from tensorrt_llm._engine import LLM
from tensorrt_llm.sampling_params import SamplingParams

__version__ = "1.2.1"

__all__ = ["LLM", "SamplingParams", "__version__"]
