"""``phaseflow registry check FILE``: load a registry as the worker would, before deploying it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from phaseflow.streams.core.registry import load_registry


def check_registry_file(path: Path, out: TextIO | None = None) -> int:
    """Print what ``path`` declares and return 0; a bad file raises the loader's
    :class:`~phaseflow.streams.core.registry.RegistryError` (every problem, one line each; the CLI
    exits 2)."""
    registry = load_registry(path)
    processors = sum(len(spec.members) for spec in registry.phases)
    groups = sum(len(spec.any_of) for spec in registry.phases)
    phases = ", ".join(str(spec.phase) for spec in registry.phases)
    systems = len(registry.enabled_systems)
    fallbacks = f" ({groups} fallback group(s))" if groups else ""
    (out or sys.stdout).write(
        f"{path}: ok: phases {phases}, {processors} processors{fallbacks}, "
        f"{systems} prediction system(s) enabled\n"
    )
    return 0
