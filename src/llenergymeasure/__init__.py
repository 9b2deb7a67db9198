"""llenergymeasure: measure the energy, throughput and latency of LLM inference campaigns."""

from __future__ import annotations

__version__ = "0.1.0"
