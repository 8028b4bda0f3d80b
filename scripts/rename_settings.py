"""Rename settings to their group's prefix and rewrite every use of the old names.

The settings are grouped by prefix (``PHASEFLOW_KAFKA_*``, ``_SINK_*``, ``_LAG_*``,
``_PREDICTION_*``, ``_BIGQUERY_*``, ``_WEB_*``; docs/settings.md). The renames are mechanical,
so this script makes them from the table :data:`RENAMES` rather than by hand: a branch written
against the old names is merged, then this script is run again on the result. It is idempotent
(a second run changes nothing)::

    python scripts/rename_settings.py          # rewrite in place, then ruff isort + format
    python scripts/rename_settings.py --check  # list every old name left; exit 1 if any

In Python files (parsed, so only these places change) it rewrites

* attribute uses ``settings.old`` (any receiver but Faust's ``conf``);
* keyword arguments ``old=`` (``Settings(old=...)``, ``make_settings(old=...)``), except in
  calls of :data:`KEEP_CALLEES` whose own parameter has that name (``faust.App(topic_partitions=
  settings.kafka_topic_partitions)``); a function *parameter* named ``old`` is never renamed;
* string literals that are exactly a name (``"old"`` in ``model_copy(update={...})`` dicts,
  ``env_var("old")``, ``("old", True)``) or its upper case without the prefix (``"OLD"``);
* field declarations and properties named ``old`` in a class (``Settings``, ``ClientSettings``,
  the publisher's settings protocol);
* the whole word ``old`` in comments and docstrings;

and in every text file (.py, .md, .toml, .yml/.yaml, .cfg, .ini, .txt, .env, Dockerfile,
Makefile, scripts/kafka-local) the variable ``PHASEFLOW_OLD``, plus the whole word ``old`` in
Markdown. ``--check`` then reports any whole-word old name still left anywhere (a place this
script does not rewrite): review each, rename it by hand or add it to :data:`KEEP_CALLEES`.
This file holds the table and is never rewritten, nor is a file that says
``rename_settings: skip`` (its test shows old names on purpose; streams/core/env_check.py
names them to tell the user what they became).
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from namespace_imports import _tidy  # noqa: E402

from phaseflow.streams.core.env_check import RENAMED  # noqa: E402

#: old field -> new field (the variable is ``PHASEFLOW_`` + the upper-cased field): the table
#: streams/core/env_check.py uses to tell a user setting an old variable its new name.
RENAMES: dict[str, str] = dict(RENAMED)
#: Settings other branches are adding now, renamed when they are merged and this script is run
#: again (a no-op before). Never released under the old name, so streams/core/env_check.py
#: does not list them.
PENDING: dict[str, str] = {
    "consumer_fetch_wait_seconds": "kafka_fetch_wait_seconds",
}
#: Every rename the rewrite applies.
ALL_RENAMES: dict[str, str] = RENAMES | PENDING

#: Calls whose own parameter has an old setting's name: their keyword stays (Faust's App has
#: ``topic_partitions`` and ``topic_replication_factor`` settings of its own).
KEEP_CALLEES: frozenset[str] = frozenset({"App"})
#: Receivers whose attribute of an old name is not ours (Faust's ``app.conf.topic_partitions``).
KEEP_RECEIVERS: frozenset[str] = frozenset({"conf"})

ENV_PREFIX = "PHASEFLOW_"
_TEXT_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".cfg", ".ini", ".txt", ".env"}
_TEXT_NAMES = {"Dockerfile", "Makefile", "kafka-local", ".importlinter"}
_SKIPPED_DIRS = {".git", ".venv", ".cache", "build", "dist", "phaseflow", "__pycache__"}
_THIS_FILE = Path(__file__).resolve()
SKIP_MARKER = "rename_settings: skip"


def _env_pattern(old: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9_]){ENV_PREFIX}{re.escape(old.upper())}(?![A-Za-z0-9_])")


def _word_pattern(old: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(old)}(?![A-Za-z0-9_])")


def rename_env(text: str, renames: dict[str, str] = ALL_RENAMES) -> str:
    """``text`` with each old ``PHASEFLOW_OLD`` variable named by its new name."""
    for old, new in renames.items():
        text = _env_pattern(old).sub(f"{ENV_PREFIX}{new.upper()}", text)
    return text


def rename_words(text: str, renames: dict[str, str] = ALL_RENAMES) -> str:
    """``text`` (prose: Markdown, a comment, a docstring) with each old field name replaced."""
    for old, new in renames.items():
        text = _word_pattern(old).sub(new, text)
    return text


def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _receiver(node: ast.Attribute) -> str:
    value = node.value
    if isinstance(value, ast.Attribute):
        return value.attr
    if isinstance(value, ast.Name):
        return value.id
    return ""


# An edit: (line, start column, end column, replacement); lines 1-based, columns in characters.
Edit = tuple[int, int, int, str]


def _col(line: str, byte_col: int) -> int:
    """ast's column (UTF-8 bytes) as a character index."""
    return len(line.encode("utf-8")[:byte_col].decode("utf-8"))


