"""``phaseflow worker``, run for real, stops on an old setting's variable with exit 2 and one
line naming the new variable (streams/core/env_check.py) instead of running with the setting at
its default.

rename_settings: skip (sets an old variable on purpose)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from phaseflow.streams.local.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
#: Guards against a hanging worker (the check failed and it started); not a timing assertion.
HANG_GUARD_SECONDS = 120


def test_the_worker_with_a_renamed_variable_names_the_new_one_and_exits_2() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PHASEFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    closed = f"127.0.0.1:{free_port()}"
    env |= {
        # Were the old variable ignored, the worker would start (and fail on the closed port
        # with exit 1 and another line).
        "PHASEFLOW_BROKER_URL": closed,
        "PHASEFLOW_WEB_PORT": str(free_port()),
        "PHASEFLOW_TEST_BROKER": "kafka",  # the suite's own variables pass
        "PHASEFLOW_BROKER_SESSION_TIMEOUT_SECONDS": "6",
    }
    done = subprocess.run(
        [sys.executable, "-m", "phaseflow.streams.cli", "worker"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=HANG_GUARD_SECONDS,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, ""), done
    assert done.stderr.splitlines() == [
        (
            "phaseflow: error: PHASEFLOW_BROKER_SESSION_TIMEOUT_SECONDS is now "
            "PHASEFLOW_KAFKA_SESSION_TIMEOUT_SECONDS"
        )
    ]
