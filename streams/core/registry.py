"""The pipeline registry: which processors make up each phase and when a phase counts as complete.

The registry is data (docs/contract.md#registry-format): one TOML file, parsed with ``tomllib``
into frozen pydantic models. Every threshold used anywhere comes from here. Loading fails fast and
says where: ``RegistryError("pipeline.toml: phases[3].tiers[1].after: '1x' is not a duration like
'90s', '30m', '4h'")``. List positions in those paths count from 0, in file order.

How field values are spelt is :mod:`phaseflow.streams.core.registry_fields`; the rules checked after
the models validate, :mod:`phaseflow.streams.core.registry_structure` (across fields) and
:mod:`phaseflow.streams.core.registry_meaning` (what the file would do).
"""

from __future__ import annotations

import difflib
import tomllib
import types
from collections.abc import Callable, Collection
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar, Union, cast, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError
from pydantic_core import ErrorDetails

from phaseflow.models.phases import FIRST_PHASE, LAST_PHASE
from phaseflow.streams.core.registry_fields import (
    Duration,
    LocalTime,
    Name,
    Percent,
    PositiveDuration,
    Rule,
)
from phaseflow.streams.core.registry_meaning import meaning_problems
from phaseflow.streams.core.registry_structure import structure_problems
from phaseflow.streams.core.system_ids import known_system_ids

DEFAULT_REGISTRY: Final = "pipeline.toml"
_DEFAULT_SOURCE: Final = f"{DEFAULT_REGISTRY} (built-in default)"
_T = TypeVar("_T")
_O = TypeVar("_O")


class RegistryError(ValueError):
    """The registry file is unreadable or invalid; the message names the file and the field."""


class PhaseNotConfiguredError(KeyError):
    """A phase number the registry does not declare."""

    def __str__(self) -> str:
        # KeyError's own __str__ would print the message with quotes around it.
        return str(self.args[0]) if self.args else ""


#: Lookups derived from a frozen registry object, asked per event (phase by number, phase of a
#: processor, a phase's members and required set): computed once per object. Kept outside the
#: models so that equality and dumps see the fields only; each entry holds its object, so its id
#: is not reused while the entry exists.
_DERIVED: dict[tuple[int, Callable[[Any], Any]], tuple[object, Any]] = {}
_DERIVED_MAX: Final = 1024
_LAST: dict[Callable[[Any], Any], tuple[object, Any]] = {}


def _derived(owner: _O, compute: Callable[[_O], _T]) -> _T:
    """``compute(owner)``, computed once per (owner, compute)."""
    # A process mostly asks about one registry: its last answer per computation comes first.
    last = _LAST.get(compute)
    if last is not None and last[0] is owner:
        return cast("_T", last[1])
    key = (id(owner), compute)
    entry = _DERIVED.get(key)
    if entry is None or entry[0] is not owner:
        if len(_DERIVED) >= _DERIVED_MAX:
            _DERIVED.clear()
        entry = _DERIVED[key] = (owner, compute(owner))
    _LAST[compute] = entry
    return cast("_T", entry[1])


class _Spec(BaseModel):
    # extra="forbid": a misspelt key must fail loudly, not silently fall back to a default.
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tier(_Spec):
    """Fire when at least ``min_complete`` expected processors are done ``after`` the first one."""

    after: Duration
    min_complete: Annotated[int, Strict(), Field(ge=1)]


class ValidationSpec(_Spec):
    """Gate on a phase's completion (phase 5 before phase 6): enough predictions for the date."""

    min_predictions: Annotated[int, Strict(), Field(ge=0)] = 10
    min_completion_pct: Percent = 80


class RerunSpec(_Spec):
    """Reruns of failed or missing processors, per (date, phase, processor)."""

    max_attempts: Annotated[int, Strict(), Field(ge=1)] = 3
    backoff: Duration = timedelta(minutes=5)


class CleanupSpec(_Spec):
    """The periodic sweep that requests reruns for processors still missing on recent dates.

    Storm guard: when more than ``storm_max_missing_pct`` % of a date's processors are missing and
    at least ``storm_min_missing`` of them, it is an outage, so one alert replaces the reruns.
    """

    interval: Duration = timedelta(minutes=15)
    lookback_days: Annotated[int, Strict(), Field(ge=0)] = 3
    storm_max_missing_pct: Percent = 80
    storm_min_missing: Annotated[int, Strict(), Field(ge=0)] = 10


class SlowdownSpec(_Spec):
    """The rolling median each completion's ``duration_seconds`` is compared with, per processor.

    The threshold itself is per phase (``slowdown_pct``); this says how much history counts.
    """

    #: Durations of successful runs kept per processor (the newest ones).
    window: Annotated[int, Strict(), Field(ge=1, le=1000)] = 20
    #: No verdict until this many durations are known.
    min_samples: Annotated[int, Strict(), Field(ge=1)] = 5


