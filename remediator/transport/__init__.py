"""How we reach a host: one narrow interface (run a command, put a file, close) and its implementations."""

from remediator.transport.base import (
    AuthenticationError,
    CommandResult,
    CommandTimeout,
    HostKeyError,
    HostUnreachable,
    Transport,
    TransportError,
)

__all__ = [
    "AuthenticationError",
    "CommandResult",
    "CommandTimeout",
    "HostKeyError",
    "HostUnreachable",
    "Transport",
    "TransportError",
]
