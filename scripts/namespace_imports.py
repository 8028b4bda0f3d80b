"""Rewrite references to the old top-level packages to the installed ``phaseflow.*`` namespace.

The repository keeps its folders ``streams/ agents/ models/ sinks/`` at the top level, but the
installed distribution exposes only ``phaseflow.streams``, ``phaseflow.agents``,
``phaseflow.models`` and ``phaseflow.sinks`` (``phaseflow/`` holds ``__init__.py`` and one
symlink per folder; see docs/packaging.md). Code written against the old names
(``from streams.settings import ...``) fails with ``ModuleNotFoundError`` once installed, and
``tests/unit/test_namespace.py`` fails on it in a checkout.

Run it to bring a branch written in the old layout up to date (it is idempotent, so running it
twice changes nothing the second time)::

    python scripts/namespace_imports.py          # rewrite in place, then ruff format + isort
    python scripts/namespace_imports.py --check  # list stale references, exit 1 if any

Merging such a branch: merge, take the branch's side of conflicting hunks that only differ in
module names, run this script, then ``make lint typecheck test-unit``.

What it rewrites (in .py, .md, .toml, .yml/.yaml, Dockerfile, Makefile and scripts/kafka-local):

* ``from streams.x import y`` / ``from streams import y`` -> ``from phaseflow.streams...``
  (and ``import streams.x``), at the start of a line;
* a dotted module path naming an existing module, in code, strings, comments and docs:
  ``"agents.predictions.coordinator"`` (logger names), ``-m streams.cli``,
  ``:mod:`sinks.merge_sql```. Only names of modules that exist on disk are rewritten, so prose
  such as "the sinks. Then" and attributes such as ``ctx.agents.x`` stay as they are;
* ``resources.files("streams")`` -> ``resources.files("phaseflow.streams")``.

File system paths (``streams/pipeline.toml``) are left alone: the folders do not move. A file
that shows old names on purpose (this script's test, docs/packaging.md) says
``namespace_imports: skip`` in a comment.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tokenize
from collections.abc import Iterable, Iterator
from pathlib import Path

PACKAGES = ("streams", "agents", "models", "sinks")
NAMESPACE = "phaseflow"
REPO = Path(__file__).resolve().parents[1]
_TEXT_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml"}
_TEXT_NAMES = {"Dockerfile", "Makefile", "kafka-local"}
# Not ours, generated, or this script (its docstring shows the old names on purpose).
_SKIPPED_DIRS = {".git", ".venv", ".cache", "build", "dist", NAMESPACE, "__pycache__"}
_SKIPPED_DIR_PREFIXES = (".",)
_THIS_FILE = Path(__file__).resolve()
SKIP_MARKER = "namespace_imports: skip"


def module_names(repo: Path, package: str) -> set[str]:
    """Every dotted module path below ``package`` (``streams.web.views``, ``streams.web``...)."""
    root = repo / package
    names: set[str] = set()
    for path in root.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        relative = path.relative_to(repo).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        names.add(".".join(parts))
    names.discard(package)
    return names


def _module_pattern(repo: Path) -> re.Pattern[str]:
    # Longest first, so streams.web.views wins over streams.web; the lookbehind keeps
    # phaseflow.streams.x, ctx.agents.x and paths (tests/streams.x) as they are.
    names = sorted(
        (name for package in PACKAGES for name in module_names(repo, package)),
        key=len,
        reverse=True,
    )
    alternatives = "|".join(re.escape(name) for name in names)
    return re.compile(rf"(?<![\w./-])({alternatives})(?![\w])")


_PACKAGE_ALTERNATIVES = "|".join(PACKAGES)
_FROM_IMPORT = re.compile(rf"^(\s*)from ({_PACKAGE_ALTERNATIVES})(?=[.\s])", re.MULTILINE)
_PLAIN_IMPORT = re.compile(rf"^(\s*)import ({_PACKAGE_ALTERNATIVES})(?=[.\s]|$)", re.MULTILINE)
_RESOURCE_FILES = re.compile(rf"""(files\(\s*)(["'])({_PACKAGE_ALTERNATIVES})\2""")


def rewrite(text: str, module_pattern: re.Pattern[str]) -> str:
    """``text`` with every old module reference in the ``phaseflow`` namespace."""
    text = _FROM_IMPORT.sub(rf"\1from {NAMESPACE}.\2", text)
    text = _PLAIN_IMPORT.sub(rf"\1import {NAMESPACE}.\2", text)
    text = _RESOURCE_FILES.sub(rf"\1\2{NAMESPACE}.\3\2", text)
    return module_pattern.sub(rf"{NAMESPACE}.\1", text)


def candidate_files(repo: Path) -> Iterator[Path]:
    """Text files of the repository this script may rewrite (never itself, never phaseflow/)."""
    for path in sorted(repo.rglob("*")):
        relative_dirs = path.relative_to(repo).parts[:-1]
        if any(
            part in _SKIPPED_DIRS or part.startswith(_SKIPPED_DIR_PREFIXES)
            for part in relative_dirs
        ):
            continue
        if not path.is_file() or path.is_symlink() or path.resolve() == _THIS_FILE:
            continue
        if path.suffix in _TEXT_SUFFIXES or path.name in _TEXT_NAMES:
            yield path


def stale_files(repo: Path) -> Iterator[tuple[Path, str]]:
    """``(path, rewritten text)`` for each file that still names an old module."""
    pattern = _module_pattern(repo)
    for path in candidate_files(repo):
        text = path.read_text(encoding="utf-8")
        if SKIP_MARKER in text:
            continue
        updated = rewrite(text, pattern)
        if path.suffix == ".py":
            updated = wrap_long_lines(updated)
        if updated != text:
            yield path, updated


LINE_LIMIT = 100


def _docstring_lines(text: str) -> set[int]:
    """1-based numbers of the lines inside triple-quoted strings (docstrings, mostly)."""
    lines: set[int] = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.STRING and token.string.endswith(('"""', "'''")):
                lines.update(range(token.start[0], token.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        return set()
    return lines


_QUOTES = ('"""', "'''")
_BULLETS = ("* ", "- ")
_NOT_A_CONTINUATION = (*_BULLETS, ":", ">>>", "#", "```", *_QUOTES)


def _prefix(line: str, *, in_docstring: bool) -> str | None:
    """The part a continuation line repeats: comment marker or docstring indentation."""
    comment = re.match(r"\s*#:? ", line)
    if comment:
        return comment.group(0)
    return re.match(r"\s*", line).group(0) if in_docstring else None  # type: ignore[union-attr]


def wrap_long_lines(text: str, limit: int = LINE_LIMIT) -> str:
    """Reflow comment and docstring lines the longer names pushed past ``limit``.

    A line naming ``phaseflow.`` that is too long keeps the words that fit; the rest moves to the
    start of the next line when that line continues the same paragraph (same comment prefix or
    docstring indentation, not blank, not a new list item), which may push that one over in turn;
    otherwise to a new line. Code lines are left to ``ruff format``.
    """
    docstring_lines = _docstring_lines(text)
    lines = [(line, number in docstring_lines) for number, line in enumerate(text.split("\n"), 1)]
    index = 0
    grown = False  # the previous line pushed words into this one
    while index < len(lines):
        line, in_docstring = lines[index]
        prefix = _prefix(line, in_docstring=in_docstring)
        if len(line) <= limit or prefix is None or not (grown or f"{NAMESPACE}." in line):
            index, grown = index + 1, False
            continue
        divider = re.fullmatch(r"(.*\S)( -{3,})", line)
        if divider:  # "# --- section ------": fewer dashes
            lines[index] = (line[:limit], in_docstring)
            index, grown = index + 1, False
            continue
        cut = line.rfind(" ", len(prefix) + 1, limit + 1)
        if cut <= len(prefix):
            index, grown = index + 1, False
            continue
        head, rest = line[:cut].rstrip(), line[cut + 1 :]
        lines[index] = (head, in_docstring)
        if line[len(prefix) :].startswith(_BULLETS):  # a list item's lines hang under its text
            prefix += "  "
        following = lines[index + 1] if index + 1 < len(lines) else None
        if (
            following is not None
            and not head.rstrip().endswith(_QUOTES)
            and not rest.rstrip().endswith(_QUOTES)
            and _prefix(following[0], in_docstring=following[1]) == prefix
            and following[0][len(prefix) :].strip()
            and not following[0][len(prefix) :].startswith(_NOT_A_CONTINUATION)
        ):
            lines[index + 1] = (f"{prefix}{rest} {following[0][len(prefix) :]}", following[1])
        else:
            lines.insert(index + 1, (prefix + rest, in_docstring))
        index, grown = index + 1, True
    return "\n".join(line for line, _ in lines)


def _tidy(paths: Iterable[Path]) -> None:
    # Longer names move imports across isort sections and past the line length.
    python_files = [str(path) for path in paths if path.suffix == ".py"]
    if not python_files:
        return
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        print("ruff not found: run `make format` to sort the rewritten imports", file=sys.stderr)
        return
    subprocess.run([ruff, "check", "--fix", "--select", "I", *python_files], check=False)  # noqa: S603
    subprocess.run([ruff, "format", *python_files], check=False)  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only list stale files; exit 1 if any")
    parser.add_argument(
        "--repo", type=Path, default=REPO, help="repository root (default: this one)"
    )
    args = parser.parse_args(argv)
    repo: Path = args.repo.resolve()
    stale = list(stale_files(repo))
    if args.check:
        for path, _ in stale:
            print(f"{path.relative_to(repo)}: names a module outside the {NAMESPACE} namespace")
        if stale:
            print(f"run: python scripts/namespace_imports.py  ({len(stale)} files)")
        return 1 if stale else 0
    for path, updated in stale:
        path.write_text(updated, encoding="utf-8")
        print(f"rewrote {path.relative_to(repo)}")
    _tidy(path for path, _ in stale)
    print(f"{len(stale)} files rewritten" if stale else "nothing to rewrite: already phaseflow.*")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