class SystemSpec(_Spec):
    """A prediction system and its circuit breaker."""

    system_id: Name
    enabled: Annotated[bool, Strict()] = True
    breaker_threshold: Annotated[int, Strict(), Field(ge=1)] = 5
    breaker_cooldown: Duration = timedelta(minutes=5)


class PhaseSpec(_Spec):
    """When phase ``phase`` counts as complete for a game date (which starts ``phase + 1``)."""

    phase: Annotated[int, Strict(), Field(ge=FIRST_PHASE, le=LAST_PHASE)]
    name: Annotated[str, Strict(), Field(min_length=1)]
    #: False: completions are tracked (status, latency, slowdowns) but trigger nothing (phase 1).
    gated: Annotated[bool, Strict()] = True
    rule: Rule = "all_complete"
    majority_pct: Annotated[float, Strict(), Field(gt=0, le=100)] = 60
    processors: tuple[Name, ...]
    #: Source fallbacks: each group counts as one expected processor, named after its first
    #: member (the primary) and satisfied by the first success of any member.
    any_of: tuple[tuple[Name, ...], ...] = ()
    critical: tuple[Name, ...] = ()
    #: Tracked and shown, never waited for.
    optional: tuple[Name, ...] = ()
    #: If set, the only processors expected when ``game_date >= today`` (pre-game mode).
    same_day_processors: tuple[Name, ...] = ()
    tiers: tuple[Tier, ...] = ()
    #: Measured from the phase's first completion for the date.
    max_wait: Duration | None = None
    on_deadline: Literal["trigger", "alert"] = "trigger"
    validation: ValidationSpec | None = None
    #: No progress for this long counts as stalled (e.g. the phase-5 coordinator).
    stall_timeout: Duration | None = None
    #: Share of requested players a phase-5 coordinator waits for before completing.
    min_coverage_pct: Percent | None = None
    #: Local time (pipeline time zone) on the game date by which the phase should be complete.
    sla: LocalTime | None = None
    #: A completion this much slower than the processor's rolling median raises an alert.
    slowdown_pct: Annotated[float, Strict(), Field(gt=0)] = 40
    #: Overrides the registry's ``stall_after`` for this phase (see phaseflow.agents.stalls).
    stall_after: PositiveDuration | None = None
    #: True: fires without waiting for phase ``phase - 1`` to have fired (see
    #: phaseflow.agents.phase_order).
    independent: Annotated[bool, Strict()] = False

    @property
    def required(self) -> frozenset[str]:
        """Every processor that is not optional; a fallback group counts once, as its primary."""
        return _derived(self, _required)

    @property
    def members(self) -> tuple[str, ...]:
        """Every processor name of the phase: ``processors`` then each group's members."""
        return _derived(self, _members)

    def group_of(self, name: str) -> tuple[str, ...] | None:
        """The fallback group ``name`` is a member of (primary first), or None."""
        return _derived(self, _group_by_member).get(name)

    def satisfied(self, done: Collection[str]) -> frozenset[str]:
        """``done`` plus the primary of every group one of whose members is done: what to
        compare with :meth:`expected_processors`."""
        return frozenset(done) | frozenset(
            group[0] for group in self.any_of if any(name in done for name in group)
        )

    def is_pre_game(self, game_date: date, today: date) -> bool:
        """Whether ``game_date`` is judged in pre-game mode (same-day or future date)."""
        return game_date >= today and bool(self.same_day_processors)

    def expected_processors(self, game_date: date, today: date) -> frozenset[str]:
        """The processors whose completion this phase waits for on ``game_date``.

        Mode-aware: for a same-day or future date only ``same_day_processors``
        (when set); for past dates ("overnight") every non-optional processor.
        """
        if self.is_pre_game(game_date, today):
            return frozenset(self.same_day_processors)
        return self.required

    def expected_critical(self, game_date: date, today: date) -> frozenset[str]:
        """Critical processors among those expected on ``game_date``."""
        return frozenset(self.critical) & self.expected_processors(game_date, today)


def _required(spec: PhaseSpec) -> frozenset[str]:
    return (frozenset(spec.processors) - frozenset(spec.optional)) | frozenset(
        group[0] for group in spec.any_of
    )


def _members(spec: PhaseSpec) -> tuple[str, ...]:
    return (*spec.processors, *(name for group in spec.any_of for name in group))


def _group_by_member(spec: PhaseSpec) -> dict[str, tuple[str, ...]]:
    """Member name -> the first fallback group (file order) it is a member of."""
    found: dict[str, tuple[str, ...]] = {}
    for group in spec.any_of:
        for name in group:
            found.setdefault(name, group)
    return found


def _by_number(phases: tuple[PhaseSpec, ...]) -> dict[int, PhaseSpec]:
    """Phase number -> its spec (the first one, in file order). Keyed by the phases tuple, so a
    registry copied with other phases gets its own index."""
    found: dict[int, PhaseSpec] = {}
    for spec in phases:
        found.setdefault(spec.phase, spec)
    return found


