"""One exception hierarchy; every user-facing error names the file and the field."""

from __future__ import annotations


class LlemError(Exception):
    """Base class of every error llenergymeasure reports to a user."""


class ConfigError(LlemError):
    """A campaign or run configuration is invalid.

    Args:
        source: The file the configuration came from.
        key: Dotted key path of the offending value ("" for the whole file).
        reason: What is wrong and, where possible, what to do instead.
    """

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        location = f"{source}: {key}" if key else source
        super().__init__(f"{location}: {reason}")


class BackendError(LlemError):
    """An inference backend could not load a model or generate."""


class MeterError(LlemError):
    """An energy meter could not be started or read."""


class ArchitectureError(LlemError):
    """A model config lacks a dimension the FLOP formula needs."""


class DeviceSettingError(LlemError):
    """A GPU setting (power limit, locked clocks) is outside the device's range or not allowed."""


class ContainerError(LlemError):
    """A run's container could not start: runtime or image missing, GPUs not passed through."""
