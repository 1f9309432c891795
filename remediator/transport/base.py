"""The transport interface every layer above receives; nothing above it knows about paramiko.

Commands are argument lists. Implementations that need a shell string (SSH) quote each argument
with `shlex.quote`, so no host fact or user value is ever interpreted by a shell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from remediator.errors import RemediatorError

MIB = 1 << 20

#: How much of one command's output a transport holds before it gives up on the command. A probe
#: document is about 100 KiB on a lab host (24 KiB on a real H200 box) and parsing JSON costs some
#: twenty times its size, so 8 MiB leaves room for hosts with hundreds of envs while a fleet of
#: flooding hosts cannot exhaust the control node. stderr only ever carries a traceback or a marker.
DEFAULT_MAX_STDOUT = 8 * MIB
DEFAULT_MAX_STDERR = 1 * MIB
#: A command given no timeout still ends: a host that never answers must not hold a fleet run forever.
#: Every caller of ours passes its own (the probe 180 s, verify its ladder's sum); this is the backstop.
DEFAULT_RUN_TIMEOUT = 600.0
#: The same backstop for writing one file.
DEFAULT_PUT_TIMEOUT = 120.0
#: Output is read in chunks of this size, so a transport holds at most cap + one chunk of a stream.
READ_CHUNK = 1 << 16


def format_size(n: int) -> str:
    """`8 MiB`, `64 KiB` or `1000 bytes`, as limits are written in messages."""
    for unit, size in (("MiB", MIB), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


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


class OutputTooLarge(TransportError):
    """A command printed more on one stream than the transport reads; it was abandoned unread.

    `received` is what was read before giving up: more than `cap`, never more than cap + READ_CHUNK.
    """

    def __init__(self, host: str, program: str, stream: str, cap: int, received: int, *, where: str) -> None:
        super().__init__(
            f"{program} printed more than {format_size(cap)} on {stream} on {where}; stopped reading "
            f"after {received} bytes and closed the connection",
            hint="a probe or check document is far smaller: something on the host floods the output "
            f"(a shell start-up file, a wrapper around the interpreter), or the host is hostile; "
            f"run the command on {host} by hand to see what it prints",
        )
        self.host = host
        self.program = program
        self.stream = stream
        self.cap = cap
        self.received = received


@runtime_checkable
class Transport(Protocol):
    name: str

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        max_stdout: int = DEFAULT_MAX_STDOUT,
        max_stderr: int = DEFAULT_MAX_STDERR,
    ) -> CommandResult:
        """Run argv; CommandTimeout past `timeout` (DEFAULT_RUN_TIMEOUT when None), OutputTooLarge
        once stdout or stderr passes its cap."""
        ...

    def put_file(self, data: bytes, remote_path: str, *, mode: int = 0o644, timeout: float | None = None) -> None:
        """Write data to remote_path atomically; CommandTimeout past `timeout` (DEFAULT_PUT_TIMEOUT)."""
        ...

    def close(self) -> None: ...
