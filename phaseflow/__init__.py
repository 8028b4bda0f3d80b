"""phaseflow: keeps a six-phase daily data pipeline moving, correct and observable.

The one name this distribution installs. Its subpackages live in the repository's top-level
folders (``phaseflow/streams`` is a symlink to ``streams/``, likewise ``agents``, ``models`` and
``sinks``), so a processor's own ``models`` or ``agents`` package cannot shadow ours; see
docs/packaging.md.
"""
