"""Third-party noise that does not concern a run, switched off at its source."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path


def _rocm_present() -> bool:
    roots = [os.environ.get("ROCM_PATH", ""), "/opt/rocm"]
    return any((Path(root) / "lib" / "libamd_smi.so").exists() for root in roots if root)


def quiet_third_party() -> None:
    """Silence what is not ours to show; our own log lines and real errors stay.

    - AMD's `amdsmi` (installed with Zeus) prints "libamd_smi.so not found" when imported on a
      host without ROCm, and CodeCarbon then warns "AMD GPU detected": without ROCm's library
      it is not imported at all (CodeCarbon and vLLM treat that as "no AMD GPU").
    - torchao's optional CUDA kernels ("Failed to load _C_mxfp8...") and torch's pytree
      registration notices are logged at WARNING: raised to ERROR.
    - Progress bars of weight loading are off (they fill log files with carriage returns).
    - vLLM's notices that Triton has no CPU backend, and the FutureWarning its dispatcher
      triggers in torch (`reduce_op` deprecated), say nothing about the run; nor do vLLM's
      INFO lines (engine configuration and shutdown steps, ~40 a run: the result records the
      settings): vLLM logs from WARNING up (its performance hints stay).

    `llem`'s command module calls this when imported, so vLLM's spawned engine processes
    (which import the `llem` script first) are quiet too.
    """
    if not _rocm_present():
        sys.modules.setdefault("amdsmi", None)  # type: ignore[arg-type]
    for name in ("torchao", "torch.utils._pytree", "vllm.triton_utils.importing"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*reduce_op.* is deprecated", category=FutureWarning)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
