"""The README and docs/ stand alone: every link resolves inside the repository, nothing points
outside it, no code cites a design document the repository does not have, and the README stays
short enough to read (≤ 12 KB)."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import pytest

from tests.fixtures.doc_links import Link, anchors, heading_slug, links, problem

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_BYTES = 12 * 1024
# Sources and docs the repository ships (virtualenvs and caches are not ours).
_SKIPPED_DIRS = {
    ".venv",
    ".git",
    ".cache",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    ".phaseflow-data",
    "__pycache__",
    "node_modules",
}
# The old design document lived outside the repository ("DESIGN section 5", "DESIGN.md").
_DESIGN_CITATION = re.compile(r"\bDESIGN\b")


def _shipped_files(*suffixes: str) -> list[Path]:
    files: list[Path] = []
    for directory, subdirectories, names in os.walk(ROOT):
        # Pruned in place, so a virtualenv or cache is never walked.
        subdirectories[:] = [
            name
            for name in subdirectories
            if name not in _SKIPPED_DIRS and not name.endswith(".egg-info")
        ]
        files += [Path(directory, name) for name in names if Path(name).suffix in suffixes]
    return files


def test_readme_is_at_most_12_kb() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes, over {README_MAX_BYTES}: move detail into docs/ and link it"
    )


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda page: page.name)
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    problems = [text for link in links(page) if (text := problem(link, ROOT)) is not None]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda page: page.name)
def test_no_text_points_outside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "../" not in text, f"{page.name} refers to a path above the repository"
    assert not _DESIGN_CITATION.search(text), f"{page.name} cites a design document not in here"


def test_no_source_cites_a_design_document_outside_the_repository() -> None:
    citing = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _shipped_files(".py", ".toml")
        if path != Path(__file__).resolve()  # its own fixtures spell such citations out
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if _DESIGN_CITATION.search(line)
    ]
    assert not citing, "cite docs/contract.md or state the rule instead:\n" + "\n".join(citing)


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    reached = {README}
    frontier = [README]
    while frontier:
        page = frontier.pop()
        for link in links(page):
            path_part = link.target.partition("#")[0]
            target = (page.parent / path_part).resolve()
            if path_part.endswith(".md") and target.is_file() and target not in reached:
                reached.add(target)
                frontier.append(target)
    unreached = [page.name for page in DOCS if page not in reached]
    assert not unreached, f"no link from README.md leads to: {', '.join(unreached)}"


def test_readme_links_the_contract_and_the_measurement_pages() -> None:
    targets = {link.target.partition("#")[0] for link in links(README)}
    assert {
        "docs/contract.md",
        "docs/settings.md",
        "docs/performance.md",
        "docs/failure-modes.md",
    } <= targets


def test_readme_processor_example_imports_and_defines_its_coroutine() -> None:
    readme = README.read_text(encoding="utf-8")
    section = re.search(
        r"^## Publishing completions from a processor\n(.*?)^## ", readme, re.S | re.M
    )
    assert section, "README lost its section 'Publishing completions from a processor'"
    code = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert code, "the processor section has no python example"
    assert len(code.group(1).strip().splitlines()) <= 20, "keep the processor example short"
    namespace: dict[str, object] = {}
    exec(compile(code.group(1), "README.md example", "exec"), namespace)  # noqa: S102 - our README
    assert any(inspect.iscoroutinefunction(value) for value in namespace.values()), (
        "the example defines no async function a processor would call"
    )


# --- the checker itself finds what it must -------------------------------------------------


def test_heading_slugs_follow_github() -> None:
    assert heading_slug("Status page (`GET /`) and `phaseflow status`") == (
        "status-page-get--and-phaseflow-status"
    )
    assert heading_slug("Exit codes and error messages (every `phaseflow` command)") == (
        "exit-codes-and-error-messages-every-phaseflow-command"
    )
    assert heading_slug("Quick start (Python ≥ 3.11; Java 17)") == "quick-start-python--311-java-17"


def test_checker_reports_missing_files_anchors_and_outside_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## Same\n\n## Same\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md#same-1) [gone](docs/b.md) [anchor](docs/a.md#nope)\n"
        "[up](../shared/DESIGN.md) [web](https://example.com/x) <https://example.com>\n"
        "`[in code](docs/b.md)`\n```\n[fenced](docs/b.md)\n```\n![img](docs/a.md)\n"
    )
    found = links(page)
    assert [link.target for link in found] == [
        "docs/a.md#same-1",
        "docs/b.md",
        "docs/a.md#nope",
        "../shared/DESIGN.md",
        "https://example.com/x",
        "https://example.com",
        "docs/a.md",
    ]
    verdicts = {link.target: problem(link, tmp_path) for link in found}
    assert verdicts["docs/a.md#same-1"] is None
    assert verdicts["docs/a.md"] is None
    assert "no such file" in str(verdicts["docs/b.md"])
    assert "no heading with anchor #nope" in str(verdicts["docs/a.md#nope"])
    assert "leaves the repository" in str(verdicts["../shared/DESIGN.md"])
    assert "outside the repository" in str(verdicts["https://example.com/x"])
    assert "outside the repository" in str(verdicts["https://example.com"])
    assert anchors(tmp_path / "docs" / "a.md") == {"a", "same", "same-1"}
    assert problem(Link(page, 1, ""), tmp_path) == "README.md:1: '': empty link target"
