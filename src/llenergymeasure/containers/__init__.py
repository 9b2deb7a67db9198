"""Runs inside their backend's container image: the runtime, the launch, the image builds."""
