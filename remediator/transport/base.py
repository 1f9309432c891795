"""The transport interface every layer above receives; nothing above it knows about paramiko.

Commands are argument lists. Implementations that need a shell string (SSH) quote each argument
with `shlex.quote`, so no host fact or user value is ever interpreted by a shell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from remediator.errors import RemediatorError


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: bytes
    stderr: bytes


class TransportError(RemediatorError):
    """The host could not be reached or a command could not be run on it."""


class HostUnreachable(TransportError):
    """Connection refused, timed out, or the name does not resolve: ansible's 'dark' host."""


class HostKeyError(TransportError):
    """The host key is unknown (and not accepted) or differs from the recorded one."""


class AuthenticationError(TransportError):
    """The server refused every key we offered."""


class CommandTimeout(TransportError):
    """A command ran past its timeout (a wedged driver hangs nvidia-smi, for one)."""


@runtime_checkable
class Transport(Protocol):
    name: str

    def run(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult: ...

    def put_file(self, data: bytes, remote_path: str, *, mode: int = 0o644) -> None: ...

    def close(self) -> None: ...
