"""Fuzzing the registry loader: whatever the file holds, a registry or one RegistryError.

Two generators: arbitrary text (mostly invalid TOML), and structured mutations of the shipped
registry (a key dropped, a value replaced by one of another type or out of range, an unknown
key added), which get past the TOML parser and exercise validation. The loader must never
raise anything but ``RegistryError``, and every error line names the source file.
"""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phaseflow.streams.core.registry import (
    DEFAULT_REGISTRY,
    Registry,
    RegistryError,
    parse_registry,
)

SOURCE = "fuzz.toml"
DEFAULT_DATA = tomllib.loads(
    resources.files("phaseflow.streams").joinpath(DEFAULT_REGISTRY).read_text()
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["30m", "1h30m", "0s", "-5m", "12:45", "25:61", "all_complete", "trigger"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path into the registry data."""
    found: list[tuple[Any, ...]] = []
    items: list[tuple[Any, Any]] = []
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


PATHS = _paths(DEFAULT_DATA)


def _to_toml(value: Any) -> str:
    """A TOML value (inline form) for ``value``; None has no TOML form, so it becomes ''."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value).replace("inf", "inf").replace("nan", "nan")
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_to_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_to_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def _key(key: str) -> str:
    if not isinstance(key, str):
        # A list an earlier mutation turned into a table, then indexed by position: TOML keys
        # are strings, so such data has no TOML form (the test skips it).
        raise TypeError(type(key))
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dump(data: dict[str, Any]) -> str:
    """The registry data as TOML: scalars at the top, then tables and arrays of tables."""
    lines = [f"{_key(k)} = {_to_toml(v)}" for k, v in data.items() if not _is_table(v)]
    for name, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{_key(name)}]")
            lines += [f"{_key(k)} = {_to_toml(v)}" for k, v in value.items()]
        elif _is_table(value):
            for entry in value:
                lines.append(f"[[{_key(name)}]]")
                lines += [f"{_key(k)} = {_to_toml(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _mutate(data: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> None:
    parent: Any = data
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "drop":
        if isinstance(parent, dict):
            parent.pop(last, None)
        elif isinstance(parent, list) and len(parent) > 1:
            parent.pop(last)
    elif action == "replace":
        parent[last] = value
    elif action == "add" and isinstance(parent, dict):
        parent[f"unknown_{len(parent)}"] = value


def assert_loads_or_explains(text: str) -> None:
    try:
        registry = parse_registry(text, source=SOURCE)
    except RegistryError as error:
        # The loader joins its lines with "\n"; splitlines() would also break inside a quoted
        # key holding a Unicode line separator such as "\x85".
        lines = str(error).split("\n")
    else:
        assert isinstance(registry, Registry)
        return
    assert lines
    assert all(line.startswith(f"{SOURCE}: ") for line in lines), "\n".join(lines)


def test_the_dumper_round_trips_the_shipped_registry() -> None:
    # Otherwise the mutations below would test the dumper, not the loader.
    assert parse_registry(dump(DEFAULT_DATA)) == parse_registry(
        resources.files("phaseflow.streams").joinpath(DEFAULT_REGISTRY).read_text()
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_arbitrary_text_is_a_registry_or_a_registry_error(text: str) -> None:
    assert_loads_or_explains(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(PATHS), st.sampled_from(["drop", "replace", "add"]), values),
        min_size=1,
        max_size=3,
    )
)
def test_mutated_registries_are_a_registry_or_a_registry_error(
    mutations: list[tuple[tuple[Any, ...], str, Any]],
) -> None:
    data = copy.deepcopy(DEFAULT_DATA)
    for path, action, value in mutations:
        try:
            _mutate(data, path, action, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or reshaped this path
    try:
        text = dump(data)
        tomllib.loads(text)
    except (TypeError, tomllib.TOMLDecodeError):
        return  # not expressible as TOML (e.g. mixed arrays of tables); nothing to load
    assert_loads_or_explains(text)
