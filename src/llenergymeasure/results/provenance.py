"""provenance.json: where a campaign's numbers came from, in one file."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llenergymeasure import __version__
from llenergymeasure.environment import git_state
from llenergymeasure.results.io import read_result, write_text_atomic
from llenergymeasure.results.models import SCHEMA_VERSION, FailureRecord


def campaign_provenance(campaign_file: Path, result_paths: list[Path]) -> dict[str, Any]:
    """Campaign hash, code state, software per backend environment, hosts and devices seen."""
    environments: dict[str, list[dict[str, Any]]] = {}
    hosts: set[str] = set()
    devices: set[str] = set()
    meters: set[str] = set()
    schemas: set[str] = set()
    failures: dict[str, int] = {}
    images: dict[str, dict[str, Any]] = {}
    for path in result_paths:
        result = read_result(path)
        env, backend = result.environment, result.config.backend  # environment: a plain mapping
        schemas.add(result.schema_version)
        hosts.add(env["host"])
        container = env.get("container") or {}
        if container.get("image"):
            images.setdefault(
                container["image"],
                {
                    "runtime": container["runtime"],
                    "image_id": container.get("image_id"),
                    "digest": container.get("digest"),
                    "backends": [],
                },
            )
            if backend not in images[container["image"]]["backends"]:
                images[container["image"]]["backends"].append(backend)
        if isinstance(result, FailureRecord):
            failures[result.failure_class] = failures.get(result.failure_class, 0) + 1
            continue
        software = {**env.get("packages", {}), **env.get("backend", {}), "python": env["python"]}
        seen = environments.setdefault(backend, [])
        if software not in seen:
            seen.append(software)
        devices.add(f"{env['host']}: cpu {env['cpu_model']}")
        for gpu in env.get("gpus", []):
            devices.add(f"{env['host']}: gpu {gpu}")
        devices.update(f"{env['host']}: energy {d}" for d in result.energy.devices)
        confidence = result.energy.confidence
        meters.add(f"{result.energy.method} ({confidence or 'no energy measured'})")
    return {
        "campaign_file": str(campaign_file),
        "campaign_sha256": hashlib.sha256(campaign_file.read_bytes()).hexdigest(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "llenergymeasure": __version__,
        "git": git_state(),
        "runs": len(result_paths),
        "succeeded": len(result_paths) - sum(failures.values()),
        "failed": sum(failures.values()),
        "failed_by_class": dict(sorted(failures.items())),
        "result_schema_versions": sorted(schemas),
        "current_schema_version": SCHEMA_VERSION,
        "software_per_backend": environments,
        "container_images": images,
        "hosts": sorted(hosts),
        "devices": sorted(devices),
        "energy_methods": sorted(meters),
    }


def write_provenance(campaign_file: Path, result_paths: list[Path], out: Path) -> None:
    """Write provenance.json atomically."""
    data = campaign_provenance(campaign_file, result_paths)
    write_text_atomic(out, json.dumps(data, indent=2) + "\n")
