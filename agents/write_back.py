"""A table that keeps a batch's writes in memory and stores each key once when the batch ends.

The readiness agent handles completions in batches (``readiness_agent``). Written through to
the Faust table, every event would cost one changelog record per key it touches (its phase
state, its processor's durations): 40,000 events, ~40,000 changelog records, the largest part
of the agent's per-event cost. Through a ``WriteBackTable`` the events of one batch read and
write the same in-memory values, and ``flush`` writes each key once, with its last value (or
deletes it), before the batch's outputs may commit (``one_transaction``) and before its
offsets are acknowledged. A key's value after a batch is the same as after the same events one
at a time; only the changelog records in between are gone.

Each buffered write remembers ``origin()`` at the time of the write (in the service: the Faust
event being handled, whose partition Faust takes the changelog partition from), and ``flush``
writes the key inside ``within(origin)`` so that the record goes where the per-event write
would have gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Final

_DELETED: Final = object()


def _no_origin() -> None:
    return None


def _no_context(_origin: Any) -> AbstractContextManager[None]:
    return nullcontext()


class WriteBackTable(MutableMapping[str, Any]):
    """``backing`` plus the writes of the batch in progress, stored by ``flush``."""

    def __init__(
        self,
        backing: MutableMapping[str, Any],
        *,
        origin: Callable[[], Any] = _no_origin,
        within: Callable[[Any], AbstractContextManager[Any]] = _no_context,
    ) -> None:
        self._backing = backing
        self._origin = origin
        self._within = within
        #: Applied to each value as it is stored (encode_with).
        self._encode: Callable[[Any], Any] | None = None
        #: key -> (value or _DELETED, origin of the last write)
        self._pending: dict[str, tuple[Any, Any]] = {}

    def encode_with(self, encode: Callable[[Any], Any]) -> None:
        """Serialize each value with ``encode`` as it is stored: its writer (the readiness
        store) puts its own objects here, serialized once per batch instead of per write."""
        self._encode = encode

    @property
    def pending(self) -> int:
        """Keys written since the last flush."""
        return len(self._pending)

    def flush(self) -> int:
        """Store every key written since the last flush, once, in write order of first write;
        return how many keys were stored."""
        pending, self._pending = self._pending, {}
        for key, (value, origin) in pending.items():
            with self._within(origin):
                if value is _DELETED:
                    if key in self._backing:
                        del self._backing[key]
                else:
                    self._backing[key] = value if self._encode is None else self._encode(value)
        return len(pending)

    def discard(self) -> int:
        """Forget the writes since the last flush (their batch failed and will be handled
        again from its offsets); return how many keys were forgotten."""
        forgotten = len(self._pending)
        self._pending = {}
        return forgotten

    def __getitem__(self, key: str) -> Any:
        found = self._pending.get(key)
        if found is None:
            return self._backing[key]
        if found[0] is _DELETED:
            raise KeyError(key)
        return found[0]

    def get(self, key: str, default: Any = None) -> Any:
        # Faust's table returns its default (None here) for a missing key from __getitem__;
        # get() is the hot path, so it goes to each mapping's own get.
        found = self._pending.get(key)
        if found is None:
            return self._backing.get(key, default)
        return default if found[0] is _DELETED else found[0]

    def __setitem__(self, key: str, value: Any) -> None:
        self._pending[key] = (value, self._origin())

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._pending[key] = (_DELETED, self._origin())

    def __contains__(self, key: object) -> bool:
        found = self._pending.get(key) if isinstance(key, str) else None
        if found is None:
            return key in self._backing
        return found[0] is not _DELETED

    def __iter__(self) -> Iterator[str]:
        for key in list(self._backing):
            if key not in self._pending:
                yield key
        for key, (value, _) in list(self._pending.items()):
            if value is not _DELETED:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)
