"""Measurement session: latency, and the protocol of one run."""
