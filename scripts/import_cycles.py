"""Fail if any two modules of ``phaseflow`` import each other, directly or through others.

import-linter's contracts (``.importlinter``) check the layers; it has no contract for "no
cycle at all", so this walks grimp's import graph (grimp comes with import-linter) and prints
each cycle it finds as a chain of modules. Imports inside functions count (they run, later);
imports under ``if TYPE_CHECKING:`` never run and are left out unless asked for::

    python scripts/import_cycles.py                       # exit 1 and print the cycles, if any
    python scripts/import_cycles.py --with-type-checking  # type-only imports as well
"""

from __future__ import annotations

import argparse
import sys

import grimp

PACKAGE = "phaseflow"


def find_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan), as a closed chain."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0

    def imported(module: str) -> list[str]:
        return sorted(graph.find_modules_directly_imported_by(module))

    for root in sorted(graph.modules):
        if root in index:
            continue
        # Iterative Tarjan: the package is deep enough for Python's recursion limit to matter.
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            module, child = work.pop()
            if child == 0:
                index[module] = low[module] = counter
                counter += 1
                stack.append(module)
                on_stack.add(module)
            targets = imported(module)
            if child < len(targets):
                work.append((module, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[module] = min(low[module], index[target])
                continue
            if low[module] == index[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1 or module in graph.find_modules_directly_imported_by(module):
                    groups.append(sorted(group))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
    return [_chain(graph, group) for group in groups]


def _chain(graph: grimp.ImportGraph, group: list[str]) -> list[str]:
    """A readable cycle through the group's first module: there and back again."""
    start = group[0]
    back: list[str] = []
    for other in group[1:]:
        there = graph.find_shortest_chain(importer=start, imported=other)
        home = graph.find_shortest_chain(importer=other, imported=start)
        if there and home:
            back = [*there, *home[1:]]
            break
    return back or [start, start]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--with-type-checking",
        action="store_true",
        help="count imports under `if TYPE_CHECKING:` too",
    )
    args = parser.parse_args(argv)
    graph = grimp.build_graph(
        PACKAGE, cache_dir=None, exclude_type_checking_imports=not args.with_type_checking
    )
    cycles = find_cycles(graph)
    for cycle in cycles:
        print("import cycle: " + " -> ".join(cycle))
    modules = len(graph.modules)
    if cycles:
        print(f"{len(cycles)} import cycle(s) among {modules} modules of {PACKAGE}")
        return 1
    print(f"no import cycle among {modules} modules of {PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
