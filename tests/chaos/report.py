"""Recovery times the fault tests measure: a table at the end of the run, and a JSON file.

The numbers in docs/failure-modes.md come from ``.cache/chaos-report.json``,
written by ``PHASEFLOW_TEST_BROKER=kafka .venv/bin/pytest -m "chaos or endurance"``.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPORT_PATH = Path(__file__).resolve().parents[2] / ".cache" / "chaos-report.json"

Value = float | int | str


@dataclass
class ChaosReport:
    """``{fault: {measurement: value}}`` in the order the tests recorded them."""

    faults: dict[str, dict[str, Value]] = field(default_factory=dict)

    def record(self, fault: str, measurement: str, value: Value) -> None:
        self.faults.setdefault(fault, {})[measurement] = (
            round(value, 2) if isinstance(value, float) else value
        )

    def table(self) -> str:
        width = max((len(m) for values in self.faults.values() for m in values), default=10)
        lines: list[str] = []
        for fault, values in self.faults.items():
            lines.append(fault)
            lines += [f"  {name:<{width}}  {value}" for name, value in values.items()]
        return "\n".join(lines)

    def write(self, path: Path = REPORT_PATH) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": 'PHASEFLOW_TEST_BROKER=kafka .venv/bin/pytest -m "chaos or endurance"',
            "broker": os.environ.get("PHASEFLOW_TEST_BROKER", "tansu"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "faults": self.faults,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path