def _code_edits(tree: ast.AST, lines: list[str], renames: dict[str, str]) -> Iterator[Edit]:
    upper = {old.upper(): new.upper() for old, new in renames.items()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in renames:
            if _receiver(node) in KEEP_RECEIVERS or node.end_lineno is None:
                continue
            line = lines[node.end_lineno - 1]
            end = _col(line, node.end_col_offset or 0)
            yield node.end_lineno, end - len(node.attr), end, renames[node.attr]
        elif isinstance(node, ast.Call) and _callee(node) not in KEEP_CALLEES:
            for keyword in node.keywords:
                if keyword.arg in renames:
                    line = lines[keyword.lineno - 1]
                    start = _col(line, keyword.col_offset)
                    yield keyword.lineno, start, start + len(keyword.arg), renames[keyword.arg]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            replacement = renames.get(node.value) or upper.get(node.value)
            if replacement is not None and node.lineno == node.end_lineno:
                line = lines[node.lineno - 1]
                start, end = _col(line, node.col_offset), _col(line, node.end_col_offset or 0)
                literal = line[start:end]
                yield node.lineno, start, end, literal.replace(node.value, replacement)
        elif isinstance(node, ast.ClassDef):
            yield from _class_edits(node, lines, renames)


def _class_edits(node: ast.ClassDef, lines: list[str], renames: dict[str, str]) -> Iterator[Edit]:
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            name = item.target
            if name.id in renames:
                start = _col(lines[name.lineno - 1], name.col_offset)
                yield name.lineno, start, start + len(name.id), renames[name.id]
        elif isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in renames:
            for number in range(item.lineno, (item.end_lineno or item.lineno) + 1):
                match = re.search(rf"\bdef\s+({re.escape(item.name)})\b", lines[number - 1])
                if match:
                    yield number, match.start(1), match.end(1), renames[item.name]
                    break


def _prose_edits(
    text: str, tree: ast.AST, lines: list[str], renames: dict[str, str]
) -> Iterator[Edit]:
    """Comments and docstrings: the whole word."""
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            yield from _word_edits(row, col, token.string, renames)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list) or not body:
            continue
        first = body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            for number in range(first.lineno, (first.end_lineno or first.lineno) + 1):
                yield from _word_edits(number, 0, lines[number - 1], renames)


def _word_edits(row: int, col: int, text: str, renames: dict[str, str]) -> Iterator[Edit]:
    for old, new in renames.items():
        for match in _word_pattern(old).finditer(text):
            yield row, col + match.start(), col + match.end(), new


def rewrite_python(text: str, renames: dict[str, str] = ALL_RENAMES) -> str:
    """A Python file with every use of an old setting's name renamed (see the module doc)."""
    if not any(old in text or old.upper() in text for old in renames):
        return text
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return rename_env(text, renames)  # not Python we can read: --check lists the rest
    lines = text.splitlines(keepends=True)
    edits = set(_code_edits(tree, lines, renames)) | set(_prose_edits(text, tree, lines, renames))
    for row, start, end, replacement in sorted(edits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[:start] + replacement + line[end:]
    return rename_env("".join(lines), renames)


def rewrite(path: Path, text: str, renames: dict[str, str] = ALL_RENAMES) -> str:
    """``text`` of ``path`` with the old names replaced."""
    if path.suffix == ".py":
        return rewrite_python(text, renames)
    if path.suffix == ".md":
        return rename_words(rename_env(text, renames), renames)
    return rename_env(text, renames)


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


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None
    return None if SKIP_MARKER in text else text


def stale_files(repo: Path, renames: dict[str, str] = ALL_RENAMES) -> Iterator[tuple[Path, str]]:
    """``(path, rewritten text)`` for each file the rewrite changes."""
    for path in candidate_files(repo):
        text = _read(path)
        if text is None:
            continue
        updated = rewrite(path, text, renames)
        if updated != text:
            yield path, updated


def leftovers(repo: Path, renames: dict[str, str] = ALL_RENAMES) -> Iterator[tuple[Path, int, str]]:
    """``(path, line number, line)`` of each old name still standing after the rewrite, but for
    the keywords of :data:`KEEP_CALLEES` calls and attributes of :data:`KEEP_RECEIVERS`."""
    patterns = [_word_pattern(old) for old in renames] + [
        re.compile(rf"(?<![A-Za-z0-9_]){re.escape(old.upper())}(?![A-Za-z0-9_])") for old in renames
    ]
    for path in candidate_files(repo):
        text = _read(path)
        if text is None:
            continue
        text = rewrite(path, text, renames)
        kept = _kept_lines(text) if path.suffix == ".py" else set()
        for number, line in enumerate(text.splitlines(), start=1):
            if number not in kept and any(pattern.search(line) for pattern in patterns):
                yield path, number, line.strip()


def _kept_lines(text: str) -> set[int]:
    """Lines of the keywords and attributes this script leaves on purpose."""
    kept: set[int] = set()
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return kept
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _callee(node) in KEEP_CALLEES:
            kept.update(keyword.lineno for keyword in node.keywords if keyword.arg in ALL_RENAMES)
        elif isinstance(node, ast.Attribute) and _receiver(node) in KEEP_RECEIVERS:
            kept.add(node.lineno)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only list; exit 1 if any old name")
    parser.add_argument("--repo", type=Path, default=REPO, help="repository root")
    args = parser.parse_args(argv)
    repo: Path = args.repo.resolve()
    if args.check:
        stale = list(stale_files(repo))
        left = list(leftovers(repo))
        for path, _ in stale:
            print(f"{path.relative_to(repo)}: names a renamed setting by its old name")
        for path, number, line in left:
            print(
                f"{path.relative_to(repo)}:{number}: old name the script does not rewrite: {line}"
            )
        if stale or left:
            print(f"run: python scripts/rename_settings.py ({len(stale)} files); review the rest")
            return 1
        print("every renamed setting is named by its new name")
        return 0
    stale = list(stale_files(repo))
    for path, updated in stale:
        path.write_text(updated, encoding="utf-8")
        print(f"rewrote {path.relative_to(repo)}")
    _tidy(path for path, _ in stale)
    left = list(leftovers(repo))
    for path, number, line in left:
        print(f"{path.relative_to(repo)}:{number}: review by hand: {line}")
    print(f"{len(stale)} files rewritten, {len(left)} lines to review")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
