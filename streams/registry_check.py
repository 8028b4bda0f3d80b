"""``phaseflow registry check FILE``: load a registry as the worker would, before deploying it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from phaseflow.streams.core.registry import Registry, load_registry
from phaseflow.streams.json_output import write_json


def check_registry_file(path: Path, out: TextIO | None = None, *, as_json: bool = False) -> int:
    """Print what ``path`` declares (``as_json``: as one JSON document) and return 0; a bad file
    raises the loader's :class:`~phaseflow.streams.core.registry.RegistryError` (every problem,
    one line each; the CLI exits 2)."""
    registry = load_registry(path)
    stream = out or sys.stdout
    if as_json:
        write_json(stream, registry_document(path, registry))
        return 0
    processors = sum(len(spec.members) for spec in registry.phases)
    groups = sum(len(spec.any_of) for spec in registry.phases)
    phases = ", ".join(str(spec.phase) for spec in registry.phases)
    systems = len(registry.enabled_systems)
    fallbacks = f" ({groups} fallback group(s))" if groups else ""
    stream.write(
        f"{path}: ok: phases {phases}, {processors} processors{fallbacks}, "
        f"{systems} prediction system(s) enabled\n"
    )
    return 0


def registry_document(path: Path, registry: Registry) -> dict[str, Any]:
    """``registry check --json``: the summary line's numbers, what each phase waits for, and the
    whole validated registry (defaults filled in; durations as ISO 8601, e.g. ``PT5M``)."""
    return {
        "file": str(path),
        "ok": True,
        "phases": [
            {
                "phase": spec.phase,
                "name": spec.name,
                "gated": spec.gated,
                "rule": spec.rule,
                "expected": sorted(spec.required),
                "fallback_groups": [list(group) for group in spec.any_of],
            }
            for spec in registry.phases
        ],
        "processors": sum(len(spec.members) for spec in registry.phases),
        "fallback_groups": sum(len(spec.any_of) for spec in registry.phases),
        "systems_enabled": [system.system_id for system in registry.enabled_systems],
        "registry": registry.model_dump(mode="json"),
    }
