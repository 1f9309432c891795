"""The one error hierarchy: every error a user can cause carries its message, a hint and an exit code.

Library exceptions (yaml, packaging, paramiko, ansible) are translated into these where they enter,
so the CLI can print one clear line instead of a traceback.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """Exit codes shared by every command, as `terraform plan -detailed-exitcode` uses them."""

    OK = 0  # healthy, nothing to do, no drift
    ERROR = 1  # bad input, unreachable host, or an error of the tool
    CHANGES = 2  # error findings, changes planned, drift found


class RemediatorError(Exception):
    """Base of every error the CLI reports as one line (no traceback)."""

    exit_status: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(RemediatorError):
    """The command line itself is wrong (bad option value, missing argument)."""


class InputError(RemediatorError):
    """A file the user gave us (facts, inventory, scenario, plan) is unreadable or malformed."""

    def __init__(self, source: str, message: str, *, field: str | None = None, hint: str | None = None):
        where = f"{source}: {field}: " if field else f"{source}: "
        super().__init__(where + message, hint=hint)
        self.source = source
        self.field = field


class UnknownVersionError(RemediatorError):
    """A framework/toolkit version the matrix does not know; carries the nearest known ones."""

    def __init__(self, what: str, version: str, nearest: list[str] | tuple[str, ...]) -> None:
        near = ", ".join(nearest) if nearest else "none"
        super().__init__(
            f"unknown {what} version {version!r}; nearest known: {near}",
            hint="`remediate matrix list` shows every version the matrix knows",
        )
        self.what = what
        self.version = version
        self.nearest = tuple(nearest)


class MatrixError(RemediatorError):
    """The shipped compatibility matrix data is inconsistent (a bug of ours, caught at load)."""
