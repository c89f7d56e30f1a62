"""Type aliases shared across the engine."""

from __future__ import annotations

from collections.abc import Callable

#: A progress callback: ``progress(fraction_done, message)`` with ``fraction_done`` in [0, 1].
#: It may raise :class:`mu_core.errors.RunCancelled` to stop the work.
Progress = Callable[[float, str], None]


def report(progress: Progress | None, fraction: float, message: str) -> None:
    """Call ``progress`` if one was given, clamping ``fraction`` to [0, 1]."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def sub_progress(progress: Progress | None, start: float, end: float) -> Progress | None:
    """A callback mapping [0, 1] onto [start, end] of ``progress`` (for multi-step work)."""
    if progress is None:
        return None

    def inner(fraction: float, message: str) -> None:
        report(progress, start + (end - start) * fraction, message)

    return inner
