"""Progress out of a compiled training scan: an explicit reporter object.

The compiled scan calls ``jax.debug.callback(core.reporter, update, metrics)`` once per update.
A ``Reporter`` forwards those calls to the sinks attached to it (the driver's progress bar,
metric writers); ``with reporter.attach(sink): ...`` attaches one for the duration of a run.
Each compiled core owns its reporter, so runs of different cores never see each other's
progress, and attaching a sink never recompiles anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Sink = Callable[[Any, dict], None]


class Reporter:
    """Fans the per-update callback out to the attached sinks."""

    def __init__(self) -> None:
        self.sinks: list[Sink] = []

    def __call__(self, update: Any, metrics: dict) -> None:
        for sink in list(self.sinks):
            sink(update, metrics)

    @contextmanager
    def attach(self, sink: Sink) -> Iterator[Sink]:
        """Attach ``sink`` for the duration of a ``with`` block."""
        self.sinks.append(sink)
        try:
            yield sink
        finally:
            self.sinks.remove(sink)
