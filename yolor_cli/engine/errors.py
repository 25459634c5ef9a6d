"""Errors a user can cause, each with a message and a hint about what to do next.

The CLI turns any :class:`YolorError` into one formatted message and exit code 1; anything else
is a bug and is reported as such.
"""

from __future__ import annotations


class YolorError(Exception):
    """An error the user can fix; ``hint`` says how."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class CfgError(YolorError):
    """A Darknet cfg file that cannot be parsed or built."""


class CheckpointError(YolorError):
    """A weights file that is missing, damaged, foreign, unsafe or does not fit the model."""


class DataError(YolorError):
    """A dataset, label or image problem."""


class MissingDependencyError(YolorError):
    """An optional extra is needed for this feature."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """The gist of a third-party exception for a one-line report (some carry whole graph dumps)."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