def _by_processor(phases: tuple[PhaseSpec, ...]) -> dict[str, int]:
    """Processor name -> the first phase (file order) it is a member of."""
    found: dict[str, int] = {}
    for spec in phases:
        for name in spec.members:
            found.setdefault(name, spec.phase)
    return found


class Registry(_Spec):
    """The whole registry file."""

    retention_days: Annotated[int, Strict(), Field(ge=1)] = 7
    #: A gated phase holding state that has not fired this long after it started raises one
    #: ``phase_stalled`` alert (per-phase ``stall_after`` overrides it).
    stall_after: PositiveDuration = timedelta(hours=6)
    rerun: RerunSpec = RerunSpec()
    cleanup: CleanupSpec = CleanupSpec()
    slowdown: SlowdownSpec = SlowdownSpec()
    phases: tuple[PhaseSpec, ...]
    systems: tuple[SystemSpec, ...] = ()

    def phase(self, number: int) -> PhaseSpec:
        """The spec of phase ``number``; :class:`PhaseNotConfiguredError` if there is none."""
        spec = _derived(self.phases, _by_number).get(number)
        if spec is not None:
            return spec
        declared = ", ".join(str(spec.phase) for spec in self.phases)
        raise PhaseNotConfiguredError(
            f"phase {number!r} is not in the registry (declared: {declared})"
        )

    def stall_after_for(self, number: int) -> timedelta:
        """How long phase ``number`` may hold state without firing before it counts as stalled."""
        own = self.phase(number).stall_after
        return self.stall_after if own is None else own

    def has_phase(self, number: int) -> bool:
        """Whether the registry declares phase ``number``."""
        return number in _derived(self.phases, _by_number)

    def phase_for_processor(self, processor_name: str) -> int | None:
        """The phase a processor belongs to, or None for a processor the registry does not know."""
        return _derived(self.phases, _by_processor).get(processor_name)

    def system(self, system_id: str) -> SystemSpec | None:
        """The prediction system ``system_id``, or None."""
        return next((spec for spec in self.systems if spec.system_id == system_id), None)

    @property
    def enabled_systems(self) -> tuple[SystemSpec, ...]:
        """Prediction systems that are switched on, in file order."""
        return tuple(spec for spec in self.systems if spec.enabled)


# --- loading --------------------------------------------------------------------------------


def load_registry(path: Path | None = None) -> Registry:
    """Load and validate a registry file; ``None`` loads the default shipped with phaseflow."""
    if path is None:
        text = (
            resources.files("phaseflow.streams")
            .joinpath(DEFAULT_REGISTRY)
            .read_text(encoding="utf-8")
        )
        return parse_registry(text, source=_DEFAULT_SOURCE)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read the registry: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path}: the registry is not UTF-8 text: {exc}") from exc
    return parse_registry(text, source=str(path))


def parse_registry(
    text: str, *, source: str = "<registry>", known_systems: Collection[str] | None = None
) -> Registry:
    """Parse registry TOML ``text``; ``source`` names the file in error messages.

    ``known_systems``: the prediction system ids a ``[[systems]]`` entry may name; default: the
    ones implemented in :mod:`phaseflow.agents.predictions.systems` (including registered plugins),
    as :func:`phaseflow.streams.core.system_ids.known_system_ids` lists them.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{source}: invalid TOML: {exc}") from exc
    try:
        registry = Registry.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors(include_url=False)]
        raise _error(source, problems) from None
    problems = structure_problems(registry)
    problems += meaning_problems(registry, _implemented_systems(known_systems))
    if problems:
        raise _error(source, problems)
    return registry


def _implemented_systems(known_systems: Collection[str] | None) -> Collection[str]:
    if known_systems is not None:
        return known_systems
    return known_system_ids()


def _error(source: str, problems: list[str]) -> RegistryError:
    # One line per problem, each with the file name, so a fix-all pass needs one run.
    # A key may itself hold a line break (TOML quoted keys): escaped, it stays one line.
    lines = (problem.replace("\r", "\\r").replace("\n", "\\n") for problem in problems)
    return RegistryError("\n".join(f"{source}: {line}" for line in lines))


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, tuple, list, Annotated):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Registry
    for part in loc:
        if isinstance(part, int) or model is None:
            continue  # a list position: the element model is already known
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
    return model


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    if model is None:
        return f"unknown key {key!r}"
    allowed = sorted(model.model_fields)
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r}; allowed here: {', '.join(allowed)}"


def _describe(error: ErrorDetails) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{_path(loc)}: {_unknown_key(loc)}"
    if kind == "missing":
        return f"{_path(loc)}: required key is missing"
    if kind in {"duration", "local_time", "name"}:
        return f"{_path(loc)}: {error['msg']}"
    if kind in {"tuple_type", "list_type"}:
        return f'{_path(loc)}: expected an array like ["a", "b"] (got {error["input"]!r})'
    return f"{_path(loc)}: {error['msg']} (got {error['input']!r})"
