"""The exceptions a user can cause, each carrying one sentence the UI and the CLI print as is."""

from __future__ import annotations

__all__ = ["AuditInputError", "RunCancelled"]


class AuditInputError(ValueError):
    """Bad input from the user: a missing file, a foreign model, an empty forget set...

    The message is one sentence saying what is wrong and what to do; callers show it verbatim.
    """


class RunCancelled(RuntimeError):
    """Raised from inside a progress callback to stop long work at the next step."""
