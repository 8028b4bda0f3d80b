"""Move the ground-floor modules into ``phaseflow.streams.core`` and rewrite every reference.

The layers (docs/architecture.md, checked by ``make imports``) put what agents and sinks are
built on in ``streams/core/``. The moves are mechanical, so they are made by this script from
the table :data:`MOVES` rather than by hand: a branch written against the old names is merged,
then this script is run again on the result. It is idempotent (a second run changes nothing)
and tolerates a module of the table that does not exist (not written yet, or already moved)::

    python scripts/move_modules.py          # git mv + rewrite in place, then ruff isort + format
    python scripts/move_modules.py --check  # list what still needs moving; exit 1 if anything

For each ``old -> new`` module it

* ``git mv``\\s the file (``streams/settings.py`` -> ``streams/core/settings.py``) when the old
  file exists and the new one does not;
* rewrites, in every text file of the repository (.py, .md, .toml, .yml/.yaml, .cfg, .ini,
  ``.importlinter``, Dockerfile, Makefile, scripts/kafka-local), the dotted name wherever it
  stands alone: imports, ``-m`` arguments, logger names, ``monkeypatch.setattr`` targets,
  ``:mod:`` references, docs (``phaseflow.streams.settings.Settings`` included); and
  ``from phaseflow.streams import topic_names`` style imports of a moved module;
* rewrites the file path (``streams/settings.py``) in docs and comments.

Names that only start like a moved module (``phaseflow.streams.registry_check`` next to
``phaseflow.streams.registry``) are left alone. This file holds the table and is never
rewritten, nor is a file that says ``move_modules: skip`` (its test shows old names on purpose)
or ``namespace_imports: skip`` (the examples of that older rewrite are about other names).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from namespace_imports import _tidy, wrap_long_lines  # noqa: E402

#: old module -> new module. Modules other developers are writing now are listed too; a row
#: whose old file does not exist only has its references rewritten.
MOVES: dict[str, str] = {
    # settings and what they are made of
    "phaseflow.streams.settings": "phaseflow.streams.core.settings",
    "phaseflow.streams.broker_connection": "phaseflow.streams.core.broker_connection",
    "phaseflow.streams.deployment": "phaseflow.streams.core.deployment",
    "phaseflow.streams.clock": "phaseflow.streams.core.clock",
    "phaseflow.streams.lifecycle": "phaseflow.streams.core.lifecycle",
    # topics, codec, publishing
    "phaseflow.streams.topic_names": "phaseflow.streams.core.topic_names",
    "phaseflow.streams.topics": "phaseflow.streams.core.topics",
    "phaseflow.streams.codecs": "phaseflow.streams.core.codecs",
    "phaseflow.streams.side_producer": "phaseflow.streams.core.side_producer",
    "phaseflow.agents.publisher": "phaseflow.streams.core.publisher",
    "phaseflow.agents.envelope": "phaseflow.streams.core.envelope",
    # the registry format
    "phaseflow.streams.registry": "phaseflow.streams.core.registry",
    "phaseflow.streams.registry_meaning": "phaseflow.streams.core.registry_meaning",
    "phaseflow.streams.registry_fields": "phaseflow.streams.core.registry_fields",
    "phaseflow.streams.registry_structure": "phaseflow.streams.core.registry_structure",
    # clients of Kafka and BigQuery (kafka_*, bigquery_clients: being written on other branches)
    "phaseflow.streams.kafka_clients": "phaseflow.streams.core.kafka_clients",
    "phaseflow.streams.kafka_security": "phaseflow.streams.core.kafka_security",
    "phaseflow.streams.bigquery_clients": "phaseflow.streams.core.bigquery_clients",
    "phaseflow.streams.bigquery_permissions": "phaseflow.streams.core.bigquery_permissions",
    "phaseflow.sinks.bigquery_client": "phaseflow.streams.core.bigquery_client",
    # the app's Prometheus series, recorded into by agents and sinks
    "phaseflow.streams.web.metrics": "phaseflow.streams.core.metrics",
    # an event of the contract (the audit topic), written by the web layer, read by a sink
    "phaseflow.streams.web.audit": "phaseflow.models.audit",
}

NAMESPACE = "phaseflow"
_TEXT_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".cfg", ".ini", ".txt"}
_TEXT_NAMES = {"Dockerfile", "Makefile", "kafka-local", ".importlinter"}
_SKIPPED_DIRS = {".git", ".venv", ".cache", "build", "dist", NAMESPACE, "__pycache__"}
_THIS_FILE = Path(__file__).resolve()
SKIP_MARKERS = ("move_modules: skip", "namespace_imports: skip")


def module_path(module: str) -> Path:
    """The repository path of a ``phaseflow.*`` module (``phaseflow/`` links each top folder)."""
    parts = module.split(".")
    if parts[0] != NAMESPACE or len(parts) < 3:
        raise ValueError(f"not a module below a phaseflow package: {module}")
    return Path(*parts[1:]).with_suffix(".py")


def _name_pattern(old: str) -> re.Pattern[str]:
    # Not preceded by a name character or a dot (so x.phaseflow... is left), not followed by
    # a name character (so registry does not match registry_check); a following ".Name" is
    # kept, as it is an attribute of the moved module.
    return re.compile(rf"(?<![\w.]){re.escape(old)}(?!\w)")


def _path_pattern(old: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w./-]){re.escape(module_path(old).as_posix())}(?![\w])")


def _from_import_pattern(old: str) -> re.Pattern[str]:
    parent, name = old.rsplit(".", 1)
    return re.compile(
        rf"^(\s*)from {re.escape(parent)} import {re.escape(name)}(\s*(?:#.*)?)$", re.M
    )


def _needles(old: str) -> tuple[str, ...]:
    return (old, module_path(old).as_posix(), f"import {old.rsplit('.', 1)[1]}")


_MULTI_IMPORT = re.compile(r"^(\s*)from (phaseflow[\w.]*) import (\w+(?:, \w+)+)\s*$", re.M)


def _split_imports(text: str, moves: dict[str, str]) -> str:
    """``from pkg import a, b`` naming a moved module as one line per name, so the one-name
    rewrite below applies (ruff joins what stays together afterwards)."""

    def split(match: re.Match[str]) -> str:
        indent, parent, names = match.groups()
        parts = [name.strip() for name in names.split(",")]
        if not any(f"{parent}.{name}" in moves for name in parts):
            return match.group(0)
        return "\n".join(f"{indent}from {parent} import {name}" for name in parts)

    return _MULTI_IMPORT.sub(split, text)


def rewrite(text: str, moves: dict[str, str] = MOVES) -> str:
    """``text`` with every reference to an old module pointing at its new one."""
    text = _split_imports(text, moves)
    for old, new in sorted(moves.items(), key=lambda item: len(item[0]), reverse=True):
        if not any(needle in text for needle in _needles(old)):
            continue  # most files name none of them: skip the patterns
        new_parent, new_name = new.rsplit(".", 1)
        name = old.rsplit(".", 1)[1]
        alias = "" if new_name == name else f" as {name}"
        text = _from_import_pattern(old).sub(
            rf"\1from {new_parent} import {new_name}{alias}\2", text
        )
        text = _name_pattern(old).sub(new, text)
        text = _path_pattern(old).sub(module_path(new).as_posix(), text)
    return text


def candidate_files(repo: Path) -> Iterator[Path]:
    """Text files this script may rewrite (never itself, never phaseflow/'s links)."""
    for path in sorted(repo.rglob("*")):
        relative_dirs = path.relative_to(repo).parts[:-1]
        if any(part in _SKIPPED_DIRS or part.startswith(".") for part in relative_dirs):
            continue
        if not path.is_file() or path.is_symlink() or path.resolve() == _THIS_FILE:
            continue
        if path.suffix in _TEXT_SUFFIXES or path.name in _TEXT_NAMES:
            yield path


def pending_moves(repo: Path, moves: dict[str, str] = MOVES) -> list[tuple[Path, Path]]:
    """``(old, new)`` paths of the modules still at their old place."""
    pending = []
    for old, new in moves.items():
        source, target = repo / module_path(old), repo / module_path(new)
        if source.exists() and not target.exists():
            pending.append((source, target))
        elif source.exists():
            raise SystemExit(f"both {source} and {target} exist: merge them by hand, then rerun")
    return pending


def stale_files(repo: Path, moves: dict[str, str] = MOVES) -> Iterator[tuple[Path, str]]:
    """``(path, rewritten text)`` for each file that still names an old module."""
    for path in candidate_files(repo):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if any(marker in text for marker in SKIP_MARKERS):
            continue
        updated = rewrite(text, moves)
        if path.suffix == ".py" and updated != text:
            updated = wrap_long_lines(updated)
        if updated != text:
            yield path, updated


def _git_mv(repo: Path, source: Path, target: Path) -> None:
    if not (target.parent / "__init__.py").exists():
        raise SystemExit(f"{target.parent} is not a package (no __init__.py): create it first")
    git = shutil.which("git")
    if git is None:
        raise SystemExit("git not found on PATH: the moves are made with `git mv`")
    source_name, target_name = str(source.relative_to(repo)), str(target.relative_to(repo))
    subprocess.run([git, "-C", str(repo), "mv", source_name, target_name], check=True)  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only list; exit 1 if anything")
    parser.add_argument("--repo", type=Path, default=REPO, help="repository root")
    args = parser.parse_args(argv)
    repo: Path = args.repo.resolve()
    moves = pending_moves(repo)
    if args.check:
        stale = list(stale_files(repo))
        for source, target in moves:
            print(f"{source.relative_to(repo)}: not moved to {target.relative_to(repo)}")
        for path, _ in stale:
            print(f"{path.relative_to(repo)}: names a module of the move table by its old name")
        if moves or stale:
            print(f"run: python scripts/move_modules.py  ({len(moves)} moves, {len(stale)} files)")
            return 1
        print("every module of the move table is in place and named by its new name")
        return 0
    for source, target in moves:
        _git_mv(repo, source, target)
        print(f"moved {source.relative_to(repo)} -> {target.relative_to(repo)}")
    stale = list(stale_files(repo))
    for path, updated in stale:
        path.write_text(updated, encoding="utf-8")
        print(f"rewrote {path.relative_to(repo)}")
    _tidy(path for path, _ in stale)
    print(f"{len(moves)} modules moved, {len(stale)} files rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
