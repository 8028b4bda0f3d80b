"""Start work that needs no Faust table with the app, not after table recovery.

Faust starts ``@app.task`` functions (and ``@app.service`` services) only once table recovery has
finished (``App.on_started``). After a restart that is seconds of idle time for a component that
reads no table, such as the prediction workers (their own plain consumer group, output through
the side producer): with :func:`start_with_app` they consume while the tables are restored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mode import Service


class _StartsWithApp(Service):
    """A child of the Faust app that runs ``run`` as soon as the app's children start."""

    def __init__(self, run: Callable[[], Awaitable[None]], name: str) -> None:
        self._run = run
        self._name = name
        super().__init__()

    @property
    def shortlabel(self) -> str:
        return self._name

    async def on_start(self) -> None:
        # A future, not awaited here: the app's other children (its producer and consumer) must
        # not wait for it; stopping the app cancels it with this service.
        self.add_future(self._run())


def start_with_app(app: Any, run: Callable[[], Awaitable[None]], *, name: str) -> None:
    """Run ``run()`` when ``app`` starts (before its tables are recovered); call before the
    app starts. ``run`` must return once started or stop by itself on shutdown (stop it in
    ``on_before_shutdown``)."""
    app.add_dependency(_StartsWithApp(run, name))
